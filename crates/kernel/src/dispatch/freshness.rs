//! Whether `workspace.yaml` still says what a long-lived runtime loaded.
//!
//! A sidecar or `lumenflow mcp` opens its runtime once and serves for days. An operator who adds
//! a deny rule, narrows a scope or removes a lane expects the next call to obey it; a runtime
//! that kept judging calls by the file as it was at start would quietly ignore the change. Swapping
//! the whole runtime under calls in flight is not safe here (its registry, packs and tasks are
//! shared by them), so a changed file stops the runtime instead: every call is refused with
//! `WORKSPACE_CHANGED`, with a receipt, until the process is restarted and loads the new file.
//!
//! The check costs one `stat` per call: the file is read and parsed only when its size,
//! modification time or inode moved, and what counts is the document's canonical hash (the
//! `workspace_config_hash` of every receipt), so a `touch`, a new comment or reformatting
//! changes nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::workspace;

/// The refusal code while the runtime is out of date.
pub const WORKSPACE_CHANGED: &str = "WORKSPACE_CHANGED";

/// What a `stat` says about the file: enough to tell that it may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Fingerprint {
    fn of(path: &Path) -> std::io::Result<Fingerprint> {
        let meta = fs::metadata(path)?;
        Ok(Fingerprint {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: std::os::unix::fs::MetadataExt::ino(&meta),
        })
    }
}

/// The loaded `workspace.yaml`, to compare the file on disk with.
#[derive(Debug)]
pub struct WorkspaceWatch {
    dir: PathBuf,
    path: PathBuf,
    loaded_hash: String,
    /// The last fingerprint whose content was found equal to the loaded one.
    same_as: Mutex<Fingerprint>,
}

impl WorkspaceWatch {
    /// Watch the `workspace.yaml` of `dir`, loaded with `config_hash`. Take the fingerprint
    /// with [`WorkspaceWatch::fingerprint`] before reading the file, so an edit made while the
    /// runtime opens is seen as a change.
    pub fn new(dir: &Path, before_load: Fingerprint, config_hash: String) -> WorkspaceWatch {
        WorkspaceWatch {
            dir: dir.to_path_buf(),
            path: dir.join(workspace::WORKSPACE_FILE_NAME),
            loaded_hash: config_hash,
            same_as: Mutex::new(before_load),
        }
    }

    /// The file's fingerprint now, `None` when it cannot be read.
    pub fn fingerprint(dir: &Path) -> Option<Fingerprint> {
        Fingerprint::of(&dir.join(workspace::WORKSPACE_FILE_NAME)).ok()
    }

    /// `None` while the file holds what was loaded; else why calls must stop.
    pub fn changed(&self) -> Option<String> {
        let now = match Fingerprint::of(&self.path) {
            Ok(f) => f,
            Err(e) => {
                return Some(format!(
                    "`{}` can no longer be read ({e}); restart the sidecar or `lumenflow mcp` \
                     once it is back",
                    self.path.display()
                ))
            }
        };
        let mut same_as = self.same_as.lock().unwrap_or_else(|e| e.into_inner());
        if *same_as == now {
            return None;
        }
        match workspace::read_workspace(&self.dir) {
            Ok(doc) if doc.config_hash() == self.loaded_hash => {
                *same_as = now;
                None
            }
            Ok(_) => Some(format!(
                "`{}` changed after this process loaded it, so its rules, scopes and pins may \
                 no longer be the ones in force here; restart the sidecar or `lumenflow mcp` to \
                 load the new file (calls are refused until then)",
                self.path.display()
            )),
            Err(diagnostics) => Some(format!(
                "`{}` changed after this process loaded it and is now invalid ({}); fix it, then \
                 restart the sidecar or `lumenflow mcp` (calls are refused until then)",
                self.path.display(),
                diagnostics.to_string().lines().next().unwrap_or_default()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: &str = "id: a\nname: A\npacks: []\nlanes: []\nsecurity:\n  allowed_scopes: []\nmemory_namespace: m\nevent_namespace: e\n";

    fn watch(dir: &Path) -> WorkspaceWatch {
        let before = WorkspaceWatch::fingerprint(dir).expect("fingerprint");
        let doc = workspace::read_workspace(dir).expect("valid");
        WorkspaceWatch::new(dir, before, doc.config_hash())
    }

    #[test]
    fn a_touch_or_a_comment_is_not_a_change_but_a_rule_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(workspace::WORKSPACE_FILE_NAME);
        fs::write(&path, WS).expect("write");
        let watch = watch(dir.path());
        assert_eq!(watch.changed(), None);

        // Same content through an editor's save (new inode, new time), then a comment.
        let tmp = dir.path().join("w.tmp");
        fs::write(&tmp, WS).expect("write");
        fs::rename(&tmp, &path).expect("rename");
        assert_eq!(watch.changed(), None);
        fs::write(&path, format!("# reviewed\n{WS}")).expect("write");
        assert_eq!(watch.changed(), None);

        fs::write(&path, WS.replace("name: A", "name: B")).expect("write");
        let why = watch.changed().expect("an edit is a change");
        assert!(why.contains("restart the sidecar"), "{why}");

        fs::write(&path, "id: [\n").expect("write");
        assert!(watch.changed().expect("invalid").contains("is now invalid"));

        // Restoring the loaded content makes the runtime current again.
        fs::write(&path, WS).expect("write");
        assert_eq!(watch.changed(), None);

        fs::remove_file(&path).expect("remove");
        assert!(watch
            .changed()
            .expect("gone")
            .contains("can no longer be read"));
    }
}
