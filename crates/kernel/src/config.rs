//! `config get|set`: fully-qualified keys routed to the owner of their root key (KRN-06).
//!
//! A key's first segment decides who owns it: the kernel's writable keys (`control_plane`,
//! `memory_namespace`, `event_namespace`), a pinned pack's `config_key`, a key managed by another
//! command (`packs`, `lanes`, ...), or nobody (an error with a did-you-mean). Writes are validated
//! against the owner's schema before anything touches the disk, then spliced into
//! `workspace.yaml` keeping its comments, and written atomically.

use indexmap::IndexMap;
use serde_json::Value;

use crate::diagnostics::Diagnostics;
use crate::json_schema::CompiledSchema;
use crate::loader::{LoadedPack, PackLoader, PackLocation};
use crate::manifest::{lint, ManifestDocument};
use crate::workspace::{self, check_control_plane, WorkspaceDocument, CONTROL_PLANE_KEYS};
use crate::yaml::{self, de::closest, FieldPath};

pub const WRITABLE_ROOT_KEYS: &[&str] = &["control_plane", "memory_namespace", "event_namespace"];

/// Root keys that `config set` does not write, and what to use instead.
pub const MANAGED_ROOT_KEYS: &[(&str, &str)] = &[
    ("packs", "use `lumenflow pack install` instead"),
    ("lanes", "edit `lanes` in workspace.yaml instead"),
    ("security", "edit `security` in workspace.yaml instead"),
    ("policies", "edit `policies` in workspace.yaml instead"),
    ("sandbox", "edit `sandbox` in workspace.yaml instead"),
    ("id", "it is set once by `lumenflow init`"),
    ("name", "it is set once by `lumenflow init`"),
];

/// Who owns a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    WorkspaceRoot { root: String },
    PackConfig { root: String, pack_id: String },
}

/// A pack's config ownership as `config` needs it.
#[derive(Debug, Clone)]
pub struct PackConfigOwner {
    pub pack_id: String,
    pub config_key: String,
    /// The compiled `config_schema`, or why it could not be loaded; `None` when not declared.
    pub schema: Option<Result<CompiledSchema, String>>,
    pub manifest: ManifestDocument,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--key must not be empty")]
    EmptyKey,
    #[error("Key \"{root}\" is not written by `config set`: {hint}")]
    Managed { root: String, hint: &'static str },
    #[error("Unknown root key \"{root}\".{suggestion} Valid root keys: control_plane, memory_namespace, event_namespace, or a pack config_key ({keys}).")]
    UnknownRoot {
        root: String,
        suggestion: String,
        keys: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("Pack \"{pack_id}\" declares no config_schema. Config writes to `{key}` are rejected because they cannot be validated.")]
    NoSchema { pack_id: String, key: String },
    #[error(
        "Pack \"{pack_id}\" declares a config_schema but the schema could not be loaded: {reason}"
    )]
    SchemaUnavailable { pack_id: String, reason: String },
    #[error("{0}")]
    Workspace(Diagnostics),
    #[error("cannot write `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// `workspace.yaml` changed between the read and the write, or could not be replaced.
    #[error("{0}")]
    Replace(#[from] workspace::ReplaceError),
}

impl ConfigError {
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::EmptyKey => "INVALID_ARGUMENT",
            ConfigError::Managed { .. } => "CONFIG_KEY_MANAGED",
            ConfigError::UnknownRoot { .. } => "CONFIG_KEY_UNKNOWN",
            ConfigError::Invalid(_) => "CONFIG_VALUE_INVALID",
            ConfigError::NoSchema { .. } => "CONFIG_NO_SCHEMA",
            ConfigError::SchemaUnavailable { .. } => "CONFIG_SCHEMA_UNAVAILABLE",
            ConfigError::Workspace(_) => "WORKSPACE_INVALID",
            ConfigError::Io { .. } => "IO_ERROR",
            ConfigError::Replace(e) => e.code(),
        }
    }
}

