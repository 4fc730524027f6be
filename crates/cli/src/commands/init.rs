//! `lumenflow init`.

use std::path::PathBuf;

use lumenflow_kernel::install;
use serde_json::json;

use super::{display_path, Context};
use crate::output::{print_ok, CliError};

pub fn run(
    ctx: &Context,
    dir: Option<PathBuf>,
    id: Option<String>,
    name: Option<String>,
) -> Result<(), CliError> {
    let dir = match dir.or_else(|| ctx.workspace.clone()) {
        Some(d) => d,
        None => ctx.cwd()?,
    };
    let folder = std::fs::canonicalize(&dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "workspace".to_string());
    let id = id.unwrap_or_else(|| slug(&folder));
    let name = name.unwrap_or(folder);
    let path = install::init_workspace(&dir, &id, &name)
        .map_err(|e| CliError::new(e.code(), e.to_string()))?;
    let human = format!(
        "Created {} (workspace `{id}`) and {}/\n\nNext:\n  lumenflow pack author --spec-file spec.yaml   # or run it without flags for the wizard\n  lumenflow pack validate --id <pack-id>\n  lumenflow pack install --id <pack-id> --source local --version <version>\n",
        display_path(&path),
        display_path(&dir.join(".lumenflow")),
    );
    print_ok(
        ctx.json,
        &json!({"workspace_file": path, "id": id, "name": name}),
        &human,
    );
    Ok(())
}

/// A workspace id from a folder name: lowercase, `-` for anything else.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        format!("ws-{out}").trim_end_matches('-').to_string()
    } else {
        out
    }
}
