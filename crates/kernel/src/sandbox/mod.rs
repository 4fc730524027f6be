//! The sandbox for subprocess tools (KRN-11): bubblewrap built from the effective scopes.
//!
//! A pack tool declared with `entry: <path>` runs as a subprocess that reads one JSON request on
//! stdin and writes one ToolOutput on stdout (DESIGN.md, "Tool implementations"). This module
//! runs that subprocess: [`run`] takes a [`SandboxMode`], a [`SandboxProfile`] (what the call may
//! touch) and a [`RunSpec`] (what to run), and returns a [`RunOutcome`] (exit code, captured
//! output, whether it timed out or was truncated). It does not parse the ToolOutput: the caller
//! does, and maps a timeout to `TOOL_TIMEOUT`.
//!
//! # The sandbox as built
//!
//! [`bwrap_args`] is the argument vector (pure apart from looking at the file system; unit
//! tested). In order:
//!
//! 1. `--die-with-parent --new-session --unshare-all` (user, pid, ipc, uts, cgroup and network
//!    namespaces; the user namespace where the kernel allows one), `--share-net` only for
//!    [`NetworkPolicy::Full`], then `--cap-drop ALL` (plus `--cap-add CAP_NET_BIND_SERVICE` for an
//!    allowlist with a port below 1024, see below), `--clearenv`.
//! 2. A fresh root (bubblewrap's tmpfs), `--tmpfs /tmp`, the system directories `/usr /bin /sbin
//!    /lib /lib32 /lib64 /libx32 /etc` read-only with `--ro-bind-try` (a directory the host does
//!    not have is skipped; one the host has as a symlink, as on merged-`/usr` systems, is
//!    recreated with `--symlink`), then the secrets of `/etc` hidden ([`ETC_HIDDEN`] and the SSH
//!    host private keys), `--proc /proc --dev /dev`.
//! 3. The scopes, as binds of the static prefix of each pattern (the segments before the first
//!    one holding `* ? [ { (`) under the workspace root: read → `--ro-bind-try`, write →
//!    `--bind-try`, parents before children. Unless a scope binds the workspace root itself, the
//!    root is first an empty tmpfs of its own. The program (or its pack folder) and the helper
//!    are bound read-only after them.
//!    A pattern whose glob part is more than `**` (`notes/**/*.md`) binds its prefix, so the
//!    files under it that no scope matches are then hidden, each under `/dev/null`
//!    ([`SandboxError::ConfinementLimit`] past [`CONFINE_HIDE_LIMIT`] of them): the tool reads
//!    `notes/a.md`, and `notes/creds.txt` reads empty or is refused (`Permission denied` on some
//!    kernels), whatever input field named it; its name stays visible in a listing. New files
//!    a tool creates under such a write prefix cannot be refused by the sandbox (they do not
//!    exist when it is built): after the run, those no write pattern matches are moved to
//!    `.lumenflow/kernel/quarantine/<receipt_id>/` and the call fails
//!    ([`SandboxError::WriteOutsideScope`], see `write_check`). A literal pattern or one ending
//!    in `/**` shows its folder whole.
//! 4. The deny overlays, then `--remount-ro /` (and the workspace tmpfs): a write outside the
//!    write scopes fails with "read-only file system" instead of vanishing with the sandbox;
//!    only `/tmp` is scratch space. Then `--chdir`, the environment (`--setenv`), `--`, the
//!    command.
//!
//! # Differences from the original (`original/dispatch.md` §6), each tested in `tests/sandbox.rs`
//!
//! 1. **Missing paths are not fatal.** System directories use `--ro-bind-try` (or `--symlink`);
//!    a read scope whose prefix does not exist is skipped (there is nothing to read); a write
//!    scope whose prefix does not exist is created as a directory when the pattern has a glob
//!    part (`out/**` creates `out/`), and skipped when the pattern is one literal file that does
//!    not exist yet (a tool that creates new files names a directory scope). The original failed
//!    every call on a missing mount source.
//! 2. **A missing deny overlay is skipped.** Overlays are glob patterns relative to the workspace
//!    (`security.deny_overlays`, e.g. `.env`, `.env.*`, `**/*.pem`); each visible path matching
//!    one is hidden (a file under `/dev/null`, a directory under an empty read-only tmpfs). The
//!    original bound `/dev/null` over `<ws>/.env` whether or not it existed, which failed every
//!    call under a read-only workspace root. Only what the sandbox shows is scanned (each bound
//!    scope, without following symlinks, at most [`DENY_SCAN_LIMIT`] entries: more fails closed),
//!    when the argument vector is built: a matching file created after that, before the tool
//!    starts, is not hidden. Patterns without `**` only scan as deep as they reach.
//!    The original's home-directory overlays (`~/.ssh`, `~/.aws`, `~/.gnupg`) are not needed:
//!    no home directory is mounted (`HOME=/tmp`, a fresh tmpfs).
//! 3. **Write wins, and the reserved root stays read-only.** A read scope inside a write scope is
//!    dropped (the tree is already writable). When a write bind covers `<ws>/.lumenflow` (a write
//!    scope such as `**`), `.lumenflow` is bound read-only again on top; only write scopes the
//!    caller put *under* it (KRN-10: the pack's own `.lumenflow/state/<slug>/`) are writable.
//!    Reads follow the scopes: a read scope covering `.lumenflow` shows it (read-only); hide
//!    state that tools must not read with a deny overlay (`.lumenflow/state/conductor/**`).
//! 4. **Symlinks cannot widen a scope.** The source of every bind is the canonical path, which
//!    must lie inside the canonical workspace root, else the call fails with
//!    [`SandboxError::ScopeEscapes`]; a write scope may not reach `.lumenflow` through a symlink.
//!    A symlink inside a bound tree that points elsewhere resolves inside the sandbox, where the
//!    target is simply not there.
//! 5. **The tool is always visible**: the program file (or the pack folder given as
//!    [`RunSpec::pack_root`]) is bound read-only at its canonical path. The original relied on
//!    some scope covering it. A script entry runs under its interpreter ([`interpreter_for`]),
//!    found through the sandbox's `PATH`.
//! 6. **No capabilities.** Bubblewrap keeps every capability (inside its user namespace) when
//!    the sandbox user is root, which would let a tool remount a read-only bind writable: all
//!    are dropped. Secrets in the system directories that the sandbox user could still read as
//!    file owner (the sandbox runs as the caller's uid) are hidden: [`ETC_HIDDEN`].
//! 7. **Environment**: cleared, then exactly `PATH=/usr/local/bin:/usr/bin:/bin`, `HOME=/tmp`,
//!    `LANG=C.UTF-8`, `PWD` (the working directory; bubblewrap sets it anyway), `LUMENFLOW_RECEIPT_ID`, `LUMENFLOW_RUN_ID`, `LUMENFLOW_TASK_ID` (the real
//!    ids of the call, [`RunIds`]) and the profile's `env` (the tool's `required_env` values the
//!    caller resolved). The original passed an empty environment and a fresh random receipt id.
//!    bubblewrap itself is started with an empty environment too.
//! 8. **Limits**: a wall-clock timeout kills the sandbox (bubblewrap is killed; with
//!    `--die-with-parent` and its own pid namespace everything inside dies with it) and reports
//!    `timed_out` with no exit code; stdout and stderr are read on threads and each kept up to
//!    `max_output_bytes`. Excess stderr is discarded; excess stdout also kills the tool (its
//!    result cannot be a valid ToolOutput any more): `output_truncated` says the tool was stopped,
//!    `stderr_truncated` that its log was cut. A tool killed by
//!    a signal reports `128 + signal`, as a shell would, in every mode.
//! 9. **Network allowlists are enforced** by a relay instead of `iptables` (which cannot work:
//!    `--unshare-net` leaves only `lo`, and the sandbox has no `CAP_NET_ADMIN`). See below.
//!
//! # Network
//!
//! - [`NetworkPolicy::Off`]: the network namespace is unshared; only `lo` exists, so nothing
//!   outside the sandbox is reachable, not even the host's loopback.
//! - [`NetworkPolicy::Full`]: the host's network is shared (`--share-net`).
//! - [`NetworkPolicy::Allowlist`]: the tool still runs in an unshared network namespace (only
//!   `lo`), and only the listed `host:port` destinations are made reachable, by a relay:
//!   1. Each destination gets a loopback address inside: an IP literal (loopback only, see
//!      below) keeps its own; each distinct host name gets one of `127.100.0.1`, `127.100.0.2`,
//!      …, and a generated `/etc/hosts`, bound read-only over the system one, maps the name to
//!      it (so names resolve without DNS, and the port, TLS name and `Host` header are the
//!      tool's own).
//!   2. bubblewrap runs the helper ([`init`], `lumenflow __sandbox-init`) instead of the tool.
//!      The helper listens on `<inside address>:<port>` for each destination, then spawns the
//!      tool and exits with its status. Each connection it accepts is forwarded over a Unix
//!      socket, bind-mounted (read-only: connecting needs no writable mount) from a private
//!      temporary folder of the parent at `/run/lumenflow-sandbox/relay/<n>.sock`.
//!   3. A relay thread in the parent ([`run`]'s process) accepts on that socket, connects to the
//!      real `host:port` (resolved on the host, 10 s connect timeout) and copies bytes both ways.
//!      Everything is torn down when the run ends.
//!
//!   A tool that ignores proxy variables and connects directly anywhere else fails: another port
//!   on an allowed address has no listener (connection refused), any other address has no route
//!   (network unreachable), a name not in `/etc/hosts` does not resolve (DNS servers are
//!   unreachable too). Limits: TCP only (no UDP, so no QUIC/HTTP3 and no DNS lookups), one
//!   listener per `host:port`; CIDR blocks and bare IPs without a port cannot be listened for
//!   ([`SandboxError::AllowlistCidrUnsupported`]), nor bare host names without a port, nor IP
//!   literals other than loopback (making `10.1.2.3` reachable would need an address on `lo`,
//!   that is `CAP_NET_ADMIN` and netlink; name the host instead)
//!   ([`SandboxError::AllowlistEntryUnsupported`]); all are refused when the profile is built
//!   ([`NetworkPolicy::from_grant`]) and again by [`run`]. Binding a port below 1024 inside
//!   the namespace needs `CAP_NET_BIND_SERVICE`, which is then kept (it only concerns the
//!   sandbox's own, otherwise empty, network namespace). The helper is an executable given as
//!   [`SandboxMode::Bubblewrap::helper_exe`]; without one an allowlist is refused
//!   ([`SandboxError::HelperRequired`]).
//!
//! # Script entries
//!
//! [`interpreter_for`]: `.py` → `python3`, `.sh` → `sh`, `.js .mjs .cjs` → `node`, `.ts` →
//! `node --experimental-strip-types`, which only Node ≥ 22.6 has: [`entry_command`] asks the
//! `node` on the sandbox's `PATH` for its version once, and refuses a `.ts` entry with
//! [`SandboxError::UnsupportedEntry`] ("compile it to `.js`") when it is older or missing.
//! Interpreters must live in the system directories the sandbox shows (`/usr`, `/bin`):
//! a `python3` installed under a home directory is not visible.
//!
//! # Opting out
//!
//! [`SandboxMode::None`] (the workspace's `sandbox: none`) runs the program directly with the
//! same cleared environment, timeout and output cap, and no isolation at all: not even the
//! network allowlist is enforced. [`RunOutcome::sandbox`] says `"none"`; the caller records it in
//! every receipt. Without bubblewrap and without that opt-out the call is refused with
//! [`SandboxError::Unavailable`] (`SUBPROCESS_SANDBOX_UNAVAILABLE`); [`SandboxMode::detect`] builds
//! the mode from the workspace setting.
//!
//! Bubblewrap's own setup errors (for example a kernel without user namespaces, as an ordinary
//! user) surface as exit code 1 with a `bwrap: …` line on stderr; the helper's as 125 with a
//! `lumenflow __sandbox-init: …` line.