/// The config owners of the pinned packs that can be found (manifests only: `config` works even
/// when a pack's integrity would not verify, so the owner can fix the workspace).
pub fn config_owners(
    doc: &WorkspaceDocument,
    loader: &PackLoader<'_>,
) -> IndexMap<String, PackConfigOwner> {
    let mut owners = IndexMap::new();
    for pin in &doc.spec.packs {
        let Some(location) = loader.locate(&pin.id) else {
            continue;
        };
        let manifest = match &location {
            PackLocation::Dir(dir) => crate::manifest::read_manifest(dir),
            PackLocation::Builtin(pack) => crate::loader::read_embedded_manifest(pack),
        };
        let Ok(manifest) = manifest else { continue };
        let Some(key) = manifest.manifest.config_key.clone() else {
            continue;
        };
        let schema = manifest
            .manifest
            .config_schema
            .as_deref()
            .map(|rel| load_schema(&location, rel));
        owners.entry(key.clone()).or_insert(PackConfigOwner {
            pack_id: manifest.manifest.id.clone(),
            config_key: key,
            schema,
            manifest,
        });
    }
    owners
}

fn load_schema(location: &PackLocation, rel: &str) -> Result<CompiledSchema, String> {
    match location {
        PackLocation::Dir(dir) => {
            let file = lint::resolve_inside(dir, rel)?;
            lint::load_schema_file(&file)
        }
        PackLocation::Builtin(pack) => {
            let rel = rel.trim_start_matches("./");
            let bytes = pack
                .files
                .iter()
                .find(|(p, _)| *p == rel)
                .map(|(_, b)| *b)
                .ok_or_else(|| format!("`{rel}` is not a file of the built-in pack"))?;
            let value: Value =
                serde_json::from_slice(bytes).map_err(|e| format!("expected valid JSON: {e}"))?;
            crate::json_schema::compile(&value).map_err(|e| e.to_string())
        }
    }
}

/// Decide who owns `key`.
pub fn route(
    key: &str,
    owners: &IndexMap<String, PackConfigOwner>,
) -> Result<(Route, Vec<String>), ConfigError> {
    let segments: Vec<String> = key.split('.').map(str::to_string).collect();
    let root = segments.first().cloned().unwrap_or_default();
    if key.trim().is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err(if key.trim().is_empty() {
            ConfigError::EmptyKey
        } else {
            ConfigError::Invalid(format!("key `{key}` has an empty segment"))
        });
    }
    let rest = segments[1..].to_vec();
    if WRITABLE_ROOT_KEYS.contains(&root.as_str()) {
        return Ok((Route::WorkspaceRoot { root }, rest));
    }
    if let Some(owner) = owners.get(&root) {
        return Ok((
            Route::PackConfig {
                root,
                pack_id: owner.pack_id.clone(),
            },
            rest,
        ));
    }
    if let Some((_, hint)) = MANAGED_ROOT_KEYS.iter().find(|(k, _)| *k == root) {
        return Err(ConfigError::Managed { root, hint });
    }
    Err(unknown_root(key, &root, owners))
}

fn unknown_root(key: &str, root: &str, owners: &IndexMap<String, PackConfigOwner>) -> ConfigError {
    // An unqualified pack key (`gates.minCoverage`): suggest the fully-qualified one.
    let mut suggestion = owners
        .values()
        .find(|o| match &o.schema {
            Some(Ok(schema)) => schema.known_properties(&[]).iter().any(|p| p == root),
            _ => false,
        })
        .map(|o| format!(" Did you mean \"{}.{key}\"?", o.config_key));
    if suggestion.is_none() && CONTROL_PLANE_KEYS.contains(&root) {
        suggestion = Some(format!(" Did you mean \"control_plane.{key}\"?"));
    }
    if suggestion.is_none() {
        let candidates: Vec<&str> = WRITABLE_ROOT_KEYS
            .iter()
            .copied()
            .chain(owners.keys().map(String::as_str))
            .collect();
        suggestion = closest(root, candidates).map(|best| format!(" Did you mean \"{best}\"?"));
    }
    ConfigError::UnknownRoot {
        root: root.to_string(),
        suggestion: suggestion.unwrap_or_default(),
        keys: if owners.is_empty() {
            "none declared by the pinned packs".to_string()
        } else {
            owners.keys().cloned().collect::<Vec<_>>().join(", ")
        },
    }
}

