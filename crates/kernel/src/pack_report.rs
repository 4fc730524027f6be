//! `pack validate`: the five checks of the original, each pass, fail or skip (KRN-02).
//!
//! Manifest schema, import boundaries, tool entry resolution, security lint and integrity hash.
//! The report renders in the original's text layout (tools grep for `Result: ALL CHECKS PASSED`)
//! and as JSON; its manifest failures keep their file/line/field diagnostics.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::builtin::EmbeddedPack;
use crate::diagnostics::FileDiagnostic;
use crate::import_scan;
use crate::integrity::{self, HashOptions, PackHash};
use crate::loader::read_embedded_manifest;
use crate::manifest::{self, lint, parse_entry, ManifestDocument};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Pass,
    Fail,
    Skip,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "PASS",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "SKIP",
        }
    }
}

/// One of the five checks.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: CheckStatus,
    /// Problems as single lines (`file:line:col: field: message` where a place is known).
    pub errors: Vec<String>,
    /// The same problems with their source positions, for rendering.
    pub diagnostics: Vec<FileDiagnostic>,
}

impl Check {
    fn pass(name: &'static str) -> Self {
        Check {
            name,
            status: CheckStatus::Pass,
            errors: Vec::new(),
            diagnostics: Vec::new(),
        }
    }

    fn skip(name: &'static str, why: &str) -> Self {
        Check {
            name,
            status: CheckStatus::Skip,
            errors: vec![why.to_string()],
            diagnostics: Vec::new(),
        }
    }

    fn fail(name: &'static str, errors: Vec<String>, diagnostics: Vec<FileDiagnostic>) -> Self {
        Check {
            name,
            status: CheckStatus::Fail,
            errors,
            diagnostics,
        }
    }

    fn from_diagnostics(name: &'static str, diagnostics: Vec<FileDiagnostic>) -> Self {
        if diagnostics.is_empty() {
            Check::pass(name)
        } else {
            let errors = diagnostics.iter().map(FileDiagnostic::one_line).collect();
            Check::fail(name, errors, diagnostics)
        }
    }
}

pub const MANIFEST_SCHEMA: &str = "Manifest schema";
pub const IMPORT_BOUNDARIES: &str = "Import boundaries";
pub const TOOL_ENTRIES: &str = "Tool entry resolution";
pub const SECURITY_LINT: &str = "Security lint";
pub const INTEGRITY_HASH: &str = "Integrity hash";

/// The result of validating one pack.
#[derive(Debug, Clone)]
pub struct PackReport {
    pub pack_root: String,
    /// In display order: manifest, import boundaries, tool entries, security lint, integrity.
    pub checks: Vec<Check>,
    pub hash: Option<PackHash>,
    pub manifest: Option<ManifestDocument>,
}

