//! The pack integrity hash (KRN-03): byte for byte the original LumenFlow algorithm
//! (`kernel/src/pack/hash.ts`, `original/packs.md` §2), streamed and parallel.
//!
//! # Algorithm
//!
//! 1. Walk the pack root recursively. Every entry that is not a directory (symlinks are *not*
//!    followed for this test) is a "file"; empty directories contribute nothing.
//! 2. Each file's path relative to the root is joined with `/` (no leading `./` or `/`).
//! 3. Exclusions ([`DEFAULT_EXCLUSIONS`] unless the caller gives a list, which *replaces* the
//!    default): an exclusion ending in `/` drops paths that start with it, so it is anchored at the
//!    pack root (`sub/node_modules/keep.js` and a top-level *file* named `dist` are kept); any other
//!    exclusion drops a path equal to it or ending in `/` + it (`.DS_Store` at any depth).
//! 4. The surviving paths are sorted by UTF-16 code units, like JavaScript's default
//!    `Array.prototype.sort()` ([`utf16_cmp`]): `B.txt` sorts before `a.txt`, and an astral-plane
//!    character sorts *before* U+E000–U+FFFF, unlike UTF-8 byte order.
//! 5. For each file in that order the buffer gets: the UTF-8 path, `0x00`, the 64 lowercase hex
//!    ASCII characters of SHA-256(content), `0x00`.
//! 6. The pack hash is the lowercase hex SHA-256 of that buffer; an empty pack hashes to the
//!    SHA-256 of the empty string. The CLI and pins show it as `sha256:<hex>`
//!    ([`PackHash::prefixed`]).
//!
//! Not part of the hash: modes, mtimes, empty directories, symlink-ness (only the target's content
//! counts) and the root's own name.
//!
//! # Deliberate differences from the original
//!
//! They only concern packs the original would crash on, hang on, or read outside of: a pack made
//! of regular files, directories and symlinks to files inside it, with UTF-8 names, hashes to the
//! original's value.
//!
//! - A symlink to a directory is a clear error ([`IntegrityError::DirectorySymlink`], code
//!   `DIRECTORY_SYMLINK`) naming the relative path; the original failed with a bare `EISDIR`.
//! - A symlink to a file is followed and its target's content is hashed (as in the original), but
//!   only if the resolved target lies inside the canonicalized pack root; otherwise it is
//!   [`IntegrityError::SymlinkEscape`] (`SYMLINK_ESCAPE`). The original would hash any target.
//! - A file name that is not valid UTF-8 is an error naming it (`NON_UTF8_PATH`, the name shown
//!   lossily); Node decodes such names lossily, so the original's path no longer named the file.
//! - A FIFO, socket or device is an error (`UNSUPPORTED_FILE_TYPE`) instead of being read: reading
//!   a FIFO would hang.
//! - A missing root is `PACK_ROOT_NOT_FOUND` and a root that is a file is `NOT_A_DIRECTORY`.
//! - Directories whose every descendant is excluded by a root-anchored prefix (for example
//!   `node_modules/` or `.git/`) are not walked at all. The original walked them and filtered
//!   afterwards, so the result is the same, but an unreadable directory or a non-UTF-8 name under
//!   `node_modules/` no longer breaks the hash, and a large `.git/` costs nothing.
//!
//! # Performance
//!
//! Files are hashed on `min(threads, number of files)` threads (`threads` defaults to
//! `available_parallelism`; the calling thread is one of them, the others are scoped threads).
//! Each takes the next file from a shared atomic index over the sorted list and streams it through
//! a reusable 1 MiB buffer: a file is never read whole into memory. The digests land in a vector
//! indexed like the listing, so the record buffer is built in sorted order whatever the timing.
//!
//! A large file (16 MiB or more) that is hashed when no other file is left to claim, for example
//! the only file of a pack, is read on a helper thread while the worker hashes the previous
//! chunk, so copying from the page cache and hashing overlap (SHA-256 of one stream cannot be
//! split). On a 2-core machine with SHA-NI this hashes one 1 GiB file faster than
//! `openssl dgst -sha256`, and 20 000 small files about twice as fast (`bench/pack-hash.sh`).
//!
//! The same listing, [`list_pack_files`], feeds the import-boundary scan
//! ([`crate::import_scan`]).

