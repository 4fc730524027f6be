//! The bubblewrap argument vector: mounts from scopes, deny overlays, environment, network.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::{
    entry_command, NetworkPolicy, RunSpec, SandboxError, SandboxProfile, HELPER_SUBCOMMAND,
    RELAY_DIR_INSIDE, SANDBOX_PATH,
};

/// Files and folders of `/etc` hidden in every sandbox (when the host has them): password
/// hashes, sudo rules, private TLS and Kerberos keys. The sandbox runs as the caller's uid, so as
/// root these would be readable as their owner. SSH host private keys (`/etc/ssh/ssh_host_*`
/// without `.pub`) are hidden too.
pub const ETC_HIDDEN: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssl/private",
    "/etc/security/opasswd",
    "/etc/krb5.keytab",
    "/etc/wireguard",
    "/etc/letsencrypt",
];

/// The most file-system entries the deny-overlay scan visits in one call (about a second of
/// scanning); more fails closed.
pub const DENY_SCAN_LIMIT: usize = 1_000_000;

/// System directories shown read-only (or recreated as symlinks).
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// The reserved root of the workspace (KRN-10).
const RESERVED: &str = crate::scope::RESERVED_ROOT;

/// Glob metacharacters: a pattern's static prefix ends before the first segment holding one.
const GLOB_META: &[char] = &['*', '?', '[', '{', '('];

/// First loopback address handed to allowlisted host names.
const NAME_ADDR_BASE: Ipv4Addr = Ipv4Addr::new(127, 100, 0, 1);
const MAX_RELAY_DESTINATIONS: usize = 4096;

pub(crate) struct RelayPaths<'a> {
    pub helper_exe: &'a Path,
    pub runtime_dir: &'a Path,
}

/// One allowlisted destination: what the parent connects to, and where the helper listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelayDest {
    pub host: String,
    pub port: u16,
    pub inside: IpAddr,
}

impl RelayDest {
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.inside, self.port)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Ro,
    Rw,
}

#[derive(Debug, Clone)]
struct Mount {
    /// Where it appears inside (the lexical path).
    dest: PathBuf,
    /// The canonical host path.
    src: PathBuf,
    access: Access,
    /// Program, helper and reserved-root binds: never dropped by write-wins or deduplication.
    forced: bool,
}

/// The static prefix of a path pattern: its segments before the first one holding a glob
/// metacharacter (`* ? [ { (`), joined with `/` (`""` when the first segment is a glob).
/// `packages/**` → `packages`; `**` → ``; `src/a.ts` → `src/a.ts`.
pub fn static_prefix(pattern: &str) -> String {
    let segs: Vec<&str> = pattern
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    segs.iter()
        .take_while(|s| !s.contains(GLOB_META))
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}

/// The prefix segments of a relative pattern and whether a glob part follows them.
pub(crate) fn parse_pattern(pattern: &str) -> Result<(Vec<String>, bool), SandboxError> {
    let bad = |reason: &str| SandboxError::InvalidScope {
        pattern: pattern.to_string(),
        reason: reason.to_string(),
    };
    if pattern.trim().is_empty() {
        return Err(bad("the pattern is empty"));
    }
    if pattern.contains('\0') {
        return Err(bad("the pattern contains a NUL byte"));
    }
    if pattern.contains('\\') {
        return Err(bad("the pattern contains a backslash"));
    }
    if pattern.starts_with('/') {
        return Err(bad(
            "the pattern is absolute; scopes are relative to the workspace root",
        ));
    }
    if pattern.starts_with('!') {
        return Err(bad("negated patterns are not supported"));
    }
    let segs: Vec<&str> = pattern
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if segs.contains(&"..") {
        return Err(bad("the pattern contains a `..` segment"));
    }
    let prefix: Vec<String> = segs
        .iter()
        .take_while(|s| !s.contains(GLOB_META))
        .map(|s| s.to_string())
        .collect();
    let has_glob = prefix.len() < segs.len();
    Ok((prefix, has_glob))
}

fn depth(p: &Path) -> usize {
    p.components().count()
}

/// Is `p` free of `.` and `..` components and absolute?
fn is_clean_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

pub(crate) fn check_spec(spec: &RunSpec) -> Result<(), SandboxError> {
    if !spec.program.is_absolute() {
        return Err(SandboxError::InvalidRun(format!(
            "the program `{}` must be an absolute path",
            spec.program.display()
        )));
    }
    if !spec.program.is_file() {
        return Err(SandboxError::InvalidRun(format!(
            "the program `{}` does not exist",
            spec.program.display()
        )));
    }
    if !is_clean_absolute(&spec.cwd) || !spec.cwd.is_dir() {
        return Err(SandboxError::InvalidRun(format!(
            "the working directory `{}` must be an existing absolute folder without `..`",
            spec.cwd.display()
        )));
    }
    for a in &spec.args {
        if a.contains('\0') {
            return Err(SandboxError::InvalidRun(
                "an argument contains a NUL byte".into(),
            ));
        }
    }
    Ok(())
}

