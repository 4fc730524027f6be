//! One module per command family; each function parses nothing and renders through `output`.

pub mod approvals;
pub mod author;
pub mod campus;
pub mod cloud;
pub mod compute;
pub mod conductor;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod events;
pub mod init;
pub mod pack;
pub mod proof;
pub mod sandbox_init;
pub mod task;
pub mod tool;
pub mod trusted_compute;

use std::path::{Path, PathBuf};

use lumenflow_kernel::workspace::{self, WorkspaceDocument};

use crate::output::CliError;

/// What every command gets besides its own arguments.
pub struct Context {
    pub json: bool,
    pub workspace: Option<PathBuf>,
}

impl Context {
    pub fn cwd(&self) -> Result<PathBuf, CliError> {
        std::env::current_dir()
            .map_err(|e| CliError::new("IO_ERROR", format!("cannot read the current folder: {e}")))
    }

    /// The workspace folder: `--workspace`, else the nearest folder upwards with workspace.yaml.
    pub fn workspace_dir(&self) -> Result<PathBuf, CliError> {
        if let Some(dir) = &self.workspace {
            return Ok(dir.clone());
        }
        let cwd = self.cwd()?;
        workspace::find_workspace_root(&cwd).ok_or_else(|| {
            CliError::new(
                "WORKSPACE_NOT_FOUND",
                format!(
                    "no {} in `{}` or any folder above it",
                    workspace::WORKSPACE_FILE_NAME,
                    cwd.display()
                ),
            )
            .with_help("run `lumenflow init` to create a workspace, or pass --workspace DIR")
        })
    }

    /// The workspace, read and validated.
    pub fn workspace(&self) -> Result<WorkspaceDocument, CliError> {
        let dir = self.workspace_dir()?;
        workspace::read_workspace(&dir).map_err(|d| {
            CliError::from(d).with_help(format!(
                "fix `{}` and retry",
                dir.join(workspace::WORKSPACE_FILE_NAME).display()
            ))
        })
    }

    /// The workspace if there is one (pack commands also work on bare folders).
    pub fn optional_workspace(&self) -> Option<PathBuf> {
        match &self.workspace {
            Some(d) => Some(d.clone()),
            None => self
                .cwd()
                .ok()
                .and_then(|c| workspace::find_workspace_root(&c)),
        }
    }
}

/// `path` shown relative to the current folder when it is inside it.
pub fn display_path(path: &Path) -> String {
    match std::env::current_dir() {
        Ok(cwd) => path
            .strip_prefix(&cwd)
            .unwrap_or(path)
            .display()
            .to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// SIGTERM (systemd, containers) or Ctrl-C: what a long-running command stops on.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `os:<login>` (from `USER`/`LOGNAME`), with the real uid when no login name is set. Whoever
/// can open the database could write anything, so this names the person rather than proving
/// them; it beats a free-text reviewer with nobody behind it.
pub(crate) fn os_subject() -> String {
    use std::os::unix::fs::MetadataExt;
    let login = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty());
    match login {
        Some(name) => format!("os:{name}"),
        None => match std::fs::metadata("/proc/self") {
            Ok(m) => format!("os:uid:{}", m.uid()),
            Err(_) => "os:unknown".to_string(),
        },
    }
}