/// The raw value at a fully-qualified key, `None` when it is not set.
pub fn get(
    doc: &WorkspaceDocument,
    key: &str,
    owners: &IndexMap<String, PackConfigOwner>,
) -> Result<Option<Value>, ConfigError> {
    let (_, _) = route(key, owners)?;
    let mut node = Some(&doc.root);
    for seg in key.split('.') {
        node = node.and_then(|n| match &n.kind {
            yaml::NodeKind::Seq(items, _) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => n.get(seg),
        });
    }
    Ok(node.map(yaml::Node::to_json))
}

/// What a successful `config set` did.
#[derive(Debug, Clone)]
pub struct SetOutcome {
    pub key: String,
    pub value: Value,
    pub previous: Option<Value>,
    /// False when the file had to be re-emitted (comments could not be kept).
    pub preserved_layout: bool,
    pub warnings: Vec<String>,
}

/// The original's coercion: `true`/`false` become booleans, numeric text a number (also when the
/// current value is a number), a current list is appended to from comma-separated text. A pack
/// key whose schema wants a string skips it (see [`set`]).
pub fn coerce_value(raw: &str, existing: Option<&Value>) -> Result<Value, ConfigError> {
    if raw == "true" || raw == "false" {
        return Ok(Value::Bool(raw == "true"));
    }
    let numeric =
        !raw.is_empty() && raw.trim() == raw && raw.parse::<f64>().is_ok_and(f64::is_finite);
    if numeric || matches!(existing, Some(Value::Number(_))) {
        if let Ok(i) = raw.parse::<i64>() {
            return Ok(Value::from(i));
        }
        return match raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            Some(n) if numeric => Ok(Value::Number(n)),
            _ => Err(ConfigError::Invalid(format!(
                "the current value is a number, so `{raw}` must be a number too"
            ))),
        };
    }
    if let Some(Value::Array(items)) = existing {
        let mut items = items.clone();
        items.extend(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string())),
        );
        return Ok(Value::Array(items));
    }
    Ok(Value::String(raw.to_string()))
}

/// Issues of `block` other than a missing required property (which `set` only warns about: a
/// block may be built one key at a time).
fn real_issues(schema: &CompiledSchema, block: &Value) -> usize {
    match schema.validate(block) {
        Ok(()) => 0,
        Err(issues) => issues
            .iter()
            .filter(|i| !i.message.starts_with("missing required property"))
            .count(),
    }
}

