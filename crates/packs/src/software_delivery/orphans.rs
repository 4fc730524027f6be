//! Gate commands whose runtime died: a `lumenflow tool call` or sidecar killed (SIGKILL, OOM)
//! while a gate ran leaves the gate's process group running with nobody to enforce its timeout.
//!
//! Every gate run is recorded in `.lumenflow/state/software-delivery/running/<run_id>.json`
//! (the owning process and its start time) for as long as it runs, and its processes carry
//! `LUMENFLOW_GATE_RUN=<run_id>` in their environment, which every child inherits. [`reap`]
//! (at the start of every `gates` call and of every sidecar) finds records whose owner is gone
//! and kills exactly the processes that carry that run id: a recycled process id or group id
//! never makes it kill something else.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::common::STATE_REL;

/// The environment variable naming a gate run.
pub const RUN_ENV: &str = "LUMENFLOW_GATE_RUN";

#[derive(Debug, Serialize, Deserialize)]
struct Running {
    run_id: String,
    owner_pid: u32,
    /// The owner's start time (clock ticks since boot), so a recycled pid is not the owner.
    owner_start: u64,
    wu_id: String,
    gate: String,
}

fn dir(workspace_dir: &Path) -> PathBuf {
    workspace_dir.join(STATE_REL).join("running")
}

/// Field 22 of `/proc/<pid>/stat`: when the process started. `None` when it does not exist.
fn start_time(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A gate run in progress, recorded until it is dropped.
pub struct Tracked {
    path: Option<PathBuf>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Record the run `run_id` of `gate` for `wu_id`, owned by this process. Recording is best
/// effort: a gate is not refused because its record could not be written (it then cannot be
/// reaped after a crash, as before records existed).
pub fn track(workspace_dir: &Path, run_id: &str, wu_id: &str, gate: &str) -> Tracked {
    let owner_pid = std::process::id();
    let Some(owner_start) = start_time(&owner_pid.to_string()) else {
        return Tracked { path: None };
    };
    let record = Running {
        run_id: run_id.to_string(),
        owner_pid,
        owner_start,
        wu_id: wu_id.to_string(),
        gate: gate.to_string(),
    };
    let path = dir(workspace_dir).join(format!("{run_id}.json"));
    let written = serde_json::to_vec(&record)
        .map_err(|e| e.to_string())
        .and_then(|bytes| super::common::write_atomic(&path, &bytes).map_err(|e| format!("{e:?}")));
    match written {
        Ok(()) => Tracked { path: Some(path) },
        Err(_) => Tracked { path: None },
    }
}

/// Kill the processes of gate runs whose owner is gone and drop their records. Returns what
/// was reaped (`<wu_id>/<gate>: N process(es)`), for the caller to log.
pub fn reap(workspace_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir(workspace_dir)) else {
        return Vec::new();
    };
    let mut reaped = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Some(record) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Running>(&b).ok())
        else {
            // Not ours to understand: leave it for a person.
            continue;
        };
        if start_time(&record.owner_pid.to_string()) == Some(record.owner_start) {
            continue; // still running, under its owner's timeout
        }
        let pids = carrying(&record.run_id);
        for pid in &pids {
            super::common::sigkill(pid);
        }
        let _ = std::fs::remove_file(&path);
        reaped.push(format!(
            "{}/{}: {} process(es)",
            record.wu_id,
            record.gate,
            pids.len()
        ));
    }
    reaped
}

/// Kill every process of the live gate run `run_id` (those carrying it in their environment):
/// at its timeout, and once it ended, so a child that left the process group (`setsid`,
/// a daemon) neither outlives the gate nor keeps its output pipes open. Returns how many.
pub fn kill_run(run_id: &str) -> usize {
    let pids = carrying(run_id);
    for pid in &pids {
        super::common::sigkill(pid);
    }
    pids.len()
}

/// The processes whose environment holds `RUN_ENV=run_id`.
fn carrying(run_id: &str) -> Vec<String> {
    let needle = format!("{RUN_ENV}={run_id}");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}