mod exec;
pub mod init;
mod plan;
mod relay;
mod write_check;

use std::ffi::OsString;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::scope::{AllowEntry, NetworkGrant};

pub use plan::{deny_overlay_covers, static_prefix, DENY_SCAN_LIMIT, ETC_HIDDEN};

/// The `PATH` every sandboxed tool gets.
pub const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Where the relay sockets appear inside the sandbox.
pub const RELAY_DIR_INSIDE: &str = "/run/lumenflow-sandbox/relay";
/// The hidden subcommand of the `lumenflow` binary that runs [`init::run`].
pub const HELPER_SUBCOMMAND: &str = "__sandbox-init";

/// What a tool may reach on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkPolicy {
    /// Nothing (only the sandbox's own loopback).
    Off,
    /// The host's network.
    Full,
    /// Only these `(host, port)` destinations, over TCP. `host` is a name or a loopback IP.
    Allowlist(Vec<(String, u16)>),
}

impl NetworkPolicy {
    /// The policy for an effective network grant (no grant: [`NetworkPolicy::Off`]). Refuses
    /// allowlist entries the relay cannot enforce: CIDR blocks and bare IPs
    /// (`SANDBOX_ALLOWLIST_CIDR_UNSUPPORTED`), bare host names without a port and non-loopback
    /// IP literals (`SANDBOX_ALLOWLIST_ENTRY_UNSUPPORTED`).
    pub fn from_grant(grant: Option<&NetworkGrant>) -> Result<NetworkPolicy, SandboxError> {
        let entries = match grant {
            None | Some(NetworkGrant::Off) => return Ok(NetworkPolicy::Off),
            Some(NetworkGrant::Full) => return Ok(NetworkPolicy::Full),
            Some(NetworkGrant::Allowlist(entries)) => entries,
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry {
                AllowEntry::HostPort { host, port } => out.push((host.clone(), *port)),
                AllowEntry::Host(host) => {
                    return Err(SandboxError::AllowlistEntryUnsupported {
                        entry: host.clone(),
                        reason: "a host without a port: the sandbox relay listens per \
                                 `host:port`; list each port (`host:443`)"
                            .into(),
                    })
                }
                AllowEntry::Cidr(_) => {
                    return Err(SandboxError::AllowlistCidrUnsupported {
                        entry: entry.to_string(),
                    })
                }
            }
        }
        let policy = NetworkPolicy::Allowlist(out);
        plan::relay_destinations(&policy)?;
        Ok(policy)
    }
}

