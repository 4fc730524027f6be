//! The real processes of the demo: a control plane and a sidecar, each this same binary,
//! started as children that announce their address on stdout and are killed when the demo ends.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::output::CliError;

/// A child process that is killed (and reaped) when dropped.
pub struct Service {
    pub name: &'static str,
    pub url: String,
    pub log: PathBuf,
    child: Child,
}

impl Service {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running? (A service that died leaves its log behind for the error message.)
    pub fn check_alive(&mut self) -> Result<(), CliError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(CliError::new(
                "DEMO_SERVICE_DIED",
                format!(
                    "the {} exited ({status}); its log is {}",
                    self.name,
                    self.log.display()
                ),
            )),
            Err(e) => Err(CliError::new("IO_ERROR", format!("{}: {e}", self.name))),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `lumenflow <args>` and wait (up to `timeout`) for the line announcing
/// `... listening on http://ADDR`; stderr goes to `log`.
pub fn start(
    name: &'static str,
    args: &[String],
    cwd: &Path,
    log: &Path,
    timeout: Duration,
) -> Result<Service, CliError> {
    let exe = std::env::current_exe().map_err(|e| {
        CliError::new(
            "IO_ERROR",
            format!("cannot find the lumenflow binary to start the {name}: {e}"),
        )
    })?;
    let stderr = File::create(log)
        .map_err(|e| CliError::new("IO_ERROR", format!("{}: {e}", log.display())))?;
    let mut child = Command::new(exe)
        .args(args)
        .current_dir(cwd)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(|e| CliError::new("IO_ERROR", format!("cannot start the {name}: {e}")))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err(CliError::new(
            "IO_ERROR",
            format!("the {name} has no stdout"),
        ));
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find("http://") {
                let url = line[at..].trim().trim_end_matches('/').to_string();
                let _ = tx.send(url);
                // Keep draining so the child never blocks on a full pipe.
            }
        }
    });
    let mut service = Service {
        name,
        url: String::new(),
        log: log.to_path_buf(),
        child,
    };
    match rx.recv_timeout(timeout) {
        Ok(url) => {
            service.url = url;
            Ok(service)
        }
        Err(_) => {
            service.check_alive()?;
            Err(CliError::new(
                "DEMO_SERVICE_TIMEOUT",
                format!(
                    "the {name} did not announce its address within {}s; its log is {}",
                    timeout.as_secs(),
                    log.display()
                ),
            ))
        }
    }
}

/// Run `lumenflow <args>` to completion; stdout on success, a clear error otherwise.
pub fn run(args: &[String], cwd: &Path) -> Result<String, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new("IO_ERROR", format!("cannot find the lumenflow binary: {e}")))?;
    let out = Command::new(exe)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CliError::new("IO_ERROR", format!("lumenflow {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(CliError::new(
            "DEMO_STEP_FAILED",
            format!(
                "`lumenflow {}` failed: {}",
                redact_args(args),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Arguments with the value after `--code` hidden: an enrollment code is a secret.
fn redact_args(args: &[String]) -> String {
    let mut out = Vec::new();
    let mut hide = false;
    for a in args {
        if hide {
            out.push("<redacted>".to_string());
            hide = false;
        } else {
            hide = a == "--code";
            out.push(a.clone());
        }
    }
    out.join(" ")
}
