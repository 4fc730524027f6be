//! `lumenflow demo quickstart`: the pack quickstart, for real, in a scratch workspace.
//!
//! Until the trusted-compute demo exists this is the README's main command: it runs the same
//! library code as `init`, `pack author`, `pack validate`, `pack hash`, `pack install` and
//! `config set|get`, and shows the integrity pin refusing a tampered pack.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lumenflow_kernel::authoring;
use lumenflow_kernel::config;
use lumenflow_kernel::install::{self, InstallRequest, InstallSource};
use lumenflow_kernel::loader::PackLoader;
use lumenflow_kernel::pack_report;
use lumenflow_kernel::workspace;
use serde_json::json;

use super::Context;
use crate::output::{print_ok, CliError};

const SPEC: &str = r#"# A pack authoring request: three tools from the secure templates.
pack_id: customer-ops
version: 1.0.0
task_types: [incident, wu]
templates:
  - template_id: file.read_text
    tool_name: read-customer-notes
    scope_pattern: notes/**/*.md
  - template_id: file.write_text
    tool_name: write-customer-report
    scope_pattern: reports/**/*.md
  - template_id: http.get_json
    tool_name: fetch-customer-profile
    allowed_urls:
      - https://api.example.com/v1/customer/profile
"#;

struct Steps {
    json: bool,
    n: usize,
    started: Instant,
    log: Vec<serde_json::Value>,
}

impl Steps {
    fn step(&mut self, title: &str, detail: &str) {
        self.n += 1;
        let ms = self.started.elapsed().as_millis();
        if !self.json {
            eprintln!("[{:>2}] {title}  ({ms} ms)", self.n);
            for line in detail.lines() {
                eprintln!("       {line}");
            }
        }
        self.log
            .push(json!({"step": self.n, "title": title, "detail": detail, "elapsed_ms": ms}));
    }
}

fn err<E: std::fmt::Display>(code: &'static str) -> impl Fn(E) -> CliError {
    move |e| CliError::new(code, e.to_string())
}

pub fn quickstart(ctx: &Context, dir: Option<PathBuf>) -> Result<(), CliError> {
    let scratch;
    let root: PathBuf = match dir {
        Some(d) => d,
        None => {
            scratch = tempfile::Builder::new()
                .prefix("lumenflow-quickstart-")
                .tempdir()
                .map_err(err("IO_ERROR"))?;
            scratch.path().to_path_buf()
        }
    };
    let mut s = Steps {
        json: ctx.json,
        n: 0,
        started: Instant::now(),
        log: Vec::new(),
    };
    run(&root, &mut s)?;
    let summary = format!(
        "Quickstart finished in {} ms: workspace, pack authored, validated, hashed, installed with a sha256 pin, tamper refused, config set.\n",
        s.started.elapsed().as_millis()
    );
    print_ok(
        ctx.json,
        &json!({"workspace": root, "steps": s.log}),
        &summary,
    );
    Ok(())
}

