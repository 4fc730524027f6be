//! Path scopes: the original's nested-loop intersection, concrete path checks and the reserved
//! `.lumenflow/` write rule.

use std::collections::HashSet;

use lumenflow_contracts::scope::{PathAccess, ToolScope};

use super::glob::{narrowest, GlobCache, PathGlob};
use super::{PathRefusal, ScopeError, ScopeLayer};

/// The root of the kernel's own state; writes below it are reserved (KRN-10).
pub const RESERVED_ROOT: &str = ".lumenflow";

pub(crate) fn path_patterns(scopes: &[ToolScope], access: PathAccess) -> Vec<&str> {
    let mut seen = HashSet::new();
    scopes
        .iter()
        .filter_map(|s| match s {
            ToolScope::Path { pattern, access: a } if *a == access => Some(pattern.as_str()),
            _ => None,
        })
        .filter(|p| seen.insert(*p))
        .collect()
}

/// Compile every path pattern of every layer, or name the first invalid one (fail closed).
pub(crate) fn validate(
    layers: &[(ScopeLayer, &[ToolScope]); 4],
    cache: &mut GlobCache,
) -> Result<(), ScopeError> {
    for (layer, scopes) in layers {
        for scope in scopes.iter() {
            if let ToolScope::Path { pattern, .. } = scope {
                cache
                    .add(pattern)
                    .map_err(|reason| ScopeError::InvalidPattern {
                        layer: *layer,
                        pattern: pattern.clone(),
                        reason,
                    })?;
            }
        }
    }
    Ok(())
}

/// What survived for one access mode.
pub(crate) struct AccessResult {
    pub patterns: Vec<String>,
    pub narrowed: bool,
    pub notes: Vec<String>,
}

/// One access mode (`original/dispatch.md` §1.4), with our change: the result of a combination
/// is the narrowest candidate that lies inside every other candidate (so never wider than any
/// layer); a combination with no such candidate yields nothing.
pub(crate) fn intersect_access(
    layers: &[(ScopeLayer, &[ToolScope]); 4],
    access: PathAccess,
    cache: &mut GlobCache,
) -> AccessResult {
    let [w, l, k, t] = layers;
    let policy = [
        (w.0, path_patterns(w.1, access)),
        (l.0, path_patterns(l.1, access)),
        (k.0, path_patterns(k.1, access)),
    ];
    let tool = path_patterns(t.1, access);
    let mut out = AccessResult {
        patterns: Vec::new(),
        narrowed: false,
        notes: Vec::new(),
    };
    if tool.is_empty() {
        return out;
    }
    if let Some((layer, _)) = policy.iter().find(|(_, p)| p.is_empty()) {
        for tp in &tool {
            out.narrowed = true;
            out.notes.push(format!(
                "path: tool scope `{tp}` ({access}) was lost: the {layer} layer grants no {access} path scope"
            ));
        }
        return out;
    }
    let [(_, ws), (_, ls), (_, ks)] = &policy;
    let mut emitted: HashSet<String> = HashSet::new();
    for &tp in &tool {
        let mut produced: Vec<&str> = Vec::new();
        let mut saw_combination = false;
        for &wp in ws {
            if !cache.overlaps(tp, wp) {
                continue;
            }
            for &lp in ls {
                if !cache.overlaps(tp, lp) || !cache.overlaps(wp, lp) {
                    continue;
                }
                for &kp in ks {
                    if !cache.overlaps(tp, kp) || !cache.overlaps(wp, kp) || !cache.overlaps(lp, kp)
                    {
                        continue;
                    }
                    saw_combination = true;
                    let candidates = [wp, lp, kp, tp];
                    let inside_all: Vec<&str> = candidates
                        .iter()
                        .enumerate()
                        .filter(|(i, c)| {
                            candidates
                                .iter()
                                .enumerate()
                                .all(|(j, other)| *i == j || cache.covers(other, c))
                        })
                        .map(|(_, c)| *c)
                        .collect();
                    if inside_all.is_empty() {
                        continue;
                    }
                    let chosen = narrowest(&inside_all);
                    if !produced.contains(&chosen) {
                        produced.push(chosen);
                    }
                    if emitted.insert(chosen.to_string()) {
                        out.patterns.push(chosen.to_string());
                    }
                }
            }
        }
        let whole = produced.iter().any(|r| cache.covers(r, tp));
        if whole {
            continue;
        }
        out.narrowed = true;
        if produced.is_empty() {
            let why = policy
                .iter()
                .find(|(_, ps)| !ps.iter().any(|p| cache.overlaps(tp, p)))
                .map(|(layer, _)| format!("no {layer} {access} scope overlaps it"))
                .unwrap_or_else(|| {
                    if saw_combination {
                        "no pattern among the overlapping candidates lies inside all the others"
                            .to_string()
                    } else {
                        "the workspace, lane and task scopes it overlaps do not overlap each other"
                            .to_string()
                    }
                });
            out.notes.push(format!(
                "path: tool scope `{tp}` ({access}) was lost: {why}"
            ));
        } else {
            let shown: Vec<String> = produced.iter().map(|p| format!("`{p}`")).collect();
            out.notes.push(format!(
                "path: tool scope `{tp}` ({access}) narrowed to {}",
                shown.join(", ")
            ));
        }
    }
    out
}

