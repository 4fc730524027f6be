//! The one glob engine every scope decision uses, and the original's `contains`, `overlap` and
//! `narrowest` heuristics ported onto it.
//!
//! Matching rules (KRN-07): globset with `literal_separator(true)`, so `*` never crosses `/` and
//! `**` is special only as a whole path segment (elsewhere it is two `*`). Unlike micromatch,
//! `*` and `**` match dot-segments (`**` covers `.github/x`). Like micromatch, `foo/**` also
//! matches `foo` itself and a leading `./` in a pattern is ignored. Patterns are
//! workspace-relative: an absolute pattern, a `..` segment, a NUL byte or a leading `!` (negation)
//! is refused, so a scope can never mean "everything except" or "outside the workspace".

use std::collections::HashMap;

use globset::{GlobBuilder, GlobMatcher};

/// Most `**` segments a nested pattern may have for `contains` to enumerate every depth
/// combination (4^n synthetic paths); above it, `contains` answers false (fail closed).
const MAX_GLOBSTARS: usize = 5;

/// Synthetic segment standing for one `*` (the original's name).
const SEGMENT: &str = "__segment__";

/// A compiled scope pattern.
#[derive(Debug, Clone)]
pub struct PathGlob {
    pattern: String,
    main: GlobMatcher,
    /// `foo/**` also matches `foo` (micromatch behaviour): the pattern without its trailing `/**`.
    bare: Option<GlobMatcher>,
}

impl PathGlob {
    /// Compile `pattern`, or say why it is not a valid scope pattern.
    pub fn new(pattern: &str) -> Result<PathGlob, String> {
        if pattern.is_empty() {
            return Err("a scope pattern must not be empty".into());
        }
        if pattern.contains('\0') {
            return Err("a scope pattern must not contain a NUL byte".into());
        }
        if pattern.starts_with('!') {
            return Err("negated patterns (`!`) are not supported in scopes".into());
        }
        if pattern.starts_with('/') || has_drive_prefix(pattern) {
            return Err("a scope pattern must be relative to the workspace root".into());
        }
        if pattern.split(['/', '\\']).any(|seg| seg == "..") {
            return Err("a scope pattern must not contain a `..` segment".into());
        }
        let mut body = pattern;
        while let Some(rest) = body.strip_prefix("./") {
            body = rest;
        }
        if body.is_empty() {
            return Err("a scope pattern must name something below the workspace root".into());
        }
        let main = compile(body)?;
        let mut stem = body;
        while let Some(rest) = stem.strip_suffix("/**") {
            stem = rest;
        }
        let bare = if stem.len() != body.len() && !stem.is_empty() {
            Some(compile(stem)?)
        } else {
            None
        };
        Ok(PathGlob {
            pattern: pattern.to_string(),
            main,
            bare,
        })
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Does the workspace-relative path `path` (with `/` separators) match?
    pub fn is_match(&self, path: &str) -> bool {
        self.main.is_match(path) || self.bare.as_ref().is_some_and(|b| b.is_match(path))
    }
}

fn compile(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.kind().to_string())
}

pub(crate) fn has_drive_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Does `path` match `pattern`? An invalid pattern matches nothing.
pub fn glob_matches(pattern: &str, path: &str) -> bool {
    PathGlob::new(pattern).is_ok_and(|g| g.is_match(path))
}

/// Does every path matched by `nested` also match `container`? The original's sampling
/// heuristic (`original/dispatch.md` §1.4), on our glob engine:
///
/// 1. a negated (`!`) or invalid pattern on either side → false;
/// 2. if `nested` has `**` segments: expand them into synthetic paths, replace every other `*`
///    with `__segment__`, keep the paths `nested` itself matches; true iff at least one survives
///    and every survivor matches `container`;
/// 3. otherwise replace every `*` with `__segment__` and test that one path against `container`.
///
/// Deliberate difference: the original replaced *all* `**` with the same depth (0 to 3); we try
/// every combination of depths 0 to 3 per `**` (at most 4^5 paths), so `*/*/**` no longer
/// "contains" `**/**` (whose sample `dir` it does not match). Brace sets and classes in `nested`
/// stay literal text, as in the original (they can only cause false negatives).
pub fn glob_contains(container: &str, nested: &str) -> bool {
    let (Ok(c), Ok(n)) = (PathGlob::new(container), PathGlob::new(nested)) else {
        return false;
    };
    contains_compiled(&c, &n)
}

pub(crate) fn contains_compiled(container: &PathGlob, nested: &PathGlob) -> bool {
    match synthetic_paths(nested.pattern()) {
        Synthetic::Literal(path) => container.is_match(&path),
        Synthetic::Expanded(paths) => {
            let mut any = false;
            for path in paths.iter().filter(|p| nested.is_match(p)) {
                if !container.is_match(path) {
                    return false;
                }
                any = true;
            }
            any
        }
        Synthetic::TooMany => false,
    }
}

enum Synthetic {
    /// `nested` had no `**` segment: the one path, not filtered by `nested`.
    Literal(String),
    /// Every expansion of the `**` segments (possibly empty paths dropped).
    Expanded(Vec<String>),
    TooMany,
}