const RESERVED_ENV: &[&str] = &[
    "LUMENFLOW_RECEIPT_ID",
    "LUMENFLOW_RUN_ID",
    "LUMENFLOW_TASK_ID",
];

/// The tool's whole environment, in order (a later entry overrides an earlier one).
pub(crate) fn environment(
    profile: &SandboxProfile,
    spec: &RunSpec,
) -> Result<Vec<(String, String)>, SandboxError> {
    let mut env = vec![
        ("PATH".to_string(), SANDBOX_PATH.to_string()),
        ("HOME".to_string(), "/tmp".to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
        ("PWD".to_string(), spec.cwd.to_string_lossy().into_owned()),
        (
            "LUMENFLOW_RECEIPT_ID".to_string(),
            spec.ids.receipt_id.clone(),
        ),
        ("LUMENFLOW_RUN_ID".to_string(), spec.ids.run_id.clone()),
        ("LUMENFLOW_TASK_ID".to_string(), spec.ids.task_id.clone()),
    ];
    for (_, v) in &env {
        if v.contains('\0') {
            return Err(SandboxError::InvalidRun("an id contains a NUL byte".into()));
        }
    }
    for (k, v) in &profile.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(SandboxError::InvalidRun(format!(
                "`{k}` is not a valid environment variable name"
            )));
        }
        if v.contains('\0') {
            return Err(SandboxError::InvalidRun(format!(
                "the value of `{k}` contains a NUL byte"
            )));
        }
        if RESERVED_ENV.contains(&k.as_str()) {
            return Err(SandboxError::InvalidRun(format!(
                "`{k}` is set by the sandbox to the call's id and cannot be overridden"
            )));
        }
        env.push((k.clone(), v.clone()));
    }
    Ok(env)
}

/// The allowlist's destinations in relay order, with their inside addresses; refuses what the
/// relay cannot enforce.
pub(crate) fn relay_destinations(net: &NetworkPolicy) -> Result<Vec<RelayDest>, SandboxError> {
    let NetworkPolicy::Allowlist(entries) = net else {
        return Ok(Vec::new());
    };
    let mut out: Vec<RelayDest> = Vec::new();
    let mut names: BTreeMap<String, IpAddr> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (host, port) in entries {
        let display = format!("{host}:{port}");
        let unsupported = |reason: &str| SandboxError::AllowlistEntryUnsupported {
            entry: display.clone(),
            reason: reason.to_string(),
        };
        if *port == 0 {
            return Err(unsupported("port 0 is not a destination"));
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let (key, inside) = match bare.parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => (ip.to_string(), ip),
            Ok(_) => {
                return Err(unsupported(
                    "only loopback addresses can be listened for inside the sandbox's network \
                     namespace; allow the host by name instead",
                ))
            }
            Err(_) => {
                if bare.contains('/') {
                    return Err(SandboxError::AllowlistCidrUnsupported {
                        entry: display.clone(),
                    });
                }
                if !is_hostname(bare) {
                    return Err(unsupported("not a valid host name"));
                }
                let name = bare.to_ascii_lowercase();
                let next = names.len();
                let ip = match names.get(&name) {
                    Some(ip) => *ip,
                    None => {
                        let addr = u32::from(NAME_ADDR_BASE).saturating_add(next as u32);
                        let ip = IpAddr::V4(Ipv4Addr::from(addr));
                        names.insert(name.clone(), ip);
                        ip
                    }
                };
                (name, ip)
            }
        };
        if !seen.insert((key.clone(), *port)) {
            continue;
        }
        out.push(RelayDest {
            host: key,
            port: *port,
            inside,
        });
        if out.len() > MAX_RELAY_DESTINATIONS {
            return Err(unsupported("too many allowlist destinations"));
        }
    }
    Ok(out)
}

