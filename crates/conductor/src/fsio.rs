//! Durable file writes shared by the conductor's state files (enrollment, devices, outbox, inbox,
//! sequence counters).
//!
//! Every file the sidecar rewrites is replaced atomically: the new bytes go to a temporary file
//! in the same folder, which is fsync'd, renamed over the target, and the folder is fsync'd so
//! the rename itself survives a crash. A reader therefore sees the old file or the new one, never
//! half of either.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Who may read a file we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0600: the file holds a secret (a token) or private state.
    Private,
}

/// Write `bytes` to `path` atomically (temp file + fsync + rename + folder fsync).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Mode) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("the path has no parent folder"))?;
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // One temporary name per write, so two threads writing one file never share it.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
    let result = (|| {
        let mut f = create_file(&tmp, mode)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Create (truncating) `path` with `mode`.
pub fn create_file(path: &Path, mode: Mode) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    match mode {
        #[cfg(unix)]
        Mode::Private => {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        Mode::Private => {}
    }
    opts.open(path)
}

/// fsync a folder so the names created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_atomically_and_private_files_are_0600() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a/b/secret.json");
        write_atomic(&path, b"one", Mode::Private).expect("write");
        write_atomic(&path, b"two", Mode::Private).expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
