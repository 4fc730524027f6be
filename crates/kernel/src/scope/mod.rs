//! Scope intersection (KRN-07): what a tool call may touch, given the four scope layers.
//!
//! The layers are the workspace (`workspace.yaml` `security.allowed_scopes`), the lane (its
//! `allowed_scopes`), the task (its `declared_scopes`) and the tool (its `required_scopes`).
//! [`intersect`] computes the effective scopes a call runs with (they go to the sandbox and the
//! receipt); [`check_path`] decides a concrete path; [`reserved_write_scopes`] and
//! [`is_reserved_write_path`] apply the KRN-10 reserved-path rule.
//!
//! # What we keep from the original (`original/dispatch.md` §1)
//!
//! - Read and write are intersected independently; a `write` grant never satisfies a `read`
//!   requirement.
//! - Per access mode: for each tool pattern T, each workspace pattern W overlapping T, each lane
//!   pattern L overlapping T, each task pattern K overlapping T, the combination counts only if
//!   all six pairs of `[W, L, K, T]` overlap ([`glob_overlaps`]: equality, containment either
//!   way, or a literal match). The result is one of the four input patterns, never a synthesised
//!   glob, deduplicated keeping the first insertion; reads come before writes.
//! - [`narrowest`] is the original's score, ties keep the first of `[W, L, K, T]`;
//!   [`glob_contains`] is the original's sampling heuristic.
//! - Network: `off` blocks, allowlists narrow `full`, `full` survives only if every layer says
//!   `full`; a layer without network scopes grants none.
//! - Only an entirely empty result denies the call ([`EffectiveScopes::is_empty`]); partial loss
//!   runs, but is now reported (below).
//!
//! # Deliberate differences (each one is tested in `tests/scope_intersection.rs`)
//!
//! 1. **`**` covers dot-directories.** One glob engine (globset, `literal_separator(true)`) that
//!    does not special-case dot-segments: a layer granting `**` covers `.github/**`, and `*`
//!    matches `.env`. Micromatch, which the original used, did not, so the original denied
//!    `.github/**` under `**`. As in micromatch, `foo/**` also matches `foo`. Because `**` now
//!    reaches `.lumenflow/`, the reserved-write rule is applied to concrete paths too
//!    ([`is_reserved_write_path`]), not only to patterns.
//! 2. **A concrete path must match a pattern of every layer** for that access ([`check_path`]).
//!    Paths are checked lexically: `..` segments, absolute or drive-prefixed paths, backslashes
//!    and NUL are refused with a typed [`PathRefusal`].
//! 3. **Partial loss is reported**: [`EffectiveScopes::narrowed`] is true when a requested tool
//!    scope did not survive whole (it produced nothing, or only strictly narrower patterns, or
//!    its network request was cut down), and [`EffectiveScopes::notes`] says why for each one.
//!    This feeds the receipt's `scope_narrowed`.
//! 4. **Network allowlists are destination sets**, not strings: `host:port`, a bare host (any
//!    port), CIDR blocks (a bare IP is a one-address block). Host names compare
//!    case-insensitively, a `host:port` whose host is an IP lies inside a CIDR block holding it,
//!    and the output is sorted and minimal. A tool asking for `full` network while a workspace,
//!    lane or task layer has an allowlist is **denied** the network part (note "full network
//!    requested under an allowlist"), not silently downgraded to the allowlist.
//! 5. **Fail closed**: an invalid glob, a negated (`!`), absolute or `..` pattern, an invalid
//!    allowlist entry (on any network scope) or an `allowlist` posture without entries in any
//!    layer is a [`ScopeError`] naming the layer and the pattern, never "allow".
//! 6. **Never wider than a layer**: within a combination, the result is the narrowest candidate
//!    that lies inside every other candidate (by [`glob_contains`] or equality). The original
//!    took the best score even when that pattern was wider than another layer's (for example a
//!    long literal prefix with `/**` against the same prefix with `/*/*/*/*`), or when two
//!    patterns only overlapped by a literal match (`*/*` against `**/x`). Such combinations now
//!    yield nothing, with a note. In every vector of the original's table the choice is
//!    unchanged.
//! 7. [`glob_contains`] tries every combination of depths (0 to 3) per `**` instead of one
//!    depth for all of them, which removes false positives such as `*/*/**` "containing"
//!    `**/**`; more than five `**` segments answer false.
//!
//! # What the properties cover
//!
//! The intersection is commutative in the non-tool layers (the same patterns, up to ties
//! between distinct patterns of equal score that contain each other, and always the same path
//! decisions), and never wider than any layer: every path an effective pattern matches is
//! matched by a pattern of every layer, as far as [`glob_contains`] is exact. It is exact for
//! patterns whose segments are literals (other than its synthetic `__segment__`/`__depth…__`
//! names), `*` or `**`, and paths with at most three segments per `**`, which is what the
//! property tests generate; elsewhere [`check_path`] is the backstop, so a dispatcher asks both
//! [`EffectiveScopes::allows_path`] and [`check_path`]. It is *not* associative for arbitrary globs,
//! because `overlap` is not transitive: with `W = a/b/**`, `L = a/**`, `K = */b/**`, the
//! three-layer form drops the combination (`L` and `K` do not overlap) while `(W ∩ L) ∩ K`
//! keeps `a/b/**`, which is still inside every layer. It is associative (same patterns, same
//! paths) for laminar pattern families, where any two patterns are nested or disjoint, such as
//! subtree patterns `dir/**`, `**` and literal paths: there, pairwise overlap makes a chain and
//! both forms pick its smallest element.

