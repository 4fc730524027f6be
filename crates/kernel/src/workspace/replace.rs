//! Writing `workspace.yaml` back after an edit (`lumenflow config set`, `lumenflow pack install`).
//!
//! Both commands read the file, compute the new text and write it: a read-modify-write. Two of
//! them at once (or one beside an editor saving the file) would silently undo one edit. The
//! write therefore checks, under an exclusive lock, that the file still holds the text the edit
//! was computed from, and refuses otherwise; callers read again and redo their edit.

use std::path::{Path, PathBuf};

use super::{WorkspaceDocument, STATE_DIR, WORKSPACE_FILE_NAME};
use crate::file_lock::LockFile;

/// The lock every writer of `workspace.yaml` holds while it checks and replaces the file.
pub const WORKSPACE_LOCK_FILE: &str = "workspace.lock";

/// Why [`replace_workspace_text`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    #[error("`{}` changed after it was read (another command or an editor wrote it meanwhile); nothing was written", path.display())]
    Changed { path: PathBuf },
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ReplaceError {
    pub fn code(&self) -> &'static str {
        match self {
            ReplaceError::Changed { .. } => "WORKSPACE_CHANGED",
            ReplaceError::Io { .. } => "IO_ERROR",
        }
    }
}

/// The lock file of the workspace in `dir`.
pub fn workspace_lock_path(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join(WORKSPACE_LOCK_FILE)
}

/// Replace `workspace.yaml` in `doc.dir` with `text` (temp file, fsync, rename, fsync of the
/// folder), provided the file still holds exactly `doc.source.text`.
pub fn replace_workspace_text(doc: &WorkspaceDocument, text: &str) -> Result<(), ReplaceError> {
    let path = doc.dir.join(WORKSPACE_FILE_NAME);
    let lock_path = workspace_lock_path(&doc.dir);
    let _lock = LockFile::acquire(&lock_path).map_err(|source| ReplaceError::Io {
        action: "lock",
        path: lock_path.clone(),
        source,
    })?;
    let on_disk = match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(ReplaceError::Io {
                action: "read",
                path,
                source,
            })
        }
    };
    if on_disk.as_deref() != Some(doc.source.text.as_bytes()) {
        return Err(ReplaceError::Changed { path });
    }
    crate::install::write_file_atomically(&path, text.as_bytes()).map_err(|source| {
        ReplaceError::Io {
            action: "write",
            path,
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::read_workspace;

    const WS: &str = "id: ws\nname: Test\npacks: []\nlanes: []\nsecurity:\n  allowed_scopes: []\nmemory_namespace: m\nevent_namespace: e\n";
    const MINE: &str = "id: ws\nname: Mine\npacks: []\nlanes: []\nsecurity:\n  allowed_scopes: []\nmemory_namespace: m\nevent_namespace: e\n";

    #[test]
    fn a_file_changed_since_it_was_read_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(WORKSPACE_FILE_NAME);
        std::fs::write(&path, WS).expect("write");
        let doc = read_workspace(dir.path()).expect("workspace");

        // Someone else's edit lands between the read and the write.
        let theirs = format!("{WS}# theirs\n");
        std::fs::write(&path, &theirs).expect("write");
        let e = replace_workspace_text(&doc, MINE).expect_err("stale");
        assert_eq!(e.code(), "WORKSPACE_CHANGED", "{e}");
        assert!(e.to_string().contains("workspace.yaml"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), theirs);

        // Read again, and the write goes through.
        let doc = read_workspace(dir.path()).expect("workspace");
        replace_workspace_text(&doc, MINE).expect("fresh");
        assert!(std::fs::read_to_string(&path)
            .expect("read")
            .contains("Mine"));
        assert!(workspace_lock_path(dir.path()).is_file());
    }

    #[test]
    fn a_deleted_file_is_not_recreated() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(WORKSPACE_FILE_NAME);
        std::fs::write(&path, WS).expect("write");
        let doc = read_workspace(dir.path()).expect("workspace");
        std::fs::remove_file(&path).expect("rm");
        let e = replace_workspace_text(&doc, WS).expect_err("gone");
        assert_eq!(e.code(), "WORKSPACE_CHANGED");
        assert!(!path.exists());
    }
}