fn synthetic_paths(nested: &str) -> Synthetic {
    let segments: Vec<&str> = nested.split('/').collect();
    let globstars = segments.iter().filter(|s| **s == "**").count();
    if globstars == 0 {
        return Synthetic::Literal(nested.replace('*', SEGMENT));
    }
    if globstars > MAX_GLOBSTARS {
        return Synthetic::TooMany;
    }
    let combos = 4usize.pow(globstars as u32);
    let mut out = Vec::with_capacity(combos);
    for combo in 0..combos {
        let mut digits = combo;
        let mut parts: Vec<String> = Vec::new();
        let mut star_index = 0usize;
        for seg in &segments {
            if *seg == "**" {
                let depth = digits % 4;
                digits /= 4;
                star_index += 1;
                for d in 1..=depth {
                    parts.push(format!("__depth{star_index}_{d}__"));
                }
            } else {
                parts.push(seg.replace('*', SEGMENT));
            }
        }
        let path = parts.join("/");
        let path = path.trim_matches('/');
        if !path.is_empty() {
            out.push(path.to_string());
        }
    }
    Synthetic::Expanded(out)
}

/// The original's `overlap`: equal strings, containment either way, or one pattern's literal
/// text matched by the other glob. Not a true intersection test: `packages/a/**` and
/// `packages/*/src/**` intersect but do not "overlap" (conservative). A negated or invalid
/// pattern never overlaps anything.
pub fn glob_overlaps(a: &str, b: &str) -> bool {
    let (Ok(ga), Ok(gb)) = (PathGlob::new(a), PathGlob::new(b)) else {
        return false;
    };
    overlaps_compiled(&ga, &gb)
}

pub(crate) fn overlaps_compiled(a: &PathGlob, b: &PathGlob) -> bool {
    a.pattern() == b.pattern()
        || contains_compiled(a, b)
        || contains_compiled(b, a)
        || a.is_match(b.pattern())
        || b.is_match(a.pattern())
}

/// The original's narrowness score: the pattern's length (UTF-16 code units, as JavaScript
/// counts) without `* [ ] { } ( ) ! ? + @`, minus 5 per `*` (so `**` costs 10).
pub fn narrowness_score(pattern: &str) -> i64 {
    let kept: i64 = pattern
        .chars()
        .filter(|c| {
            !matches!(
                c,
                '*' | '[' | ']' | '{' | '}' | '(' | ')' | '!' | '?' | '+' | '@'
            )
        })
        .map(|c| c.len_utf16() as i64)
        .sum();
    let stars = pattern.chars().filter(|c| *c == '*').count() as i64;
    kept - 5 * stars
}

/// The candidate with the highest [`narrowness_score`]; ties keep the first. An empty slice
/// yields `""`.
pub fn narrowest<'a>(candidates: &[&'a str]) -> &'a str {
    let mut best: Option<(&'a str, i64)> = None;
    for c in candidates {
        let score = narrowness_score(c);
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map_or("", |(c, _)| c)
}

/// Compiled patterns and memoised `overlap`/`contains` answers for one intersection.
#[derive(Default)]
pub(crate) struct GlobCache {
    globs: HashMap<String, PathGlob>,
    overlaps: HashMap<(String, String), bool>,
    contains: HashMap<(String, String), bool>,
}

impl GlobCache {
    /// Compile and remember `pattern`.
    pub(crate) fn add(&mut self, pattern: &str) -> Result<(), String> {
        if !self.globs.contains_key(pattern) {
            let glob = PathGlob::new(pattern)?;
            self.globs.insert(pattern.to_string(), glob);
        }
        Ok(())
    }

    pub(crate) fn overlaps(&mut self, a: &str, b: &str) -> bool {
        if a == b {
            return true;
        }
        let key = if a <= b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        };
        if let Some(v) = self.overlaps.get(&key) {
            return *v;
        }
        let v = match (self.globs.get(a), self.globs.get(b)) {
            (Some(ga), Some(gb)) => overlaps_compiled(ga, gb),
            _ => false,
        };
        self.overlaps.insert(key, v);
        v
    }

    /// `container == nested` or `contains(container, nested)`.
    pub(crate) fn covers(&mut self, container: &str, nested: &str) -> bool {
        if container == nested {
            return true;
        }
        let key = (container.to_string(), nested.to_string());
        if let Some(v) = self.contains.get(&key) {
            return *v;
        }
        let v = match (self.globs.get(container), self.globs.get(nested)) {
            (Some(c), Some(n)) => contains_compiled(c, n),
            _ => false,
        };
        self.contains.insert(key, v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_directories_and_bare_directory() {
        assert!(glob_matches("**", ".github/workflows/ci.yml"));
        assert!(glob_matches("*", ".env"));
        assert!(glob_matches("foo/**", "foo"));
        assert!(glob_matches("foo/**/**", "foo"));
        assert!(glob_matches("./foo/**", "foo/x"));
        assert!(!glob_matches("foo/*", "foo/a/b"));
        assert!(!glob_matches("foo/**", "foobar"));
    }

    #[test]
    fn refused_patterns() {
        for bad in [
            "", "!foo", "/etc/**", "a/../b", "..", "C:/x", "a\0b", "./", "[z-a]",
        ] {
            assert!(PathGlob::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn score_matches_the_original() {
        assert_eq!(narrowness_score("**"), -10);
        assert_eq!(narrowness_score("src/*.ts"), 7 - 5);
        assert_eq!(narrowest(&["src/**", "src/*.ts"]), "src/*.ts");
        assert_eq!(narrowest(&["a", "b"]), "a");
        assert_eq!(narrowest(&[]), "");
    }

    #[test]
    fn independent_globstar_depths() {
        // The original's uniform depths said yes here; `dir` matches `**/**` but not `*/*/**`.
        assert!(!glob_contains("*/*/**", "**/**"));
        assert!(glob_contains("**", "**/**"));
    }
}