/// Validate and write `key = raw` into the workspace. Nothing is written unless the whole new
/// workspace parses and validates.
pub fn set(
    doc: &WorkspaceDocument,
    key: &str,
    raw: &str,
    owners: &IndexMap<String, PackConfigOwner>,
) -> Result<SetOutcome, ConfigError> {
    let (route, rest) = route(key, owners)?;
    let previous = get(doc, key, owners)?;
    let mut warnings = Vec::new();
    let value = match &route {
        Route::WorkspaceRoot { root }
            if root == "memory_namespace" || root == "event_namespace" =>
        {
            if !rest.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "`{root}` is a string and does not support sub-path writes"
                )));
            }
            if raw.trim().is_empty() || raw.chars().any(char::is_control) {
                return Err(ConfigError::Invalid(format!(
                    "`{root}` must be a non-empty single-line string"
                )));
            }
            Value::String(raw.to_string())
        }
        Route::WorkspaceRoot { root } => {
            if rest.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "Cannot overwrite {root} with a scalar; set one of its fields, for example `{root}.sync_interval`"
                )));
            }
            if let Some(best) = (!CONTROL_PLANE_KEYS.contains(&rest[0].as_str()))
                .then(|| closest(&rest[0], CONTROL_PLANE_KEYS.iter().copied()))
                .flatten()
            {
                return Err(ConfigError::Invalid(format!(
                    "Validation failed for {key}={raw}: unknown field control_plane.{} (did you mean `control_plane.{best}`?)",
                    rest[0]
                )));
            }
            let value = coerce_value(raw, previous.as_ref())?;
            let mut block =
                workspace::root_value(doc, root).unwrap_or(Value::Object(Default::default()));
            yaml::edit::set_in_json(&mut block, &rest, value.clone())
                .map_err(ConfigError::Invalid)?;
            let issues = check_control_plane(&block, true);
            if !issues.is_empty() {
                let text = issues
                    .iter()
                    .map(|(p, m)| format!("{p}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(ConfigError::Invalid(format!(
                    "Validation failed for {key}={raw}: {text}"
                )));
            }
            for (_, m) in check_control_plane(&block, false) {
                warnings.push(format!("control_plane is not complete yet: {m}"));
            }
            value
        }
        Route::PackConfig { root, pack_id } => {
            if rest.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "Key must target a nested field under {root} (for example `{root}.<field>`)"
                )));
            }
            let owner = owners
                .get(root)
                .ok_or_else(|| ConfigError::Invalid(format!("no owner for `{root}`")))?;
            let schema = match &owner.schema {
                None => {
                    return Err(ConfigError::NoSchema {
                        pack_id: pack_id.clone(),
                        key: key.to_string(),
                    })
                }
                Some(Err(reason)) => {
                    return Err(ConfigError::SchemaUnavailable {
                        pack_id: pack_id.clone(),
                        reason: reason.clone(),
                    })
                }
                Some(Ok(schema)) => schema,
            };
            let rest_refs: Vec<&str> = rest.iter().map(String::as_str).collect();
            if let Err(prefix_len) = schema.check_path(&rest_refs) {
                let unknown = rest[..prefix_len.max(1).min(rest.len())].join(".");
                let parent: Vec<&str> =
                    rest_refs[..prefix_len.saturating_sub(1).min(rest_refs.len())].to_vec();
                let known = schema.known_properties(&parent);
                let last = rest
                    .get(prefix_len.saturating_sub(1))
                    .map(String::as_str)
                    .unwrap_or("");
                let hint = closest(last, known.iter().map(String::as_str))
                    .map(|b| {
                        let mut p: Vec<&str> = parent.clone();
                        p.push(b);
                        format!(" Did you mean \"{root}.{}\"?", p.join("."))
                    })
                    .unwrap_or_default();
                return Err(ConfigError::Invalid(format!(
                    "Unknown config key(s) rejected for pack \"{pack_id}\": {root}.{unknown}.{hint}"
                )));
            }
            // The owner's schema decides the type where it says one: the original's coercion
            // guesses from the text, which turned the gate command `true` into a boolean the
            // schema then refused, with no way to write it as a string.
            let mut value = if schema.wants_string(&rest_refs) {
                Value::String(raw.to_string())
            } else {
                coerce_value(raw, previous.as_ref())?
            };
            let current =
                workspace::root_value(doc, root).unwrap_or(Value::Object(Default::default()));
            let mut block = current.clone();
            yaml::edit::set_in_json(&mut block, &rest, value.clone())
                .map_err(ConfigError::Invalid)?;
            // The original's coercion appends to an existing list but cannot start one: when
            // the schema wants a list where there is none yet, `a, b` is that list.
            if previous.is_none() && value.is_string() && real_issues(schema, &block) > 0 {
                let list = Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                );
                let mut as_list = current;
                yaml::edit::set_in_json(&mut as_list, &rest, list.clone())
                    .map_err(ConfigError::Invalid)?;
                if real_issues(schema, &as_list) == 0 {
                    value = list;
                    block = as_list;
                }
            }
            if let Err(issues) = schema.validate(&block) {
                let (missing, real): (Vec<_>, Vec<_>) = issues
                    .into_iter()
                    .partition(|i| i.message.starts_with("missing required property"));
                if !real.is_empty() {
                    let text = real
                        .iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(ConfigError::Invalid(format!(
                        "Validation failed for {key}={raw}: {text}"
                    )));
                }
                // Written all the same, so a block can be built one key at a time; but until it
                // is complete the loader refuses the workspace, which the user must know now.
                for i in missing {
                    warnings.push(format!(
                        "`{root}` is not complete yet: {i}; until it is, commands that load the workspace refuse it (WORKSPACE_INVALID)"
                    ));
                }
            }
            let declared = declared_env(&owner.manifest.manifest);
            let mut env_issues = Vec::new();
            env_ref_issues(
                &block,
                &FieldPath::root().key(root.clone()),
                &declared,
                &mut env_issues,
            );
            if let Some((_, message)) = env_issues.first() {
                return Err(ConfigError::Invalid(format!(
                    "Validation failed for {key}={raw}: {message}"
                )));
            }
            value
        }
    };

    let path: Vec<String> = key.split('.').map(str::to_string).collect();
    let edited =
        yaml::edit::set_value(&doc.source.text, &path, &value).map_err(ConfigError::Invalid)?;
    // The whole new file must still be a valid workspace before it replaces the old one.
    let new_source =
        crate::diagnostics::SourceFile::new(doc.source.name.clone(), edited.text.clone());
    workspace::parse_workspace(new_source, &doc.dir).map_err(ConfigError::Workspace)?;
    workspace::replace_workspace_text(doc, &edited.text)?;
    if !edited.preserved_layout {
        warnings.push("workspace.yaml was re-emitted: its comments and layout could not be kept for this change".into());
    }
    Ok(SetOutcome {
        key: key.to_string(),
        value,
        previous,
        preserved_layout: edited.preserved_layout,
        warnings,
    })
}