use std::cmp::Ordering;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::mpsc;

use sha2::{Digest, Sha256};

/// The original's default exclusion list. A caller-supplied list replaces it.
pub const DEFAULT_EXCLUSIONS: &[&str] = &["node_modules/", ".git/", "dist/", ".DS_Store"];

/// Size of the per-worker read buffer.
const READ_BUFFER_SIZE: usize = 1024 * 1024;

/// Files at least this large are read on a helper thread while the worker hashes (pipelined),
/// once no other file is left for the idle threads.
const PIPELINE_MIN_LEN: u64 = 16 * 1024 * 1024;

/// A file that takes part in the hash (or the import scan).
#[derive(Debug, Clone)]
pub struct PackFile {
    /// Path relative to the pack root, `/`-separated, no leading `./` or `/`.
    pub rel_path: String,
    /// Absolute path of the entry (the pack root made absolute, joined with `rel_path`). For a
    /// symlink this is the link itself; reading it reads the target.
    pub abs_path: PathBuf,
    /// Length of the content in bytes at listing time (the target's length for a symlink).
    pub len: u64,
}

/// Errors while listing or hashing a pack. Every variant names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    /// The pack root does not exist.
    #[error("pack root `{}` does not exist; expected a directory containing the pack", path.display())]
    RootNotFound {
        /// The root as given.
        path: PathBuf,
    },
    /// The pack root is not a directory.
    #[error("pack root `{}` is not a directory; expected the directory containing the pack", path.display())]
    NotADirectory {
        /// The root as given.
        path: PathBuf,
    },
    /// A symlink inside the pack points to a directory.
    #[error("`{rel_path}` is a symlink to a directory; packs may not contain directory symlinks (replace it with a copy of the files)")]
    DirectorySymlink {
        /// The symlink's path relative to the pack root.
        rel_path: String,
    },
    /// A symlink inside the pack resolves to a file outside the pack root.
    #[error("`{rel_path}` is a symlink to `{}`, which is outside the pack root; symlinks must point to files inside the pack", target.display())]
    SymlinkEscape {
        /// The symlink's path relative to the pack root.
        rel_path: String,
        /// The canonical path the symlink resolves to.
        target: PathBuf,
    },
    /// A file or directory name is not valid UTF-8.
    #[error("`{path}` is not a valid UTF-8 path; pack file names must be UTF-8 (rename it)")]
    NonUtf8Path {
        /// The path relative to the pack root, shown lossily.
        path: String,
    },
    /// A FIFO, socket or device file inside the pack.
    #[error("`{rel_path}` is a {kind}; packs may contain only regular files, directories and symlinks to files")]
    UnsupportedFileType {
        /// The entry's path relative to the pack root.
        rel_path: String,
        /// What it is: `fifo`, `socket`, `block device`, `character device` or `special file`.
        kind: &'static str,
    },
    /// An I/O error on a path.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done: `read directory`, `read file`, `resolve symlink`, ...
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl IntegrityError {
    /// A stable, machine-readable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            IntegrityError::RootNotFound { .. } => "PACK_ROOT_NOT_FOUND",
            IntegrityError::NotADirectory { .. } => "NOT_A_DIRECTORY",
            IntegrityError::DirectorySymlink { .. } => "DIRECTORY_SYMLINK",
            IntegrityError::SymlinkEscape { .. } => "SYMLINK_ESCAPE",
            IntegrityError::NonUtf8Path { .. } => "NON_UTF8_PATH",
            IntegrityError::UnsupportedFileType { .. } => "UNSUPPORTED_FILE_TYPE",
            IntegrityError::Io { .. } => "IO_ERROR",
        }
    }

    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        IntegrityError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A pack hash: the SHA-256 digest of the record buffer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PackHash([u8; 32]);

