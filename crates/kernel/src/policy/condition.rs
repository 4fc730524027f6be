//! The declarative `when` of a rule: which calls a rule applies to.
//!
//! The original engine took a closure; a rule read from YAML needs data instead. A condition is a
//! conjunction: every field that is present must hold.
//!
//! ```yaml
//! when:
//!   tool: "fs:*"            # glob over the tool name
//!   pack: software-delivery # glob over the pack id
//!   lane: backend           # glob over the lane id
//!   permission: [write, admin]   # one permission or a list
//!   input:                  # RFC 6901 JSON pointers into the tool arguments
//!     /path: {starts_with: /etc/}
//!     /mode: {one_of: [overwrite, truncate]}
//!     /force: {equals: true}
//!     /target: {glob: "deploy/**"}
//!     /dry_run: {exists: false}
//!   facts:                  # JSON pointers into the task's pack facts (claim and completion)
//!     /software-delivery/gates/test/status: {one_of: [failed, timed_out]}
//! ```
//!
//! `facts` are what packs recorded about a task: the JSON object in
//! `.lumenflow/state/<pack-slug>/facts/<task-id>.json`, one per pack, seen under the pack's slug
//! (so the pointer above reads the `gates.test.status` the software-delivery pack wrote). The
//! task store loads them for `on_claim` and `on_completion` ([`EvalContext::with_facts`]); tool
//! calls carry none. This is how a pack's tool results decide a completion without the kernel
//! knowing the pack: the pack writes a fact, its manifest rule reads it.
//!
//! # Matching, not matching, and errors
//!
//! | situation | outcome |
//! |---|---|
//! | a context field the condition names is absent (no `tool_name` on a claim, no `lane_id`, no `permission`) | does not match |
//! | the context carries no argument object at all (`tool_arguments` absent: non-tool triggers, non-object input) | `input` does not match (reference vector 13) |
//! | the argument object lacks the pointer, for `exists` | that is what `exists` tests |
//! | the argument object lacks the pointer, for any other matcher | **error** |
//! | `starts_with` or `glob` on a value that is not a string | **error** |
//! | an invalid glob or JSON pointer (normally refused at load by [`validate_condition`]) | **error** |
//! | `equals` / `one_of` against a value of another type | does not match (JSON equality; numbers compare by value) |
//! | the context carries no facts, or the facts lack the pointer (any matcher but `exists`) | `facts` does not match: an absent fact is "nothing recorded", not an error |
//! | a fact of the wrong type for `starts_with` or `glob` | **error** |
//!
//! An error is never "does not match": the cascade turns it into a `deny` naming the rule and the
//! problem, whatever the rule's own decision (the engine cannot fail open). Static problems
//! (invalid globs or pointers) make every evaluation of the rule an error, even when another field
//! would not have matched; the dynamic checks run in the order tool, pack, lane, permission, input
//! and stop at the first field that does not match, so an argument check only runs for the calls
//! the rule is about.
//!
//! Globs are [`globset`] globs with `*` and `?` not crossing `/` and `**` crossing it (tool, pack
//! and lane names contain no `/`, so for them this is ordinary shell globbing). Arguments are
//! matched as given: `starts_with: /etc/` does not see through `/tmp/../etc`; confining paths is
//! the job of scopes, which are checked before rules.

use std::collections::BTreeMap;
use std::fmt;

use globset::{GlobBuilder, GlobMatcher};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::manifest::Permission;
use crate::yaml::FieldPath;

use super::EvalContext;

/// `when:` of a rule. Every present field must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleCondition {
    /// Glob over the tool name, e.g. `proc:*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<GlobPattern>,
    /// Glob over the pack id of the tool (or of the task's domain for claim/completion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<GlobPattern>,
    /// Glob over the lane id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<GlobPattern>,
    /// The tool's declared permission is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<PermissionSet>,
    /// JSON pointer into the tool arguments -> predicate on the value found there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<BTreeMap<String, InputMatch>>,
    /// JSON pointer into the task's pack facts (`/<pack-slug>/...`) -> predicate on the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<BTreeMap<String, InputMatch>>,
}

