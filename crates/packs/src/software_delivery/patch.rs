//! `software-delivery:apply_patch {wu_id, patch}`: apply a unified diff inside a claimed work
//! unit's worktree, and nowhere else.
//!
//! Every file name the patch carries (`diff --git`, `---`/`+++`, `rename`/`copy from`/`to`) is
//! read the way `git apply` reads it: headers only outside hunks, hunks consumed by their line
//! counts, C-quoted names unquoted, one leading component stripped (`-p1`). The patch is refused
//! before git sees it when a name is absolute, has a `..` or `.git` component
//! (`PATCH_ESCAPES_WORKTREE`), goes through a symlink that resolves outside the worktree (the
//! same code), or creates or changes a symlink (`PATCH_SYMLINK_REFUSED`: a link could later lead
//! a gate or another patch out of the worktree). Then `git apply --check` and `git apply` run in
//! the worktree (`PATCH_DOES_NOT_APPLY` with git's message); git's own refusal of paths outside
//! the repository is a second line behind ours.

use std::path::Path;

use lumenflow_contracts::scope::PathAccess;
use lumenflow_contracts::tool_output::{codes, ToolOutput};
use lumenflow_kernel::dispatch::BuiltinCall;
use serde_json::json;

use super::common::{self, errors, fail, git_in, require, Claim, ToolResult};

/// `software-delivery:apply_patch`.
pub fn apply_patch(call: &BuiltinCall<'_>) -> ToolOutput {
    inner(call).unwrap_or_else(|e| *e)
}

fn inner(call: &BuiltinCall<'_>) -> ToolResult<ToolOutput> {
    let input = common::input(call)?;
    let wu_id = common::wu_id(input)?;
    let patch = common::req_str(input, "patch")?;
    let ws = common::repo_root(call)?;
    let (claim, worktree) = Claim::require(&ws, &wu_id)?;

    let files = patch_paths(patch)?;
    if files.is_empty() {
        require(call, &claim.worktree, PathAccess::Write)?;
    }
    for file in &files {
        check_inside(&worktree, file)?;
        // Each file against the call's write scopes (a task may open single files of the
        // worktree) and the workspace's deny overlays (`.env`, `**/*.pem`): the patch's content
        // decides what is written, so what it names is checked, not only the worktree folder.
        let rel = format!("{}/{file}", claim.worktree);
        require(call, &rel, PathAccess::Write)?;
        match call.deny_overlay_covers(&rel) {
            Ok(false) => {}
            Ok(true) => {
                return Err(fail(
                    codes::SCOPE_DENIED,
                    format!("the patch writes `{rel}`, which the workspace's `security.deny_overlays` hide from tools"),
                ))
            }
            Err(e) => {
                return Err(fail(
                    codes::SCOPE_DENIED,
                    format!("cannot check `{rel}` against `security.deny_overlays`: {e}"),
                ))
            }
        }
    }
    // Declared writes (`paths`) were checked against the scopes by the kernel; hold the patch
    // to them so the declaration cannot understate what it touches.
    if let Some(declared) = input.get("paths").and_then(|v| v.as_array()) {
        let declared: Vec<&str> = declared.iter().filter_map(|v| v.as_str()).collect();
        for file in &files {
            let full = format!("{}/{file}", claim.worktree);
            if !declared.contains(&full.as_str()) {
                return Err(fail(
                    errors::PATCH_PATHS_MISMATCH,
                    format!(
                        "the patch writes `{full}`, which is not among the declared `paths` {declared:?}"
                    ),
                ));
            }
        }
    }
    let bytes = patch.as_bytes().to_vec();
    let check = git_in(
        &worktree,
        &ws,
        &["apply", "--check", "--whitespace=nowarn", "-"],
        Some(bytes.clone()),
    )?;
    if !check.success() {
        return Err(fail(
            errors::PATCH_DOES_NOT_APPLY,
            format!(
                "the patch does not apply to the worktree of `{wu_id}`: {}",
                check.stderr_text()
            ),
        ));
    }
    let applied = git_in(
        &worktree,
        &ws,
        &["apply", "--whitespace=nowarn", "-"],
        Some(bytes),
    )?;
    if !applied.success() {
        return Err(fail(
            errors::PATCH_DOES_NOT_APPLY,
            format!(
                "`git apply` failed in the worktree of `{wu_id}`: {}",
                applied.stderr_text()
            ),
        ));
    }
    let artifacts: Vec<String> = files
        .iter()
        .map(|f| format!("{}/{f}", claim.worktree))
        .collect();
    Ok(common::success(
        json!({
            "wu_id": wu_id,
            "worktree_path": worktree.to_string_lossy(),
            "files": files,
        }),
        &artifacts,
        &[],
    ))
}