/// What a call may touch, from its effective scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxProfile {
    /// The workspace root (absolute); every pattern is relative to it.
    pub workspace_root: PathBuf,
    /// Effective read path patterns (`docs/**`).
    pub read: Vec<String>,
    /// Effective write path patterns.
    pub write: Vec<String>,
    pub network: NetworkPolicy,
    /// Variables added to the cleared environment: the tool's `required_env` values.
    pub env: Vec<(String, String)>,
    /// The workspace's `security.deny_overlays` patterns (`.env`, `**/*.pem`).
    pub deny_overlays: Vec<String>,
}

impl SandboxProfile {
    /// A profile granting nothing: no paths, no network, no extra environment.
    pub fn new(workspace_root: impl Into<PathBuf>) -> Self {
        SandboxProfile {
            workspace_root: workspace_root.into(),
            read: Vec::new(),
            write: Vec::new(),
            network: NetworkPolicy::Off,
            env: Vec::new(),
            deny_overlays: Vec::new(),
        }
    }
}

/// The ids of the call, passed to the tool as `LUMENFLOW_RECEIPT_ID`, `LUMENFLOW_RUN_ID` and
/// `LUMENFLOW_TASK_ID`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunIds {
    pub receipt_id: String,
    pub run_id: String,
    pub task_id: String,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The tool's entry file (absolute). A script entry runs under its interpreter.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Written to the tool's stdin, which is then closed.
    pub stdin: Vec<u8>,
    /// The working directory: an existing folder inside the workspace root.
    pub cwd: PathBuf,
    pub timeout: Duration,
    /// The cap for stdout and for stderr, each.
    pub max_output_bytes: usize,
    pub ids: RunIds,
    /// The pack folder, bound read-only so a script can load its siblings; `None` binds only the
    /// program file. The program must lie inside it.
    pub pack_root: Option<PathBuf>,
}