fn is_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// The `/etc/hosts` of an allowlisted sandbox.
pub(crate) fn hosts_file(dests: &[RelayDest]) -> String {
    let mut named: Vec<(&str, IpAddr)> = Vec::new();
    for d in dests {
        if d.host.parse::<IpAddr>().is_err() && !named.iter().any(|(h, _)| *h == d.host) {
            named.push((&d.host, d.inside));
        }
    }
    let localhost_named = named.iter().any(|(h, _)| *h == "localhost");
    let mut out = String::from(
        "# Generated by LumenFlow: allowlisted host names resolve to the sandbox's relay.\n",
    );
    if !localhost_named {
        out.push_str("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    } else {
        out.push_str("::1\tip6-localhost ip6-loopback\n");
    }
    for (host, ip) in named {
        out.push_str(&format!("{ip}\t{host}\n"));
    }
    out
}

fn canonical(p: &Path, what: &str) -> Result<PathBuf, SandboxError> {
    fs::canonicalize(p)
        .map_err(|e| SandboxError::setup(format!("resolving {what} `{}`", p.display()), e))
}

/// Does the canonical `src` (inside `ws_c`) lie under the reserved root?
fn in_reserved(ws_c: &Path, src: &Path) -> bool {
    src.strip_prefix(ws_c)
        .ok()
        .and_then(|r| r.components().next())
        .is_some_and(|c| c.as_os_str() == RESERVED)
}

/// Create the missing folders of a write scope's prefix, one level at a time, never through a
/// symlink that leaves the workspace.
fn create_prefix(
    ws: &Path,
    ws_c: &Path,
    prefix: &[String],
    pattern: &str,
) -> Result<(), SandboxError> {
    let mut p = ws.to_path_buf();
    for seg in prefix {
        p.push(seg);
        match fs::symlink_metadata(&p) {
            Ok(_) => {
                let c = canonical(&p, "scope folder")?;
                if !c.starts_with(ws_c) {
                    return Err(SandboxError::ScopeEscapes {
                        pattern: pattern.to_string(),
                        resolved: c,
                        reason: "outside the workspace root (through a symlink)",
                    });
                }
                if !c.is_dir() {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&p).or_else(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(SandboxError::setup(
                            format!("creating write scope folder `{}`", p.display()),
                            e,
                        ))
                    }
                })?;
            }
            Err(e) => return Err(SandboxError::setup(format!("reading `{}`", p.display()), e)),
        }
    }
    Ok(())
}

fn scope_mounts(
    profile: &SandboxProfile,
    ws: &Path,
    ws_c: &Path,
) -> Result<Vec<Mount>, SandboxError> {
    let mut mounts = Vec::new();
    let patterns = profile
        .read
        .iter()
        .map(|p| (p, Access::Ro))
        .chain(profile.write.iter().map(|p| (p, Access::Rw)));
    for (pattern, access) in patterns {
        let (prefix, has_glob) = parse_pattern(pattern)?;
        let mut dest = ws.to_path_buf();
        for seg in &prefix {
            dest.push(seg);
        }
        match fs::symlink_metadata(&dest) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if access == Access::Rw && has_glob {
                    create_prefix(ws, ws_c, &prefix, pattern)?;
                } else {
                    continue;
                }
            }
            Err(e) => {
                return Err(SandboxError::setup(
                    format!("reading scope path `{}`", dest.display()),
                    e,
                ))
            }
        }
        let src = match fs::canonicalize(&dest) {
            Ok(s) => s,
            // A dangling symlink: nothing to show.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(SandboxError::setup(
                    format!("resolving scope path `{}`", dest.display()),
                    e,
                ))
            }
        };
        if !src.starts_with(ws_c) {
            return Err(SandboxError::ScopeEscapes {
                pattern: pattern.clone(),
                resolved: src,
                reason: "outside the workspace root (through a symlink)",
            });
        }
        if access == Access::Rw && in_reserved(ws_c, &src) {
            let lexical: PathBuf = prefix.iter().collect();
            if src.strip_prefix(ws_c).ok() != Some(lexical.as_path()) {
                return Err(SandboxError::ScopeEscapes {
                    pattern: pattern.clone(),
                    resolved: src,
                    reason: "inside the reserved `.lumenflow` folder through a symlink",
                });
            }
        }
        mounts.push(Mount {
            dest,
            src,
            access,
            forced: false,
        });
    }
    // The reserved root stays read-only under a writable ancestor.
    let reserved = ws.join(RESERVED);
    let covered_rw = mounts
        .iter()
        .any(|m| m.access == Access::Rw && reserved.starts_with(&m.dest) && reserved != m.dest);
    if covered_rw && fs::symlink_metadata(&reserved).is_ok() {
        if let Ok(src) = fs::canonicalize(&reserved) {
            if src.starts_with(ws_c) {
                mounts.push(Mount {
                    dest: reserved,
                    src,
                    access: Access::Ro,
                    forced: true,
                });
            }
        }
    }
    Ok(mounts)
}