mod glob;
mod network;
mod path;

use std::fmt;

use lumenflow_contracts::scope::{PathAccess, ToolScope};

pub use glob::{glob_contains, glob_matches, glob_overlaps, narrowest, narrowness_score, PathGlob};
pub use network::{intersect_entries, normalize_entries, AllowEntry, NetworkGrant};
pub use path::{normalize_rel_path, RESERVED_ROOT};

/// The four layers of one tool call, from broadest authority to the tool itself.
#[derive(Debug, Clone, Copy)]
pub struct ScopeLayers<'a> {
    pub workspace: &'a [ToolScope],
    pub lane: &'a [ToolScope],
    pub task: &'a [ToolScope],
    pub tool: &'a [ToolScope],
}

impl<'a> ScopeLayers<'a> {
    fn named(&self) -> [(ScopeLayer, &'a [ToolScope]); 4] {
        [
            (ScopeLayer::Workspace, self.workspace),
            (ScopeLayer::Lane, self.lane),
            (ScopeLayer::Task, self.task),
            (ScopeLayer::Tool, self.tool),
        ]
    }
}

/// Which layer a scope came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeLayer {
    Workspace,
    Lane,
    Task,
    Tool,
}

impl ScopeLayer {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeLayer::Workspace => "workspace",
            ScopeLayer::Lane => "lane",
            ScopeLayer::Task => "task",
            ScopeLayer::Tool => "tool",
        }
    }
}

impl fmt::Display for ScopeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A layer holds a scope that cannot be evaluated; the call must not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("{layer} scope pattern `{pattern}` is invalid: {reason}")]
    InvalidPattern {
        layer: ScopeLayer,
        pattern: String,
        reason: String,
    },
    #[error("{layer} network allowlist entry `{entry}` is invalid: {reason}")]
    InvalidAllowlistEntry {
        layer: ScopeLayer,
        entry: String,
        reason: String,
    },
    #[error("{layer} network scope has posture `allowlist` but no `allowlist_entries`")]
    EmptyAllowlist { layer: ScopeLayer },
}

impl ScopeError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        "SCOPE_INVALID"
    }

    pub fn layer(&self) -> ScopeLayer {
        match self {
            ScopeError::InvalidPattern { layer, .. }
            | ScopeError::InvalidAllowlistEntry { layer, .. }
            | ScopeError::EmptyAllowlist { layer } => *layer,
        }
    }
}

/// Why a concrete path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("the path is empty")]
    Empty,
    #[error("the path contains a NUL byte")]
    Nul,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path is absolute; scopes are relative to the workspace root")]
    Absolute,
    #[error("the path contains a `..` segment")]
    ParentSegment,
    #[error("the path is outside the {layer} layer's {access} scopes")]
    NotInLayer {
        layer: ScopeLayer,
        access: PathAccess,
    },
    #[error(transparent)]
    InvalidScope(ScopeError),
}

impl PathRefusal {
    /// Stable error code: every refusal is a scope denial.
    pub fn code(&self) -> &'static str {
        "SCOPE_DENIED"
    }
}

/// What a call may touch after intersection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EffectiveScopes {
    /// Surviving read patterns, in first-insertion order.
    pub read: Vec<String>,
    /// Surviving write patterns, in first-insertion order.
    pub write: Vec<String>,
    /// The network grant; `None` means no network scope (the sandbox gets no network).
    pub network: Option<NetworkGrant>,
    /// `scope_narrowed`: some requested tool scope did not survive whole.
    pub narrowed: bool,
    /// Why each lost or narrowed tool scope was lost or narrowed.
    pub notes: Vec<String>,
}

