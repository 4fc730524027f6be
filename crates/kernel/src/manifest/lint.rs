//! The security lint behind `pack validate` (KRN-02).
//!
//! It keeps the original LumenFlow rules (L1 to L10 below, with the original's wording so existing
//! tooling that greps for them keeps working) and adds ours: entry files must exist inside the
//! pack root (symlinks resolved), event kinds must live in the pack's namespace and have a
//! backpressure class, network allowlists must be real `host:port` or CIDR entries, path patterns
//! must be valid globs, and schemas must compile.
//!
//! Every issue is an error: a pack that fails the lint is not installed.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use lumenflow_contracts::scope::{NetworkPosture, PathAccess, ToolScope};
use serde_json::Value;

use super::{parse_entry, ManifestDocument, Permission, ToolManifest};
use crate::yaml::FieldPath;

/// Patterns that mean "everything"; a write scope with one of them is refused.
pub const BROAD_WILDCARDS: &[&str] = &["*", "**", "**/*", "./**", "./**/*"];

/// Event namespaces any pack may emit into, besides its own slug (REQUIREMENTS Q13).
pub const SHARED_EVENT_NAMESPACES: &[&str] = &["emit"];

/// The kernel task states a `state_aliases` key may name.
pub const KERNEL_TASK_STATES: &[&str] = &["ready", "active", "blocked", "waiting", "done"];

/// One lint finding, pointing at a manifest field.
#[derive(Debug, Clone, PartialEq)]
pub struct LintIssue {
    /// Stable rule id (`L1`..`L10` are the original's; ours are named).
    pub rule: &'static str,
    pub path: FieldPath,
    pub message: String,
}

/// `..` segment or NUL byte in a scope pattern (the original's traversal check).
pub fn has_unsafe_scope_pattern(pattern: &str) -> bool {
    pattern.contains('\0') || pattern.split(['/', '\\']).any(|seg| seg == "..")
}

pub fn is_broad_wildcard(pattern: &str) -> bool {
    BROAD_WILDCARDS.contains(&pattern.trim())
}

/// `<namespace>:<snake_case>`.
fn split_kind(kind: &str) -> Option<(&str, &str)> {
    let (ns, name) = kind.split_once(':')?;
    let snake = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let ns_ok = super::is_kebab_case(ns);
    (snake && ns_ok).then_some((ns, name))
}

/// Is `entry` a valid network allowlist entry: `host:port`, `[v6]:port`, an IP, or a CIDR block?
pub fn check_allowlist_entry(entry: &str) -> Result<(), String> {
    let entry = entry.trim();
    if entry.contains('/') {
        return entry.parse::<ipnet::IpNet>().map(|_| ()).map_err(|_| {
            format!("`{entry}` is not a valid CIDR block (expected for example `10.0.0.0/24`)")
        });
    }
    if entry.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (v6, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("`{entry}` is not a valid `[ipv6]:port` entry"))?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`{v6}` is not a valid IPv6 address"))?;
        return check_port(entry, port);
    } else {
        match entry.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => {
                return Err(format!(
                    "`{entry}` needs a port (`host:port`) or a CIDR block"
                ))
            }
        }
    };
    if !is_hostname(host) {
        return Err(format!("`{host}` in `{entry}` is not a valid host name"));
    }
    check_port(entry, port)
}

fn check_port(entry: &str, port: &str) -> Result<(), String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "`{entry}` has an invalid port `{port}` (expected 1-65535)"
        )),
    }
}

fn is_hostname(host: &str) -> bool {
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Resolve `rel` inside `root` and check it exists there, following symlinks.
pub fn resolve_inside(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let rel_path = Path::new(rel);
    if rel_path.is_absolute() {
        return Err(format!("`{rel}` must be relative to the pack root"));
    }
    let mut depth: i64 = 0;
    for comp in rel_path.components() {
        match comp {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("`{rel}` must be relative to the pack root"))
            }
        }
        if depth < 0 {
            return Err(format!("`{rel}` resolves outside pack root"));
        }
    }
    let canonical_root = root
        .canonicalize()
        .map_err(|e| format!("cannot resolve pack root `{}`: {e}", root.display()))?;
    let target = canonical_root.join(rel_path);
    let resolved = match target.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("`{rel}` does not exist in the pack"))
        }
        Err(e) => return Err(format!("cannot resolve `{rel}`: {e}")),
    };
    if !resolved.starts_with(&canonical_root) {
        return Err(format!(
            "`{rel}` resolves outside pack root (a symlink points to `{}`)",
            resolved.display()
        ));
    }
    if !resolved.is_file() {
        return Err(format!("`{rel}` is not a file"));
    }
    Ok(resolved)
}