/// A predicate on one argument value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputMatch {
    /// JSON equality (numbers compare by value: `1` equals `1.0`).
    Equals(Value),
    /// The value is a string with this prefix.
    StartsWith(String),
    /// The value is a string matching this glob.
    Glob(GlobPattern),
    /// The pointer resolves (`true`) or does not (`false`).
    Exists(bool),
    /// The value equals one of these.
    OneOf(Vec<Value>),
}

/// The matcher names, in the order they are listed to authors.
pub const INPUT_MATCHERS: &[&str] = &["equals", "starts_with", "glob", "exists", "one_of"];

/// The YAML shape of [`InputMatch`]: a mapping with exactly one matcher key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputMatchRepr {
    #[serde(
        default,
        deserialize_with = "present_value",
        skip_serializing_if = "Option::is_none"
    )]
    equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    starts_with: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    glob: Option<GlobPattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exists: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    one_of: Option<Vec<Value>>,
}

/// `equals: null` is a present value (`Some(Null)`), not an absent key.
fn present_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl TryFrom<InputMatchRepr> for InputMatch {
    type Error = String;

    fn try_from(r: InputMatchRepr) -> Result<Self, String> {
        let mut found = Vec::new();
        if let Some(v) = r.equals {
            found.push(InputMatch::Equals(v));
        }
        if let Some(v) = r.starts_with {
            found.push(InputMatch::StartsWith(v));
        }
        if let Some(v) = r.glob {
            found.push(InputMatch::Glob(v));
        }
        if let Some(v) = r.exists {
            found.push(InputMatch::Exists(v));
        }
        if let Some(v) = r.one_of {
            found.push(InputMatch::OneOf(v));
        }
        if found.len() == 1 {
            if let Some(m) = found.pop() {
                return Ok(m);
            }
        }
        Err(format!(
            "expected exactly one matcher ({}), found {}",
            list(INPUT_MATCHERS),
            found.len()
        ))
    }
}

impl From<InputMatch> for InputMatchRepr {
    fn from(m: InputMatch) -> Self {
        let mut r = InputMatchRepr::default();
        match m {
            InputMatch::Equals(v) => r.equals = Some(v),
            InputMatch::StartsWith(v) => r.starts_with = Some(v),
            InputMatch::Glob(v) => r.glob = Some(v),
            InputMatch::Exists(v) => r.exists = Some(v),
            InputMatch::OneOf(v) => r.one_of = Some(v),
        }
        r
    }
}

impl Serialize for InputMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        InputMatchRepr::from(self.clone()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for InputMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a visitor, so that "exactly one matcher" is reported at the matcher's own path.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InputMatch;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a mapping with one of {}", list(INPUT_MATCHERS))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<InputMatch, A::Error> {
                let repr = InputMatchRepr::deserialize(MapAccessDeserializer::new(map))?;
                InputMatch::try_from(repr).map_err(de::Error::custom)
            }
        }
        d.deserialize_map(V)
    }
}

impl InputMatch {
    pub fn name(&self) -> &'static str {
        match self {
            InputMatch::Equals(_) => "equals",
            InputMatch::StartsWith(_) => "starts_with",
            InputMatch::Glob(_) => "glob",
            InputMatch::Exists(_) => "exists",
            InputMatch::OneOf(_) => "one_of",
        }
    }
}

/// A glob, compiled once when it is built or read. An invalid glob is kept (so the file can be
/// read and every problem reported together) and reported by [`validate_condition`]; evaluating
/// it is an error.
#[derive(Clone)]
pub struct GlobPattern {
    source: String,
    matcher: Result<GlobMatcher, String>,
}

impl GlobPattern {
    pub fn new(source: impl Into<String>) -> Self {
        let source = source.into();
        let matcher = GlobBuilder::new(&source)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map(|g| g.compile_matcher())
            .map_err(|e| e.kind().to_string());
        GlobPattern { source, matcher }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Why the glob is invalid, if it is.
    pub fn error(&self) -> Option<&str> {
        self.matcher.as_ref().err().map(String::as_str)
    }

    /// Whether `text` matches; an invalid glob is an error.
    pub fn is_match(&self, text: &str) -> Result<bool, String> {
        match &self.matcher {
            Ok(m) => Ok(m.is_match(text)),
            Err(e) => Err(format!("`{}` is not a valid glob: {e}", self.source)),
        }
    }
}

impl fmt::Debug for GlobPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GlobPattern({:?})", self.source)
    }
}