impl PackReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status == CheckStatus::Pass)
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Hold the integrity check to the workspace's pin of this pack (`pinned_hex`, bare hex),
    /// so validating a pinned pack whose files changed does not pass: the loader would refuse
    /// it. `fix` is the command that re-pins the folder as it is.
    pub fn compare_with_pin(&mut self, pack_id: &str, pinned_hex: &str, fix: &str) {
        let Some(hash) = &self.hash else {
            return;
        };
        if hash.hex() == pinned_hex {
            return;
        }
        let message = format!(
            "does not match the workspace's pin: workspace.yaml pins `{pack_id}` at \
             sha256:{pinned_hex}, these files hash to {}; the loader refuses the pack until \
             the pinned files are restored or it is re-pinned ({fix})",
            hash.prefixed()
        );
        if let Some(check) = self.checks.iter_mut().find(|c| c.name == INTEGRITY_HASH) {
            *check = Check::fail(INTEGRITY_HASH, vec![message], Vec::new());
        }
    }

    /// The original's report layout.
    pub fn render_text(&self) -> String {
        let mut s = String::from("Pack Validation Report\n======================\n\n");
        s.push_str(&format!("  Pack: {}\n\n", self.pack_root));
        for check in &self.checks {
            s.push_str(&format!("  [{}] {}\n", check.status.as_str(), check.name));
            if check.status != CheckStatus::Pass {
                for e in &check.errors {
                    for (i, line) in e.lines().enumerate() {
                        let lead = if i == 0 { "Error: " } else { "       " };
                        s.push_str(&format!("      {lead}{line}\n"));
                    }
                }
            }
            if check.name == INTEGRITY_HASH {
                if let Some(hash) = &self.hash {
                    s.push_str(&format!("      Hash: {}\n", hash.prefixed()));
                }
            }
        }
        s.push('\n');
        s.push_str(if self.passed() {
            "Result: ALL CHECKS PASSED\n"
        } else {
            "Result: VALIDATION FAILED\n"
        });
        s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "pack_root": self.pack_root,
            "passed": self.passed(),
            "pack_id": self.manifest.as_ref().map(|m| m.manifest.id.clone()),
            "version": self.manifest.as_ref().map(|m| m.manifest.version.clone()),
            "integrity": self.hash.as_ref().map(PackHash::prefixed),
            "checks": self.checks.iter().map(|c| json!({
                "name": c.name,
                "status": c.status.as_str(),
                "errors": c.errors,
                "diagnostics": c.diagnostics.iter().map(FileDiagnostic::to_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Validate a pack directory. `progress` receives hashed byte counts (for a progress bar).
pub fn validate_pack_dir(
    root: &Path,
    import_allowlist: &[String],
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> PackReport {
    let manifest = manifest::read_manifest(root);
    let manifest_check = match &manifest {
        Ok(_) => Check::pass(MANIFEST_SCHEMA),
        Err(diags) => Check::from_diagnostics(MANIFEST_SCHEMA, diags.0.clone()),
    };

    let (import_check, files) =
        match integrity::list_pack_files(root, integrity::DEFAULT_EXCLUSIONS) {
            Err(e) => (
                Check::fail(IMPORT_BOUNDARIES, vec![e.to_string()], Vec::new()),
                None,
            ),
            Ok(files) => {
                let check = match import_scan::scan_pack_imports(&files, import_allowlist) {
                    Err(e) => Check::fail(IMPORT_BOUNDARIES, vec![e.to_string()], Vec::new()),
                    Ok(v) if v.is_empty() => Check::pass(IMPORT_BOUNDARIES),
                    Ok(v) => Check::fail(
                        IMPORT_BOUNDARIES,
                        v.iter()
                            .map(|x| format!("{} (line {})", x, x.line))
                            .collect(),
                        Vec::new(),
                    ),
                };
                (check, Some(files))
            }
        };

    let (entries_check, lint_check) = match &manifest {
        Err(_) => (
            Check::skip(TOOL_ENTRIES, "Skipped: manifest validation failed"),
            Check::skip(SECURITY_LINT, "Skipped: manifest validation failed"),
        ),
        Ok(doc) => lint_checks(doc, Some(root)),
    };

    let options = HashOptions {
        progress,
        ..HashOptions::default()
    };
    let hash_result = match &files {
        Some(files) => integrity::hash_pack_files(files, &options),
        None => integrity::compute_pack_hash_with(root, &options),
    };
    let (hash_check, hash) = match hash_result {
        Ok(hash) => (Check::pass(INTEGRITY_HASH), Some(hash)),
        Err(e) => (
            Check::fail(INTEGRITY_HASH, vec![e.to_string()], Vec::new()),
            None,
        ),
    };

    PackReport {
        pack_root: root.display().to_string(),
        checks: vec![
            manifest_check,
            import_check,
            entries_check,
            lint_check,
            hash_check,
        ],
        hash,
        manifest: manifest.ok(),
    }
}

/// Validate a pack compiled into the binary (its files are Rust sources, so the import scan
/// has nothing to look at and passes).
pub fn validate_embedded(pack: &EmbeddedPack) -> PackReport {
    let manifest = read_embedded_manifest(pack);
    let manifest_check = match &manifest {
        Ok(_) => Check::pass(MANIFEST_SCHEMA),
        Err(diags) => Check::from_diagnostics(MANIFEST_SCHEMA, diags.0.clone()),
    };
    let (entries_check, lint_check) = match &manifest {
        Err(_) => (
            Check::skip(TOOL_ENTRIES, "Skipped: manifest validation failed"),
            Check::skip(SECURITY_LINT, "Skipped: manifest validation failed"),
        ),
        Ok(doc) => {
            let (_, lint) = lint_checks(doc, None);
            let mut missing = Vec::new();
            for (i, tool) in doc.manifest.tools.iter().enumerate() {
                let module =
                    parse_entry(&tool.entry).map(|e| e.module.trim_start_matches("./").to_string());
                match module {
                    Ok(m) if pack.files.iter().any(|(p, _)| *p == m) => {}
                    Ok(m) => missing.push(
                        doc.diagnostic(
                            "ENTRY_NOT_FOUND",
                            &crate::yaml::FieldPath::root()
                                .key("tools")
                                .index(i)
                                .key("entry"),
                            format!(
                                "Tool \"{}\": entry `{m}` is not a file of the built-in pack",
                                tool.name
                            ),
                        ),
                    ),
                    Err(e) => missing.push(
                        doc.diagnostic(
                            "ENTRY_INVALID",
                            &crate::yaml::FieldPath::root()
                                .key("tools")
                                .index(i)
                                .key("entry"),
                            e,
                        ),
                    ),
                }
            }
            (Check::from_diagnostics(TOOL_ENTRIES, missing), lint)
        }
    };
    let hash = pack.hash();
    PackReport {
        pack_root: format!("<built-in>/{}", pack.id),
        checks: vec![
            manifest_check,
            Check::pass(IMPORT_BOUNDARIES),
            entries_check,
            lint_check,
            Check::pass(INTEGRITY_HASH),
        ],
        hash: Some(hash),
        manifest: manifest.ok(),
    }
}

fn lint_checks(doc: &ManifestDocument, root: Option<&Path>) -> (Check, Check) {
    let issues = lint::security_lint(doc, root);
    let (entries, rest): (Vec<_>, Vec<_>) = issues
        .into_iter()
        .partition(|i| i.rule == "entry-resolution");
    let to_diags = |issues: Vec<lint::LintIssue>| -> Vec<FileDiagnostic> {
        issues
            .into_iter()
            .map(|i| doc.diagnostic(lint_code(i.rule), &i.path, i.message))
            .collect()
    };
    (
        Check::from_diagnostics(TOOL_ENTRIES, to_diags(entries)),
        Check::from_diagnostics(SECURITY_LINT, to_diags(rest)),
    )
}

fn lint_code(rule: &str) -> &'static str {
    match rule {
        "entry-resolution" => "ENTRY_RESOLUTION",
        "event-kind" => "EVENT_KIND_INVALID",
        "slug-prefix" => "PACK_SLUG_PREFIX_MISMATCH",
        "backpressure" => "MISSING_BACKPRESSURE_POLICY",
        "allowlist" => "ALLOWLIST_ENTRY_INVALID",
        "config-schema" => "CONFIG_SCHEMA_INVALID",
        "state-alias" => "STATE_ALIAS_UNKNOWN",
        "schema" => "SCHEMA_UNSUPPORTED",
        _ => "SECURITY_LINT",
    }
}

/// Resolve `--pack-root` or `--id` (under `packs_root`) the way the original's pack commands do.
pub fn resolve_pack_root(
    pack_root: Option<&Path>,
    id: Option<&str>,
    packs_root: &Path,
) -> Option<PathBuf> {
    match (pack_root, id) {
        (Some(root), _) => Some(root.to_path_buf()),
        (None, Some(id)) => Some(packs_root.join(id)),
        (None, None) => None,
    }
}