impl PackHash {
    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PackHash(bytes)
    }

    /// Parses `sha256:<64 lowercase hex>` or bare `<64 lowercase hex>`. Uppercase hex is
    /// rejected, as the original pin regex `^sha256:[a-f0-9]{64}$` does.
    pub fn parse(text: &str) -> Option<Self> {
        let hex_part = text.strip_prefix("sha256:").unwrap_or(text);
        if hex_part.len() != 64
            || !hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).ok()?;
        Some(PackHash(bytes))
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, no prefix (what the loader compares and `LoadedDomainPack.integrity` holds).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `sha256:<hex>`, as printed by `pack hash` and written in pins.
    pub fn prefixed(&self) -> String {
        format!("sha256:{}", self.hex())
    }
}

impl fmt::Display for PackHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefixed())
    }
}

/// Options for [`compute_pack_hash_with`].
pub struct HashOptions<'a> {
    /// Exclusions; replaces [`DEFAULT_EXCLUSIONS`].
    pub exclusions: &'a [&'a str],
    /// Worker threads; `None` means `available_parallelism`. Always capped at the number of files.
    pub threads: Option<usize>,
    /// Called from worker threads with the number of bytes hashed since the previous call.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl Default for HashOptions<'_> {
    fn default() -> Self {
        HashOptions {
            exclusions: DEFAULT_EXCLUSIONS,
            threads: None,
            progress: None,
        }
    }
}

impl fmt::Debug for HashOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashOptions")
            .field("exclusions", &self.exclusions)
            .field("threads", &self.threads)
            .field("progress", &self.progress.map(|_| "<callback>"))
            .finish()
    }
}

/// Compares two strings by their UTF-16 code units, like JavaScript's default sort.
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    // Fast path: UTF-8 byte order equals UTF-16 order unless a 4-byte sequence (astral plane) is
    // compared with a 3-byte sequence starting with 0xEE or 0xEF (U+E000..U+FFFF).
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let common = ab.iter().zip(bb).take_while(|(x, y)| x == y).count();
    match (ab.get(common), bb.get(common)) {
        (Some(&x), Some(&y)) if x >= 0xEE && y >= 0xEE => a[floor_char_boundary(a, common)..]
            .encode_utf16()
            .cmp(b[floor_char_boundary(b, common)..].encode_utf16()),
        _ => ab.cmp(bb),
    }
}

/// The largest char boundary `<= index` (stable replacement for `str::floor_char_boundary`).
fn floor_char_boundary(s: &str, index: usize) -> usize {
    let mut i = index.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Whether `rel_path` is excluded by `exclusions` (the original's test, see the module docs).
pub fn is_excluded(rel_path: &str, exclusions: &[&str]) -> bool {
    exclusions.iter().any(|x| {
        if x.ends_with('/') {
            rel_path.starts_with(x)
        } else {
            rel_path == *x
                || rel_path
                    .strip_suffix(x)
                    .is_some_and(|head| head.ends_with('/'))
        }
    })
}

/// Whether every path below the directory `dir_rel` is excluded by a root-anchored prefix, so the
/// walk can skip it without changing the result: every descendant is `dir_rel + "/" + ...`, so
/// all of them start with `x` exactly when `dir_rel + "/"` does.
fn dir_fully_excluded(dir_rel: &str, exclusions: &[&str]) -> bool {
    exclusions.iter().any(|x| match x.strip_suffix('/') {
        Some(stem) => dir_rel == stem || dir_rel.starts_with(x),
        None => false,
    })
}

/// Lists the files of the pack at `root`: sorted by [`utf16_cmp`], exclusions applied, symlink
/// and file-type rules checked. Used both for hashing and for the import scan.
pub fn list_pack_files(root: &Path, exclusions: &[&str]) -> Result<Vec<PackFile>, IntegrityError> {
    let meta = match fs::metadata(root) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(IntegrityError::RootNotFound {
                path: root.to_path_buf(),
            })
        }
        Err(err) => return Err(IntegrityError::io("read pack root", root, err)),
    };
    if !meta.is_dir() {
        return Err(IntegrityError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let abs_root =
        std::path::absolute(root).map_err(|e| IntegrityError::io("resolve pack root", root, e))?;
    let walker = Walker {
        abs_root: &abs_root,
        exclusions,
        canonical_root: std::cell::OnceCell::new(),
    };
    let mut files = Vec::new();
    walker.walk(&abs_root, "", &mut files)?;
    files.sort_by(|a, b| utf16_cmp(&a.rel_path, &b.rel_path));
    Ok(files)
}

struct Walker<'a> {
    abs_root: &'a Path,
    exclusions: &'a [&'a str],
    /// Canonical root, computed the first time a symlink needs checking.
    canonical_root: std::cell::OnceCell<PathBuf>,
}

