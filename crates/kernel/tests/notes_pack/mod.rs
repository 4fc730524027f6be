//! The workspace and pack the dispatch tests share (`dispatch.rs`, `dispatch_async.rs`): one
//! runtime over built-in functions standing in for every tool of `notes-pack`.
#![allow(dead_code)] // each test binary uses part of this

use std::fs;
use std::path::{Path, PathBuf};

use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::dispatch::{BuiltinFn, EvidenceStore, RegisteredTool, Runtime, ToolRegistry};
use lumenflow_kernel::eventlog::{self, EventLog, LogOptions};
use lumenflow_kernel::manifest::parse_manifest;
use lumenflow_kernel::workspace::parse_workspace;

pub const WS: &str = r#"id: ws
name: Test
packs: []
lanes:
  - id: core
    title: Core
    allowed_scopes:
      - {type: path, pattern: "reports/**", access: write}
      - {type: path, pattern: "**", access: read}
security:
  allowed_scopes:
    - {type: path, pattern: "**", access: read}
    - {type: path, pattern: "reports/**", access: write}
    - {type: path, pattern: ".lumenflow/state/notes-pack/**", access: write}
    - {type: network, posture: allowlist, allowlist_entries: ["api.example.com:443"]}
memory_namespace: m
event_namespace: e
"#;

pub const PACK: &str = r#"id: notes-pack
version: 1.0.0
task_types: [task]
tools:
  - name: notes:read
    entry: tools/read.py
    permission: read
    required_scopes: [{type: path, pattern: "**", access: read}]
    input_schema:
      type: object
      properties: {path: {type: string, minLength: 1}}
      required: [path]
  - name: notes:write
    entry: tools/write.py
    permission: write
    required_scopes: [{type: path, pattern: "reports/**", access: write}]
    output_schema:
      type: object
      properties: {bytes: {type: integer}}
      required: [bytes]
  - name: notes:state
    entry: tools/state.py
    permission: write
    required_scopes: [{type: path, pattern: ".lumenflow/state/notes-pack/**", access: write}]
  - name: notes:kernel-write
    entry: tools/k.py
    permission: write
    required_scopes: [{type: path, pattern: ".lumenflow/kernel/**", access: write}]
  - name: notes:fetch
    entry: tools/fetch.py
    permission: read
    required_scopes: [{type: network, posture: full}]
  - name: notes:internal
    entry: tools/i.py
    internal_only: true
    required_scopes: [{type: path, pattern: "**", access: read}]
  - name: notes:risky
    entry: tools/r.py
    permission: write
    required_approvals: [notes:publish]
    required_scopes: [{type: path, pattern: "reports/**", access: write}]
  - name: notes:list
    entry: tools/list.py
    permission: read
    required_scopes: [{type: path, pattern: "**", access: read}]
    input_schema:
      type: object
      properties: {mode: {type: string}, n: {type: integer}}
  - name: notes:bad-output
    entry: tools/b.py
    permission: read
    required_scopes: [{type: path, pattern: "**", access: read}]
    output_schema:
      type: object
      properties: {bytes: {type: integer}}
      required: [bytes]
  - name: notes:slow
    entry: tools/s.py
    permission: read
    required_scopes: [{type: path, pattern: "**", access: read}]
"#;

/// A fresh workspace folder (with `reports/` and a secret under `secrets/`) and its canonical
/// path.
pub fn workspace_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().canonicalize().expect("canon");
    fs::create_dir_all(root.join("reports")).expect("mkdir");
    fs::create_dir_all(root.join("secrets")).expect("mkdir");
    fs::write(root.join("secrets/prod.env"), "TOKEN=1").expect("w");
    (dir, root)
}

/// A runtime over `root` with [`WS`] plus `extra_ws`, every tool of [`PACK`] implemented by
/// `builtin(tool name)`.
pub fn runtime(root: &Path, extra_ws: &str, builtin: impl Fn(&str) -> BuiltinFn) -> Runtime {
    let doc = parse_workspace(
        SourceFile::new("workspace.yaml", format!("{WS}{extra_ws}")),
        root,
    )
    .expect("workspace");
    let manifest = parse_manifest(SourceFile::new("manifest.yaml", PACK))
        .expect("manifest")
        .manifest;
    let mut registry = ToolRegistry::new();
    for tool in &manifest.tools {
        let function = builtin(&tool.name);
        registry
            .register(
                RegisteredTool::builtin(&manifest, "dev", &tool.name, function).expect("tool"),
            )
            .expect("register");
    }
    let log = EventLog::open(&eventlog::default_path(root), LogOptions::default()).expect("log");
    let evidence = EvidenceStore::open(&root.join(".lumenflow/kernel/evidence")).expect("evidence");
    Runtime::new(root, &doc, registry, vec![manifest], log, evidence)
}