/// Drop read binds inside write binds, drop binds that repeat their parent, order parents first.
fn arrange(mut mounts: Vec<Mount>) -> Vec<Mount> {
    let rw: Vec<PathBuf> = mounts
        .iter()
        .filter(|m| m.access == Access::Rw && !m.forced)
        .map(|m| m.dest.clone())
        .collect();
    mounts.retain(|m| {
        m.forced || m.access == Access::Rw || !rw.iter().any(|d| m.dest.starts_with(d))
    });
    mounts.sort_by(|a, b| {
        (depth(&a.dest), &a.dest, a.forced).cmp(&(depth(&b.dest), &b.dest, b.forced))
    });
    let mut kept: Vec<Mount> = Vec::new();
    for m in mounts {
        let parent = kept
            .iter()
            .filter(|k| m.dest.starts_with(&k.dest))
            .max_by_key(|k| depth(&k.dest));
        if let Some(k) = parent {
            let continues = m
                .dest
                .strip_prefix(&k.dest)
                .is_ok_and(|rest| k.src.join(rest) == m.src);
            if !m.forced && k.access == m.access && continues {
                continue;
            }
        }
        kept.push(m);
    }
    kept
}

/// The deny-overlay globs (relative to the workspace). Absolute patterns outside the workspace
/// name nothing the sandbox shows and are ignored.
fn overlay_globs(
    profile: &SandboxProfile,
    ws: &Path,
) -> Result<Option<(GlobSet, Option<usize>)>, SandboxError> {
    overlay_globs_of(&profile.deny_overlays, ws)
}

/// Whether the workspace-relative `rel` is hidden by one of the deny overlays `patterns` of
/// the workspace `ws`, as the sandbox hides it from a subprocess tool. For in-process tools
/// that write what an agent chose (a patch), so such a file is not writable that way either.
pub fn deny_overlay_covers(patterns: &[String], ws: &Path, rel: &str) -> Result<bool, String> {
    match overlay_globs_of(patterns, ws).map_err(|e| e.to_string())? {
        Some((globs, _)) => Ok(globs.is_match(rel)),
        None => Ok(false),
    }
}

