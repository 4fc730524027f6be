//! `config get|set` (KRN-06): routing, did-you-mean, validation, comment-preserving atomic writes.

use std::fs;
use std::path::Path;

use indexmap::IndexMap;
use lumenflow_kernel::config::{self, ConfigError, PackConfigOwner, Route};
use lumenflow_kernel::loader::PackLoader;
use lumenflow_kernel::workspace::{read_workspace, WorkspaceDocument};
use serde_json::json;

const SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "gates": {"type": "object", "properties": {
      "minCoverage": {"type": "integer", "minimum": 0, "maximum": 100},
      "format": {"type": "boolean"},
      "commands": {"type": "array", "items": {"type": "string"}}
    }},
    "methodology": {"type": "object", "properties": {"testing": {"type": "string", "enum": ["tdd", "none"]}}},
    "token_env": {"type": "string"}
  },
  "required": ["gates"]
}"#;

fn pack(root: &Path, id: &str, key: &str, schema: bool) {
    fs::create_dir_all(root.join("tools")).expect("mkdir");
    let schema_line = if schema {
        "config_schema: config.schema.json\n"
    } else {
        ""
    };
    fs::write(
        root.join("manifest.yaml"),
        format!("id: {id}\nversion: 1.0.0\nconfig_key: {key}\n{schema_line}task_types: [wu]\ntools:\n  - name: {id}:run\n    entry: tools/run.py\n    required_env: [SD_TOKEN]\n    required_scopes:\n      - type: path\n        pattern: src/**\n        access: read\n"),
    )
    .expect("manifest");
    fs::write(root.join("tools/run.py"), "#!/usr/bin/env python3\n").expect("tool");
    if schema {
        fs::write(root.join("config.schema.json"), SCHEMA).expect("schema");
    }
}

const WS: &str = "# workspace comment\nid: ws\nname: Test\npacks:\n  - id: software-delivery\n    version: 1.0.0\n    integrity: dev\n    source: local\n  - id: acme-demo\n    version: 1.0.0\n    integrity: dev\n    source: local\nlanes: []\nsecurity:\n  allowed_scopes: []\nmemory_namespace: mem\nevent_namespace: evt\nsoftware_delivery:\n  gates:\n    minCoverage: 80 # keep coverage high\n    commands: [fmt]\n";

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().to_path_buf();
        pack(
            &dir.join("packs/software-delivery"),
            "software-delivery",
            "software_delivery",
            true,
        );
        pack(
            &dir.join("packs/acme-demo"),
            "acme-demo",
            "acme_demo",
            false,
        );
        fs::write(dir.join("workspace.yaml"), WS).expect("ws");
        Fixture { _tmp: tmp, dir }
    }

    fn doc(&self) -> WorkspaceDocument {
        read_workspace(&self.dir).expect("workspace")
    }

    fn owners(&self, doc: &WorkspaceDocument) -> IndexMap<String, PackConfigOwner> {
        let loader = PackLoader::for_workspace(doc, &[]);
        config::config_owners(doc, &loader)
    }

    fn set(&self, key: &str, value: &str) -> Result<config::SetOutcome, ConfigError> {
        let doc = self.doc();
        let owners = self.owners(&doc);
        config::set(&doc, key, value, &owners)
    }

    fn get(&self, key: &str) -> Result<Option<serde_json::Value>, ConfigError> {
        let doc = self.doc();
        let owners = self.owners(&doc);
        config::get(&doc, key, &owners)
    }

    fn text(&self) -> String {
        fs::read_to_string(self.dir.join("workspace.yaml")).expect("read")
    }
}

