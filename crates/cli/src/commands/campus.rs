//! `lumenflow campus`: the operator commands of the campus-telemetry pack.
//!
//! `facility add|list` registers facilities, `ingest --file F` loads a JSON Lines or CSV file of
//! readings (validated row by row; a bad row refuses the whole file unless `--skip-bad-rows`),
//! `poll --redfish URL` reads power and energy from a DMTF Redfish service on an interval, and
//! `attest challenge|verify` records a GPU-TEE attestation only after its token verified. These
//! are operator commands, not tools: they write only under `.lumenflow/state/campus/` and stamp
//! the pack's `campus:*` events in the workspace ledger, from the workspace's identity (the
//! enrollment subject, else the workspace id). None of them writes to a device.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use lumenflow_kernel::events::ledger::Ledger;
use lumenflow_packs::campus::attest::{self, AttestError, Policy};
use lumenflow_packs::campus::events::Recorder;
use lumenflow_packs::campus::ingest::{self, Format, IngestError, IngestOptions};
use lumenflow_packs::campus::redfish::{self, RedfishError};
use lumenflow_packs::campus::store::Store;
use serde_json::{json, Value};

use super::delivery::CommandEvents;
use super::{display_path, Context};
use crate::output::{print_ok, warn, CliError};

#[derive(Subcommand, Debug)]
pub enum CampusCommand {
    /// Register and list facilities.
    #[command(subcommand)]
    Facility(FacilityCommand),
    /// Ingest a file of readings (JSON Lines or CSV): PUE samples, power signals, meter
    /// windows and nodes, validated row by row.
    Ingest(IngestArgs),
    /// Read power and energy from a DMTF Redfish service (read only), on an interval.
    Poll(PollArgs),
    /// Verify GPU-TEE attestation tokens before recording them.
    #[command(subcommand)]
    Attest(AttestCommand),
}