/// How subprocess tools are isolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxMode {
    /// bubblewrap at `bwrap`; `helper_exe` is the executable whose `__sandbox-init` subcommand
    /// runs [`init::run`] (the `lumenflow` binary), needed for network allowlists only.
    Bubblewrap {
        bwrap: PathBuf,
        helper_exe: Option<PathBuf>,
    },
    /// The workspace opted out (`sandbox: none`): no isolation, recorded by the caller in every
    /// receipt.
    None,
}

impl SandboxMode {
    /// The mode for a workspace's `sandbox` setting: `none` is [`SandboxMode::None`]; otherwise
    /// bubblewrap must be installed ([`detect_bwrap`]), else [`SandboxError::Unavailable`].
    pub fn detect(
        setting: crate::workspace::SandboxMode,
        helper_exe: Option<PathBuf>,
    ) -> Result<SandboxMode, SandboxError> {
        match setting {
            crate::workspace::SandboxMode::None => Ok(SandboxMode::None),
            crate::workspace::SandboxMode::Bubblewrap => match detect_bwrap() {
                Some(bwrap) => Ok(SandboxMode::Bubblewrap { bwrap, helper_exe }),
                None => Err(SandboxError::Unavailable {
                    detail: "`bwrap` was not found on PATH".into(),
                }),
            },
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The exit code; `128 + signal` when the tool was killed by a signal; `None` on timeout.
    pub exit_code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    /// stdout went past `max_output_bytes`: the tool was stopped and its result is lost.
    pub output_truncated: bool,
    /// stderr went past `max_output_bytes`: the rest was discarded, the tool ran on.
    pub stderr_truncated: bool,
    /// `"bubblewrap"` or `"none"`, for the receipt.
    pub sandbox: &'static str,
    pub duration: Duration,
}

/// Why a tool could not be run in its sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "the sandbox is unavailable ({detail}): install bubblewrap, or set `sandbox: none` in \
         workspace.yaml to opt out (recorded in every receipt)"
    )]
    Unavailable { detail: String },
    #[error(
        "network allowlist entry `{entry}` is a CIDR block or a bare IP: the sandbox relay \
         reaches `host:port` destinations only; list them by name and port"
    )]
    AllowlistCidrUnsupported { entry: String },
    #[error("network allowlist entry `{entry}` cannot be enforced: {reason}")]
    AllowlistEntryUnsupported { entry: String, reason: String },
    #[error(
        "a network allowlist needs the sandbox helper (`lumenflow {HELPER_SUBCOMMAND}`), and none \
         was configured"
    )]
    HelperRequired,
    #[error("scope pattern `{pattern}` cannot be mounted: {reason}")]
    InvalidScope { pattern: String, reason: String },
    #[error("scope `{pattern}` resolves to `{resolved}`, {reason}", resolved = .resolved.display())]
    ScopeEscapes {
        pattern: String,
        resolved: PathBuf,
        reason: &'static str,
    },
    #[error(
        "deny overlays: more than {limit} entries to scan under the bound scopes; narrow the \
         scopes or the overlay patterns"
    )]
    DenyOverlayLimit { limit: usize },
    #[error(
        "scope `{pattern}` would need more than {limit} files under `{folder}` hidden to show \
         only what it matches; scope the folder as a whole (`{folder}/**`) or narrow the folder \
         the pattern starts in"
    )]
    ConfinementLimit {
        pattern: String,
        folder: String,
        limit: usize,
    },
    #[error(
        "the tool created {count} file(s) no write scope matches ({paths}; write scopes: \
         {patterns}): moved to `{quarantine}`{unmoved}, and the call failed; what it wrote \
         inside its scopes stays",
        quarantine = .quarantine.display(),
        unmoved = if *.not_moved > 0 { format!(" ({} could not be moved and are still in place)", .not_moved) } else { String::new() }
    )]
    WriteOutsideScope {
        count: usize,
        paths: String,
        patterns: String,
        not_moved: usize,
        quarantine: PathBuf,
    },
    #[error("invalid run: {0}")]
    InvalidRun(String),
    #[error("{0}")]
    UnsupportedEntry(String),
    #[error("could not prepare the sandbox: {context}: {source}")]
    Setup {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("could not start `{program}`: {source}", program = .program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl SandboxError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::Unavailable { .. } => "SUBPROCESS_SANDBOX_UNAVAILABLE",
            SandboxError::AllowlistCidrUnsupported { .. } => "SANDBOX_ALLOWLIST_CIDR_UNSUPPORTED",
            SandboxError::AllowlistEntryUnsupported { .. } => "SANDBOX_ALLOWLIST_ENTRY_UNSUPPORTED",
            SandboxError::HelperRequired => "SANDBOX_HELPER_REQUIRED",
            SandboxError::InvalidScope { .. } => "SANDBOX_INVALID_SCOPE",
            SandboxError::ScopeEscapes { .. } => "SANDBOX_SCOPE_ESCAPES_WORKSPACE",
            SandboxError::DenyOverlayLimit { .. } => "SANDBOX_DENY_OVERLAY_LIMIT",
            SandboxError::ConfinementLimit { .. } => "SANDBOX_CONFINEMENT_LIMIT",
            SandboxError::WriteOutsideScope { .. } => "SANDBOX_WRITE_OUTSIDE_SCOPE",
            SandboxError::InvalidRun(_) => "SANDBOX_INVALID_RUN",
            SandboxError::UnsupportedEntry(_) => "SANDBOX_UNSUPPORTED_ENTRY",
            SandboxError::Setup { .. } => "SANDBOX_SETUP_FAILED",
            SandboxError::Spawn { .. } => "SUBPROCESS_TRANSPORT_FAILED",
        }
    }

    pub(crate) fn setup(context: impl Into<String>, source: io::Error) -> Self {
        SandboxError::Setup {
            context: context.into(),
            source,
        }
    }
}