fn escapes(message: String) -> Box<ToolOutput> {
    fail(errors::PATCH_ESCAPES_WORKTREE, message)
}

/// Refuse `name` (as written in the patch) when it is absolute or has a `..` or `.git`
/// component.
fn check_name(name: &str) -> ToolResult<()> {
    if name.starts_with('/') || name.starts_with('\\') {
        return Err(escapes(format!(
            "the patch names the absolute path `{name}`; paths must be relative to the worktree"
        )));
    }
    for part in name.split(['/', '\\']) {
        if part == ".." {
            return Err(escapes(format!(
                "the patch names `{name}`, which climbs out with `..`"
            )));
        }
        if part.eq_ignore_ascii_case(".git") {
            return Err(escapes(format!(
                "the patch names `{name}`, inside git's own metadata"
            )));
        }
    }
    if name.contains('\0') {
        return Err(escapes("the patch names a path with a NUL byte".into()));
    }
    Ok(())
}

/// Strip one leading component (`git apply -p1`): `a/src/x.rs` -> `src/x.rs`.
fn strip_one(name: &str) -> ToolResult<String> {
    let stripped = name
        .split_once('/')
        .map(|(_, rest)| rest.trim_start_matches('/'))
        .unwrap_or("");
    if stripped.is_empty() {
        return Err(fail(
            errors::PATCH_INVALID,
            format!("the patch names `{name}`, which has no path after its `a/` or `b/` prefix"),
        ));
    }
    Ok(stripped.to_string())
}

