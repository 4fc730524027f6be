//! Golden tests for what a pack author sees when a manifest is wrong (KRN-01, KRN-02).
//!
//! Each folder under `fixtures/packs/broken/` is a pack with one kind of mistake; its
//! `expected.txt` is the rendered `pack validate` diagnostics (miette, no colour). Run with
//! `UPDATE_GOLDEN=1` to rewrite them after an intended change, and review the diff.

use std::path::{Path, PathBuf};

use lumenflow_kernel::pack_report::{validate_pack_dir, CheckStatus};
use miette::{GraphicalReportHandler, GraphicalTheme};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

fn render(pack: &Path, root: &Path) -> String {
    let report = validate_pack_dir(pack, &["simple-git".to_string()], None);
    assert!(
        !report.passed(),
        "{} should fail validation",
        pack.display()
    );
    let handler =
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_width(100);
    let mut out = String::new();
    for check in &report.checks {
        out.push_str(&format!("[{}] {}\n", check.status.as_str(), check.name));
        if check.status == CheckStatus::Fail && check.diagnostics.is_empty() {
            for e in &check.errors {
                out.push_str(&format!("  {e}\n"));
            }
        }
    }
    for check in &report.checks {
        for d in &check.diagnostics {
            out.push('\n');
            handler.render_report(&mut out, d).expect("render");
        }
    }
    let prefix = format!("{}/", root.display());
    out.replace(&prefix, "")
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn broken_manifests_render_the_expected_diagnostics() {
    let root = repo_root();
    let dir = root.join("fixtures/packs/broken");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "expected the broken-manifest fixtures");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in cases {
        let actual = render(&case, &root);
        let golden = case.join("expected.txt");
        if update {
            std::fs::write(&golden, &actual).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "--- {} (expected)\n{expected}\n--- actual\n{actual}",
                golden.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 to accept):\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_diagnostic_names_file_line_and_field() {
    // KRN-01: an error names the file, the line and the field.
    let root = repo_root();
    let pack = root.join("fixtures/packs/broken/unknown-key");
    let report = validate_pack_dir(&pack, &[], None);
    let manifest = report
        .checks
        .iter()
        .find(|c| c.name == "Manifest schema")
        .expect("check");
    let d = &manifest.diagnostics[0];
    assert!(
        d.file
            .ends_with("fixtures/packs/broken/unknown-key/manifest.yaml"),
        "{}",
        d.file
    );
    assert_eq!((d.line, d.column), (7, 5));
    assert_eq!(d.field.as_deref(), Some("tools[0].permision"));
    assert_eq!(d.message, "unknown field `permision`");
    assert!(d
        .help
        .as_deref()
        .unwrap_or("")
        .starts_with("did you mean `permission`?"));
}