/// The interpreter of a script entry, by extension: `.py` `python3`, `.sh` `sh`, `.js .mjs .cjs
/// .ts` `node` (`.ts` also needs `--experimental-strip-types`, see [`entry_command`]); `None`
/// for anything else, which is executed directly.
pub fn interpreter_for(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()? {
        "py" => Some("python3"),
        "sh" => Some("sh"),
        "js" | "mjs" | "cjs" | "ts" => Some("node"),
        _ => None,
    }
}

/// The command line that runs an entry file: its interpreter (found on [`SANDBOX_PATH`]) and the
/// file, or the file itself. A `.ts` entry needs Node ≥ 22.6 on that `PATH`, else it is refused.
pub fn entry_command(program: &Path) -> Result<Vec<OsString>, SandboxError> {
    let is_ts = program.extension().is_some_and(|e| e == "ts");
    let mut cmd: Vec<OsString> = Vec::new();
    match interpreter_for(program) {
        Some(interp) => {
            cmd.push(interp.into());
            if is_ts {
                match node_version() {
                    Some(v) if v >= (22, 6) => cmd.push("--experimental-strip-types".into()),
                    found => {
                        let found = match found {
                            Some((major, minor)) => format!("Node {major}.{minor}"),
                            None => format!("no `node` on {SANDBOX_PATH}"),
                        };
                        return Err(SandboxError::UnsupportedEntry(format!(
                            "TypeScript entry `{}` needs Node 22.6 or later to strip types \
                             ({found} here): compile it to `.js` or `.mjs`",
                            program.display()
                        )));
                    }
                }
            }
            cmd.push(program.as_os_str().to_owned());
        }
        None => cmd.push(program.as_os_str().to_owned()),
    }
    Ok(cmd)
}