#[test]
fn routing_follows_the_original_table() {
    let f = Fixture::new();
    let doc = f.doc();
    let owners = f.owners(&doc);
    for key in [
        "control_plane.endpoint",
        "memory_namespace",
        "event_namespace",
    ] {
        assert!(
            matches!(
                config::route(key, &owners),
                Ok((Route::WorkspaceRoot { .. }, _))
            ),
            "{key}"
        );
    }
    assert!(matches!(
        config::route("software_delivery.gates.minCoverage", &owners),
        Ok((Route::PackConfig { ref pack_id, .. }, _)) if pack_id == "software-delivery"
    ));
    for key in ["packs", "lanes", "security", "id", "name", "policies"] {
        let err = config::route(key, &owners).expect_err(key);
        assert_eq!(err.code(), "CONFIG_KEY_MANAGED", "{key}");
    }
    assert!(config::route("packs.0", &owners)
        .expect_err("managed")
        .to_string()
        .contains("lumenflow pack install"));
    // No command manages lanes: the message says to edit the file, and names no command.
    assert_eq!(
        config::route("lanes", &owners)
            .expect_err("lanes")
            .to_string(),
        "Key \"lanes\" is not written by `config set`: edit `lanes` in workspace.yaml instead"
    );
    // The original's vector: an unqualified pack key suggests the fully-qualified one.
    let err = config::route("gates.minCoverage", &owners).expect_err("unqualified");
    assert_eq!(err.code(), "CONFIG_KEY_UNKNOWN");
    assert!(
        err.to_string()
            .contains("software_delivery.gates.minCoverage"),
        "{err}"
    );
    for key in ["completely_unknown.something", "foobar"] {
        assert_eq!(
            config::route(key, &owners).expect_err(key).code(),
            "CONFIG_KEY_UNKNOWN"
        );
    }
}

#[test]
fn get_reads_raw_values_without_fallback() {
    let f = Fixture::new();
    assert_eq!(
        f.get("software_delivery.gates.minCoverage").expect("get"),
        Some(json!(80))
    );
    assert_eq!(
        f.get("software_delivery.gates.commands").expect("get"),
        Some(json!(["fmt"]))
    );
    assert_eq!(
        f.get("software_delivery.methodology.testing").expect("get"),
        None
    );
    assert_eq!(f.get("memory_namespace").expect("get"), Some(json!("mem")));
    assert!(f.get("gates.minCoverage").is_err());
    assert!(f.get("lanes").is_err());
}

#[test]
fn set_coerces_like_the_original_and_keeps_comments() {
    let f = Fixture::new();
    let out = f.set("control_plane.sync_interval", "30").expect("set");
    assert_eq!(out.value, json!(30));
    assert!(
        !out.warnings.is_empty(),
        "an incomplete control_plane block is a warning, not an error"
    );
    f.set("software_delivery.gates.format", "true")
        .expect("bool");
    f.set("software_delivery.gates.commands", "lint, test")
        .expect("append");
    f.set("software_delivery.gates.minCoverage", "90")
        .expect("number");
    f.set("software_delivery.methodology.testing", "tdd")
        .expect("nested create");
    let doc = f.doc();
    let block = lumenflow_kernel::workspace::root_value(&doc, "software_delivery").expect("block");
    assert_eq!(
        block,
        json!({"gates": {"minCoverage": 90, "commands": ["fmt", "lint", "test"], "format": true}, "methodology": {"testing": "tdd"}})
    );
    let text = f.text();
    assert!(text.starts_with("# workspace comment\n"), "{text}");
    assert!(
        text.contains("minCoverage: 90 # keep coverage high"),
        "{text}"
    );
    assert_eq!(
        f.get("control_plane.sync_interval").expect("get"),
        Some(json!(30))
    );
}