#[derive(Subcommand, Debug)]
pub enum AttestCommand {
    /// Issue a fresh nonce for a node (the attestation service echoes it in `eat_nonce`).
    Challenge {
        /// The registered facility the node belongs to.
        #[arg(long)]
        facility: String,
        /// The node (GPU host) that will present the token.
        #[arg(long)]
        node: String,
    },
    /// Verify an attestation token (EAT, RFC 9711, JWT form) and record it if it passes.
    Verify {
        /// The facility given to `challenge`.
        #[arg(long)]
        facility: String,
        /// The node given to `challenge`.
        #[arg(long)]
        node: String,
        /// The nonce `challenge` issued.
        #[arg(long)]
        nonce: String,
        /// The file holding the token (`-` for stdin).
        #[arg(long, value_name = "FILE")]
        token: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum FacilityCommand {
    /// Register a facility (or update its name and region).
    Add {
        /// Opaque facility id, e.g. `campus-fac-001`.
        #[arg(long)]
        id: String,
        /// A display name (default: none).
        #[arg(long)]
        name: Option<String>,
        /// Region label, e.g. `eu-west-1` (the default region of its energy windows).
        #[arg(long)]
        region: Option<String>,
    },
    /// List the registered facilities.
    List,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Csv,
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// The file of readings.
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// The format (default: from the extension, `.csv` is CSV, anything else JSON Lines).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Keep the good rows of a file with bad ones (the bad ones are reported).
    #[arg(long)]
    skip_bad_rows: bool,
}

#[derive(Args, Debug)]
pub struct PollArgs {
    /// The Redfish service (its root URL).
    #[arg(long, value_name = "URL")]
    redfish: String,
    /// The facility the readings belong to.
    #[arg(long)]
    facility: String,
    /// Seconds between polls (at least 1).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    /// Seconds before a request to the service times out (at least 1).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// Poll once and exit.
    #[arg(long)]
    once: bool,
}

/// The identity events are stamped with: the enrollment subject, else the workspace id.
fn identity(ctx: &Context) -> Result<(PathBuf, String), CliError> {
    let doc = ctx.workspace()?;
    let dir = doc.dir.clone();
    match lumenflow_conductor::enrollment::load(&dir) {
        Ok(e) => Ok((dir, e.subject)),
        Err(lumenflow_conductor::enrollment::EnrollmentError::NotEnrolled { .. }) => {
            Ok((dir, doc.spec.id))
        }
        Err(e) => Err(CliError::new(e.code(), e.to_string())),
    }
}

/// The pack's state, a recorder stamping its events in the ledger and handing them on (to the
/// control plane of an enrolled workspace), and the delivery to hold until the command ends.
fn open(ctx: &Context) -> Result<(Store, Recorder, CommandEvents), CliError> {
    let (dir, identity) = identity(ctx)?;
    let events = CommandEvents::open(&dir, &[lumenflow_packs::campus::manifest()], ctx.json)?;
    let ledger = Ledger::open(&lumenflow_kernel::events::ledger_path(&dir))
        .map_err(|e| CliError::new("LEDGER_UNAVAILABLE", e.to_string()))?;
    let recorder = Recorder::new(identity, Some(Arc::new(ledger)), Some(events.sink()));
    Ok((Store::new(&dir), recorder, events))
}

fn ingest_error(e: IngestError) -> CliError {
    match &e {
        IngestError::BadRows { path, errors } => {
            let shown = display_path(path);
            let mut message = format!(
                "{} bad row(s) in `{shown}`, nothing ingested:",
                errors.len()
            );
            for err in errors.iter().take(50) {
                message.push_str(&format!("\n  {}", err.located(&shown)));
            }
            if errors.len() > 50 {
                message.push_str(&format!("\n  ... and {} more", errors.len() - 50));
            }
            CliError::new(e.code(), message).with_help(
                "fix the rows and retry, or pass --skip-bad-rows to ingest the good rows",
            )
        }
        _ => CliError::new(e.code(), e.to_string()),
    }
}

pub fn run(ctx: &Context, command: CampusCommand) -> Result<(), CliError> {
    match command {
        CampusCommand::Facility(FacilityCommand::Add { id, name, region }) => {
            let (store, recorder, events) = open(ctx)?;
            let f =
                ingest::add_facility(&store, &recorder, &id, name.as_deref(), region.as_deref())
                    .map_err(ingest_error)?;
            // Delivered before the answer is printed (see `delivery`).
            drop(events);
            let value = serde_json::to_value(&f).unwrap_or(Value::Null);
            print_ok(
                ctx.json,
                &value,
                &format!("facility `{}` registered\n", f.facility_id),
            );
            Ok(())
        }
        CampusCommand::Facility(FacilityCommand::List) => {
            let (dir, _) = identity(ctx)?;
            let facilities = Store::new(&dir)
                .facilities()
                .map_err(|e| CliError::new(e.code(), e.to_string()))?;
            let mut human = String::new();
            for f in &facilities {
                human.push_str(&format!(
                    "{}\t{}\t{}\n",
                    f.facility_id,
                    f.region.as_deref().unwrap_or("-"),
                    f.name.as_deref().unwrap_or("")
                ));
            }
            if facilities.is_empty() {
                human.push_str("no facilities registered\n");
            }
            print_ok(ctx.json, &json!({ "facilities": facilities }), &human);
            Ok(())
        }
        CampusCommand::Ingest(args) => {
            let (store, recorder, events) = open(ctx)?;
            let started = Instant::now();
            let report = ingest::ingest_file(
                &store,
                &recorder,
                &args.file,
                IngestOptions {
                    skip_bad_rows: args.skip_bad_rows,
                    format: args.format.map(|f| match f {
                        FormatArg::Jsonl => Format::JsonLines,
                        FormatArg::Csv => Format::Csv,
                    }),
                },
            )
            .map_err(ingest_error)?;
            drop(events);
            let elapsed = started.elapsed().as_secs_f64();
            let shown = display_path(&args.file);
            for e in &report.skipped {
                warn(ctx.json, &format!("skipped {}", e.located(&shown)));
            }
            if let Some(w) = &report.warning {
                warn(ctx.json, w);
            }
            let mut value = serde_json::to_value(&report).unwrap_or(Value::Null);
            value["elapsed_seconds"] = json!(elapsed);
            let human = format!(
                "ingested {} of {} row(s) from `{shown}` ({} energy window(s), {} PUE sample(s), {} power signal(s), {} node(s)), {} event(s), {} skipped, in {elapsed:.2}s\n",
                report.ingested,
                report.rows,
                report.energy_windows,
                report.pue_samples,
                report.power_signals,
                report.nodes,
                report.events,
                report.skipped.len(),
            );
            print_ok(ctx.json, &value, &human);
            Ok(())
        }
        CampusCommand::Attest(c) => attest(ctx, c),
        CampusCommand::Poll(args) => {
            let (store, recorder, _events) = open(ctx)?;
            // Checked once, up front: polling on would only repeat this warning every interval.
            if store
                .facility(&args.facility)
                .map_err(|e| CliError::new(e.code(), e.to_string()))?
                .is_none()
            {
                return Err(CliError::new(
                    "FACILITY_NOT_FOUND",
                    format!("facility `{}` is not registered", args.facility),
                )
                .with_help(format!(
                    "register it first: `lumenflow campus facility add --id {}`",
                    args.facility
                )));
            }
            let client = redfish::Client::new(&args.redfish, Duration::from_secs(args.timeout))
                .map_err(redfish_error)?;
            loop {
                match redfish::poll_once(&store, &recorder, &client, &args.facility) {
                    Ok(report) => {
                        let value = serde_json::to_value(&report).unwrap_or(Value::Null);
                        let human = format!(
                            "{}: {} chassis, {} power signal(s), {} energy window(s){}\n",
                            report.polled_at,
                            report.chassis.len(),
                            report.ingest.power_signals,
                            report.ingest.energy_windows,
                            if report.baselines.is_empty() {
                                String::new()
                            } else {
                                format!(", energy baseline set for {}", report.baselines.join(", "))
                            }
                        );
                        print_ok(ctx.json, &value, &human);
                    }
                    Err(e) if args.once => return Err(redfish_error(e)),
                    Err(e) => warn(ctx.json, &e.to_string()),
                }
                if args.once {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_secs(args.interval));
            }
        }
    }
}

fn attest_error(e: AttestError) -> CliError {
    CliError::new(e.code(), e.to_string())
}

fn attest(ctx: &Context, command: AttestCommand) -> Result<(), CliError> {
    let (dir, _) = identity(ctx)?;
    let policy = Policy::load(&dir).map_err(attest_error)?;
    let (store, recorder, events) = open(ctx)?;
    match command {
        AttestCommand::Challenge { facility, node } => {
            let c = attest::issue_nonce(&store, &policy, &facility, &node).map_err(attest_error)?;
            let value = serde_json::to_value(&c).unwrap_or(Value::Null);
            print_ok(ctx.json, &value, &format!("{}\n", c.nonce));
            Ok(())
        }
        AttestCommand::Verify {
            facility,
            node,
            nonce,
            token,
        } => {
            let text = if token.as_os_str() == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t).map_err(|e| {
                    CliError::new("IO_ERROR", format!("cannot read the token from stdin: {e}"))
                })?;
                t
            } else {
                std::fs::read_to_string(&token).map_err(|e| {
                    CliError::new(
                        "IO_ERROR",
                        format!("cannot read `{}`: {e}", display_path(&token)),
                    )
                })?
            };
            let recorded =
                attest::record(&store, &recorder, &policy, &facility, &node, &text, &nonce)
                    .map_err(attest_error)?;
            drop(events);
            let value = serde_json::to_value(&recorded).unwrap_or(Value::Null);
            print_ok(
                ctx.json,
                &value,
                &format!(
                    "attestation `{}` of node `{node}` verified by `{}` and recorded\n",
                    recorded.attestation_id, recorded.verifier
                ),
            );
            Ok(())
        }
    }
}

fn redfish_error(e: RedfishError) -> CliError {
    match e {
        RedfishError::Ingest(e) => ingest_error(e),
        e => CliError::new(e.code(), e.to_string()),
    }
}
