//! The import-boundary scan for script packs (KRN-05): a port of the original's
//! `validatePackImportBoundaries` (`original/packs.md` §3.3), with the bare-package allow-list
//! configurable instead of hard-coded.
//!
//! It is a best-effort regex scan, not a parser, kept for parity with the original.
//!
//! # Files scanned
//!
//! The pack listing ([`crate::integrity::list_pack_files`], same exclusions as the hash), keeping
//! paths that
//! - end in `.ts .tsx .mts .cts .js .mjs .cjs` (`.jsx` is not scanned, `.d.ts` is);
//! - do not contain `/__tests__/` (with the leading slash, so a *top-level* `__tests__/x.ts` is
//!   scanned);
//! - do not match `\.config\.[cm]?[jt]sx?$` (such as `vitest.config.ts`) nor
//!   `\.(test|spec)\.[cm]?[jt]sx?$`.
//!
//! # Specifiers
//!
//! Three regexes run over the whole text, comments and string literals included (so
//! `// import x from 'y'` is caught), and the specifiers are deduplicated per file:
//! 1. `import\s+(?:[^'"]*?\s+from\s*)?['"]([^'"]+)['"]`: default, named (also multi-line),
//!    namespace, `import type` and side-effect imports;
//! 2. `export\s+[^'"]*?\s+from\s*['"]([^'"]+)['"]`: `export * from`, `export {…} from`;
//! 3. `import\(\s*['"]([^'"]+)['"]\s*\)`: string-literal dynamic imports.
//!
//! `\s` is JavaScript's whitespace class (which, unlike Rust's, includes U+FEFF and excludes
//! U+0085). As in the original, `require('x')`, `import(variable)`, template literals and
//! `import {a}from'x'` (no space before `from`) are not caught.
//!
//! # Decision per specifier (first match wins)
//!
//! 1. `node:` prefix: allowed;
//! 2. a Node 20 built-in module name ([`NODE_BUILTIN_MODULES`]): allowed;
//! 3. `@lumenflow/kernel` or `@lumenflow/kernel/…`: allowed;
//! 4. any other `@lumenflow/…`: [`ImportViolationKind::DisallowedLumenflowPackage`];
//! 5. an absolute path: [`ImportViolationKind::OutsidePackRoot`];
//! 6. starting with `.`: resolved lexically (no file-system access) against the importing file's
//!    directory, like Node's `path.resolve`; outside the pack root is
//!    [`ImportViolationKind::OutsidePackRoot`];
//! 7. exactly an entry of the bare allow-list (default [`DEFAULT_BARE_IMPORT_ALLOWLIST`],
//!    configurable per workspace): allowed;
//! 8. anything else: [`ImportViolationKind::BarePackage`].
//!
//! # Differences from the original
//!
//! - The allow-list is a parameter instead of the constant `{"simple-git"}`.
//! - Every violation is returned (in file order, then position order) instead of throwing on the
//!   first one; the messages are the original's.
//! - A scanned file that is not valid UTF-8 is an error ([`ScanError::NotUtf8`]) instead of being
//!   decoded lossily.

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;

use crate::integrity::PackFile;

/// The original's hard-coded bare-package allow-list; the default of the configurable one.
pub const DEFAULT_BARE_IMPORT_ALLOWLIST: &[&str] = &["simple-git"];

/// Node 20's `builtinModules` (without the `node:` prefix), pinned: 68 names.
pub const NODE_BUILTIN_MODULES: &[&str] = &[
    "_http_agent",
    "_http_client",
    "_http_common",
    "_http_incoming",
    "_http_outgoing",
    "_http_server",
    "_stream_duplex",
    "_stream_passthrough",
    "_stream_readable",
    "_stream_transform",
    "_stream_wrap",
    "_stream_writable",
    "_tls_common",
    "_tls_wrap",
    "assert",
    "assert/strict",
    "async_hooks",
    "buffer",
    "child_process",
    "cluster",
    "console",
    "constants",
    "crypto",
    "dgram",
    "diagnostics_channel",
    "dns",
    "dns/promises",
    "domain",
    "events",
    "fs",
    "fs/promises",
    "http",
    "http2",
    "https",
    "inspector",
    "inspector/promises",
    "module",
    "net",
    "os",
    "path",
    "path/posix",
    "path/win32",
    "perf_hooks",
    "process",
    "punycode",
    "querystring",
    "readline",
    "readline/promises",
    "repl",
    "stream",
    "stream/consumers",
    "stream/promises",
    "stream/web",
    "string_decoder",
    "sys",
    "timers",
    "timers/promises",
    "tls",
    "trace_events",
    "tty",
    "url",
    "util",
    "util/types",
    "v8",
    "vm",
    "wasi",
    "worker_threads",
    "zlib",
];