fn overlay_globs_of(
    patterns: &[String],
    ws: &Path,
) -> Result<Option<(GlobSet, Option<usize>)>, SandboxError> {
    let mut builder = GlobSetBuilder::new();
    let mut any = false;
    let mut max_depth = Some(0usize);
    for raw in patterns {
        let pattern = raw.trim();
        let rel = if pattern.starts_with('/') {
            match Path::new(pattern).strip_prefix(ws) {
                Ok(r) => r.to_string_lossy().into_owned(),
                Err(_) => continue,
            }
        } else if pattern.starts_with('~') {
            continue;
        } else {
            pattern.to_string()
        };
        let invalid = |reason: String| SandboxError::InvalidScope {
            pattern: raw.clone(),
            reason,
        };
        parse_pattern(&rel).map_err(|e| match e {
            SandboxError::InvalidScope { reason, .. } => invalid(format!("deny overlay: {reason}")),
            other => other,
        })?;
        let rel = rel
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect::<Vec<_>>()
            .join("/");
        let mut variants = vec![rel.clone()];
        if let Some(base) = rel.strip_suffix("/**") {
            variants.push(base.to_string());
        }
        if rel.contains("**") {
            max_depth = None;
        } else if let Some(d) = max_depth.as_mut() {
            *d = (*d).max(rel.split('/').count());
        }
        for v in variants {
            let glob = GlobBuilder::new(&v)
                .literal_separator(true)
                .build()
                .map_err(|e| invalid(format!("deny overlay: {e}")))?;
            builder.add(glob);
            any = true;
        }
    }
    if !any {
        return Ok(None);
    }
    let set = builder.build().map_err(|e| SandboxError::InvalidScope {
        pattern: patterns.join(", "),
        reason: format!("deny overlay: {e}"),
    })?;
    Ok(Some((set, max_depth)))
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Overlay {
    File(PathBuf),
    Dir(PathBuf),
}

/// Every visible path matching a deny overlay, scanning each bound tree without following
/// symlinks.
fn deny_overlays(
    profile: &SandboxProfile,
    ws: &Path,
    ws_c: &Path,
    mounts: &[Mount],
) -> Result<BTreeSet<Overlay>, SandboxError> {
    let mut out = BTreeSet::new();
    let Some((globs, max_depth)) = overlay_globs(profile, ws)? else {
        return Ok(out);
    };
    let in_ws: Vec<&Mount> = mounts.iter().filter(|m| m.dest.starts_with(ws)).collect();
    let mount_dests: BTreeSet<&Path> = in_ws.iter().map(|m| m.dest.as_path()).collect();
    let visible = |p: &Path| in_ws.iter().any(|m| p.starts_with(&m.dest));
    let mut visited = 0usize;
    for m in &in_ws {
        // (host path, inside path)
        let mut stack: Vec<(PathBuf, PathBuf)> = vec![(m.src.clone(), m.dest.clone())];
        while let Some((host, inside)) = stack.pop() {
            visited += 1;
            if visited > DENY_SCAN_LIMIT {
                return Err(SandboxError::DenyOverlayLimit {
                    limit: DENY_SCAN_LIMIT,
                });
            }
            let Ok(meta) = fs::symlink_metadata(&host) else {
                continue;
            };
            let rel = inside
                .strip_prefix(ws)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            let matched = !rel.is_empty() && globs.is_match(&rel);
            if matched {
                if meta.file_type().is_symlink() {
                    // Hide what it points at, if that is visible in the sandbox.
                    if let Ok(target) = fs::canonicalize(&host) {
                        if let Ok(rest) = target.strip_prefix(ws_c) {
                            let t_inside = ws.join(rest);
                            if visible(&t_inside) {
                                out.insert(if target.is_dir() {
                                    Overlay::Dir(t_inside)
                                } else {
                                    Overlay::File(t_inside)
                                });
                            }
                        }
                    }
                } else if meta.is_dir() {
                    out.insert(Overlay::Dir(inside));
                } else {
                    out.insert(Overlay::File(inside));
                }
                continue;
            }
            if !meta.is_dir() {
                continue;
            }
            let d = if rel.is_empty() {
                0
            } else {
                rel.split('/').count()
            };
            if max_depth.is_some_and(|max| d >= max) {
                continue;
            }
            let entries = match fs::read_dir(&host) {
                Ok(e) => e,
                Err(_) => continue,
            };
            for entry in entries.flatten() {
                let child_inside = inside.join(entry.file_name());
                // A nested bind is scanned on its own.
                if mount_dests.contains(child_inside.as_path()) {
                    continue;
                }
                stack.push((entry.path(), child_inside));
            }
        }
    }
    Ok(out)
}

/// Files a glob scope may have to hide under its folder before the call is refused.
pub const CONFINE_HIDE_LIMIT: usize = 20_000;

/// The files the binds show that no scope pattern matches: a pattern with a glob part other
/// than a final `**` (`notes/**/*.md`) can only be bound by its folder, so what else that
/// folder holds is hidden. A folder some pattern opens whole (`x/**`, or a literal `x`) is not
/// scanned. Symlinks are left alone: what they point at is checked at its own path.
fn confinement_overlays(
    profile: &SandboxProfile,
    ws: &Path,
    mounts: &[Mount],
) -> Result<BTreeSet<Overlay>, SandboxError> {
    let mut out = BTreeSet::new();
    let patterns: Vec<&String> = profile.read.iter().chain(profile.write.iter()).collect();
    let mut globs = Vec::new();
    let mut open: Vec<PathBuf> = Vec::new();
    let mut partial = false;
    for pattern in &patterns {
        let (prefix, has_glob) = parse_pattern(pattern)?;
        let rest: Vec<&str> = pattern
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .skip(prefix.len())
            .collect();
        if !has_glob || rest == ["**"] {
            open.push(prefix.iter().collect());
        } else {
            partial = true;
        }
        if let Ok(g) = crate::scope::PathGlob::new(pattern) {
            globs.push(g);
        }
    }
    if !partial {
        return Ok(out);
    }
    let is_open = |rel: &Path| open.iter().any(|o| rel.starts_with(o));
    // Every bind is its own tree: a scope's is scanned on its own, and the program's pack
    // folder and the reserved root (forced binds) are never confined by a scope's glob.
    let mount_dests: BTreeSet<&Path> = mounts
        .iter()
        .filter(|m| m.dest.starts_with(ws))
        .map(|m| m.dest.as_path())
        .collect();
    let in_ws: Vec<&Mount> = mounts
        .iter()
        .filter(|m| !m.forced && m.dest.starts_with(ws))
        .collect();
    let mut visited = 0usize;
    for m in &in_ws {
        let Ok(rel) = m.dest.strip_prefix(ws) else {
            continue;
        };
        if is_open(rel) {
            continue;
        }
        let pattern_of_mount = patterns
            .iter()
            .find(|p| {
                parse_pattern(p)
                    .map(|(prefix, _)| prefix.iter().collect::<PathBuf>() == rel)
                    .unwrap_or(false)
            })
            .map(|p| p.to_string())
            .unwrap_or_else(|| rel.display().to_string());
        let mut stack: Vec<(PathBuf, PathBuf)> = vec![(m.src.clone(), m.dest.clone())];
        while let Some((host, inside)) = stack.pop() {
            visited += 1;
            if visited > DENY_SCAN_LIMIT {
                return Err(SandboxError::DenyOverlayLimit {
                    limit: DENY_SCAN_LIMIT,
                });
            }
            let Ok(meta) = fs::symlink_metadata(&host) else {
                continue;
            };
            let Ok(rel) = inside.strip_prefix(ws) else {
                continue;
            };
            if meta.is_dir() {
                if is_open(rel) {
                    continue;
                }
                let Ok(entries) = fs::read_dir(&host) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let child_inside = inside.join(entry.file_name());
                    if mount_dests.contains(child_inside.as_path()) {
                        continue;
                    }
                    stack.push((entry.path(), child_inside));
                }
                continue;
            }
            if meta.file_type().is_symlink() {
                continue;
            }
            let rel_text = rel.to_string_lossy();
            if !globs.iter().any(|g| g.is_match(&rel_text)) {
                out.insert(Overlay::File(inside));
                if out.len() > CONFINE_HIDE_LIMIT {
                    return Err(SandboxError::ConfinementLimit {
                        pattern: pattern_of_mount,
                        folder: m
                            .dest
                            .strip_prefix(ws)
                            .map(|r| r.display().to_string())
                            .unwrap_or_default(),
                        limit: CONFINE_HIDE_LIMIT,
                    });
                }
            }
        }
    }
    Ok(out)
}