/// `(major, minor)` of the `node` on the sandbox `PATH`, asked once per process.
fn node_version() -> Option<(u32, u32)> {
    static VERSION: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let out = exec::probe(
            Path::new("node"),
            &["--version"],
            Some(SANDBOX_PATH),
            Duration::from_secs(5),
        )?;
        let text = String::from_utf8_lossy(&out);
        let mut parts = text.trim().trim_start_matches('v').split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    })
}

/// `bwrap` on `PATH` that answers `bwrap --version` within two seconds.
pub fn detect_bwrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("bwrap");
        if !candidate.is_file() {
            continue;
        }
        if exec::probe(&candidate, &["--version"], None, Duration::from_secs(2)).is_some() {
            return Some(candidate);
        }
    }
    None
}

/// The bubblewrap argument vector for `profile` and `spec` (everything after `bwrap`), for
/// [`NetworkPolicy::Off`] and [`NetworkPolicy::Full`]; an allowlist needs the helper and the
/// relay's runtime folder: [`bwrap_args_with_relay`].
///
/// Pure apart from reading the file system (existence, symlinks, the deny-overlay scan) and
/// creating missing write-scope folders.
pub fn bwrap_args(profile: &SandboxProfile, spec: &RunSpec) -> Result<Vec<OsString>, SandboxError> {
    plan::build(profile, spec, None)
}

