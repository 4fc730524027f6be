//! `lumenflow events tail`: the local event ledger, `.lumenflow/state/conductor/events.jsonl`
//! (Q34, Q42). With no control plane configured this is where a workspace's v2 events land, so
//! this is the Rust counterpart of watching `mem:inbox`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use lumenflow_contracts::event::{check_kind_syntax, KernelEventV2};
use lumenflow_kernel::events::{ledger, ledger_path};

use super::{display_path, Context};
use crate::output::CliError;

/// How often `--follow` looks for new lines.
const POLL: Duration = Duration::from_millis(200);

pub struct TailArgs {
    pub follow: bool,
    pub kind: Option<String>,
    pub limit: Option<usize>,
}

pub fn tail(ctx: &Context, args: TailArgs) -> Result<(), CliError> {
    if let Some(kind) = &args.kind {
        check_kind_syntax(kind)
            .map_err(|reason| CliError::new("INVALID_ARGUMENT", format!("--kind: {reason}")))?;
    }
    let path = ledger_path(&ctx.workspace_dir()?);
    let kind = args.kind.as_deref();

    let (mut events, mut offset) = read(&path, 0, kind)?;
    if let Some(limit) = args.limit {
        events.drain(..events.len().saturating_sub(limit));
    }
    if !print(ctx.json, &events) {
        return Ok(());
    }
    if !args.follow {
        if events.is_empty() && !ctx.json {
            match kind {
                Some(kind) => eprintln!("no `{kind}` events in {}", display_path(&path)),
                None => eprintln!("no events in {}", display_path(&path)),
            }
        }
        return Ok(());
    }
    if !ctx.json {
        eprintln!("following {} (Ctrl-C to stop)", display_path(&path));
    }
    let mut identity = file_identity(&path);
    loop {
        std::thread::sleep(POLL);
        // A ledger replaced by another file (or removed and recreated) is read from the start;
        // `read_from` itself restarts when the file shrank below the offset.
        let now = file_identity(&path);
        if now != identity {
            identity = now;
            offset = 0;
        }
        let (events, next) = read(&path, offset, kind)?;
        if next < offset && !ctx.json {
            eprintln!(
                "{} was truncated; reading it from the start",
                display_path(&path)
            );
        }
        offset = next;
        if !print(ctx.json, &events) {
            return Ok(());
        }
    }
}

fn read(
    path: &Path,
    offset: u64,
    kind: Option<&str>,
) -> Result<(Vec<KernelEventV2>, u64), CliError> {
    ledger::read_from(path, offset, kind).map_err(|e| {
        CliError::new(e.code(), e.to_string())
            .with_help("each line of the ledger must be one v2 event as JSON; move the damaged file aside to start a new ledger")
    })
}

/// One line per event; `false` when stdout is gone (a closed pipe ends the command quietly).
fn print(json: bool, events: &[KernelEventV2]) -> bool {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for event in events {
        let line = if json {
            serde_json::to_string(event).unwrap_or_default()
        } else {
            render(event)
        };
        if writeln!(out, "{line}").is_err() {
            return false;
        }
    }
    out.flush().is_ok()
}

/// `<timestamp>  <kind>  <event_id>  from=<from>  <compact payload>`.
pub fn render(event: &KernelEventV2) -> String {
    let payload = serde_json::to_string(&event.payload).unwrap_or_default();
    format!(
        "{}  {}  {}  from={}  {payload}",
        event.timestamp, event.kind, event.event_id, event.from
    )
}

/// What tells a replaced file from the same file grown or shrunk.
#[cfg(unix)]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}