/// Run every rule. `pack_root` enables the file checks (entries, config schema); without it only
/// the manifest itself is linted.
pub fn security_lint(doc: &ManifestDocument, pack_root: Option<&Path>) -> Vec<LintIssue> {
    let mut issues = Vec::new();
    let m = &doc.manifest;
    let root = FieldPath::root();
    let mut push = |rule: &'static str, path: FieldPath, message: String| {
        let issue = LintIssue {
            rule,
            path,
            message,
        };
        if !issues.contains(&issue) {
            issues.push(issue);
        }
    };

    for (i, tool) in m.tools.iter().enumerate() {
        let state: Vec<&str> = std::iter::once(m.slug())
            .chain(m.state_folders.iter().map(String::as_str))
            .collect();
        lint_tool(
            tool,
            &state,
            &root.key("tools").index(i),
            pack_root,
            &mut push,
        );
    }

    if let Some(pack_root) = pack_root {
        for field in ["capability_factory", "policy_factory"] {
            let value = match field {
                "capability_factory" => &m.capability_factory,
                _ => &m.policy_factory,
            };
            if let Some(Ok(entry)) = value.as_deref().map(parse_entry) {
                if let Err(e) = resolve_inside(pack_root, entry.module) {
                    push("entry-resolution", root.key(field), format!("{field} {e}"));
                }
            }
        }
        if let Some(schema) = m.config_schema.as_deref().filter(|s| !s.trim().is_empty()) {
            match resolve_inside(pack_root, schema) {
                Err(e) => push(
                    "config-schema",
                    root.key("config_schema"),
                    format!("config_schema {e}"),
                ),
                Ok(file) => {
                    if let Err(e) = load_schema_file(&file) {
                        push(
                            "config-schema",
                            root.key("config_schema"),
                            format!("config_schema `{schema}`: {e}"),
                        );
                    }
                }
            }
        }
    }

    let slug = m.slug();
    for (i, kind) in m.emitted_event_kinds.iter().enumerate() {
        let path = root.key("emitted_event_kinds").index(i);
        match split_kind(kind) {
            None => push(
                "event-kind",
                path.clone(),
                format!("emitted kind `{kind}` must be `<namespace>:<snake_case_name>`"),
            ),
            Some((ns, _)) if ns != slug && !SHARED_EVENT_NAMESPACES.contains(&ns) => push(
                "slug-prefix",
                path.clone(),
                format!(
                    "Pack slug prefix mismatch: emitted kind `{kind}` must start with `{slug}:` (or a shared namespace: {})",
                    SHARED_EVENT_NAMESPACES.iter().map(|n| format!("`{n}:`")).collect::<Vec<_>>().join(", ")
                ),
            ),
            Some(_) => {}
        }
        if !m.backpressure_policy.contains_key(kind) {
            push(
                "backpressure",
                path,
                format!("Missing backpressure_policy entry for emitted kind `{kind}` (expected `ephemeral` or `queue`)"),
            );
        }
    }
    let emitted: HashSet<&str> = m.emitted_event_kinds.iter().map(String::as_str).collect();
    for kind in m.backpressure_policy.keys() {
        if !emitted.contains(kind.as_str()) {
            push(
                "backpressure",
                root.key("backpressure_policy").key(kind.clone()),
                format!("backpressure_policy names `{kind}`, which is not in emitted_event_kinds"),
            );
        }
    }
    for (i, kind) in m.subscribed_event_kinds.iter().enumerate() {
        let intrinsic = kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !kind.is_empty();
        if split_kind(kind).is_none() && !intrinsic {
            push(
                "event-kind",
                root.key("subscribed_event_kinds").index(i),
                format!("subscribed kind `{kind}` must be `<namespace>:<snake_case_name>` or a kernel kind"),
            );
        }
    }
    for key in m.state_aliases.keys() {
        if !KERNEL_TASK_STATES.contains(&key.as_str()) {
            push(
                "state-alias",
                root.key("state_aliases").key(key.clone()),
                format!(
                    "state_aliases key `{key}` is not a kernel task state (expected one of {}); the alias would have no effect",
                    KERNEL_TASK_STATES.join(", ")
                ),
            );
        }
    }
    issues
}