/// Extensions of the files that are scanned.
const SCANNED_EXTENSIONS: &[&str] = &[".ts", ".tsx", ".mts", ".cts", ".js", ".mjs", ".cjs"];

/// What is wrong with an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportViolationKind {
    /// An absolute path, or a relative path that resolves outside the pack root.
    OutsidePackRoot,
    /// An `@lumenflow/…` package other than `@lumenflow/kernel`.
    DisallowedLumenflowPackage,
    /// A bare package that is not in the allow-list.
    BarePackage,
}

impl ImportViolationKind {
    /// A stable, machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            ImportViolationKind::OutsidePackRoot => "IMPORT_OUTSIDE_PACK_ROOT",
            ImportViolationKind::DisallowedLumenflowPackage => "IMPORT_LUMENFLOW_PACKAGE",
            ImportViolationKind::BarePackage => "IMPORT_BARE_PACKAGE",
        }
    }
}

/// One import that crosses the pack boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportViolation {
    /// The importing file, relative to the pack root.
    pub file: String,
    /// 1-based line of the specifier's first occurrence.
    pub line: usize,
    /// The specifier as written.
    pub specifier: String,
    /// What is wrong with it.
    pub kind: ImportViolationKind,
}

impl fmt::Display for ImportViolation {
    /// The original's messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, file) = (&self.specifier, &self.file);
        match self.kind {
            ImportViolationKind::OutsidePackRoot => {
                write!(f, "Import \"{s}\" in {file} resolves outside pack root.")
            }
            ImportViolationKind::DisallowedLumenflowPackage => write!(
                f,
                "Import \"{s}\" in {file} is not allowed; only @lumenflow/kernel and Node built-ins are permitted."
            ),
            ImportViolationKind::BarePackage => write!(
                f,
                "Bare package import \"{s}\" in {file} is not allowed; only relative imports, @lumenflow/kernel, and Node built-ins are permitted."
            ),
        }
    }
}

/// A file that could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The file could not be read.
    #[error("cannot read `{file}` for the import scan: {source}")]
    Io {
        /// The file, relative to the pack root.
        file: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid UTF-8.
    #[error("`{file}` is not valid UTF-8; pack source files must be UTF-8 text")]
    NotUtf8 {
        /// The file, relative to the pack root.
        file: String,
    },
    /// The scan's own patterns failed to compile (a bug; the scan fails closed).
    #[error("the import scan patterns failed to compile: {0}")]
    Pattern(regex::Error),
}

impl ScanError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ScanError::Io { .. } => "IO_ERROR",
            ScanError::NotUtf8 { .. } => "SOURCE_NOT_UTF8",
            ScanError::Pattern(_) => "INTERNAL_ERROR",
        }
    }
}

/// JavaScript's `\s`.
const JS_WS: &str = r"[\t\n\x0B\x0C\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}]";

struct Patterns {
    extractors: [Regex; 3],
    excluded_names: [Regex; 2],
}