/// Validate a loaded pack's config block against its `config_schema`, and its `*_env` references
/// against the tools' `required_env` (the original's load-time checks).
pub fn check_pack_block(doc: &WorkspaceDocument, pack: &LoadedPack) -> Diagnostics {
    let mut out = Diagnostics::default();
    let m = &pack.manifest.manifest;
    let Some(key) = &m.config_key else { return out };
    let Some(block) = workspace::root_value(doc, key) else {
        return out;
    };
    let base = FieldPath::root().key(key.clone());
    if let Some(rel) = &m.config_schema {
        match load_schema(&pack.location, rel) {
            Err(reason) => out.push(doc.diagnostic(
                "CONFIG_SCHEMA_UNAVAILABLE",
                &base,
                format!(
                    "pack `{}` declares config_schema `{rel}` but it could not be loaded: {reason}",
                    m.id
                ),
            )),
            Ok(schema) => {
                if let Err(issues) = schema.validate(&block) {
                    for issue in issues {
                        let mut path = base.clone();
                        for seg in issue.path.split('.').filter(|s| !s.is_empty()) {
                            path = match seg.parse::<usize>() {
                                Ok(i) => path.index(i),
                                Err(_) => path.key(seg),
                            };
                        }
                        out.push(doc.diagnostic(
                            "CONFIG_INVALID",
                            &path,
                            format!(
                                "Invalid workspace config for \"{key}\" in pack \"{}\": {}",
                                m.id, issue.message
                            ),
                        ));
                    }
                }
            }
        }
    }
    let declared = declared_env(m);
    let mut issues = Vec::new();
    env_ref_issues(&block, &base, &declared, &mut issues);
    for (path, message) in issues {
        out.push(doc.diagnostic("CONFIG_INVALID", &path, message));
    }
    out
}

/// Every environment variable name the pack's tools declare in `required_env`.
fn declared_env(m: &crate::manifest::PackManifest) -> Vec<String> {
    m.tools
        .iter()
        .flat_map(|t| t.required_env.iter().flatten().cloned())
        .collect()
}

/// `*_env` keys must name an uppercase variable that some tool declares (the original's rule,
/// so a config block cannot point a tool at a secret it never asked for).
fn env_ref_issues(
    value: &Value,
    path: &FieldPath,
    declared: &[String],
    out: &mut Vec<(FieldPath, String)>,
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = path.key(k.clone());
                if let (true, Some(name)) = (k.ends_with("_env"), v.as_str()) {
                    if !crate::manifest::is_env_name(name) {
                        out.push((p.clone(), format!("`{p}` must use an uppercase environment variable name, got `{name}`")));
                    } else if !declared.iter().any(|d| d == name) {
                        out.push((p.clone(), format!("`{p}` uses \"{name}\" but no manifest tool declares it in required_env")));
                    }
                }
                env_ref_issues(v, &p, declared, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                env_ref_issues(v, &path.index(i), declared, out);
            }
        }
        _ => {}
    }
}
