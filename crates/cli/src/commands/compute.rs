//! `lumenflow compute resolve --request FILE`: place one workload with the kernel's compute
//! resolver (CRS-01 to CRS-07) and print the result JSON.
//!
//! The request file is a `ComputeResolveRequest` (Q29, strict JSON: unknown fields are refused).
//! The single relaxation, `allow_same_family_reviewer`, is an operator decision and so a flag of
//! this command, never a field of the request. The result is printed as JSON on stdout in every
//! case; a `refused` result exits with status 1.

use std::path::PathBuf;

use clap::Subcommand;
use lumenflow_contracts::resolver::{
    ComputeResolveRequest, ComputeResolveResult, ComputeResolverPolicy,
};
use lumenflow_kernel::resolver::resolve;

use super::Context;
use crate::output::{warn, CliError};

#[derive(Subcommand, Debug)]
pub enum ComputeCommand {
    /// Resolve a workload to a peer descriptor: `resolved`, `refused` or `permitted-with-warning`.
    Resolve {
        /// A JSON ComputeResolveRequest: role, required_capability_tier, candidates, ...
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        /// Operator decision: permit a reviewer of the author's own provider family when no
        /// other family qualifies. The result is then `permitted-with-warning`, its
        /// `audit_warning` naming the relaxation for whoever records the placement. Off by
        /// default.
        #[arg(long)]
        allow_same_family_reviewer: bool,
    },
}

pub fn run(ctx: &Context, cmd: ComputeCommand) -> Result<(), CliError> {
    match cmd {
        ComputeCommand::Resolve {
            request,
            allow_same_family_reviewer,
        } => resolve_file(
            ctx,
            request,
            ComputeResolverPolicy {
                allow_same_family_reviewer,
            },
        ),
    }
}

/// Reads and parses the request file, naming the file and the field on failure.
pub fn read_request(path: &std::path::Path) -> Result<ComputeResolveRequest, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(
            "REQUEST_UNREADABLE",
            format!("cannot read the request file `{}`: {e}", path.display()),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::new(
            "REQUEST_INVALID",
            format!(
                "`{}` is not a valid compute resolve request: {e}",
                path.display()
            ),
        )
        .with_help(
            "expected {\"role\": \"executor\"|\"reviewer\", \"required_capability_tier\": .., \
             \"candidates\": [{\"id\", \"kind\": \"runner-node\"|\"campus-node\", \
             \"capability_tier\", \"provider_family\", ..}], ..}",
        )
    })
}

fn resolve_file(
    ctx: &Context,
    path: PathBuf,
    policy: ComputeResolverPolicy,
) -> Result<(), CliError> {
    let request = read_request(&path)?;
    let result = resolve(&request, &policy);
    let text = serde_json::to_string_pretty(&result)
        .map_err(|e| CliError::new("INTERNAL", format!("cannot render the result: {e}")))?;
    crate::output::stdout_line(&text);
    match &result {
        ComputeResolveResult::Refused { reason, .. } => {
            if !ctx.json {
                eprintln!("refused: {reason}");
            }
            Err(CliError::new("COMPUTE_REFUSED", reason.clone()).already_reported(true))
        }
        ComputeResolveResult::PermittedWithWarning { audit_warning, .. } => {
            warn(ctx.json, audit_warning);
            Ok(())
        }
        ComputeResolveResult::Resolved { .. } => Ok(()),
    }
}