impl Walker<'_> {
    fn walk(
        &self,
        dir: &Path,
        dir_rel: &str,
        out: &mut Vec<PackFile>,
    ) -> Result<(), IntegrityError> {
        let entries =
            fs::read_dir(dir).map_err(|e| IntegrityError::io("read directory", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| IntegrityError::io("read directory", dir, e))?;
            let name = entry.file_name();
            let abs_path = entry.path();
            let (rel_path, utf8) = match name.to_str() {
                Some(name) => (join_rel(dir_rel, name), true),
                None => (join_rel(dir_rel, &name.to_string_lossy()), false),
            };
            let file_type = entry
                .file_type()
                .map_err(|e| IntegrityError::io("read file type of", &abs_path, e))?;
            if file_type.is_dir() {
                if dir_fully_excluded(&rel_path, self.exclusions) {
                    continue;
                }
                if !utf8 {
                    return Err(IntegrityError::NonUtf8Path { path: rel_path });
                }
                self.walk(&abs_path, &rel_path, out)?;
                continue;
            }
            if is_excluded(&rel_path, self.exclusions) {
                continue;
            }
            if !utf8 {
                return Err(IntegrityError::NonUtf8Path { path: rel_path });
            }
            let len = if file_type.is_file() {
                entry
                    .metadata()
                    .map_err(|e| IntegrityError::io("read metadata of", &abs_path, e))?
                    .len()
            } else if file_type.is_symlink() {
                self.check_symlink(&abs_path, &rel_path)?
            } else {
                return Err(IntegrityError::UnsupportedFileType {
                    kind: special_kind(&file_type),
                    rel_path,
                });
            };
            out.push(PackFile {
                rel_path,
                abs_path,
                len,
            });
        }
        Ok(())
    }

    /// Checks a symlink's target: a regular file inside the canonical root. Returns its length.
    fn check_symlink(&self, abs_path: &Path, rel_path: &str) -> Result<u64, IntegrityError> {
        let target_meta = fs::metadata(abs_path)
            .map_err(|e| IntegrityError::io("resolve symlink", abs_path, e))?;
        if target_meta.is_dir() {
            return Err(IntegrityError::DirectorySymlink {
                rel_path: rel_path.to_owned(),
            });
        }
        let target = fs::canonicalize(abs_path)
            .map_err(|e| IntegrityError::io("resolve symlink", abs_path, e))?;
        let canonical_root = match self.canonical_root.get() {
            Some(root) => root,
            None => {
                let root = fs::canonicalize(self.abs_root)
                    .map_err(|e| IntegrityError::io("resolve pack root", self.abs_root, e))?;
                self.canonical_root.get_or_init(|| root)
            }
        };
        if !target.starts_with(canonical_root) {
            return Err(IntegrityError::SymlinkEscape {
                rel_path: rel_path.to_owned(),
                target,
            });
        }
        if !target_meta.is_file() {
            return Err(IntegrityError::UnsupportedFileType {
                rel_path: rel_path.to_owned(),
                kind: special_kind(&target_meta.file_type()),
            });
        }
        Ok(target_meta.len())
    }
}

fn join_rel(dir_rel: &str, name: &str) -> String {
    if dir_rel.is_empty() {
        name.to_owned()
    } else {
        format!("{dir_rel}/{name}")
    }
}