/// [`bwrap_args`] for any network policy: an allowlist runs `helper_exe __sandbox-init` inside,
/// with `<runtime_dir>/hosts` over `/etc/hosts` and `<runtime_dir>/relay` (holding `<n>.sock`,
/// one per destination) at [`RELAY_DIR_INSIDE`].
pub fn bwrap_args_with_relay(
    profile: &SandboxProfile,
    spec: &RunSpec,
    helper_exe: &Path,
    runtime_dir: &Path,
) -> Result<Vec<OsString>, SandboxError> {
    plan::build(
        profile,
        spec,
        Some(plan::RelayPaths {
            helper_exe,
            runtime_dir,
        }),
    )
}

/// Where each allowlisted destination listens inside the sandbox, in relay socket order:
/// `(host, port, inside address)`.
pub fn relay_plan(network: &NetworkPolicy) -> Result<Vec<(String, u16, IpAddr)>, SandboxError> {
    Ok(plan::relay_destinations(network)?
        .into_iter()
        .map(|d| (d.host, d.port, d.inside))
        .collect())
}

/// Run `spec` under `mode` with `profile`.
pub fn run(
    mode: &SandboxMode,
    profile: &SandboxProfile,
    spec: &RunSpec,
) -> Result<RunOutcome, SandboxError> {
    match mode {
        SandboxMode::None => run_unsandboxed(profile, spec),
        SandboxMode::Bubblewrap { bwrap, helper_exe } => {
            run_bubblewrap(bwrap, helper_exe.as_deref(), profile, spec)
        }
    }
}

fn run_bubblewrap(
    bwrap: &Path,
    helper_exe: Option<&Path>,
    profile: &SandboxProfile,
    spec: &RunSpec,
) -> Result<RunOutcome, SandboxError> {
    if !bwrap.is_file() {
        return Err(SandboxError::Unavailable {
            detail: format!("`{}` does not exist", bwrap.display()),
        });
    }
    let started = Instant::now();
    let mut relay = None;
    let mut _runtime_dir = None;
    let args = match &profile.network {
        NetworkPolicy::Allowlist(_) => {
            let helper = helper_exe.ok_or(SandboxError::HelperRequired)?;
            let dests = plan::relay_destinations(&profile.network)?;
            let dir = tempfile::Builder::new()
                .prefix("lf-sbx-")
                .tempdir()
                .map_err(|e| SandboxError::setup("creating the relay folder", e))?;
            let relay_dir = dir.path().join("relay");
            std::fs::create_dir(&relay_dir)
                .map_err(|e| SandboxError::setup("creating the relay folder", e))?;
            std::fs::write(dir.path().join("hosts"), plan::hosts_file(&dests))
                .map_err(|e| SandboxError::setup("writing the sandbox /etc/hosts", e))?;
            let args = bwrap_args_with_relay(profile, spec, helper, dir.path())?;
            relay = Some(
                relay::Relay::start(&relay_dir, &dests)
                    .map_err(|e| SandboxError::setup("starting the network relay", e))?,
            );
            _runtime_dir = Some(dir);
            args
        }
        _ => bwrap_args(profile, spec)?,
    };
    let write_check = write_check::WriteCheck::before(profile)?;
    let mut cmd = std::process::Command::new(bwrap);
    cmd.args(&args).env_clear();
    let result = exec::execute(cmd, spec, false);
    if let Some(relay) = relay {
        relay.stop();
    }
    // Whatever the tool's outcome, what it created outside its scopes does not stay.
    if let Some(check) = write_check {
        check.after(&spec.ids.receipt_id)?;
    }
    let raw = result.map_err(|e| match e {
        SandboxError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound => {
            SandboxError::Unavailable {
                detail: format!("`{}` could not be started: {source}", bwrap.display()),
            }
        }
        other => other,
    })?;
    Ok(raw.into_outcome("bubblewrap", started))
}

fn run_unsandboxed(profile: &SandboxProfile, spec: &RunSpec) -> Result<RunOutcome, SandboxError> {
    let started = Instant::now();
    plan::check_spec(spec)?;
    let env = plan::environment(profile, spec)?;
    let argv = entry_command(&spec.program)?;
    let (program, rest) = argv
        .split_first()
        .ok_or_else(|| SandboxError::InvalidRun("empty command".into()))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest)
        .args(&spec.args)
        .env_clear()
        .envs(env)
        .current_dir(&spec.cwd);
    let raw = exec::execute(cmd, spec, true)?;
    Ok(raw.into_outcome("none", started))
}
