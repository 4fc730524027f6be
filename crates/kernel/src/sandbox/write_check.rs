//! New files under a write scope that confines by name (`out/**/*.json`).
//!
//! Bubblewrap can only bind a pattern's folder (`out/`) writable; it cannot refuse the creation
//! of `out/run.sh` inside it. The files already there that no scope matches are hidden before
//! the tool starts (`confinement_overlays`), so they cannot be changed; what remains is what the
//! tool creates. [`WriteCheck::before`] lists those folders before the run, and
//! [`WriteCheck::after`] moves every new entry that no write pattern matches to
//! `.lumenflow/kernel/quarantine/<receipt_id>/` and fails the call, naming them. Moved, not
//! deleted: a tool may have renamed a file its scope matches (`out/a.json` → `out/a.sh`), and
//! that content is the user's. What the tool wrote inside its scopes stays: the call's other
//! effects are not undone.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::plan::{parse_pattern, DENY_SCAN_LIMIT};
use super::{SandboxError, SandboxProfile};
use crate::scope::PathGlob;

/// How many moved paths the error names; the count is always given.
const NAMED: usize = 10;

/// The folders to watch, and what they held before the tool ran.
pub(crate) struct WriteCheck {
    /// Canonical host folder and its path relative to the workspace root, `/`-separated.
    roots: Vec<(PathBuf, String)>,
    ws: PathBuf,
    globs: Vec<PathGlob>,
    patterns: Vec<String>,
    before: BTreeSet<PathBuf>,
}

impl WriteCheck {
    /// `None` when every write scope opens its folder whole, which is the common case.
    pub(crate) fn before(profile: &SandboxProfile) -> Result<Option<WriteCheck>, SandboxError> {
        let mut open: Vec<Vec<String>> = Vec::new();
        let mut confined: Vec<Vec<String>> = Vec::new();
        for pattern in &profile.write {
            let (prefix, has_glob) = parse_pattern(pattern)?;
            let rest: Vec<&str> = pattern
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .skip(prefix.len())
                .collect();
            if !has_glob || rest == ["**"] {
                open.push(prefix);
            } else {
                confined.push(prefix);
            }
        }
        confined.retain(|c| !open.iter().any(|o| c.starts_with(o)));
        confined.sort();
        confined.dedup();
        let nested: Vec<Vec<String>> = confined.clone();
        confined.retain(|c| !nested.iter().any(|n| n != c && c.starts_with(n)));
        if confined.is_empty() {
            return Ok(None);
        }
        let ws = fs::canonicalize(&profile.workspace_root)
            .map_err(|e| SandboxError::setup("resolving the workspace root", e))?;
        let mut roots = Vec::new();
        for prefix in confined {
            let rel = prefix.join("/");
            // The plan refuses a scope that resolves outside the workspace; one whose folder
            // does not exist was created by it or holds nothing to compare.
            let Ok(host) = fs::canonicalize(ws.join(&rel)) else {
                continue;
            };
            if host.starts_with(&ws) && host.is_dir() {
                roots.push((host, rel));
            }
        }
        let globs = profile
            .write
            .iter()
            .filter_map(|p| PathGlob::new(p).ok())
            .collect();
        let mut check = WriteCheck {
            roots,
            ws,
            globs,
            patterns: profile.write.clone(),
            before: BTreeSet::new(),
        };
        check.before = check.scan()?;
        Ok(Some(check))
    }

    /// Move aside what the tool created outside its write patterns; an error names it.
    pub(crate) fn after(self, receipt_id: &str) -> Result<(), SandboxError> {
        let quarantine = self.ws.join(".lumenflow/kernel/quarantine").join(
            if receipt_id.is_empty()
                || receipt_id.contains(['/', '\\'])
                || receipt_id.starts_with('.')
            {
                "unknown-receipt"
            } else {
                receipt_id
            },
        );
        let now = self.scan()?;
        let mut removed: Vec<String> = Vec::new();
        let mut new_dirs: Vec<PathBuf> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        for path in now.difference(&self.before) {
            let Ok(meta) = fs::symlink_metadata(path) else {
                continue;
            };
            if meta.is_dir() {
                new_dirs.push(path.clone());
                continue;
            }
            let rel = self.relative(path);
            if self.globs.iter().any(|g| g.is_match(&rel)) {
                continue;
            }
            let target = quarantine.join(&rel);
            let moved = target
                .parent()
                .map(fs::create_dir_all)
                .unwrap_or(Ok(()))
                .and_then(|()| fs::rename(path, &target));
            match moved {
                Ok(()) => removed.push(rel),
                Err(e) => failures.push(format!("{rel} (not moved: {e})")),
            }
        }
        // Deepest first, so a new folder emptied above goes with its new parents. A folder
        // that still holds something (a file the scope matches) stays.
        new_dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in new_dirs {
            let _ = fs::remove_dir(&dir);
        }
        if removed.is_empty() && failures.is_empty() {
            return Ok(());
        }
        Err(SandboxError::WriteOutsideScope {
            count: removed.len() + failures.len(),
            paths: removed
                .iter()
                .chain(failures.iter())
                .take(NAMED)
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", "),
            patterns: self
                .patterns
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", "),
            not_moved: failures.len(),
            quarantine: quarantine
                .strip_prefix(&self.ws)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| quarantine.clone()),
        })
    }

    /// `out/sub/x.sh` for `<ws>/out/sub/x.sh`.
    fn relative(&self, path: &Path) -> String {
        for (host, rel) in &self.roots {
            if let Ok(inner) = path.strip_prefix(host) {
                let inner = inner.to_string_lossy();
                return if rel.is_empty() {
                    inner.into_owned()
                } else {
                    format!("{rel}/{inner}")
                };
            }
        }
        path.to_string_lossy().into_owned()
    }

    /// Every entry under the roots, without following symlinks.
    fn scan(&self) -> Result<BTreeSet<PathBuf>, SandboxError> {
        let mut seen = BTreeSet::new();
        for (root, _) in &self.roots {
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        stack.push(path.clone());
                    }
                    seen.insert(path);
                    if seen.len() > DENY_SCAN_LIMIT {
                        return Err(SandboxError::DenyOverlayLimit {
                            limit: DENY_SCAN_LIMIT,
                        });
                    }
                }
            }
        }
        Ok(seen)
    }
}