#[cfg(unix)]
fn special_kind(file_type: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_file_type: &fs::FileType) -> &'static str {
    "special file"
}

/// Computes the pack hash of `root` with the default options.
pub fn compute_pack_hash(root: &Path) -> Result<PackHash, IntegrityError> {
    compute_pack_hash_with(root, &HashOptions::default())
}

/// Computes the pack hash of `root`.
pub fn compute_pack_hash_with(
    root: &Path,
    options: &HashOptions,
) -> Result<PackHash, IntegrityError> {
    let files = list_pack_files(root, options.exclusions)?;
    hash_pack_files(&files, options)
}

/// Hashes files already listed by [`list_pack_files`] (with `options.exclusions` ignored: the
/// listing decides), so a caller that needs the listing anyway (the import scan, a progress total
/// from the summed [`PackFile::len`]) walks the pack only once.
pub fn hash_pack_files(
    files: &[PackFile],
    options: &HashOptions,
) -> Result<PackHash, IntegrityError> {
    let digests = hash_files(files, options)?;
    Ok(combine(
        files
            .iter()
            .zip(&digests)
            .map(|(file, digest)| (file.rel_path.as_str(), digest)),
    ))
}

/// The same algorithm over in-memory files `(rel_path, content)`, for example packs embedded in
/// the binary. Exclusions are applied and the files sorted exactly as on disk.
pub fn hash_files_in_memory<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    exclusions: &[&str],
) -> PackHash {
    let mut kept: Vec<(&str, [u8; 32])> = files
        .into_iter()
        .filter(|(path, _)| !is_excluded(path, exclusions))
        .map(|(path, content)| (path, Sha256::digest(content).into()))
        .collect();
    kept.sort_by(|a, b| utf16_cmp(a.0, b.0));
    combine(kept.iter().map(|(path, digest)| (*path, digest)))
}

/// Builds the record buffer (`path NUL hex NUL` per file) and hashes it.
fn combine<'a>(records: impl Iterator<Item = (&'a str, &'a [u8; 32])>) -> PackHash {
    let mut outer = Sha256::new();
    let mut hex_buf = [0u8; 64];
    for (path, digest) in records {
        outer.update(path.as_bytes());
        outer.update([0u8]);
        // `encode_to_slice` only fails on a wrong output length, which is fixed here.
        if hex::encode_to_slice(digest, &mut hex_buf).is_ok() {
            outer.update(hex_buf);
        }
        outer.update([0u8]);
    }
    PackHash(outer.finalize().into())
}

/// What one worker returns: `(index, digest)` pairs, or the index of the file that failed.
type WorkerResult = Result<Vec<(usize, [u8; 32])>, (usize, IntegrityError)>;

/// Hashes every file's content, in parallel; results are in the order of `files`.
fn hash_files(files: &[PackFile], options: &HashOptions) -> Result<Vec<[u8; 32]>, IntegrityError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let parallelism = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let workers = parallelism.min(files.len());
    let progress = options.progress;

    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || -> WorkerResult {
        let mut buf = vec![0u8; READ_BUFFER_SIZE];
        let mut done = Vec::new();
        while !failed.load(AtomicOrdering::Relaxed) {
            let index = next.fetch_add(1, AtomicOrdering::Relaxed);
            let Some(file) = files.get(index) else { break };
            // Once no file is left to claim, the other workers go idle: a big file may then use
            // a reader thread of its own (only when more than one thread was asked for).
            let pipeline = parallelism > 1 && index + 1 >= files.len();
            match hash_one(file, &mut buf, pipeline, progress) {
                Ok(digest) => done.push((index, digest)),
                Err(err) => {
                    failed.store(true, AtomicOrdering::Relaxed);
                    return Err((index, err));
                }
            }
        }
        Ok(done)
    };

    // `workers - 1` helper threads plus this one. A helper that cannot be spawned is simply
    // missing: the others take its share.
    let results: Vec<WorkerResult> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..workers)
            .filter_map(|i| {
                std::thread::Builder::new()
                    .name(format!("pack-hash-{i}"))
                    .spawn_scoped(scope, worker)
                    .ok()
            })
            .collect();
        let mut results = vec![worker()];
        for helper in helpers {
            match helper.join() {
                Ok(result) => results.push(result),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    });

    let mut digests = vec![[0u8; 32]; files.len()];
    let mut first_error: Option<(usize, IntegrityError)> = None;
    for result in results {
        match result {
            Ok(done) => {
                for (index, digest) in done {
                    if let Some(slot) = digests.get_mut(index) {
                        *slot = digest;
                    }
                }
            }
            // Report the failing file that comes first in the listing, whichever worker saw it.
            Err((index, err)) => {
                if first_error.as_ref().is_none_or(|(i, _)| index < *i) {
                    first_error = Some((index, err));
                }
            }
        }
    }
    match first_error {
        Some((_, err)) => Err(err),
        None => Ok(digests),
    }
}