/// Unquote a git C-quoted name (`"a/tab\there"`); `None` if it is not well quoted. Returns the
/// name and what follows the closing quote.
fn unquote(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let rest = body.get(i + 1..)?;
                return Some((String::from_utf8_lossy(&out).into_owned(), rest));
            }
            b'\\' => {
                let c = *bytes.get(i + 1)?;
                i += 2;
                match c {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'v' => out.push(11),
                    b'\\' | b'"' => out.push(c),
                    b'0'..=b'3' => {
                        let d1 = *bytes.get(i)?;
                        let d2 = *bytes.get(i + 1)?;
                        if !(b'0'..=b'7').contains(&d1) || !(b'0'..=b'7').contains(&d2) {
                            return None;
                        }
                        out.push((c - b'0') * 64 + (d1 - b'0') * 8 + (d2 - b'0'));
                        i += 2;
                    }
                    _ => return None,
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

/// The name of a `---` / `+++` line: quoted, or up to a tab (a timestamp may follow).
fn traditional_name(rest: &str) -> ToolResult<Option<String>> {
    let name = if rest.starts_with('"') {
        unquote(rest)
            .map(|(n, _)| n)
            .ok_or_else(|| fail(errors::PATCH_INVALID, format!("badly quoted name `{rest}`")))?
    } else {
        rest.split('\t').next().unwrap_or("").trim_end().to_string()
    };
    if name == "/dev/null" {
        return Ok(None);
    }
    check_name(&name)?;
    strip_one(&name).map(Some)
}

/// The names of a `diff --git a/x b/y` line (both, when they can be told apart).
fn git_header_names(rest: &str) -> ToolResult<Vec<String>> {
    // Any `..` or absolute-looking token is refused, whatever the split.
    if rest.starts_with('"') {
        let (a, after) = unquote(rest).ok_or_else(|| {
            fail(
                errors::PATCH_INVALID,
                format!("badly quoted name in `{rest}`"),
            )
        })?;
        let after = after.trim_start();
        let b = if after.starts_with('"') {
            unquote(after).map(|(n, _)| n).ok_or_else(|| {
                fail(
                    errors::PATCH_INVALID,
                    format!("badly quoted name in `{rest}`"),
                )
            })?
        } else {
            after.to_string()
        };
        check_name(&a)?;
        check_name(&b)?;
        return Ok(vec![strip_one(&a)?, strip_one(&b)?]);
    }
    if let Some(pos) = rest.find(" \"") {
        let a = &rest[..pos];
        let b = unquote(&rest[pos + 1..]).map(|(n, _)| n).ok_or_else(|| {
            fail(
                errors::PATCH_INVALID,
                format!("badly quoted name in `{rest}`"),
            )
        })?;
        check_name(a)?;
        check_name(&b)?;
        return Ok(vec![strip_one(a)?, strip_one(&b)?]);
    }
    for token in rest.split(' ') {
        if token.split('/').any(|p| p == "..") {
            return Err(escapes(format!(
                "the patch header `diff --git {rest}` climbs out with `..`"
            )));
        }
    }
    // Unquoted: the split where both sides name the same file after `-p1`.
    for (i, _) in rest.match_indices(' ') {
        let (a, b) = (&rest[..i], &rest[i + 1..]);
        if let (Ok(sa), Ok(sb)) = (strip_one(a), strip_one(b)) {
            if sa == sb {
                check_name(a)?;
                check_name(b)?;
                return Ok(vec![sa]);
            }
        }
    }
    // A rename: the `rename from` / `rename to` lines carry the names.
    Ok(Vec::new())
}

/// Symlink modes in `new file mode`, `new mode`, `old mode` and `index` lines.
fn is_symlink_mode_line(line: &str) -> bool {
    let mode_of = |prefix: &str| line.strip_prefix(prefix).map(str::trim);
    if ["new file mode ", "new mode ", "old mode "]
        .iter()
        .any(|p| mode_of(p) == Some("120000"))
    {
        return true;
    }
    line.strip_prefix("index ")
        .is_some_and(|rest| rest.split_whitespace().nth(1) == Some("120000"))
}

/// `@@ -12,3 +12,4 @@` -> (3, 4); a missing count is 1.
fn hunk_counts(line: &str) -> Option<(u64, u64)> {
    let body = line.strip_prefix("@@ -")?;
    let (old, rest) = body.split_once(" +")?;
    let (new, _) = rest.split_once(" @@")?;
    let count = |range: &str| -> Option<u64> {
        match range.split_once(',') {
            Some((_, n)) => n.parse().ok(),
            None => range.parse::<u64>().ok().map(|_| 1),
        }
    };
    Some((count(old)?, count(new)?))
}

/// Every file a patch touches, as worktree-relative paths (deduplicated, in patch order).
pub fn patch_paths(patch: &str) -> ToolResult<Vec<String>> {
    let mut files: Vec<String> = Vec::new();
    let mut push = |f: String| {
        if !files.contains(&f) {
            files.push(f);
        }
    };
    let mut hunk: Option<(u64, u64)> = None;
    let mut headers = 0usize;
    for raw in patch.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some((old, new)) = hunk {
            let counted = match line.as_bytes().first() {
                Some(b' ') | None => Some((old.saturating_sub(1), new.saturating_sub(1))),
                Some(b'-') => Some((old.saturating_sub(1), new)),
                Some(b'+') => Some((old, new.saturating_sub(1))),
                Some(b'\\') => Some((old, new)),
                // Not a hunk line: the hunk was short; read the line as a header.
                _ => None,
            };
            if let Some((o, n)) = counted {
                hunk = (o > 0 || n > 0).then_some((o, n));
                continue;
            }
            hunk = None;
        }
        if let Some(rest) = line.strip_prefix("diff --git ") {
            headers += 1;
            for name in git_header_names(rest)? {
                push(name);
            }
        } else if let Some(rest) = line
            .strip_prefix("--- ")
            .or_else(|| line.strip_prefix("+++ "))
        {
            headers += 1;
            if let Some(name) = traditional_name(rest)? {
                push(name);
            }
        } else if let Some(rest) = ["rename from ", "rename to ", "copy from ", "copy to "]
            .iter()
            .find_map(|p| line.strip_prefix(p))
        {
            // These names carry no `a/` / `b/` prefix.
            let name = if rest.starts_with('"') {
                unquote(rest).map(|(n, _)| n).ok_or_else(|| {
                    fail(errors::PATCH_INVALID, format!("badly quoted name `{rest}`"))
                })?
            } else {
                rest.to_string()
            };
            check_name(&name)?;
            push(name);
        } else if is_symlink_mode_line(line) {
            return Err(fail(
                errors::PATCH_SYMLINK_REFUSED,
                format!("the patch creates or changes a symbolic link (`{line}`); links are refused because they can lead out of the worktree"),
            ));
        } else if line.starts_with("@@ ") {
            hunk = hunk_counts(line);
            if hunk.is_none() {
                return Err(fail(
                    errors::PATCH_INVALID,
                    format!("malformed hunk header `{line}`"),
                ));
            }
        }
    }
    if headers == 0 || files.is_empty() {
        return Err(fail(
            errors::PATCH_INVALID,
            "the patch has no file headers (`diff --git`, `---` / `+++`): expected a unified diff",
        ));
    }
    Ok(files)
}

/// Refuse `rel` when any existing part of it, inside `worktree` (canonical), is a symlink that
/// resolves outside the worktree (or nowhere).
pub fn check_inside(worktree: &Path, rel: &str) -> ToolResult<()> {
    let mut current = worktree.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
        current.push(part);
        let Ok(meta) = std::fs::symlink_metadata(&current) else {
            // The rest does not exist yet: nothing more to resolve.
            return Ok(());
        };
        if meta.file_type().is_symlink() {
            match current.canonicalize() {
                Ok(target) if target.starts_with(worktree) => {}
                Ok(target) => {
                    return Err(escapes(format!(
                        "the patch writes `{rel}`, which goes through a symlink to `{}`, outside the worktree",
                        target.display()
                    )))
                }
                Err(_) => {
                    return Err(escapes(format!(
                        "the patch writes `{rel}`, which goes through a symlink that resolves nowhere"
                    )))
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn code(patch: &str) -> String {
        patch_paths(patch)
            .unwrap_err()
            .error_code()
            .unwrap_or("")
            .to_string()
    }

    #[test]
    fn names_are_read_like_git_apply_reads_them() {
        let p = "diff --git a/src/x.rs b/src/x.rs\nindex 1..2 100644\n--- a/src/x.rs\n+++ b/src/x.rs\n@@ -1,2 +1,2 @@\n a\n--- not a header, a removed line\n+b\n";
        assert_eq!(patch_paths(p).unwrap(), vec!["src/x.rs"]);
        let p = "diff --git a/old b/new\nsimilarity index 100%\nrename from old\nrename to new\n";
        assert_eq!(patch_paths(p).unwrap(), vec!["old", "new"]);
        let p = "--- \"a/tab\\there\"\n+++ \"b/tab\\there\"\n@@ -0,0 +1 @@\n+x\n";
        assert_eq!(patch_paths(p).unwrap(), vec!["tab\there"]);
        let p = "--- /dev/null\n+++ b/new.txt\t2026-01-01\n@@ -0,0 +1 @@\n+x\n";
        assert_eq!(patch_paths(p).unwrap(), vec!["new.txt"]);
    }

    #[test]
    fn escaping_names_are_refused() {
        for p in [
            "--- a/../x\n+++ b/../x\n@@ -1 +1 @@\n-a\n+b\n",
            "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
            "diff --git a/x b/x\nrename from x\nrename to ../../y\n",
            "diff --git a/../x b/../x\nold mode 100644\nnew mode 100755\n",
            "--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-a\n+b\n",
            "--- \"a/\\056\\056/x\"\n+++ \"b/\\056\\056/x\"\n@@ -1 +1 @@\n-a\n+b\n",
        ] {
            assert_eq!(code(p), errors::PATCH_ESCAPES_WORKTREE, "{p}");
        }
        let link = "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n";
        assert_eq!(code(link), errors::PATCH_SYMLINK_REFUSED);
        assert_eq!(code("just text\n"), errors::PATCH_INVALID);
    }
}
