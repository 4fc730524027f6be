//! Writing a generated pack to disk, atomically.
//!
//! Why staged: a half-written pack is worse than none (it may validate partially, or replace a
//! working pack with a broken one). Everything is written to a fresh temporary directory beside
//! the target (same file system, so the final rename is atomic), each file and directory is
//! fsync'd, and only then is the directory renamed into place. With `force`, an existing pack is
//! moved aside only once the new one is complete, and removed after the new one is in place.
//!
//! Every path is checked before anything touches the disk: the pack id must be a kebab-case
//! directory name and every file path relative and inside the pack (`SCOPE_VIOLATION`).

use super::generate::GeneratedPack;
use super::request::check_pack_id;
use super::AuthoringError;
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Writes `<output_dir>/<pack_id>/` atomically and returns its path.
///
/// Everything goes to a temporary directory beside the target, is fsync'd, then renamed into
/// place. If the target exists and `force` is false, nothing is written
/// ([`AuthoringError::AlreadyExists`]); with `force` the old directory is replaced only after the
/// new one is complete. Every `rel_path` must be relative and stay inside the pack directory
/// ([`AuthoringError::ScopeViolation`]).
pub fn write_pack(
    pack: &GeneratedPack,
    output_dir: &Path,
    force: bool,
) -> Result<PathBuf, AuthoringError> {
    if check_pack_id(&pack.pack_id).is_some() {
        return Err(AuthoringError::ScopeViolation {
            path: pack.pack_id.clone(),
        });
    }
    for file in &pack.files {
        check_rel_path(&file.rel_path)?;
    }

    fs::create_dir_all(output_dir).map_err(|e| AuthoringError::io(output_dir, e))?;
    let target = output_dir.join(&pack.pack_id);
    let exists = |path: &Path| fs::symlink_metadata(path).is_ok();
    if exists(&target) && !force {
        return Err(AuthoringError::AlreadyExists { path: target });
    }

    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.tmp-", pack.pack_id))
        .tempdir_in(output_dir)
        .map_err(|e| AuthoringError::io(output_dir, e))?;
    stage_files(pack, staging.path())?;
    // From here on the staging directory is ours to clean up.
    let staged = staging.keep();

    let result = if exists(&target) {
        replace(&staged, &target)
    } else {
        fs::rename(&staged, &target).map_err(|e| {
            if exists(&target) {
                AuthoringError::AlreadyExists {
                    path: target.clone(),
                }
            } else {
                AuthoringError::io(&target, e)
            }
        })
    };
    if let Err(err) = result {
        let _ = fs::remove_dir_all(&staged);
        return Err(err);
    }
    sync_dir(output_dir)?;
    Ok(target)
}

/// A path is acceptable when it is non-empty, `/`-separated and made only of normal components.
fn check_rel_path(rel_path: &str) -> Result<(), AuthoringError> {
    let path = Path::new(rel_path);
    let ok = !rel_path.is_empty()
        && !rel_path.contains(['\0', '\\'])
        && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(AuthoringError::ScopeViolation {
            path: rel_path.to_owned(),
        })
    }
}

/// Writes and fsyncs every file of the pack, then its directories, under `root`.
fn stage_files(pack: &GeneratedPack, root: &Path) -> Result<(), AuthoringError> {
    let mut dirs = BTreeSet::new();
    for file in &pack.files {
        let path = root.join(&file.rel_path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| AuthoringError::io(parent, e))?;
        }
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == root || !d.starts_with(root) || !dirs.insert(d.to_path_buf()) {
                break;
            }
            dir = d.parent();
        }
        let mut handle = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| AuthoringError::io(&path, e))?;
        handle
            .write_all(&file.contents)
            .map_err(|e| AuthoringError::io(&path, e))?;
        set_mode(&path, if file.executable { 0o755 } else { 0o644 })?;
        handle
            .sync_all()
            .map_err(|e| AuthoringError::io(&path, e))?;
    }
    // The temporary directory is created 0700; a pack directory is an ordinary 0755 one.
    set_mode(root, 0o755)?;
    dirs.insert(root.to_path_buf());
    for dir in dirs.iter().rev() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Moves `target` aside, renames `staged` into its place, then removes the old copy. If the second
/// rename fails, the old directory is put back.
fn replace(staged: &Path, target: &Path) -> Result<(), AuthoringError> {
    let mut backup = staged.as_os_str().to_owned();
    backup.push(".old");
    let backup = PathBuf::from(backup);
    fs::rename(target, &backup).map_err(|e| AuthoringError::io(target, e))?;
    if let Err(e) = fs::rename(staged, target) {
        let _ = fs::rename(&backup, target);
        return Err(AuthoringError::io(target, e));
    }
    // Best effort: the new pack is in place; a leftover `.<id>.tmp-*.old` is only clutter.
    let removed = match fs::symlink_metadata(&backup) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(&backup),
        Ok(_) => fs::remove_file(&backup),
        Err(e) => Err(e),
    };
    drop(removed);
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), AuthoringError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| AuthoringError::io(path, e))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), AuthoringError> {
    Ok(())
}

/// fsync a directory so the names in it are durable (a no-op where directories cannot be opened).
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), AuthoringError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuthoringError::io(dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), AuthoringError> {
    Ok(())
}
