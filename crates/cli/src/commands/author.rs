//! `lumenflow pack author`: secure templates, from a spec file or the wizard.

use std::path::PathBuf;

use lumenflow_kernel::authoring::{self, AuthoringError, AuthoringRequest};
use lumenflow_kernel::diagnostics::{self, FileDiagnostic, SourceFile};
use lumenflow_kernel::pack_report;
use lumenflow_kernel::yaml::FieldPath;
use serde_json::json;

use super::{display_path, Context};
use crate::output::{print_ok, CliError};

/// Read a YAML or JSON authoring request; problems point at the file, line and field.
pub fn read_spec(path: &std::path::Path) -> Result<AuthoringRequest, CliError> {
    let src = SourceFile::read(path).map_err(|mut d| {
        if d.code == "FILE_NOT_READABLE" {
            d.code = "FILE_NOT_FOUND";
        }
        CliError::from(d)
    })?;
    let root = diagnostics::parse_yaml(&src).map_err(|mut d| {
        d.code = "PARSE_ERROR";
        CliError::from(d)
    })?;
    let req: AuthoringRequest = diagnostics::from_yaml(&src, &root, "TEMPLATE_VALIDATION_ERROR")?;
    if let Err(issues) = authoring::validate_request(&req) {
        let diags: Vec<FileDiagnostic> = issues
            .iter()
            .map(|i| {
                FileDiagnostic::at_field(
                    "TEMPLATE_VALIDATION_ERROR",
                    &src,
                    &root,
                    &issue_path(&i.path),
                    false,
                    i.message.clone(),
                )
            })
            .collect();
        return Err(CliError::from(diagnostics::Diagnostics(diags)));
    }
    Ok(req)
}

/// `templates[1].scope_pattern` -> a field path.
fn issue_path(path: &str) -> FieldPath {
    let mut fp = FieldPath::root();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            fp = fp.key(name);
        }
        for idx in rest.split('[').filter_map(|s| s.strip_suffix(']')) {
            if let Ok(i) = idx.parse() {
                fp = fp.index(i);
            }
        }
    }
    fp
}

fn authoring_err(e: AuthoringError) -> CliError {
    let mut err = CliError::new(e.code(), e.to_string());
    if matches!(e, AuthoringError::AlreadyExists { .. }) {
        err = err.with_help("pass --force to replace it, or choose another --output");
    }
    err
}

pub fn run(
    ctx: &Context,
    spec_file: Option<PathBuf>,
    output: PathBuf,
    force: bool,
    skip_validate: bool,
) -> Result<(), CliError> {
    let req = match &spec_file {
        Some(path) => read_spec(path)?,
        None => {
            // Questions go to stderr so that `--json` output on stdout stays one document.
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let mut out = std::io::stderr();
            authoring::run_wizard(&mut input, &mut out).map_err(authoring_err)?
        }
    };
    let generated = authoring::generate(&req)
        .map_err(|issues| authoring_err(AuthoringError::Invalid(issues)))?;
    let dir = authoring::write_pack(&generated, &output, force).map_err(authoring_err)?;
    let files: Vec<&str> = generated
        .files
        .iter()
        .map(|f| f.rel_path.as_str())
        .collect();
    let mut human = format!(
        "Created pack `{}` in {}\n",
        generated.pack_id,
        display_path(&dir)
    );
    for f in &files {
        human.push_str(&format!("  {f}\n"));
    }
    let mut report_json = json!(null);
    if !skip_validate {
        let allow = lumenflow_kernel::import_scan::DEFAULT_BARE_IMPORT_ALLOWLIST
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>();
        let report = pack_report::validate_pack_dir(&dir, &allow, None);
        report_json = report.to_json();
        if !report.passed() {
            return Err(CliError::new(
                "VALIDATION_ERROR",
                format!(
                    "Generated pack \"{}\" failed validation:\n{}",
                    generated.pack_id,
                    report.render_text()
                ),
            )
            .with_help(format!(
                "the files were kept in {} for inspection",
                display_path(&dir)
            )));
        }
        human.push_str(&format!(
            "\npack validate: all checks passed ({})\n",
            report
                .hash
                .as_ref()
                .map(|h| h.prefixed())
                .unwrap_or_default()
        ));
    }
    human.push_str(&format!(
        "\nNext: lumenflow pack install --id {} --source local --version {} --pack-root {}\n",
        generated.pack_id,
        req.version,
        display_path(&dir)
    ));
    print_ok(
        ctx.json,
        &json!({"pack_id": generated.pack_id, "path": dir, "files": files, "validation": report_json}),
        &human,
    );
    Ok(())
}
