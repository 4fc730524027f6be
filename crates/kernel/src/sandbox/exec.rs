//! Running a child with a wall-clock timeout and capped output, read on threads.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{RunOutcome, RunSpec, SandboxError};

/// How long to wait for the output pipes to close after the child is gone.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(5);

pub(crate) struct RawOutcome {
    exit_code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timed_out: bool,
    truncated: bool,
    stderr_truncated: bool,
}

impl RawOutcome {
    pub fn into_outcome(self, sandbox: &'static str, started: Instant) -> RunOutcome {
        RunOutcome {
            exit_code: self.exit_code,
            stdout: self.stdout,
            stderr: self.stderr,
            timed_out: self.timed_out,
            output_truncated: self.truncated,
            stderr_truncated: self.stderr_truncated,
            sandbox,
            duration: started.elapsed(),
        }
    }
}

/// One output pipe, collected up to a cap.
struct Capture {
    buf: Mutex<Vec<u8>>,
    truncated: AtomicBool,
    done: AtomicBool,
}

impl Capture {
    fn take(&self) -> Vec<u8> {
        let mut guard = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *guard)
    }
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    cap: usize,
    overflow: Option<Arc<AtomicBool>>,
) -> Arc<Capture> {
    let capture = Arc::new(Capture {
        buf: Mutex::new(Vec::new()),
        truncated: AtomicBool::new(false),
        done: AtomicBool::new(false),
    });
    let c = Arc::clone(&capture);
    thread::spawn(move || {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut buf = c.buf.lock().unwrap_or_else(|e| e.into_inner());
            let room = cap.saturating_sub(buf.len());
            if n > room {
                buf.extend_from_slice(&chunk[..room]);
                c.truncated.store(true, Ordering::SeqCst);
                if let Some(flag) = &overflow {
                    flag.store(true, Ordering::SeqCst);
                }
            } else {
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        c.done.store(true, Ordering::SeqCst);
    });
    capture
}

/// Kill the process group `pgid` (best effort, through the system `kill`: the crate has no
/// `unsafe` and so no `kill(2)`).
fn kill_group(pgid: u32) {
    for kill in ["/usr/bin/kill", "/bin/kill"] {
        if Path::new(kill).is_file() {
            let _ = Command::new(kill)
                .args(["-9", "--", &format!("-{pgid}")])
                .env_clear()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            return;
        }
    }
}

fn stop(child: &mut Child, own_group: bool) {
    if own_group {
        kill_group(child.id());
    }
    let _ = child.kill();
}

fn exit_code(status: ExitStatus) -> Option<i32> {
    status.code().or_else(|| status.signal().map(|s| 128 + s))
}

/// Run `cmd` with `spec`'s stdin, timeout and output cap. `own_group` puts the child in a new
/// process group that is killed as a whole (for children outside a pid namespace).
pub(crate) fn execute(
    mut cmd: Command,
    spec: &RunSpec,
    own_group: bool,
) -> Result<RawOutcome, SandboxError> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if own_group {
        cmd.process_group(0);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        program: cmd.get_program().into(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        let input = spec.stdin.clone();
        thread::spawn(move || {
            // A tool that exits without reading its input closes the pipe: not an error here.
            let _ = stdin.write_all(&input);
        });
    }
    let overflow = Arc::new(AtomicBool::new(false));
    let out = child
        .stdout
        .take()
        .map(|p| spawn_reader(p, spec.max_output_bytes, Some(Arc::clone(&overflow))));
    let err = child
        .stderr
        .take()
        .map(|p| spawn_reader(p, spec.max_output_bytes, None));

    let deadline = started.checked_add(spec.timeout);
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => {
                stop(&mut child, own_group);
                break child.wait().ok();
            }
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            timed_out = true;
            stop(&mut child, own_group);
            break child.wait().ok();
        }
        if overflow.load(Ordering::SeqCst) {
            stop(&mut child, own_group);
            break child.wait().ok();
        }
        let nap = deadline
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(POLL)
            .min(POLL);
        thread::sleep(nap);
    };

    // Let the readers drain; anything still holding the pipes after the child is gone (a
    // background process of an unsandboxed tool) is killed with its group.
    let readers: Vec<&Arc<Capture>> = out.iter().chain(err.iter()).collect();
    let all_done = || readers.iter().all(|c| c.done.load(Ordering::SeqCst));
    let wait_until = |limit: Duration| {
        let until = Instant::now() + limit;
        while !all_done() && Instant::now() < until {
            thread::sleep(POLL);
        }
    };
    wait_until(Duration::from_millis(100));
    if !all_done() && own_group {
        kill_group(child.id());
    }
    wait_until(DRAIN_GRACE);

    // Only stdout over the cap stops the tool (its ToolOutput is lost); stderr is a log, cut.
    let over = |c: &Option<Arc<Capture>>| {
        c.as_ref()
            .is_some_and(|c| c.truncated.load(Ordering::SeqCst))
    };
    let truncated = over(&out);
    let stderr_truncated = over(&err);
    Ok(RawOutcome {
        exit_code: if timed_out {
            None
        } else {
            status.and_then(exit_code)
        },
        stdout: out.map(|c| c.take()).unwrap_or_default(),
        stderr: err.map(|c| c.take()).unwrap_or_default(),
        timed_out,
        truncated,
        stderr_truncated,
    })
}

/// Run `program args` with no input and return its stdout if it succeeds within `timeout`.
/// `path_env`: run with a cleared environment holding only this `PATH`.
pub(crate) fn probe(
    program: &Path,
    args: &[&str],
    path_env: Option<&str>,
    timeout: Duration,
) -> Option<Vec<u8>> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(path) = path_env {
        cmd.env_clear().env("PATH", path);
    }
    let mut child = cmd.spawn().ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.by_ref().take(64 * 1024).read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let out = reader.join().ok()?;
    status.success().then_some(out)
}