/// A write pattern whose literal start is inside `.lumenflow/` but not inside one of the
/// pack's `state` folders, `.lumenflow/state/<slug>/` (KRN-10 refuses those writes at dispatch;
/// a `state_folders` entry is granted only with its owner's consent, checked at load).
fn writes_reserved_root(pattern: &str, state: &[&str]) -> bool {
    let segs: Vec<&str> = pattern
        .trim()
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if segs.first() != Some(&".lumenflow") {
        return false;
    }
    !(segs.len() >= 3 && segs[1] == "state" && state.contains(&segs[2]))
}

fn lint_tool(
    tool: &ToolManifest,
    state: &[&str],
    p: &FieldPath,
    pack_root: Option<&Path>,
    push: &mut impl FnMut(&'static str, FieldPath, String),
) {
    let name = &tool.name;
    let perm = tool.permission;
    let path_scopes: Vec<(usize, &str, PathAccess)> = tool
        .required_scopes
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            ToolScope::Path { pattern, access } => Some((i, pattern.as_str(), *access)),
            ToolScope::Network { .. } => None,
        })
        .collect();

    if perm == Permission::Read {
        if let Some((i, _, _)) = path_scopes.iter().find(|(_, _, a)| *a == PathAccess::Write) {
            push(
                "L1",
                p.key("required_scopes").index(*i),
                format!("Tool \"{name}\": permission/scope mismatch: read-permission tool cannot request write path access."),
            );
        }
    }
    if perm == Permission::Write
        && !path_scopes.is_empty()
        && !path_scopes.iter().any(|(_, _, a)| *a == PathAccess::Write)
    {
        push(
            "L2",
            p.key("permission"),
            format!("Tool \"{name}\": permission/scope mismatch: write-permission tool must include at least one write path scope."),
        );
    }
    for (i, pattern, access) in &path_scopes {
        let sp = p.key("required_scopes").index(*i).key("pattern");
        if has_unsafe_scope_pattern(pattern) {
            push(
                "L3",
                sp.clone(),
                format!("Tool \"{name}\": scope pattern \"{}\" contains unsafe traversal or null-byte content", pattern.escape_default()),
            );
        } else if pattern.starts_with('/') {
            push(
                "absolute-pattern",
                sp.clone(),
                format!("Tool \"{name}\": scope pattern \"{pattern}\" must be relative to the workspace root"),
            );
        } else if let Err(e) = globset::Glob::new(pattern) {
            push(
                "glob",
                sp.clone(),
                format!(
                    "Tool \"{name}\": scope pattern \"{pattern}\" is not a valid glob: {}",
                    e.kind()
                ),
            );
        }
        if *access == PathAccess::Write && writes_reserved_root(pattern, state) {
            push(
                "reserved-root",
                sp.clone(),
                format!(
                    "Tool \"{name}\": write scope \"{}\" is under `.lumenflow/`, which is the kernel's: every call would be refused (SCOPE_DENIED). A pack may write only its own state, `.lumenflow/state/{}/**` (or a folder of `state_folders` its owner opens to it).",
                    pattern.trim(),
                    state.first().copied().unwrap_or_default()
                ),
            );
        }
        if matches!(perm, Permission::Write | Permission::Admin)
            && *access == PathAccess::Write
            && is_broad_wildcard(pattern)
        {
            push(
                "L4",
                sp,
                format!(
                    "Tool \"{name}\": scope pattern \"{}\" is too broad for {} permission and write access: forbidden wildcard write scope. Replace with constrained path pattern (for example reports/**/*.md).",
                    pattern.trim(),
                    perm.as_str()
                ),
            );
        }
    }
    for (field, schema, rule) in [
        ("input_schema", &tool.input_schema, "L6"),
        ("output_schema", &tool.output_schema, "L7"),
    ] {
        let Some(schema) = schema else { continue };
        match schema.get("type") {
            Some(Value::String(t)) if t == "object" => {}
            Some(t) if !is_falsy(t) => push(
                rule,
                p.key(field).key("type"),
                format!("Tool \"{name}\": {field}.type must be \"object\" when provided, got {t}"),
            ),
            _ => {}
        }
        if let Err(e) = crate::json_schema::compile(&Value::Object(schema.clone())) {
            push(
                "schema",
                p.key(field),
                format!("Tool \"{name}\": {field} is not supported: {e}"),
            );
        }
    }

    for (i, scope) in tool.required_scopes.iter().enumerate() {
        let ToolScope::Network {
            posture,
            allowlist_entries,
        } = scope
        else {
            continue;
        };
        for (j, entry) in allowlist_entries.iter().flatten().enumerate() {
            if let Err(e) = check_allowlist_entry(entry) {
                push(
                    "allowlist",
                    p.key("required_scopes")
                        .index(i)
                        .key("allowlist_entries")
                        .index(j),
                    format!("Tool \"{name}\": {e}"),
                );
            }
        }
        // Posture `off` asks for no network, so there is no URL to constrain (the original
        // applied L8 to it too, which only forced a meaningless allow-list).
        if *posture != NetworkPosture::Off {
            lint_network_urls(tool, p, push);
        }
    }

    if let Ok(entry) = parse_entry(&tool.entry) {
        if let Some(pack_root) = pack_root {
            if let Err(e) = resolve_inside(pack_root, entry.module) {
                push(
                    "entry-resolution",
                    p.key("entry"),
                    format!("Tool \"{name}\": entry {e}"),
                );
            }
        } else if let Err(e) = lexically_inside(entry.module) {
            push(
                "entry-resolution",
                p.key("entry"),
                format!("Tool \"{name}\": entry {e}"),
            );
        }
    }
}