/// Opens and hashes one file.
fn hash_one(
    file: &PackFile,
    buf: &mut [u8],
    pipeline: bool,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<[u8; 32], IntegrityError> {
    let handle = File::open(&file.abs_path)
        .map_err(|e| IntegrityError::io("read file", &file.abs_path, e))?;
    if pipeline && file.len >= PIPELINE_MIN_LEN {
        if let Some(result) = hash_pipelined(file, &handle, progress) {
            return result;
        }
    }
    hash_stream(file, &handle, buf, progress)
}

/// Streams a file through SHA-256 with one reusable buffer.
fn hash_stream(
    file: &PackFile,
    mut handle: &File,
    buf: &mut [u8],
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<[u8; 32], IntegrityError> {
    let mut hasher = Sha256::new();
    loop {
        let n = match handle.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IntegrityError::io("read file", &file.abs_path, e)),
        };
        hasher.update(buf.get(..n).unwrap_or(&[]));
        if let Some(progress) = progress {
            progress(n as u64);
        }
    }
    Ok(hasher.finalize().into())
}

/// Hashes a large file with a reader thread filling buffers while this thread hashes, so
/// copying from the page cache and hashing overlap. `None` if the reader thread could not be
/// started (nothing has been read then).
fn hash_pipelined(
    file: &PackFile,
    handle: &File,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Option<Result<[u8; 32], IntegrityError>> {
    const BUFFERS: usize = 3;
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<(Vec<u8>, usize)>>(BUFFERS);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        // The channel has room for every buffer, so this cannot fail.
        let _ = empty_tx.send(vec![0u8; READ_BUFFER_SIZE]);
    }
    // The closure owns the channel ends, so if hashing unwinds (a panicking progress callback),
    // dropping them stops the reader and the scope can join it.
    std::thread::scope(move |scope| {
        let reader = move || {
            let mut source = handle;
            while let Ok(mut buf) = empty_rx.recv() {
                let result = loop {
                    match source.read(&mut buf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other,
                    }
                };
                let stop = !matches!(result, Ok(n) if n > 0);
                if full_tx.send(result.map(|n| (buf, n))).is_err() || stop {
                    break;
                }
            }
        };
        std::thread::Builder::new()
            .name("pack-hash-reader".to_owned())
            .spawn_scoped(scope, reader)
            .ok()?;
        let mut hasher = Sha256::new();
        loop {
            match full_rx.recv() {
                Ok(Ok((_, 0))) => break,
                Ok(Ok((buf, n))) => {
                    hasher.update(buf.get(..n).unwrap_or(&[]));
                    if let Some(progress) = progress {
                        progress(n as u64);
                    }
                    // The reader may already have stopped; then the buffer is just dropped.
                    let _ = empty_tx.send(buf);
                }
                Ok(Err(e)) => return Some(Err(IntegrityError::io("read file", &file.abs_path, e))),
                Err(_) => {
                    return Some(Err(IntegrityError::io(
                        "read file",
                        &file.abs_path,
                        io::Error::other("reader thread stopped unexpectedly"),
                    )))
                }
            }
        }
        Some(Ok(hasher.finalize().into()))
    })
}