fn push<S: Into<OsString>>(args: &mut Vec<OsString>, items: impl IntoIterator<Item = S>) {
    args.extend(items.into_iter().map(Into::into));
}

fn hide(args: &mut Vec<OsString>, overlay: &Overlay) {
    match overlay {
        Overlay::File(p) => push(
            args,
            [OsString::from("--ro-bind"), "/dev/null".into(), p.into()],
        ),
        Overlay::Dir(p) => push(
            args,
            [
                OsString::from("--tmpfs"),
                p.into(),
                "--remount-ro".into(),
                p.into(),
            ],
        ),
    }
}

fn etc_hidden() -> Vec<Overlay> {
    let mut out = Vec::new();
    for p in ETC_HIDDEN {
        let path = Path::new(p);
        if let Ok(meta) = fs::symlink_metadata(path) {
            if meta.file_type().is_symlink() {
                continue;
            }
            out.push(if meta.is_dir() {
                Overlay::Dir(path.to_path_buf())
            } else {
                Overlay::File(path.to_path_buf())
            });
        }
    }
    if let Ok(entries) = fs::read_dir("/etc/ssh") {
        let mut keys: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("ssh_host_") && !name.ends_with(".pub")
            })
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .collect();
        keys.sort();
        out.extend(keys.into_iter().map(Overlay::File));
    }
    out
}

/// Is `p` already visible through the system directories?
fn in_system_dirs(p: &Path) -> bool {
    p.starts_with("/usr")
}