/// The compiled patterns. They are constants and do compile; should that ever break, the scan
/// fails closed with [`ScanError::Pattern`] instead of panicking or passing everything.
fn patterns() -> Result<&'static Patterns, ScanError> {
    static PATTERNS: OnceLock<Result<Patterns, regex::Error>> = OnceLock::new();
    PATTERNS
        .get_or_init(|| {
            let ws = JS_WS;
            let static_import = format!(r#"import{ws}+(?:[^'"]*?{ws}+from{ws}*)?['"]([^'"]+)['"]"#);
            let re_export = format!(r#"export{ws}+[^'"]*?{ws}+from{ws}*['"]([^'"]+)['"]"#);
            let dynamic_import = format!(r#"import\({ws}*['"]([^'"]+)['"]{ws}*\)"#);
            Ok(Patterns {
                extractors: [
                    Regex::new(&static_import)?,
                    Regex::new(&re_export)?,
                    Regex::new(&dynamic_import)?,
                ],
                excluded_names: [
                    Regex::new(r"\.config\.[cm]?[jt]sx?$")?,
                    Regex::new(r"\.(test|spec)\.[cm]?[jt]sx?$")?,
                ],
            })
        })
        .as_ref()
        .map_err(|e| ScanError::Pattern(e.clone()))
}

/// Whether the import scan looks at the file with this relative path.
pub fn is_scanned_path(rel_path: &str) -> bool {
    SCANNED_EXTENSIONS.iter().any(|ext| rel_path.ends_with(ext))
        && !rel_path.contains("/__tests__/")
        && !patterns().is_ok_and(|p| p.excluded_names.iter().any(|re| re.is_match(rel_path)))
}

/// Scans `files` (as listed by [`crate::integrity::list_pack_files`]) and returns every
/// violation, in file order then position order.
pub fn scan_pack_imports(
    files: &[PackFile],
    bare_allowlist: &[String],
) -> Result<Vec<ImportViolation>, ScanError> {
    let patterns = patterns()?;
    let mut violations = Vec::new();
    for file in files.iter().filter(|f| is_scanned_path(&f.rel_path)) {
        let bytes = std::fs::read(&file.abs_path).map_err(|source| ScanError::Io {
            file: file.rel_path.clone(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| ScanError::NotUtf8 {
            file: file.rel_path.clone(),
        })?;
        let root = pack_root_parts(file);
        let lines = LineIndex::new(&text);
        for (offset, specifier) in extract_specifiers(patterns, &text) {
            if let Some(kind) = classify(specifier, file, &root, bare_allowlist) {
                violations.push(ImportViolation {
                    file: file.rel_path.clone(),
                    line: lines.line_of(offset),
                    specifier: specifier.to_owned(),
                    kind,
                });
            }
        }
    }
    Ok(violations)
}

/// All specifiers in `text`, deduplicated (first occurrence kept), in position order, with the
/// byte offset of each.
fn extract_specifiers<'t>(patterns: &Patterns, text: &'t str) -> Vec<(usize, &'t str)> {
    let mut found: Vec<(usize, &str)> = patterns
        .extractors
        .iter()
        .flat_map(|re| re.captures_iter(text))
        .filter_map(|caps| caps.get(1))
        .map(|m| (m.start(), m.as_str()))
        .collect();
    found.sort_unstable();
    let mut seen = std::collections::HashSet::new();
    found.retain(|(_, s)| seen.insert(*s));
    found
}

/// The decision for one specifier: `None` when allowed.
fn classify(
    specifier: &str,
    file: &PackFile,
    root: &[String],
    bare_allowlist: &[String],
) -> Option<ImportViolationKind> {
    if specifier.starts_with("node:") || NODE_BUILTIN_MODULES.contains(&specifier) {
        return None;
    }
    if specifier == "@lumenflow/kernel" || specifier.starts_with("@lumenflow/kernel/") {
        return None;
    }
    if specifier.starts_with("@lumenflow/") {
        return Some(ImportViolationKind::DisallowedLumenflowPackage);
    }
    if specifier.starts_with('/') || Path::new(specifier).is_absolute() {
        return Some(ImportViolationKind::OutsidePackRoot);
    }
    if specifier.starts_with('.') {
        return if resolves_inside(root, &file.rel_path, specifier) {
            None
        } else {
            Some(ImportViolationKind::OutsidePackRoot)
        };
    }
    if bare_allowlist.iter().any(|allowed| allowed == specifier) {
        return None;
    }
    Some(ImportViolationKind::BarePackage)
}

/// The names of the pack root's path components, derived from the file's absolute path minus its
/// relative path. If that fails, a name no specifier segment can equal stands in for the root.
fn pack_root_parts(file: &PackFile) -> Vec<String> {
    let depth = file.rel_path.split('/').count();
    let mut root = file.abs_path.as_path();
    for _ in 0..depth {
        match root.parent() {
            Some(parent) => root = parent,
            None => return vec!["\0pack-root".to_owned()],
        }
    }
    let parts: Vec<String> = root
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    if parts.is_empty() {
        vec!["\0pack-root".to_owned()]
    } else {
        parts
    }
}

/// Lexical resolution like Node's `path.resolve(dirname(file), specifier)`, then a check that
/// the result is the root or below it. Climbing above the root and back in (`../<root>/x`) counts
/// as inside, as it does in the original.
fn resolves_inside(root: &[String], rel_path: &str, specifier: &str) -> bool {
    let mut stack: Vec<&str> = root.iter().map(String::as_str).collect();
    let mut dir: Vec<&str> = rel_path.split('/').collect();
    dir.pop();
    stack.extend(dir);
    for segment in specifier.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            name => stack.push(name),
        }
    }
    stack.len() >= root.len() && stack.iter().zip(root).all(|(a, b)| *a == b.as_str())
}

/// Maps byte offsets to 1-based line numbers.
struct LineIndex {
    newlines: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        LineIndex {
            newlines: text
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < offset) + 1
    }
}