#[test]
fn invalid_writes_are_refused_and_leave_the_file_untouched() {
    let f = Fixture::new();
    let before = f.text();
    let cases = [
        ("control_plane", "5", "CONFIG_VALUE_INVALID"),
        (
            "control_plane.sync_interval",
            "not-a-number",
            "CONFIG_VALUE_INVALID",
        ),
        ("control_plane.enabled", "true", "CONFIG_VALUE_INVALID"),
        (
            "control_plane.auth.token_env",
            "lowercase",
            "CONFIG_VALUE_INVALID",
        ),
        ("control_plane.policy_mode", "loose", "CONFIG_VALUE_INVALID"),
        ("memory_namespace.foo", "x", "CONFIG_VALUE_INVALID"),
        ("software_delivery", "x", "CONFIG_VALUE_INVALID"),
        (
            "software_delivery.gates.unknown_key",
            "1",
            "CONFIG_VALUE_INVALID",
        ),
        (
            "software_delivery.completely_unknown_section.foo",
            "1",
            "CONFIG_VALUE_INVALID",
        ),
        (
            "software_delivery.gates.minCoverage",
            "101",
            "CONFIG_VALUE_INVALID",
        ),
        (
            "software_delivery.gates.minCoverage",
            "lots",
            "CONFIG_VALUE_INVALID",
        ),
        (
            "software_delivery.methodology.testing",
            "waterfall",
            "CONFIG_VALUE_INVALID",
        ),
        (
            "software_delivery.token_env",
            "sd_token",
            "CONFIG_VALUE_INVALID",
        ),
        (
            "software_delivery.token_env",
            "OTHER_TOKEN",
            "CONFIG_VALUE_INVALID",
        ),
        ("acme_demo.retries", "3", "CONFIG_NO_SCHEMA"),
    ];
    for (key, value, code) in cases {
        let err = f.set(key, value).expect_err(key);
        assert_eq!(err.code(), code, "{key}={value}: {err}");
        assert_eq!(f.text(), before, "{key} changed the file");
    }
    let err = f
        .set("software_delivery.gates.minCoverag", "1")
        .expect_err("typo");
    assert!(
        err.to_string()
            .contains("Did you mean \"software_delivery.gates.minCoverage\"?"),
        "{err}"
    );
}

#[test]
fn accepted_control_plane_keys_match_the_original() {
    let f = Fixture::new();
    for (key, value) in [
        ("control_plane.project_id", "p1"),
        (
            "control_plane.auth.token_env",
            "LUMENFLOW_CONTROL_PLANE_TOKEN",
        ),
        ("control_plane.sync_interval", "30"),
        ("control_plane.policy_mode", "tighten-only"),
        ("control_plane.org_id", "acme"),
        ("control_plane.endpoint", "https://cp.example.com"),
    ] {
        f.set(key, value).unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    let doc = f.doc();
    let cp = doc.spec.control_plane().expect("block").expect("complete");
    assert_eq!(cp.sync_interval, 30);
    assert_eq!(cp.auth.token_env, "LUMENFLOW_CONTROL_PLANE_TOKEN");
}

/// Finding 14 (walk H): a key whose schema wants a string keeps the typed text (`true`, `42`)
/// instead of the original's guess (a boolean, a number) that the schema would then refuse;
/// keys of other types are still coerced. KRN-06.
#[test]
fn set_keeps_text_where_the_schema_wants_a_string() {
    let f = Fixture::new();
    f.set("software_delivery.gates.format", "false")
        .expect("bool");
    let out = f
        .set("software_delivery.methodology.testing", "none")
        .expect("enum");
    assert_eq!(out.value, json!("none"));
    let doc = f.doc();
    let block = lumenflow_kernel::workspace::root_value(&doc, "software_delivery").expect("block");
    assert_eq!(block["gates"]["format"], json!(false));

    let schema = lumenflow_kernel::json_schema::compile(&json!({
        "type": "object",
        "properties": {
            "cmd": {"type": "string"},
            "mode": {"enum": ["1", "2"]},
            "n": {"type": "integer"}
        }
    }))
    .expect("schema");
    assert!(schema.wants_string(&["cmd"]));
    assert!(schema.wants_string(&["mode"]));
    assert!(!schema.wants_string(&["n"]));
    assert!(!schema.wants_string(&["nope"]));
}