fn lexically_inside(rel: &str) -> Result<(), String> {
    let mut depth: i64 = 0;
    for comp in Path::new(rel).components() {
        match comp {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return Err(format!("`{rel}` must be relative to the pack root")),
        }
        if depth < 0 {
            return Err(format!("`{rel}` resolves outside pack root"));
        }
    }
    Ok(())
}

fn is_falsy(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(false))
        || v.as_str() == Some("")
        || v.as_f64() == Some(0.0)
}

/// L8 to L10: a network tool's `input_schema.properties.url` must be pinned to https URLs.
fn lint_network_urls(
    tool: &ToolManifest,
    p: &FieldPath,
    push: &mut impl FnMut(&'static str, FieldPath, String),
) {
    let name = &tool.name;
    let url_schema = tool
        .input_schema
        .as_ref()
        .and_then(|s| s.get("properties"))
        .and_then(|props| props.get("url"));
    let mut urls: Vec<&str> = Vec::new();
    if let Some(schema) = url_schema {
        if let Some(Value::String(c)) = schema.get("const") {
            urls.push(c);
        }
        if let Some(Value::Array(items)) = schema.get("enum") {
            urls.extend(items.iter().filter_map(Value::as_str));
        }
    }
    let url_path = p.key("input_schema").key("properties").key("url");
    if urls.is_empty() {
        push(
            "L8",
            if url_schema.is_some() { url_path } else { p.key("required_scopes") },
            format!("Tool \"{name}\": network-scoped tools must constrain input_schema.properties.url via const/enum https URL allow-list."),
        );
        return;
    }
    for url in urls {
        match url::Url::parse(url) {
            Err(_) => push(
                "L9",
                url_path.clone(),
                format!("Tool \"{name}\" URL \"{url}\": network-scoped tool has invalid URL in input_schema.properties.url."),
            ),
            Ok(parsed) if parsed.scheme() != "https" => push(
                "L10",
                url_path.clone(),
                format!("Tool \"{name}\" URL \"{url}\": network-scoped tool URL must use https:// in input_schema.properties.url."),
            ),
            Ok(_) => {}
        }
    }
}

/// Read and compile a pack's `config_schema` file.
pub fn load_schema_file(file: &Path) -> Result<crate::json_schema::CompiledSchema, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("unable to read: {e}"))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("expected valid JSON: {e}"))?;
    crate::json_schema::compile(&value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_helpers_match_the_original() {
        assert!(has_unsafe_scope_pattern("../secrets/**"));
        assert!(has_unsafe_scope_pattern("a/../b"));
        assert!(!has_unsafe_scope_pattern("docs/**/*.md"));
        assert!(!has_unsafe_scope_pattern("..foo/x"));
        assert!(is_broad_wildcard("**"));
        assert!(is_broad_wildcard(" ./**/* "));
        assert!(!is_broad_wildcard("reports/**/*.md"));
    }

    #[test]
    fn allowlist_entries_are_host_port_or_cidr() {
        for ok in [
            "registry.npmjs.org:443",
            "10.0.0.0/24",
            "127.0.0.1:8080",
            "[::1]:443",
            "fd00::/8",
            "10.1.2.3",
        ] {
            assert_eq!(check_allowlist_entry(ok), Ok(()), "{ok}");
        }
        for bad in [
            "registry.npmjs.org",
            "host:0",
            "host:99999",
            "10.0.0.0/33",
            "bad host:443",
            "https://x:443",
            "-a.com:1",
        ] {
            assert!(check_allowlist_entry(bad).is_err(), "{bad}");
        }
    }
}