/// Lexically normalise a workspace-relative path: `.` and empty segments dropped; empty,
/// absolute, drive-prefixed, backslashed, NUL-bearing and `..`-bearing paths refused. Nothing
/// is resolved on disk (symlinks are the sandbox's business).
pub fn normalize_rel_path(path: &str) -> Result<String, PathRefusal> {
    if path.contains('\0') {
        return Err(PathRefusal::Nul);
    }
    if path.contains('\\') {
        return Err(PathRefusal::Backslash);
    }
    if path.starts_with('/') || super::glob::has_drive_prefix(path) {
        return Err(PathRefusal::Absolute);
    }
    let mut parts = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(PathRefusal::ParentSegment),
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(PathRefusal::Empty);
    }
    Ok(parts.join("/"))
}

/// A concrete path against the four layers: it must match a pattern of *every* layer for
/// `access` (KRN-07).
pub(crate) fn check_path(
    layers: &[(ScopeLayer, &[ToolScope]); 4],
    path: &str,
    access: PathAccess,
) -> Result<(), PathRefusal> {
    let path = normalize_rel_path(path)?;
    let mut compiled: Vec<(ScopeLayer, Vec<PathGlob>)> = Vec::with_capacity(4);
    for (layer, scopes) in layers {
        let mut globs = Vec::new();
        for pattern in path_patterns(scopes, access) {
            let glob = PathGlob::new(pattern).map_err(|reason| {
                PathRefusal::InvalidScope(ScopeError::InvalidPattern {
                    layer: *layer,
                    pattern: pattern.to_string(),
                    reason,
                })
            })?;
            globs.push(glob);
        }
        compiled.push((*layer, globs));
    }
    for (layer, globs) in &compiled {
        if !globs.iter().any(|g| g.is_match(&path)) {
            return Err(PathRefusal::NotInLayer {
                layer: *layer,
                access,
            });
        }
    }
    Ok(())
}

/// A slug usable as one literal path segment.
fn literal_slug(slug: &str) -> Option<&str> {
    let ok = !slug.is_empty()
        && slug != "."
        && slug != ".."
        && !slug.contains([
            '/', '\\', '\0', '*', '?', '[', ']', '{', '}', '!', '(', ')', '+', '@',
        ]);
    ok.then_some(slug)
}

/// Does the normalised `path` (pattern or concrete path) sit in reserved space for a pack that
/// may write the state folders of `state_slugs` (its own slug, plus any shared with it)?
fn in_reserved(path: &str, state_slugs: &[&str]) -> bool {
    let under_root = path == RESERVED_ROOT
        || path
            .strip_prefix(RESERVED_ROOT)
            .is_some_and(|r| r.starts_with('/'));
    if !under_root {
        return false;
    }
    let carved = state_slugs
        .iter()
        .filter_map(|s| literal_slug(s))
        .any(|slug| {
            let carve = format!("{RESERVED_ROOT}/state/{slug}");
            path == carve
                || path
                    .strip_prefix(&carve)
                    .is_some_and(|r| r.starts_with('/'))
        });
    !carved
}

/// KRN-10: the tool's write patterns that reach into `.lumenflow/` outside the pack's own
/// `.lumenflow/state/<slug>/` (REQUIREMENTS Q26), normalised as the original reports them
/// (`\` → `/`, leading `./` dropped). A write pattern with a `..` segment is reported too (fail
/// closed). Read scopes are never reserved.
pub(crate) fn reserved_write_scopes(tool: &[ToolScope], state_slugs: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for pattern in path_patterns(tool, PathAccess::Write) {
        let mut norm = pattern.replace('\\', "/");
        while let Some(rest) = norm.strip_prefix("./") {
            norm = rest.to_string();
        }
        let escapes = norm.split('/').any(|s| s == "..");
        if (escapes || in_reserved(&norm, state_slugs)) && !out.contains(&norm) {
            out.push(norm);
        }
    }
    out
}

/// KRN-10 for a concrete path: is writing `rel_path` reserved for this pack? A path that
/// [`normalize_rel_path`] refuses counts as reserved (fail closed).
pub(crate) fn is_reserved_write_path(rel_path: &str, state_slugs: &[&str]) -> bool {
    match normalize_rel_path(rel_path) {
        Ok(path) => in_reserved(&path, state_slugs),
        Err(_) => true,
    }
}