fn run(root: &Path, s: &mut Steps) -> Result<(), CliError> {
    let ws_file =
        install::init_workspace(root, "quickstart", "Quickstart").map_err(err("INIT_FAILED"))?;
    s.step("lumenflow init", &format!("created {}", ws_file.display()));

    let spec_path = root.join("customer-ops.spec.yaml");
    std::fs::write(&spec_path, SPEC).map_err(err("IO_ERROR"))?;
    let req = super::author::read_spec(&spec_path)?;
    let generated = authoring::generate(&req)
        .map_err(|i| CliError::new("TEMPLATE_VALIDATION_ERROR", format!("{i:?}")))?;
    let pack_dir = authoring::write_pack(&generated, &root.join("authoring"), false)
        .map_err(err("AUTHOR_FAILED"))?;
    let files: Vec<&str> = generated
        .files
        .iter()
        .map(|f| f.rel_path.as_str())
        .collect();
    s.step(
        "lumenflow pack author --spec-file customer-ops.spec.yaml",
        &format!("wrote {} files: {}", files.len(), files.join(", ")),
    );

    let report = pack_report::validate_pack_dir(&pack_dir, &["simple-git".to_string()], None);
    let statuses: Vec<String> = report
        .checks
        .iter()
        .map(|c| format!("[{}] {}", c.status.as_str(), c.name))
        .collect();
    s.step("lumenflow pack validate", &statuses.join("\n"));
    if !report.passed() {
        return Err(CliError::new("VALIDATION_FAILED", report.render_text()));
    }
    let hash = super::pack::hash_dir(&pack_dir)?;
    s.step("lumenflow pack hash", &hash);

    let doc = workspace::read_workspace(root).map_err(CliError::from)?;
    let outcome = install::install(
        &doc,
        &InstallRequest {
            id: "customer-ops".into(),
            version: "1.0.0".into(),
            source: InstallSource::Local {
                path: pack_dir.clone(),
            },
            expected_integrity: Some(hash.clone()),
            force: false,
            dev: false,
        },
        &mut |_| {},
        None,
    )
    .map_err(err("INSTALL_FAILED"))?;
    s.step(
        "lumenflow pack install --id customer-ops --source local --version 1.0.0",
        &format!(
            "installed in packs/customer-ops, pinned integrity {}",
            outcome.pin.integrity
        ),
    );

    let doc = workspace::read_workspace(root).map_err(CliError::from)?;
    let builtin = lumenflow_packs::builtin_packs();
    let loader = PackLoader::for_workspace(&doc, builtin);
    let loaded = loader.load_all(&doc).map_err(err("LOAD_FAILED"))?;
    let tools: Vec<String> = loaded
        .iter()
        .flat_map(|p| p.manifest.manifest.tools.iter().map(|t| t.name.clone()))
        .collect();
    s.step(
        "load the workspace's packs",
        &format!(
            "verified {} pack(s); tools: {}",
            loaded.len(),
            tools.join(", ")
        ),
    );

    // Tamper with an installed file: the pin must refuse the pack, then accept it once restored.
    let victim = outcome
        .dest
        .join("tool-impl")
        .join("read-customer-notes.py");
    let original = std::fs::read(&victim).map_err(err("IO_ERROR"))?;
    let mut tampered = original.clone();
    tampered.extend_from_slice(b"\n# exfiltrate()\n");
    std::fs::write(&victim, &tampered).map_err(err("IO_ERROR"))?;
    let refused = loader.load(&doc.spec, "customer-ops");
    std::fs::write(&victim, &original).map_err(err("IO_ERROR"))?;
    match refused {
        Err(e) if e.code() == "INTEGRITY_MISMATCH" => {
            s.step(
                "tamper with packs/customer-ops/tool-impl/read-customer-notes.py",
                &format!("load refused: {e}"),
            );
        }
        Err(e) => return Err(CliError::new(e.code(), format!("unexpected refusal: {e}"))),
        Ok(_) => {
            return Err(CliError::new(
                "DEMO_FAILED",
                "a tampered pack loaded; the integrity pin did not hold",
            ))
        }
    }
    loader
        .load(&doc.spec, "customer-ops")
        .map_err(err("LOAD_FAILED"))?;

    let owners = config::config_owners(&doc, &loader);
    let set = config::set(&doc, "control_plane.sync_interval", "30", &owners)
        .map_err(err("CONFIG_FAILED"))?;
    let doc = workspace::read_workspace(root).map_err(CliError::from)?;
    let value =
        config::get(&doc, "control_plane.sync_interval", &owners).map_err(err("CONFIG_FAILED"))?;
    s.step(
        "lumenflow config set --key control_plane.sync_interval --value 30",
        &format!(
            "stored {} (comments kept: {}); config get returns {}",
            set.value,
            set.preserved_layout,
            value.map(|v| v.to_string()).unwrap_or_default()
        ),
    );
    let wrong = config::set(&doc, "sync_interval", "30", &owners)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    s.step(
        "lumenflow config set --key sync_interval (unqualified)",
        &format!("refused: {wrong}"),
    );
    Ok(())
}
