//! The pack's state under `.lumenflow/state/campus/` (the one `.lumenflow/` folder it may write,
//! Q26): `facilities.json`, `nodes/<facility>.json`, and per facility the readings as JSON Lines
//! (`readings/<facility>/{energy,pue,power}.jsonl`, appended in batches and fsync'd; a torn last
//! line left by a crash is skipped when read). Whole files are replaced atomically (temp file,
//! fsync, rename).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::model::{EnergyWindow, Facility, Node, PowerSignal, PueSample};

/// The state folder, relative to the workspace.
pub const STATE_REL: &str = ".lumenflow/state/campus";

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("campus state `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("campus state `{path}` line {line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

impl StoreError {
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Io { .. } => "STATE_IO_FAILED",
            StoreError::Corrupt { .. } => "STATE_CORRUPT",
        }
    }
}

/// The readings files of one facility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    Energy,
    Pue,
    Power,
}

impl Series {
    fn file(self) -> &'static str {
        match self {
            Series::Energy => "energy.jsonl",
            Series::Pue => "pue.jsonl",
            Series::Power => "power.jsonl",
        }
    }
}

/// The campus state of one workspace.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(workspace_dir: &Path) -> Self {
        Store {
            root: workspace_dir.join(STATE_REL),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn facilities_path(&self) -> PathBuf {
        self.root.join("facilities.json")
    }

    pub fn nodes_path(&self, facility_id: &str) -> PathBuf {
        self.root.join("nodes").join(format!("{facility_id}.json"))
    }

    pub fn series_path(&self, facility_id: &str, series: Series) -> PathBuf {
        self.root
            .join("readings")
            .join(facility_id)
            .join(series.file())
    }

    /// Every registered facility, in id order.
    pub fn facilities(&self) -> Result<Vec<Facility>, StoreError> {
        Ok(read_json(&self.facilities_path())?.unwrap_or_default())
    }

    pub fn facility(&self, facility_id: &str) -> Result<Option<Facility>, StoreError> {
        Ok(self
            .facilities()?
            .into_iter()
            .find(|f| f.facility_id == facility_id))
    }

    pub fn write_facilities(&self, facilities: &[Facility]) -> Result<(), StoreError> {
        write_json(&self.facilities_path(), &facilities)
    }

    pub fn nodes(&self, facility_id: &str) -> Result<Vec<Node>, StoreError> {
        Ok(read_json(&self.nodes_path(facility_id))?.unwrap_or_default())
    }

    pub fn write_nodes(&self, facility_id: &str, nodes: &[Node]) -> Result<(), StoreError> {
        write_json(&self.nodes_path(facility_id), &nodes)
    }

    pub fn energy(&self, facility_id: &str) -> Result<Vec<EnergyWindow>, StoreError> {
        read_lines(&self.series_path(facility_id, Series::Energy))
    }

    pub fn pue(&self, facility_id: &str) -> Result<Vec<PueSample>, StoreError> {
        read_lines(&self.series_path(facility_id, Series::Pue))
    }

    pub fn power(&self, facility_id: &str) -> Result<Vec<PowerSignal>, StoreError> {
        read_lines(&self.series_path(facility_id, Series::Power))
    }

    /// Append already-encoded lines (each ending in `\n`) to a series file, fsync'd.
    pub fn append(
        &self,
        facility_id: &str,
        series: Series,
        lines: &[u8],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        append_bytes(&self.series_path(facility_id, series), lines)
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Run `f` holding the exclusive `flock` of `.<name>.lock` beside `path`, so that a
/// read-modify-write of a state file by several threads or processes (the sidecar and a
/// `lumenflow campus …` command) is one step: a nonce is spent once, no registration is lost.
/// Without `flock` (some FUSE mounts) `f` runs unlocked, one process per workspace.
pub fn with_lock<T, E: From<StoreError>>(
    path: &Path,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lock_path = dir.join(format!(".{name}.lock"));
    let _held =
        lumenflow_kernel::file_lock::LockFile::acquire(&lock_path).map_err(io_err(&lock_path))?;
    f()
}

/// Append bytes and fsync; a failed write is cut back so no torn line stays behind.
pub fn append_bytes(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let err = io_err(path);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(&err)?;
    }
    // Under the lock, so cutting back a failed write never cuts another writer's lines.
    with_lock(path, || {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(&err)?;
        let before = file.metadata().map_err(&err)?.len();
        if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_data()) {
            let _ = file.set_len(before);
            return Err(err(e));
        }
        Ok(())
    })
}

/// A JSON file: `None` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                line: e.line(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Write a JSON file atomically (temp file, fsync, rename), creating its folder.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| io_err(path)(io::Error::other(e)))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let err = io_err(path);
    let dir = path
        .parent()
        .ok_or_else(|| err(io::Error::other("a state file needs a parent folder")))?;
    fs::create_dir_all(dir).map_err(&err)?;
    // A temporary name of its own per write: threads of one process used to share one and
    // truncate or rename away each other's file.
    lumenflow_kernel::install::write_file_atomically(path, bytes).map_err(err)
}

/// Every complete line of a JSON Lines file (none when it does not exist).
pub fn read_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for (i, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        out.push(
            serde_json::from_slice(line).map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                line: i + 1,
                reason: e.to_string(),
            })?,
        );
    }
    Ok(out)
}