impl EffectiveScopes {
    /// The wire form, in the original's order: reads, writes, then the network scope.
    pub fn as_tool_scopes(&self) -> Vec<ToolScope> {
        let mut out: Vec<ToolScope> = Vec::new();
        out.extend(
            self.read
                .iter()
                .map(|p| ToolScope::path(p, PathAccess::Read)),
        );
        out.extend(
            self.write
                .iter()
                .map(|p| ToolScope::path(p, PathAccess::Write)),
        );
        out.extend(self.network.iter().map(NetworkGrant::to_tool_scope));
        out
    }

    /// Nothing survived: the call is denied (`SCOPE_DENIED`, as in the original).
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty() && self.network.is_none()
    }

    /// The patterns for one access mode.
    pub fn patterns(&self, access: PathAccess) -> &[String] {
        match access {
            PathAccess::Read => &self.read,
            PathAccess::Write => &self.write,
        }
    }

    /// Does an effective pattern for `access` match the workspace-relative `rel_path`? A path
    /// [`normalize_rel_path`] refuses is never allowed.
    pub fn allows_path(&self, rel_path: &str, access: PathAccess) -> bool {
        let Ok(path) = normalize_rel_path(rel_path) else {
            return false;
        };
        self.patterns(access)
            .iter()
            .filter_map(|p| PathGlob::new(p).ok())
            .any(|g| g.is_match(&path))
    }
}

/// Intersect the four layers (KRN-07). Fails closed on any invalid scope in any layer.
pub fn intersect(layers: &ScopeLayers) -> Result<EffectiveScopes, ScopeError> {
    let named = layers.named();
    let mut cache = glob::GlobCache::default();
    path::validate(&named, &mut cache)?;

    let mut out = EffectiveScopes::default();
    for access in PathAccess::VALUES {
        let result = path::intersect_access(&named, *access, &mut cache);
        out.narrowed |= result.narrowed;
        out.notes.extend(result.notes);
        match access {
            PathAccess::Read => out.read = result.patterns,
            PathAccess::Write => out.write = result.patterns,
        }
    }
    // Validates every layer's network scopes before deciding anything.
    let (grant, note) = network::intersect_network(&named)?;
    out.network = grant;
    if let Some(note) = note {
        out.narrowed = true;
        out.notes.push(note);
    }
    Ok(out)
}

/// Is the concrete workspace-relative `path` allowed for `access` by every layer? It must match
/// a pattern of each layer for that access (KRN-07). `..` segments, absolute paths, backslashes
/// and NUL are refused lexically; nothing is resolved on disk.
pub fn check_path(layers: &ScopeLayers, path: &str, access: PathAccess) -> Result<(), PathRefusal> {
    path::check_path(&layers.named(), path, access)
}

/// KRN-10: the tool's write patterns under `.lumenflow/**`, except the pack's own
/// `.lumenflow/state/<slug>/**` (REQUIREMENTS Q26), normalised (`\` → `/`, leading `./`
/// dropped). Non-empty means `SCOPE_DENIED` before any intersection. A write pattern with a
/// `..` segment is listed too. Patterns that merely *can* reach `.lumenflow/` through a
/// wildcard (`**/*.md`) are not listed; concrete writes go through [`is_reserved_write_path`].
pub fn reserved_write_scopes(tool: &[ToolScope], pack_slug: &str) -> Vec<String> {
    path::reserved_write_scopes(tool, &[pack_slug])
}

/// [`reserved_write_scopes`] for a pack that may also write the state folders of other packs
/// that consented (`state_slugs` = its own slug first, then the shared ones).
pub fn reserved_write_scopes_for(tool: &[ToolScope], state_slugs: &[&str]) -> Vec<String> {
    path::reserved_write_scopes(tool, state_slugs)
}

/// KRN-10 for a concrete path: is writing `rel_path` reserved for the pack `pack_slug`? True
/// under `.lumenflow/` outside `.lumenflow/state/<slug>/`, and for any path
/// [`normalize_rel_path`] refuses.
pub fn is_reserved_write_path(rel_path: &str, pack_slug: &str) -> bool {
    path::is_reserved_write_path(rel_path, &[pack_slug])
}

/// [`is_reserved_write_path`] for a pack that may also write consenting packs' state folders.
pub fn is_reserved_write_path_for(rel_path: &str, state_slugs: &[&str]) -> bool {
    path::is_reserved_write_path(rel_path, state_slugs)
}
