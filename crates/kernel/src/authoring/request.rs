//! The authoring request (what a `--spec-file` holds) and its validation.
//!
//! Deserialization is strict at every level: an unknown key is an error, and so is a key that
//! belongs to another template (`allowed_urls` on a `file.read_text`). Templates are read in two
//! steps, a flat raw struct and then a conversion on `template_id`, because serde's internally
//! tagged enums lose the detail of the error (which field, which template).
//!
//! Range and format rules are not checked while deserializing but by [`validate_request`], which
//! returns every problem at once, each with the path of its field.

use super::AuthoringIssue;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// The template ids, in the order the wizard lists them.
pub const TEMPLATE_IDS: &[&str] = &["file.read_text", "file.write_text", "http.get_json"];

/// Default `max_bytes` of the file templates.
pub const FILE_MAX_BYTES_DEFAULT: u64 = 131_072;
/// Default `max_bytes` of `http.get_json`.
pub const HTTP_MAX_BYTES_DEFAULT: u64 = 262_144;
/// Default `timeout_ms` of `http.get_json`.
pub const HTTP_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Upper bound of every `max_bytes`.
pub const MAX_BYTES_LIMIT: u64 = 1_048_576;
/// Bounds of `timeout_ms`.
pub const TIMEOUT_MS_RANGE: (u64, u64) = (100, 30_000);
/// Most URLs one `http.get_json` tool may list.
pub const MAX_ALLOWED_URLS: usize = 64;

/// Scope patterns refused outright (after trimming): they cover the whole workspace.
pub const BROAD_PATTERNS: &[&str] = &["*", "**", "**/*", "./**", "./**/*"];

/// A request to generate one pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthoringRequest {
    /// Kebab-case pack id; also the directory name.
    pub pack_id: String,
    /// Semantic version of the pack.
    pub version: String,
    /// At least one task type; generation trims, deduplicates and sorts them.
    pub task_types: Vec<String>,
    /// Optional one-line description of the pack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// At least one tool, each from a template; tool names are unique.
    pub templates: Vec<TemplateRequest>,
}

/// One tool to generate, by template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawTemplate", into = "RawTemplate")]
pub enum TemplateRequest {
    /// `file.read_text`: read one UTF-8 file under a path scope.
    ReadText(FileTemplate),
    /// `file.write_text`: write one UTF-8 file under a path scope.
    WriteText(FileTemplate),
    /// `http.get_json`: GET one of a fixed list of https URLs and return its JSON object.
    HttpGetJson(HttpGetJsonTemplate),
}

/// The fields of `file.read_text` and `file.write_text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTemplate {
    pub tool_name: String,
    pub description: Option<String>,
    /// Glob of the files the tool may touch, relative to the workspace; must start with a literal
    /// directory or file name.
    pub scope_pattern: String,
    /// Largest file read or written, in bytes (1..=1,048,576; default 131,072).
    pub max_bytes: u64,
}

/// The fields of `http.get_json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGetJsonTemplate {
    pub tool_name: String,
    pub description: Option<String>,
    /// The only URLs the tool may GET: https, no credentials, query or fragment (1..=64).
    pub allowed_urls: Vec<String>,
    /// Request timeout in milliseconds (100..=30,000; default 5,000).
    pub timeout_ms: u64,
    /// Largest response body, in bytes (1..=1,048,576; default 262,144).
    pub max_bytes: u64,
}

impl TemplateRequest {
    /// `file.read_text`, `file.write_text` or `http.get_json`.
    pub fn template_id(&self) -> &'static str {
        match self {
            TemplateRequest::ReadText(_) => TEMPLATE_IDS[0],
            TemplateRequest::WriteText(_) => TEMPLATE_IDS[1],
            TemplateRequest::HttpGetJson(_) => TEMPLATE_IDS[2],
        }
    }

    pub fn tool_name(&self) -> &str {
        match self {
            TemplateRequest::ReadText(t) | TemplateRequest::WriteText(t) => &t.tool_name,
            TemplateRequest::HttpGetJson(t) => &t.tool_name,
        }
    }

    pub fn description(&self) -> Option<&str> {
        match self {
            TemplateRequest::ReadText(t) | TemplateRequest::WriteText(t) => {
                t.description.as_deref()
            }
            TemplateRequest::HttpGetJson(t) => t.description.as_deref(),
        }
    }
}

/// The flat wire form of a template: every field any template has.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    template_id: String,
    tool_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allowed_urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_bytes: Option<u64>,
}

const FILE_FIELDS: &str = "`template_id`, `tool_name`, `description`, `scope_pattern`, `max_bytes`";
const HTTP_FIELDS: &str =
    "`template_id`, `tool_name`, `description`, `allowed_urls`, `timeout_ms`, `max_bytes`";