pub(crate) fn build(
    profile: &SandboxProfile,
    spec: &RunSpec,
    relay: Option<RelayPaths<'_>>,
) -> Result<Vec<OsString>, SandboxError> {
    let ws = profile.workspace_root.as_path();
    if !is_clean_absolute(ws) {
        return Err(SandboxError::InvalidRun(format!(
            "the workspace root `{}` must be an absolute path without `..`",
            ws.display()
        )));
    }
    if ws == Path::new("/") {
        return Err(SandboxError::InvalidRun(
            "the workspace root cannot be `/`".into(),
        ));
    }
    let ws_c = canonical(ws, "the workspace root")?;
    check_spec(spec)?;
    if !spec.cwd.starts_with(ws) {
        return Err(SandboxError::InvalidRun(format!(
            "the working directory `{}` is outside the workspace root `{}`",
            spec.cwd.display(),
            ws.display()
        )));
    }
    let env = environment(profile, spec)?;
    let dests = relay_destinations(&profile.network)?;
    let relay = match (&profile.network, relay) {
        (NetworkPolicy::Allowlist(_), None) => return Err(SandboxError::HelperRequired),
        (NetworkPolicy::Allowlist(_), Some(r)) => Some(r),
        _ => None,
    };

    // Mounts: scopes, then the program (or its pack) and the helper, read-only.
    let mut mounts = scope_mounts(profile, ws, &ws_c)?;
    let program = canonical(&spec.program, "the program")?;
    let program_mount = match &spec.pack_root {
        Some(root) => {
            let root = canonical(root, "the pack folder")?;
            if !program.starts_with(&root) {
                return Err(SandboxError::InvalidRun(format!(
                    "the program `{}` is outside its pack folder `{}`",
                    program.display(),
                    root.display()
                )));
            }
            root
        }
        None => program.clone(),
    };
    let mut extra = vec![program_mount];
    let helper = match &relay {
        Some(r) => {
            let h = canonical(r.helper_exe, "the sandbox helper")?;
            extra.push(h.clone());
            Some(h)
        }
        None => None,
    };
    for p in extra {
        if ws.starts_with(&p) || ws_c.starts_with(&p) {
            return Err(SandboxError::InvalidRun(format!(
                "`{}` contains the workspace root: binding it would show the whole workspace",
                p.display()
            )));
        }
        if !in_system_dirs(&p) {
            mounts.push(Mount {
                dest: p.clone(),
                src: p,
                access: Access::Ro,
                forced: true,
            });
        }
    }
    let mounts = arrange(mounts);
    let mut overlays = deny_overlays(profile, ws, &ws_c, &mounts)?;
    overlays.extend(confinement_overlays(profile, ws, &mounts)?);

    let mut args: Vec<OsString> = Vec::new();
    push(
        &mut args,
        ["--die-with-parent", "--new-session", "--unshare-all"],
    );
    if profile.network == NetworkPolicy::Full {
        push(&mut args, ["--share-net"]);
    }
    push(&mut args, ["--cap-drop", "ALL"]);
    if dests.iter().any(|d| d.port < 1024) {
        push(&mut args, ["--cap-add", "CAP_NET_BIND_SERVICE"]);
    }
    push(&mut args, ["--clearenv"]);

    // System directories.
    for dir in SYSTEM_DIRS {
        match fs::symlink_metadata(dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if let Ok(target) = fs::read_link(dir) {
                    push(
                        &mut args,
                        [OsString::from("--symlink"), target.into(), (*dir).into()],
                    );
                }
            }
            Ok(_) => push(&mut args, ["--ro-bind-try", dir, dir]),
            // Not on this host (`/lib32` on most): nothing to show.
            Err(_) => {}
        }
    }
    for o in etc_hidden() {
        hide(&mut args, &o);
    }
    if let Some(r) = &relay {
        if !Path::new("/etc/hosts").exists() {
            return Err(SandboxError::setup(
                "a network allowlist replaces /etc/hosts, which the host lacks",
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        push(
            &mut args,
            [
                OsString::from("--ro-bind"),
                r.runtime_dir.join("hosts").into(),
                "/etc/hosts".into(),
            ],
        );
    }
    push(
        &mut args,
        ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"],
    );
    if let Some(r) = &relay {
        push(
            &mut args,
            [
                OsString::from("--ro-bind"),
                r.runtime_dir.join("relay").into(),
                RELAY_DIR_INSIDE.into(),
            ],
        );
    }

    // Scopes and the tool. Unless the workspace root itself is bound, it is a tmpfs of its own
    // (made read-only below), so the folders leading to the binds are not writable either, even
    // for a workspace under /tmp.
    let ws_bound = mounts.iter().any(|m| m.dest == ws);
    if !ws_bound {
        push(&mut args, [OsString::from("--tmpfs"), ws.into()]);
    }
    for m in &mounts {
        let flag = match m.access {
            Access::Ro => "--ro-bind-try",
            Access::Rw => "--bind-try",
        };
        push(
            &mut args,
            [
                OsString::from(flag),
                m.src.clone().into(),
                m.dest.clone().into(),
            ],
        );
    }
    for o in &overlays {
        hide(&mut args, o);
    }

    // Working directory: on the sandbox's tmpfs root when no bind shows it. Then the root is
    // made read-only, so a write outside the scopes fails instead of vanishing with the sandbox.
    let cwd_shown = mounts.iter().any(|m| spec.cwd.starts_with(&m.dest))
        || (!ws_bound && spec.cwd == ws)
        || in_system_dirs(&spec.cwd);
    if !cwd_shown {
        push(
            &mut args,
            [OsString::from("--dir"), spec.cwd.clone().into()],
        );
    }
    push(&mut args, ["--remount-ro", "/"]);
    if !ws_bound {
        push(&mut args, [OsString::from("--remount-ro"), ws.into()]);
    }
    push(
        &mut args,
        [OsString::from("--chdir"), spec.cwd.clone().into()],
    );
    for (k, v) in env {
        push(&mut args, ["--setenv".to_string(), k, v]);
    }
    push(&mut args, ["--"]);
    if let Some(h) = helper {
        push(&mut args, [OsString::from(h), HELPER_SUBCOMMAND.into()]);
        for (i, d) in dests.iter().enumerate() {
            push(
                &mut args,
                [
                    "--relay".to_string(),
                    format!("{}={RELAY_DIR_INSIDE}/{i}.sock", d.listen_addr()),
                ],
            );
        }
        push(&mut args, ["--"]);
    }
    let mut cmd = entry_command(&spec.program)?;
    // Run the program by its canonical path, which is what is bound.
    if let Some(last) = cmd.last_mut() {
        *last = program.clone().into();
    }
    args.extend(cmd);
    args.extend(spec.args.iter().map(OsString::from));
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_prefixes_follow_the_original() {
        assert_eq!(static_prefix("packages/**"), "packages");
        assert_eq!(static_prefix("**"), "");
        assert_eq!(static_prefix("*.md"), "");
        assert_eq!(static_prefix("src/a.ts"), "src/a.ts");
        assert_eq!(static_prefix("./docs/{a,b}/x"), "docs");
        assert_eq!(static_prefix("a/b(c)/d"), "a");
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in ["", "/etc/**", "../x/**", "a/../../b", "a\\b", "!x", "a\0b"] {
            let err = parse_pattern(p).err();
            assert!(
                matches!(err, Some(SandboxError::InvalidScope { .. })),
                "{p:?} must be refused"
            );
        }
        assert_eq!(
            parse_pattern("out/**").ok(),
            Some((vec!["out".to_string()], true))
        );
        assert_eq!(
            parse_pattern("out/report.json").ok(),
            Some((vec!["out".to_string(), "report.json".to_string()], false))
        );
    }

    fn dest(host: &str, port: u16) -> (String, u16) {
        (host.to_string(), port)
    }

    #[test]
    fn relay_destinations_assign_loopback_addresses() {
        let net = NetworkPolicy::Allowlist(vec![
            dest("API.example.com", 443),
            dest("127.0.0.1", 8080),
            dest("api.example.com", 80),
            dest("registry.example.org", 443),
            dest("[::1]", 9000),
            dest("api.example.com", 443),
        ]);
        let got = relay_destinations(&net).expect("supported");
        let got: Vec<(String, u16, String)> = got
            .into_iter()
            .map(|d| (d.host, d.port, d.inside.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("api.example.com".into(), 443, "127.100.0.1".into()),
                ("127.0.0.1".into(), 8080, "127.0.0.1".into()),
                ("api.example.com".into(), 80, "127.100.0.1".into()),
                ("registry.example.org".into(), 443, "127.100.0.2".into()),
                ("::1".into(), 9000, "::1".into()),
            ]
        );
    }

    #[test]
    fn relay_refuses_what_it_cannot_enforce() {
        for (host, port, code) in [
            ("10.0.0.5", 443, "SANDBOX_ALLOWLIST_ENTRY_UNSUPPORTED"),
            ("10.0.0.0/24", 443, "SANDBOX_ALLOWLIST_CIDR_UNSUPPORTED"),
            ("bad host", 443, "SANDBOX_ALLOWLIST_ENTRY_UNSUPPORTED"),
            ("evil\n1.2.3.4", 443, "SANDBOX_ALLOWLIST_ENTRY_UNSUPPORTED"),
            ("example.com", 0, "SANDBOX_ALLOWLIST_ENTRY_UNSUPPORTED"),
        ] {
            let net = NetworkPolicy::Allowlist(vec![dest(host, port)]);
            let err = relay_destinations(&net).expect_err(host);
            assert_eq!(err.code(), code, "{host}");
        }
    }

    #[test]
    fn hosts_file_maps_names_only() {
        let net = NetworkPolicy::Allowlist(vec![
            dest("api.example.com", 443),
            dest("127.0.0.1", 8080),
            dest("api.example.com", 80),
        ]);
        let dests = relay_destinations(&net).expect("supported");
        let hosts = hosts_file(&dests);
        assert!(hosts.contains("127.100.0.1\tapi.example.com\n"), "{hosts}");
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"), "{hosts}");
        assert_eq!(hosts.matches("api.example.com").count(), 1, "{hosts}");

        let net = NetworkPolicy::Allowlist(vec![dest("localhost", 5000)]);
        let hosts = hosts_file(&relay_destinations(&net).expect("supported"));
        assert!(hosts.contains("127.100.0.1\tlocalhost\n"), "{hosts}");
        assert!(!hosts.contains("127.0.0.1"), "{hosts}");
    }

    fn mount(dest: &str, access: Access, forced: bool) -> Mount {
        Mount {
            dest: dest.into(),
            src: dest.into(),
            access,
            forced,
        }
    }

    #[test]
    fn write_wins_and_reserved_root_stays_read_only() {
        let kept = arrange(vec![
            mount("/w/docs", Access::Ro, false),
            mount("/w", Access::Rw, false),
            mount("/w/docs/api", Access::Ro, false),
            mount("/w/.lumenflow/state/x", Access::Rw, false),
            mount("/w/.lumenflow", Access::Ro, true),
            mount("/w/src", Access::Rw, false),
        ]);
        let got: Vec<(String, Access)> = kept
            .iter()
            .map(|m| (m.dest.display().to_string(), m.access))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/w".to_string(), Access::Rw),
                ("/w/.lumenflow".to_string(), Access::Ro),
                ("/w/.lumenflow/state/x".to_string(), Access::Rw),
            ]
        );
    }

    #[test]
    fn nested_reads_are_deduplicated_but_writes_inside_reads_kept() {
        let kept = arrange(vec![
            mount("/w/a/b", Access::Ro, false),
            mount("/w/a", Access::Ro, false),
            mount("/w/a/b/c", Access::Rw, false),
            mount("/w/a", Access::Ro, false),
        ]);
        let got: Vec<String> = kept.iter().map(|m| m.dest.display().to_string()).collect();
        assert_eq!(got, vec!["/w/a".to_string(), "/w/a/b/c".to_string()]);
    }
}