impl PartialEq for GlobPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for GlobPattern {}

impl From<&str> for GlobPattern {
    fn from(s: &str) -> Self {
        GlobPattern::new(s)
    }
}

impl Serialize for GlobPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for GlobPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(GlobPattern::new)
    }
}

/// `permission: write` or `permission: [write, admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionSet(pub Vec<Permission>);

impl PermissionSet {
    pub fn contains(&self, p: Permission) -> bool {
        self.0.contains(&p)
    }
}

impl From<Permission> for PermissionSet {
    fn from(p: Permission) -> Self {
        PermissionSet(vec![p])
    }
}

impl Serialize for PermissionSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

const PERMISSIONS: &[&str] = &["read", "write", "admin"];

fn permission_from_str<E: de::Error>(s: &str) -> Result<Permission, E> {
    match s {
        "read" => Ok(Permission::Read),
        "write" => Ok(Permission::Write),
        "admin" => Ok(Permission::Admin),
        other => Err(E::unknown_variant(other, PERMISSIONS)),
    }
}

impl<'de> Deserialize<'de> for PermissionSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PermissionSet;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a permission (read, write, admin) or a list of them")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<PermissionSet, E> {
                permission_from_str(s).map(PermissionSet::from)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PermissionSet, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element::<Permission>()? {
                    out.push(p);
                }
                Ok(PermissionSet(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One thing wrong with a rule or its condition, at a path in the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    pub path: FieldPath,
    pub message: String,
    pub help: Option<&'static str>,
}

const GLOB_HELP: &str =
    "globs use `*` and `?` (not crossing `/`), `**` (crossing `/`), `[abc]` and `{a,b}`";
const POINTER_HELP: &str =
    "write a JSON pointer such as `/path` or `/options/mode`; escape `~` as `~0` and `/` as `~1`";

/// Everything wrong with a condition that can be known before any call: invalid globs and
/// pointers, and parts that can never match (an empty `when`, an empty list). `at` is the path of
/// the `when` field itself.
pub fn validate_condition(c: &RuleCondition, at: &FieldPath) -> Vec<RuleProblem> {
    let mut out = Vec::new();
    let mut push = |path: FieldPath, message: String, help: Option<&'static str>| {
        out.push(RuleProblem {
            path,
            message,
            help,
        })
    };
    if c.tool.is_none()
        && c.pack.is_none()
        && c.lane.is_none()
        && c.permission.is_none()
        && c.input.is_none()
        && c.facts.is_none()
    {
        push(
            at.clone(),
            // The message predates `facts` (tests and tooling match it); the help names it.
            "`when` must set at least one of `tool`, `pack`, `lane`, `permission`, `input`".into(),
            Some("set `facts` to test what packs recorded about the task, or remove `when` for a rule that applies to every evaluation of its trigger"),
        );
    }
    for (field, glob) in [("tool", &c.tool), ("pack", &c.pack), ("lane", &c.lane)] {
        if let Some(e) = glob.as_ref().and_then(GlobPattern::error) {
            push(
                at.key(field),
                format!(
                    "`{}` is not a valid glob: {e}",
                    glob.as_ref().map_or("", |g| g.as_str())
                ),
                Some(GLOB_HELP),
            );
        }
    }
    if c.permission.as_ref().is_some_and(|p| p.0.is_empty()) {
        push(
            at.key("permission"),
            "permission list must not be empty".into(),
            None,
        );
    }
    for (field, map) in [("input", &c.input), ("facts", &c.facts)] {
        let Some(map) = map else { continue };
        if map.is_empty() {
            push(
                at.key(field),
                format!("`{field}` must name at least one pointer"),
                None,
            );
        }
        for (pointer, m) in map {
            let p = at.key(field).key(pointer.clone());
            if let Err(e) = check_pointer(pointer) {
                push(p.clone(), e, Some(POINTER_HELP));
            }
            match m {
                InputMatch::Glob(g) => {
                    if let Some(e) = g.error() {
                        push(
                            p.key("glob"),
                            format!("`{}` is not a valid glob: {e}", g.as_str()),
                            Some(GLOB_HELP),
                        );
                    }
                }
                InputMatch::OneOf(values) if values.is_empty() => push(
                    p.key("one_of"),
                    "`one_of` must list at least one value".into(),
                    None,
                ),
                _ => {}
            }
        }
    }
    out
}