impl TryFrom<RawTemplate> for TemplateRequest {
    type Error = String;

    fn try_from(raw: RawTemplate) -> Result<Self, String> {
        let id = raw.template_id.as_str();
        let unknown = |field: &str, expected: &str| {
            format!("unknown field `{field}` for template `{id}`, expected one of {expected}")
        };
        match id {
            "file.read_text" | "file.write_text" => {
                if raw.allowed_urls.is_some() {
                    return Err(unknown("allowed_urls", FILE_FIELDS));
                }
                if raw.timeout_ms.is_some() {
                    return Err(unknown("timeout_ms", FILE_FIELDS));
                }
                let Some(scope_pattern) = raw.scope_pattern else {
                    return Err(format!("missing field `scope_pattern` for template `{id}`"));
                };
                let file = FileTemplate {
                    tool_name: raw.tool_name,
                    description: raw.description,
                    scope_pattern,
                    max_bytes: raw.max_bytes.unwrap_or(FILE_MAX_BYTES_DEFAULT),
                };
                Ok(if id == "file.read_text" {
                    TemplateRequest::ReadText(file)
                } else {
                    TemplateRequest::WriteText(file)
                })
            }
            "http.get_json" => {
                if raw.scope_pattern.is_some() {
                    return Err(unknown("scope_pattern", HTTP_FIELDS));
                }
                let Some(allowed_urls) = raw.allowed_urls else {
                    return Err(format!("missing field `allowed_urls` for template `{id}`"));
                };
                Ok(TemplateRequest::HttpGetJson(HttpGetJsonTemplate {
                    tool_name: raw.tool_name,
                    description: raw.description,
                    allowed_urls,
                    timeout_ms: raw.timeout_ms.unwrap_or(HTTP_TIMEOUT_MS_DEFAULT),
                    max_bytes: raw.max_bytes.unwrap_or(HTTP_MAX_BYTES_DEFAULT),
                }))
            }
            other => Err(format!(
                "unknown template_id `{other}`, expected one of `{}`",
                TEMPLATE_IDS.join("`, `")
            )),
        }
    }
}

impl From<TemplateRequest> for RawTemplate {
    fn from(template: TemplateRequest) -> Self {
        let template_id = template.template_id().to_owned();
        match template {
            TemplateRequest::ReadText(t) | TemplateRequest::WriteText(t) => RawTemplate {
                template_id,
                tool_name: t.tool_name,
                description: t.description,
                scope_pattern: Some(t.scope_pattern),
                allowed_urls: None,
                timeout_ms: None,
                max_bytes: Some(t.max_bytes),
            },
            TemplateRequest::HttpGetJson(t) => RawTemplate {
                template_id,
                tool_name: t.tool_name,
                description: t.description,
                scope_pattern: None,
                allowed_urls: Some(t.allowed_urls),
                timeout_ms: Some(t.timeout_ms),
                max_bytes: Some(t.max_bytes),
            },
        }
    }
}

type Pattern = LazyLock<Result<Regex, regex::Error>>;

/// A pattern that failed to compile (a bug caught by the unit tests) matches nothing, so
/// validation fails closed.
fn matches(pattern: &Pattern, text: &str) -> bool {
    pattern.as_ref().is_ok_and(|re| re.is_match(text))
}

static PACK_ID: Pattern = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$"));
static SEMVER: Pattern =
    LazyLock::new(|| Regex::new(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z-.]+)?(?:\+[0-9A-Za-z-.]+)?$"));
static TOOL_NAME: Pattern =
    LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9]*(?:[:-][a-z][a-z0-9-]*)*$"));
static TRAVERSAL: Pattern = LazyLock::new(|| Regex::new(r"(^|/)\.\.(/|$)"));

/// The message for an invalid pack id, or `None`.
pub(crate) fn check_pack_id(pack_id: &str) -> Option<String> {
    (!matches(&PACK_ID, pack_id)).then(|| {
        format!(
            "pack_id must be kebab-case: lowercase letters and digits in words joined by single \
             hyphens, starting with a letter (for example `customer-ops`), got `{pack_id}`"
        )
    })
}

/// The message for an invalid version, or `None`.
pub(crate) fn check_version(version: &str) -> Option<String> {
    (!matches(&SEMVER, version))
        .then(|| format!("version must be a semantic version such as `1.0.0`, got `{version}`"))
}

/// The message for an invalid tool name, or `None`.
pub(crate) fn check_tool_name(tool_name: &str) -> Option<String> {
    (!matches(&TOOL_NAME, tool_name)).then(|| {
        format!(
            "tool_name must be lowercase and use safe separators (`:` or `-` before a letter), \
             for example `notes:read` or `read-customer-notes`, got `{tool_name}`"
        )
    })
}

