//! `lumenflow proof verify`: the four checks of a trusted-compute bundle (TCD-06), each
//! reported, exit 0 only when all pass.

use std::path::PathBuf;

use clap::Subcommand;
use lumenflow_proof::bundle;
use lumenflow_proof::PublicKey;
use serde_json::json;

use super::Context;
use crate::output::{print_ok, CliError};

#[derive(Subcommand, Debug)]
pub enum ProofCommand {
    /// Check a bundle: required files present, schema supported, hashes match, signature valid.
    Verify {
        /// The bundle folder, e.g. evidence/demo/trusted-compute/<run-id>.
        dir: PathBuf,
        /// Pin the expected signer (an SPKI `PUBLIC KEY` PEM). Without it, the key shipped
        /// inside the bundle is used and the report says it was only self-asserted.
        #[arg(long, value_name = "PEM")]
        pubkey: Option<PathBuf>,
    },
}

pub fn run(ctx: &Context, cmd: ProofCommand) -> Result<(), CliError> {
    match cmd {
        ProofCommand::Verify { dir, pubkey } => verify(ctx, dir, pubkey),
    }
}

fn verify(ctx: &Context, dir: PathBuf, pubkey: Option<PathBuf>) -> Result<(), CliError> {
    if !dir.is_dir() {
        return Err(CliError::new(
            "BUNDLE_NOT_FOUND",
            format!("{} is not a folder; pass a bundle folder such as evidence/demo/trusted-compute/<run-id>", dir.display()),
        ));
    }
    let pinned = match &pubkey {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| CliError::new("IO_ERROR", format!("{}: {e}", path.display())))?;
            Some(
                PublicKey::from_pem(&pem, &path.display().to_string())
                    .map_err(|e| CliError::new(e.code(), e.to_string()))?,
            )
        }
        None => None,
    };
    let v = bundle::verify(&dir, pinned.as_ref());
    let mut human = format!("bundle {}\n", dir.display());
    for c in &v.checks {
        human.push_str(&format!(
            "  {} {:<17} {}\n",
            if c.passed { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        ));
    }
    if v.passed() {
        human.push_str(if v.key_pinned {
            "verified: all four checks passed with the pinned key"
        } else {
            "verified: all four checks passed (signer key self-asserted; pin it with --pubkey)"
        });
        print_ok(ctx.json, &json!({"ok": true, "verification": v}), &human);
        Ok(())
    } else {
        let failed: Vec<&str> = v
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect();
        if ctx.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"ok": false, "verification": v}))
                    .unwrap_or_default()
            );
        } else {
            eprint!("{human}");
        }
        Err(CliError::new(
            "BUNDLE_INVALID",
            format!("{} failed: {}", dir.display(), failed.join(", ")),
        )
        .already_reported(true))
    }
}