/// RFC 6901 syntax, restricted to pointers into the argument object (so not the empty pointer).
fn check_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.starts_with('/') {
        return Err(format!(
            "`{pointer}` is not a JSON pointer into the tool arguments: it must start with `/`"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "`{pointer}` is not a valid JSON pointer: `~` must be followed by `0` or `1`"
            ));
        }
    }
    Ok(())
}

/// The value `pointer` designates inside `args`, if any. The pointer must be valid.
fn resolve<'a>(args: &'a Map<String, Value>, pointer: &str) -> Option<&'a Value> {
    let mut tokens = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"));
    let first = tokens.next()?;
    let mut current = args.get(&first)?;
    for token in tokens {
        current = match current {
            Value::Object(map) => map.get(&token)?,
            Value::Array(items) => {
                let canonical = token == "0" || !token.starts_with('0');
                if !canonical || !token.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                items.get(token.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(current)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// JSON equality with numbers compared by value.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(i), Some(j), _, _) => i == j,
                (_, _, Some(i), Some(j)) => i == j,
                _ => match (x.as_f64(), y.as_f64()) {
                    (Some(f), Some(g)) => f == g,
                    _ => false,
                },
            }
        }
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

impl RuleCondition {
    /// Whether the condition holds for `ctx`; `Err` names what could not be evaluated.
    pub fn matches(&self, ctx: &EvalContext) -> Result<bool, String> {
        // Static problems first: an invalid condition is an error for every call.
        for (field, glob) in [
            ("tool", &self.tool),
            ("pack", &self.pack),
            ("lane", &self.lane),
        ] {
            if let Some(e) = glob.as_ref().and_then(GlobPattern::error) {
                return Err(format!(
                    "`when.{field}`: `{}` is not a valid glob: {e}",
                    glob.as_ref().map_or("", |g| g.as_str())
                ));
            }
        }
        for (field, map) in [("input", &self.input), ("facts", &self.facts)] {
            for (pointer, m) in map.iter().flatten() {
                check_pointer(pointer).map_err(|e| format!("`when.{field}`: {e}"))?;
                if let InputMatch::Glob(g) = m {
                    if let Some(e) = g.error() {
                        return Err(format!(
                            "`when.{field}.{pointer}.glob`: `{}` is not a valid glob: {e}",
                            g.as_str()
                        ));
                    }
                }
            }
        }

        for (glob, value) in [
            (&self.tool, &ctx.tool_name),
            (&self.pack, &ctx.pack_id),
            (&self.lane, &ctx.lane_id),
        ] {
            if let Some(glob) = glob {
                match value {
                    Some(v) if glob.is_match(v)? => {}
                    _ => return Ok(false),
                }
            }
        }
        if let Some(set) = &self.permission {
            match ctx.permission {
                Some(p) if set.contains(p) => {}
                _ => return Ok(false),
            }
        }
        if let Some(input) = &self.input {
            let Some(args) = &ctx.tool_arguments else {
                // No argument object at all: the predicate is false (reference vector 13).
                return Ok(false);
            };
            for (pointer, m) in input {
                if !input_matches(args, pointer, m)? {
                    return Ok(false);
                }
            }
        }
        if let Some(wanted) = &self.facts {
            let Some(facts) = &ctx.facts else {
                return Ok(false);
            };
            for (pointer, m) in wanted {
                // An absent fact means nothing was recorded: it does not match (see the table).
                let absent = resolve(facts, pointer).is_none();
                if absent && !matches!(m, InputMatch::Exists(_)) {
                    return Ok(false);
                }
                if !input_matches(facts, pointer, m)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

fn input_matches(args: &Map<String, Value>, pointer: &str, m: &InputMatch) -> Result<bool, String> {
    let found = resolve(args, pointer);
    if let InputMatch::Exists(want) = m {
        return Ok(found.is_some() == *want);
    }
    let Some(value) = found else {
        return Err(format!(
            "`{pointer}` is missing from the tool arguments, so `{}` cannot be checked",
            m.name()
        ));
    };
    let needs_string = |matcher: &str| {
        format!(
            "`{pointer}` is {}, but `{matcher}` needs a string",
            type_name(value)
        )
    };
    match m {
        InputMatch::Equals(expected) => Ok(json_eq(value, expected)),
        InputMatch::OneOf(options) => Ok(options.iter().any(|o| json_eq(value, o))),
        InputMatch::StartsWith(prefix) => match value.as_str() {
            Some(s) => Ok(s.starts_with(prefix.as_str())),
            None => Err(needs_string("starts_with")),
        },
        InputMatch::Glob(glob) => match value.as_str() {
            Some(s) => glob.is_match(s),
            None => Err(needs_string("glob")),
        },
        InputMatch::Exists(_) => Ok(true),
    }
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn facts_match_what_a_pack_recorded_and_an_absent_fact_does_not_match() {
        let failed = RuleCondition {
            facts: Some(
                [(
                    "/sd/gates/test/status".to_string(),
                    InputMatch::OneOf(vec![json!("failed"), json!("timed_out")]),
                )]
                .into_iter()
                .collect(),
            ),
            ..RuleCondition::default()
        };
        let ctx = EvalContext::new(crate::policy::Trigger::OnCompletion, "run-1");
        let with = |v: Value| ctx.clone().with_facts(args(v));
        assert_eq!(failed.matches(&ctx), Ok(false), "no facts at all");
        assert_eq!(failed.matches(&with(json!({}))), Ok(false), "empty facts");
        assert_eq!(
            failed.matches(&with(json!({"other": {"x": 1}}))),
            Ok(false),
            "another pack's facts"
        );
        assert_eq!(
            failed.matches(&with(
                json!({"sd": {"gates": {"test": {"status": "failed"}}}})
            )),
            Ok(true)
        );
        assert_eq!(
            failed.matches(&with(
                json!({"sd": {"gates": {"test": {"status": "passed"}}}})
            )),
            Ok(false)
        );
        let typed = RuleCondition {
            facts: Some(
                [("/sd/n".to_string(), InputMatch::StartsWith("x".into()))]
                    .into_iter()
                    .collect(),
            ),
            ..RuleCondition::default()
        };
        assert!(typed.matches(&with(json!({"sd": {"n": 3}}))).is_err());
        assert!(validate_condition(&typed, &FieldPath::root()).is_empty());
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        let a = args(json!({"a/b": 1, "m~n": 2, "list": [10, 20], "o": {"k": "v"}}));
        assert_eq!(resolve(&a, "/a~1b"), Some(&json!(1)));
        assert_eq!(resolve(&a, "/m~0n"), Some(&json!(2)));
        assert_eq!(resolve(&a, "/list/1"), Some(&json!(20)));
        assert_eq!(resolve(&a, "/list/01"), None);
        assert_eq!(resolve(&a, "/list/-"), None);
        assert_eq!(resolve(&a, "/o/k"), Some(&json!("v")));
        assert_eq!(resolve(&a, "/o/k/deeper"), None);
        assert!(check_pointer("path").is_err());
        assert!(check_pointer("").is_err());
        assert!(check_pointer("/a~2").is_err());
        assert!(check_pointer("/a~").is_err());
        assert!(check_pointer("/a~0~1").is_ok());
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(json_eq(&json!([1, {"a": 2}]), &json!([1.0, {"a": 2}])));
        assert!(!json_eq(&json!(1), &json!("1")));
        assert!(!json_eq(&json!(-1), &json!(u64::MAX)));
    }

    #[test]
    fn globs_do_not_cross_slashes_with_a_single_star() {
        let g = GlobPattern::new("/etc/*");
        assert_eq!(g.is_match("/etc/passwd"), Ok(true));
        assert_eq!(g.is_match("/etc/ssh/sshd_config"), Ok(false));
        assert_eq!(GlobPattern::new("/etc/**").is_match("/etc/ssh/x"), Ok(true));
        assert_eq!(GlobPattern::new("proc:*").is_match("proc:exec"), Ok(true));
        assert!(GlobPattern::new("fs:[").error().is_some());
        assert!(GlobPattern::new("fs:[").is_match("fs:x").is_err());
    }
}