fn check_description(description: &str) -> Option<String> {
    if description.trim().is_empty() {
        Some("description must not be empty when given".to_owned())
    } else if description.chars().any(char::is_control) {
        Some("description must be a single line without control characters".to_owned())
    } else {
        None
    }
}

/// The file a tool's implementation is generated into: `tool-impl/<name, ':' → '-'>.py`.
pub(crate) fn tool_file(tool_name: &str) -> String {
    format!("tool-impl/{}.py", tool_name.replace(':', "-"))
}

/// The literal part of a scope pattern that every path it covers starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScopePrefix {
    /// Normalized (no leading `./` or `/`, no empty or `.` segments, no trailing `/`); empty when
    /// the pattern starts with a wildcard.
    pub text: String,
    /// True when the prefix ends at a path-segment boundary (the pattern has no wildcard, or its
    /// first wildcard starts a segment): then a path is inside when it equals the prefix or starts
    /// with `prefix/`. Otherwise the prefix is cut mid-segment (`notes/draft-*`) and a plain string
    /// prefix test applies.
    pub is_directory: bool,
}

/// The pattern up to its first glob metacharacter (`*?[{`), normalized.
pub(crate) fn scope_prefix(pattern: &str) -> ScopePrefix {
    let cut = pattern.find(['*', '?', '[', '{']);
    let literal = &pattern[..cut.unwrap_or(pattern.len())];
    let is_directory = cut.is_none() || literal.is_empty() || literal.ends_with('/');
    let mut segments: Vec<&str> = literal.split('/').collect();
    let partial = if is_directory { None } else { segments.pop() };
    let mut kept: Vec<&str> = segments
        .into_iter()
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    kept.extend(partial);
    ScopePrefix {
        text: kept.join("/"),
        is_directory,
    }
}

/// Messages for an invalid scope pattern (empty when it is fine).
pub(crate) fn check_scope_pattern(pattern: &str, write: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let trimmed = pattern.trim();
    if trimmed.is_empty() {
        problems.push("scope_pattern must not be empty".to_owned());
        return problems;
    }
    if pattern.contains('\0') || matches(&TRAVERSAL, pattern) {
        problems.push("scope_pattern contains unsafe traversal or null-byte content".to_owned());
    } else if pattern.chars().any(char::is_control) {
        problems.push("scope_pattern must not contain control characters".to_owned());
    }
    if trimmed != pattern {
        problems.push("scope_pattern must not start or end with whitespace".to_owned());
    }
    let bytes = trimmed.as_bytes();
    let drive_letter = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if trimmed.starts_with('/') || trimmed.starts_with('\\') || drive_letter {
        problems.push(
            "scope_pattern must be relative to the workspace, not an absolute path".to_owned(),
        );
    }
    if BROAD_PATTERNS.contains(&trimmed) {
        problems.push(if write {
            "scope_pattern is too broad; wildcard write scope is forbidden (use a constrained \
             pattern such as `reports/**/*.md`)"
                .to_owned()
        } else {
            "scope_pattern is too broad; wildcard scope is forbidden (use a constrained pattern \
             such as `notes/**/*.md`)"
                .to_owned()
        });
    } else if problems.is_empty() && scope_prefix(trimmed).text.is_empty() {
        problems.push(
            "scope_pattern is too broad; it must start with a literal directory or file name \
             before any wildcard (for example `notes/**/*.md`)"
                .to_owned(),
        );
    }
    problems
}

/// Messages for one allow-listed URL (empty when it is fine).
pub(crate) fn check_url(raw: &str) -> Vec<String> {
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        // WHATWG parsing silently drops tabs and newlines and trims spaces, so the URL fetched
        // would differ from the one listed.
        return vec!["allowed_urls must not contain whitespace or control characters".to_owned()];
    }
    let url = match url::Url::parse(raw) {
        Ok(url) => url,
        Err(err) => {
            return vec![format!(
                "allowed_urls must be absolute https:// URLs; `{raw}` does not parse ({err})"
            )]
        }
    };
    let mut problems = Vec::new();
    if url.scheme() != "https" {
        problems.push(format!("allowed_urls must use https://, got `{raw}`"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        problems.push("allowed_urls cannot embed credentials".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        problems.push("allowed_urls must not include query params or fragments".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        problems.push(format!("allowed_urls must name a host, got `{raw}`"));
    }
    problems
}

/// Problems with a list of URLs, each with its sub-path (`allowed_urls[2]`).
pub(crate) fn check_urls(urls: &[String]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if urls.is_empty() || urls.len() > MAX_ALLOWED_URLS {
        problems.push((
            "allowed_urls".to_owned(),
            format!(
                "allowed_urls must list between 1 and {MAX_ALLOWED_URLS} URLs, got {}",
                urls.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for (j, url) in urls.iter().enumerate() {
        let path = format!("allowed_urls[{j}]");
        for message in check_url(url) {
            problems.push((path.clone(), message));
        }
        if !seen.insert(url.as_str()) {
            problems.push((path, format!("duplicate URL `{url}` in allowed_urls")));
        }
    }
    problems
}

fn check_range(value: u64, (low, high): (u64, u64), field: &str) -> Option<String> {
    (!(low..=high).contains(&value))
        .then(|| format!("{field} must be between {low} and {high}, got {value}"))
}

/// Checks every rule of the request and reports every problem, each with the path of its field.
pub fn validate_request(req: &AuthoringRequest) -> Result<(), Vec<AuthoringIssue>> {
    let mut issues = Vec::new();
    let mut push = |path: String, message: String| issues.push(AuthoringIssue { path, message });

    if let Some(m) = check_pack_id(&req.pack_id) {
        push("pack_id".into(), m);
    }
    if let Some(m) = check_version(&req.version) {
        push("version".into(), m);
    }
    if req.task_types.is_empty() {
        push(
            "task_types".into(),
            "task_types must list at least one task type".into(),
        );
    }
    for (i, task_type) in req.task_types.iter().enumerate() {
        if task_type.trim().is_empty() {
            push(
                format!("task_types[{i}]"),
                "task types must not be empty".into(),
            );
        }
    }
    if let Some(m) = req.description.as_deref().and_then(check_description) {
        push("description".into(), m);
    }
    if req.templates.is_empty() {
        push(
            "templates".into(),
            "templates must list at least one template".into(),
        );
    }

    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut files: BTreeMap<String, &str> = BTreeMap::new();
    for (i, template) in req.templates.iter().enumerate() {
        let base = format!("templates[{i}]");
        let name = template.tool_name();
        if let Some(m) = check_tool_name(name) {
            push(format!("{base}.tool_name"), m);
        } else if let Some(first) = names.get(name) {
            push(
                format!("{base}.tool_name"),
                format!("duplicate tool_name `{name}` (also used by templates[{first}])"),
            );
        } else if let Some(other) = files.get(&tool_file(name)) {
            push(
                format!("{base}.tool_name"),
                format!(
                    "tool_name `{name}` would share the implementation file `{}` with `{other}`",
                    tool_file(name)
                ),
            );
        }
        names.entry(name).or_insert(i);
        files.entry(tool_file(name)).or_insert(name);
        if let Some(m) = template.description().and_then(check_description) {
            push(format!("{base}.description"), m);
        }
        match template {
            TemplateRequest::ReadText(t) | TemplateRequest::WriteText(t) => {
                let write = matches!(template, TemplateRequest::WriteText(_));
                for m in check_scope_pattern(&t.scope_pattern, write) {
                    push(format!("{base}.scope_pattern"), m);
                }
                if let Some(m) = check_range(t.max_bytes, (1, MAX_BYTES_LIMIT), "max_bytes") {
                    push(format!("{base}.max_bytes"), m);
                }
            }
            TemplateRequest::HttpGetJson(t) => {
                for (sub, m) in check_urls(&t.allowed_urls) {
                    push(format!("{base}.{sub}"), m);
                }
                if let Some(m) = check_range(t.timeout_ms, TIMEOUT_MS_RANGE, "timeout_ms") {
                    push(format!("{base}.timeout_ms"), m);
                }
                if let Some(m) = check_range(t.max_bytes, (1, MAX_BYTES_LIMIT), "max_bytes") {
                    push(format!("{base}.max_bytes"), m);
                }
            }
        }
    }

    if issues.is_empty() {
        Ok(())
    } else {
        Err(issues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile() {
        for pattern in [&PACK_ID, &SEMVER, &TOOL_NAME, &TRAVERSAL] {
            assert!(pattern.is_ok());
        }
    }

    #[test]
    fn scope_prefixes() {
        let cases = [
            ("notes/**/*.md", "notes", true),
            ("./notes/**", "notes", true),
            ("notes/./drafts//*.md", "notes/drafts", true),
            ("reports/out.md", "reports/out.md", true),
            ("notes/", "notes", true),
            ("notes/draft-*.md", "notes/draft-", false),
            ("*.md", "", true),
            ("**/*.md", "", true),
            (".*", ".", false),
            ("./*", "", true),
        ];
        for (pattern, text, is_directory) in cases {
            let prefix = scope_prefix(pattern);
            assert_eq!(prefix.text, text, "{pattern}");
            assert_eq!(prefix.is_directory, is_directory, "{pattern}");
        }
    }
}
