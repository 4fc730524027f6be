//! `pack install`: put a pack in `<workspace>/packs/<id>`, verify it, pin it (KRN-04).
//!
//! The original only wrote a pin (and for registry installs left the pack in a temp folder). Here
//! every source really installs: a local folder is copied, a git URL is cloned with the system
//! `git`, a registry tarball (fetched by the caller, since the kernel speaks no HTTP) is checked
//! against its expected SHA-256 and unpacked safely. The pack is staged under
//! `.lumenflow/tmp/`, validated with all five `pack validate` checks, checked against the
//! requested id and version, and only then moved into place and pinned; a failure at any step
//! leaves the workspace as it was.

use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use lumenflow_contracts::digest::Sha256Digest;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::builtin::EmbeddedPack;
use crate::diagnostics::{Diagnostics, SourceFile};
use crate::integrity::{self, PackHash};
use crate::pack_report::{self, PackReport};
use crate::workspace::{
    self, Integrity, PackPin, PackSource, WorkspaceDocument, STATE_DIR, WORKSPACE_FILE_NAME,
};
use crate::yaml;

/// Where the pack comes from.
#[derive(Debug, Clone)]
pub enum InstallSource {
    /// A pack folder on this machine.
    Local { path: PathBuf },
    /// A git repository whose root is the pack; `rev` defaults to the tag `v<version>` when it
    /// exists, else the default branch.
    Git { url: String, rev: Option<String> },
    /// A `.tar.gz` already on disk (downloaded by the caller) with the SHA-256 it must have.
    Registry {
        tarball: PathBuf,
        expected_sha256: Sha256Digest,
        registry_url: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct InstallRequest {
    pub id: String,
    pub version: String,
    pub source: InstallSource,
    /// Expected pack content hash, checked after staging (`--integrity`).
    pub expected_integrity: Option<String>,
    /// Replace an installed pack whose content differs.
    pub force: bool,
    /// Pin as `integrity: dev` instead of the computed hash (development only).
    pub dev: bool,
}

/// Steps reported to the caller (for a progress display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallStep {
    Fetching,
    Validating,
    Hashing,
    Pinning,
}

#[derive(Debug, Clone)]
pub struct InstallOutcome {
    pub pin: PackPin,
    pub dest: PathBuf,
    pub hash: PackHash,
    /// An installed pack was replaced (`--force`), or an identical one found in place.
    pub replaced: bool,
    pub unchanged: bool,
    /// The source was the installed folder itself: nothing was copied, only the pin written.
    pub in_place: bool,
    /// The pin's integrity before this install, when the folder was pinned in place with
    /// `--force` after its content had changed (`sha256:<hex>`).
    pub previous_integrity: Option<String>,
    pub preserved_layout: bool,
    pub report: PackReport,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("`{0}` is not a valid pack id: use kebab-case, for example `customer-ops`")]
    BadId(String),
    #[error("`{0}` is not a semantic version such as `1.0.0`")]
    BadVersion(String),
    #[error("{0}")]
    Source(String),
    #[error("git {action} failed for `{url}`: {detail}")]
    Git {
        action: &'static str,
        url: String,
        detail: String,
    },
    #[error("Integrity mismatch for \"{id}@{version}\". Expected: {expected}, Got: {actual}")]
    TarballMismatch {
        id: String,
        version: String,
        expected: String,
        actual: String,
    },
    #[error("unsafe archive entry `{entry}`: {reason}")]
    UnsafeArchive { entry: String, reason: String },
    #[error("Pack validation failed for \"{id}\": {summary}")]
    Validation {
        id: String,
        /// The failed checks, comma separated.
        summary: String,
        /// The problems, located in the source the user gave (not the staging copy).
        diagnostics: Vec<crate::diagnostics::FileDiagnostic>,
        /// Problems without a file position.
        errors: Vec<String>,
    },
    #[error("the pack's manifest says {field} `{actual}`, but `{expected}` was requested{hint}")]
    Mismatch {
        field: &'static str,
        expected: String,
        actual: String,
        /// Where the content came from when that explains the mismatch (with a leading `; `).
        hint: String,
    },
    #[error("Pack integrity mismatch for {id}: expected {expected}, got {actual}")]
    IntegrityMismatch {
        id: String,
        expected: String,
        actual: String,
    },
    #[error("`{}` already holds a different `{id}`; pass --force to replace it", dest.display())]
    AlreadyInstalled { id: String, dest: PathBuf },
    /// Pinning `<ws>/packs/<id>` in place when its files no longer match the workspace's pin:
    /// re-pinning silently would bless whatever edited them.
    #[error(
        "`{}` no longer matches its pin: workspace.yaml pins {pinned}, the folder now hashes to \
         {actual}; restore the pinned files, or pass --force to pin the folder as it is now",
        dest.display()
    )]
    PinnedContentChanged {
        id: String,
        dest: PathBuf,
        pinned: String,
        actual: String,
    },
    #[error("the new workspace.yaml would be invalid:\n{0}")]
    Workspace(Diagnostics),
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// `workspace.yaml` kept changing under the pin's write, or could not be replaced.
    #[error("{0}")]
    Replace(#[from] workspace::ReplaceError),
}

impl InstallError {
    pub fn code(&self) -> &'static str {
        match self {
            InstallError::BadId(_) | InstallError::BadVersion(_) => "INVALID_ARGUMENT",
            InstallError::Source(_) => "SOURCE_NOT_FOUND",
            InstallError::Git { .. } => "GIT_FAILED",
            InstallError::TarballMismatch { .. } => "TARBALL_INTEGRITY_MISMATCH",
            InstallError::UnsafeArchive { .. } => "UNSAFE_ARCHIVE",
            InstallError::Validation { .. } => "VALIDATION_ERROR",
            InstallError::Mismatch { .. } => "MANIFEST_MISMATCH",
            InstallError::IntegrityMismatch { .. } | InstallError::PinnedContentChanged { .. } => {
                "INTEGRITY_MISMATCH"
            }
            InstallError::AlreadyInstalled { .. } => "PACK_ALREADY_INSTALLED",
            InstallError::Workspace(_) => "WORKSPACE_INVALID",
            InstallError::Io { .. } => "IO_ERROR",
            InstallError::Replace(e) => e.code(),
        }
    }
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Install a pack into `doc`'s workspace and pin it.
pub fn install(
    doc: &WorkspaceDocument,
    req: &InstallRequest,
    progress: &mut dyn FnMut(InstallStep),
    hash_progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<InstallOutcome, InstallError> {
    if !crate::manifest::is_kebab_case(&req.id) {
        return Err(InstallError::BadId(req.id.clone()));
    }
    if !crate::manifest::is_semver(&req.version) {
        return Err(InstallError::BadVersion(req.version.clone()));
    }
    let packs_dir = doc.dir.join("packs");
    let dest = packs_dir.join(&req.id);
    let tmp_root = doc.state_dir().join("tmp");
    fs::create_dir_all(&tmp_root).map_err(io("create", &tmp_root))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!("install-{}-", req.id))
        .tempdir_in(&tmp_root)
        .map_err(io("create a staging folder in", &tmp_root))?;
    let staged = staging.path().join("pack");

    progress(InstallStep::Fetching);
    // Installing a folder that already is `<ws>/packs/<id>` pins it in place.
    let in_place = match &req.source {
        InstallSource::Local { path } => same_dir(path, &dest),
        _ => false,
    };
    let mut default_branch_used: Option<String> = None;
    let (pin_url, pin_rev, registry_url) = match &req.source {
        InstallSource::Local { path } => {
            if !in_place {
                copy_pack(path, &staged)?;
            }
            (None, None, None)
        }
        InstallSource::Git { url, rev } => {
            let (rev, fell_back) = git_clone(url, rev.as_deref(), &req.version, &staged)?;
            if fell_back {
                default_branch_used = Some(format!(
                    "; `{url}` has no tag `v{}`, so its default branch was used (name a tag, \
                     branch or commit with --rev)",
                    req.version
                ));
            }
            (Some(url.clone()), rev, None)
        }
        InstallSource::Registry {
            tarball,
            expected_sha256,
            registry_url,
        } => {
            verify_tarball(tarball, expected_sha256, &req.id, &req.version)?;
            extract_tarball(tarball, &staged)?;
            (None, None, registry_url.clone())
        }
    };
    let candidate = if in_place {
        dest.clone()
    } else {
        staged.clone()
    };

    progress(InstallStep::Validating);
    let report = pack_report::validate_pack_dir(
        &candidate,
        &doc.spec.security.import_allowlist,
        hash_progress,
    );
    if !report.passed() {
        return Err(validation_error(
            &req.id,
            &report,
            &candidate,
            &source_label(&req.source),
        ));
    }
    check_identity(&report, &req.id, &req.version).map_err(|e| {
        match (e, &default_branch_used) {
            (
                InstallError::Mismatch {
                    field,
                    expected,
                    actual,
                    ..
                },
                Some(hint),
            ) => InstallError::Mismatch {
                field,
                expected,
                actual,
                hint: hint.clone(),
            },
            (e, _) => e,
        }
    })?;
    progress(InstallStep::Hashing);
    let hash = checked_hash(&report, &req.id, req.expected_integrity.as_deref())?;

    // Move into place, keeping the old folder until the pin is written.
    let mut replaced = false;
    // In place, "unchanged" means the pin already says exactly this.
    let mut unchanged = in_place
        && doc.spec.packs.iter().any(|p| {
            p.id == req.id
                && p.version == req.version
                && p.source == PackSource::Local
                && p.integrity == pin_integrity(req.dev, &hash)
        });
    let mut previous_integrity = None;
    let backup = staging.path().join("previous");
    if in_place {
        let pinned = doc
            .spec
            .packs
            .iter()
            .find(|p| p.id == req.id)
            .and_then(|p| match &p.integrity {
                Integrity::Sha256(hex) => Some(hex.clone()),
                Integrity::Dev => None,
            });
        if let Some(pinned) = pinned.filter(|hex| *hex != hash.hex()) {
            if !req.force {
                return Err(InstallError::PinnedContentChanged {
                    id: req.id.clone(),
                    dest,
                    pinned: format!("sha256:{pinned}"),
                    actual: hash.prefixed(),
                });
            }
            unchanged = false;
            previous_integrity = Some(format!("sha256:{pinned}"));
        }
    } else {
        if dest.exists() {
            let existing = integrity::compute_pack_hash(&dest).ok();
            if existing.as_ref() == Some(&hash) {
                unchanged = true;
            } else if !req.force {
                return Err(InstallError::AlreadyInstalled {
                    id: req.id.clone(),
                    dest,
                });
            } else {
                fs::rename(&dest, &backup).map_err(io("move aside", &dest))?;
                replaced = true;
            }
        }
        if !unchanged {
            fs::create_dir_all(&packs_dir).map_err(io("create", &packs_dir))?;
            if let Err(e) = fs::rename(&staged, &dest) {
                if replaced {
                    let _ = fs::rename(&backup, &dest);
                }
                return Err(io("move the pack into", &dest)(e));
            }
            sync_dir(&packs_dir);
        }
    }

    progress(InstallStep::Pinning);
    let pin = PackPin {
        id: req.id.clone(),
        version: req.version.clone(),
        integrity: pin_integrity(req.dev, &hash),
        source: match req.source {
            InstallSource::Local { .. } => PackSource::Local,
            InstallSource::Git { .. } => PackSource::Git,
            InstallSource::Registry { .. } => PackSource::Registry,
        },
        url: pin_url,
        rev: pin_rev,
        registry_url,
    };
    match write_pin(doc, &pin) {
        Ok(preserved_layout) => Ok(InstallOutcome {
            pin,
            dest,
            hash,
            replaced,
            unchanged,
            in_place,
            previous_integrity,
            preserved_layout,
            report,
        }),
        Err(e) => {
            // Put the workspace back as it was.
            if !in_place && !unchanged {
                let _ = fs::remove_dir_all(&dest);
                if replaced {
                    let _ = fs::rename(&backup, &dest);
                }
            }
            Err(e)
        }
    }
}

/// Pin a pack built into this binary: the last of the local roots the loader looks in (KRN-04:
/// `<ws>/packs/<id>`, `<ws>/packages/@lumenflow/packs/<id>`, then the built-in packs). Nothing
/// is copied; the embedded files get the same checks and hash as a folder, and the pin is
/// `source: local`, so a folder of that id put in the workspace later takes precedence (and must
/// match the pin).
pub fn pin_builtin(
    doc: &WorkspaceDocument,
    pack: &EmbeddedPack,
    version: &str,
    expected_integrity: Option<&str>,
    dev: bool,
    progress: &mut dyn FnMut(InstallStep),
) -> Result<InstallOutcome, InstallError> {
    if !crate::manifest::is_semver(version) {
        return Err(InstallError::BadVersion(version.to_string()));
    }
    let id = pack.id;
    progress(InstallStep::Validating);
    let report = crate::pack_report::validate_embedded(pack);
    let label = format!("<built-in>/{}", pack.id);
    if !report.passed() {
        return Err(validation_error(id, &report, Path::new(&label), &label));
    }
    check_identity(&report, id, version)?;
    progress(InstallStep::Hashing);
    let hash = checked_hash(&report, id, expected_integrity)?;
    progress(InstallStep::Pinning);
    let unchanged = doc.spec.packs.iter().any(|p| {
        p.id == id
            && p.version == version
            && p.source == PackSource::Local
            && p.integrity == pin_integrity(dev, &hash)
    });
    let pin = PackPin {
        id: id.to_string(),
        version: version.to_string(),
        integrity: pin_integrity(dev, &hash),
        source: PackSource::Local,
        url: None,
        rev: None,
        registry_url: None,
    };
    let preserved_layout = write_pin(doc, &pin)?;
    Ok(InstallOutcome {
        pin,
        dest: PathBuf::from(label),
        hash,
        replaced: false,
        unchanged,
        in_place: false,
        previous_integrity: None,
        preserved_layout,
        report,
    })
}

/// The validated manifest names the requested id and version.
fn check_identity(report: &PackReport, id: &str, version: &str) -> Result<(), InstallError> {
    let manifest = report
        .manifest
        .as_ref()
        .map(|m| &m.manifest)
        .ok_or_else(|| InstallError::Source("validation passed without a manifest".into()))?;
    for (field, expected, actual) in [
        ("id", id, &manifest.id),
        ("version", version, &manifest.version),
    ] {
        if expected != actual {
            return Err(InstallError::Mismatch {
                field,
                expected: expected.to_string(),
                actual: actual.clone(),
                hint: String::new(),
            });
        }
    }
    Ok(())
}

/// The pack's hash, checked against `--integrity` when given.
fn checked_hash(
    report: &PackReport,
    id: &str,
    expected: Option<&str>,
) -> Result<PackHash, InstallError> {
    let hash = report
        .hash
        .clone()
        .ok_or_else(|| InstallError::Source("validation passed without a hash".into()))?;
    if let Some(expected) = expected {
        let expected_hex = match Integrity::parse(expected) {
            Ok(Integrity::Sha256(hex)) => hex,
            _ => {
                return Err(InstallError::Source(format!(
                    "--integrity `{expected}`: expected sha256:<64-hex>"
                )))
            }
        };
        if expected_hex != hash.hex() {
            return Err(InstallError::IntegrityMismatch {
                id: id.to_string(),
                expected: expected_hex,
                actual: hash.hex(),
            });
        }
    }
    Ok(hash)
}

fn pin_integrity(dev: bool, hash: &PackHash) -> Integrity {
    if dev {
        Integrity::Dev
    } else {
        Integrity::Sha256(hash.hex())
    }
}

/// How the user named the pack's source, for messages about its files.
fn source_label(source: &InstallSource) -> String {
    match source {
        InstallSource::Local { path } => path.display().to_string(),
        InstallSource::Git { url, rev } => match rev {
            Some(r) => format!("{url}@{r}"),
            None => url.clone(),
        },
        InstallSource::Registry { tarball, .. } => format!("{}!", tarball.display()),
    }
}

/// The failed checks, with file names pointing at the user's source instead of the staging copy.
fn validation_error(id: &str, report: &PackReport, staged: &Path, label: &str) -> InstallError {
    let staged_prefix = staged.display().to_string();
    let relabel = |text: &str| text.replace(&staged_prefix, label);
    let mut diagnostics = Vec::new();
    let mut errors = Vec::new();
    let mut failed = Vec::new();
    for check in &report.checks {
        if check.status == crate::pack_report::CheckStatus::Pass {
            continue;
        }
        failed.push(format!("{} {}", check.status.as_str(), check.name));
        if check.diagnostics.is_empty() {
            errors.extend(check.errors.iter().map(|e| relabel(e)));
        }
        for d in &check.diagnostics {
            let name = relabel(&d.file);
            diagnostics.push(d.clone().with_file_name(name));
        }
    }
    InstallError::Validation {
        id: id.to_string(),
        summary: failed.join(", "),
        diagnostics,
        errors,
    }
}

/// Upsert `pin` into `packs:` of workspace.yaml (replace by id, else append). When another
/// command changed the file since `doc` was read, the pin goes into what the file holds now.
pub fn write_pin(doc: &WorkspaceDocument, pin: &PackPin) -> Result<bool, InstallError> {
    let mut fresh: Option<WorkspaceDocument> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = fresh.as_ref().unwrap_or(doc);
        match write_pin_once(current, pin) {
            Err(InstallError::Replace(workspace::ReplaceError::Changed { .. }))
                if attempt < PIN_ATTEMPTS =>
            {
                fresh = Some(workspace::read_workspace(&doc.dir).map_err(InstallError::Workspace)?);
            }
            other => return other,
        }
    }
}

/// How often [`write_pin`] reads workspace.yaml again when it changed under the write.
const PIN_ATTEMPTS: usize = 10;

fn write_pin_once(doc: &WorkspaceDocument, pin: &PackPin) -> Result<bool, InstallError> {
    let mut pins: Vec<Value> = doc
        .spec
        .packs
        .iter()
        .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
        .collect();
    let new = serde_json::to_value(pin).map_err(|e| InstallError::Source(e.to_string()))?;
    match doc.spec.packs.iter().position(|p| p.id == pin.id) {
        Some(i) => pins[i] = new,
        None => pins.push(new),
    }
    let edited = yaml::edit::set_value(
        &doc.source.text,
        &["packs".to_string()],
        &Value::Array(pins),
    )
    .map_err(InstallError::Source)?;
    let new_source = SourceFile::new(doc.source.name.clone(), edited.text.clone());
    workspace::parse_workspace(new_source, &doc.dir).map_err(InstallError::Workspace)?;
    workspace::replace_workspace_text(doc, &edited.text)?;
    Ok(edited.preserved_layout)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copy the files the pack hash covers (symlinks resolved to their content, escapes refused).
fn copy_pack(src: &Path, dst: &Path) -> Result<(), InstallError> {
    if !src.is_dir() {
        return Err(InstallError::Source(format!(
            "pack folder `{}` does not exist or is not a directory",
            src.display()
        )));
    }
    let files = integrity::list_pack_files(src, integrity::DEFAULT_EXCLUSIONS)
        .map_err(|e| InstallError::Source(e.to_string()))?;
    fs::create_dir_all(dst).map_err(io("create", dst))?;
    for file in files {
        let target = dst.join(&file.rel_path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        fs::copy(&file.abs_path, &target).map_err(io("copy", &file.abs_path))?;
    }
    Ok(())
}

fn git_clone(
    url: &str,
    rev: Option<&str>,
    version: &str,
    dst: &Path,
) -> Result<(Option<String>, bool), InstallError> {
    let run = |args: &[&str], action: &'static str| -> Result<String, InstallError> {
        let out = Command::new("git")
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| InstallError::Git {
                action,
                url: url.to_string(),
                detail: format!("cannot run `git`: {e} (is git installed?)"),
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(InstallError::Git {
                action,
                url: url.to_string(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    };
    if let Some(r) = rev {
        // Never an option to git, whatever the caller typed.
        if r.is_empty() || r.starts_with('-') || r.chars().any(char::is_whitespace) {
            return Err(InstallError::Source(format!(
                "--rev `{r}` is not a tag, branch or commit name"
            )));
        }
    }
    let dst_str = dst.to_string_lossy().to_string();
    run(&["clone", "--quiet", "--", url, &dst_str], "clone")?;
    let tag = format!("v{version}");
    let resolve = |name: &str| {
        run(
            &[
                "-C",
                &dst_str,
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &format!("{name}^{{commit}}"),
            ],
            "rev-parse",
        )
    };
    let (chosen, fell_back) = match rev {
        Some(r) => {
            // A branch exists in the clone only as `origin/<name>`.
            let commit = resolve(r)
                .or_else(|_| resolve(&format!("origin/{r}")))
                .map_err(|_| InstallError::Git {
                    action: "checkout",
                    url: url.to_string(),
                    detail: format!(
                        "revision `{r}` is not a tag, branch or commit of this repository"
                    ),
                })?;
            (Some((r.to_string(), commit)), false)
        }
        None => match resolve(&format!("refs/tags/{tag}")) {
            Ok(commit) => (Some((tag, commit)), false),
            Err(_) => (None, true),
        },
    };
    if let Some((_, commit)) = &chosen {
        run(
            &["-C", &dst_str, "checkout", "--quiet", "--detach", commit],
            "checkout",
        )?;
    }
    let commit = run(&["-C", &dst_str, "rev-parse", "HEAD"], "rev-parse")?;
    let git_dir = dst.join(".git");
    fs::remove_dir_all(&git_dir).map_err(io("remove", &git_dir))?;
    Ok((
        Some(chosen.map(|(name, _)| name).unwrap_or(commit)),
        fell_back,
    ))
}

fn verify_tarball(
    path: &Path,
    expected: &Sha256Digest,
    id: &str,
    version: &str,
) -> Result<(), InstallError> {
    let mut file = fs::File::open(path).map_err(io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let actual = Sha256Digest::from_bytes(hasher.finalize().into());
    if &actual != expected {
        return Err(InstallError::TarballMismatch {
            id: id.to_string(),
            version: version.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Unpack a `.tar.gz` refusing anything that could write outside `dst`: absolute paths, `..`,
/// links, devices. A single top-level folder (`package/`) is stripped.
pub fn extract_tarball(path: &Path, dst: &Path) -> Result<(), InstallError> {
    let open = || -> Result<tar::Archive<flate2::read::GzDecoder<fs::File>>, InstallError> {
        let file = fs::File::open(path).map_err(io("open", path))?;
        Ok(tar::Archive::new(flate2::read::GzDecoder::new(file)))
    };
    let archive_err = |e: std::io::Error| {
        InstallError::Source(format!("`{}` is not a valid .tar.gz: {e}", path.display()))
    };
    // First pass: collect and check every entry path.
    let mut rels: Vec<PathBuf> = Vec::new();
    let mut archive = open()?;
    for entry in archive.entries().map_err(archive_err)? {
        let entry = entry.map_err(archive_err)?;
        let raw = entry.path().map_err(archive_err)?.into_owned();
        let shown = raw.display().to_string();
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(InstallError::UnsafeArchive {
                entry: shown,
                reason: "only regular files and folders are allowed (no links or devices)".into(),
            });
        }
        let mut clean = PathBuf::new();
        for comp in raw.components() {
            match comp {
                Component::Normal(c) => clean.push(c),
                Component::CurDir => {}
                _ => {
                    return Err(InstallError::UnsafeArchive {
                        entry: shown,
                        reason: "absolute paths and `..` are not allowed".into(),
                    })
                }
            }
        }
        if kind.is_file() && clean.as_os_str().is_empty() {
            continue;
        }
        if kind.is_file() {
            rels.push(clean);
        }
    }
    let strip = common_top_dir(&rels);
    fs::create_dir_all(dst).map_err(io("create", dst))?;
    let mut archive = open()?;
    for entry in archive.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let raw = entry.path().map_err(archive_err)?.into_owned();
        let clean: PathBuf = raw
            .components()
            .filter_map(|c| match c {
                Component::Normal(c) => Some(c),
                _ => None,
            })
            .collect();
        let rel = match &strip {
            Some(top) => clean.strip_prefix(top).unwrap_or(&clean).to_path_buf(),
            None => clean,
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = dst.join(&rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
        let mut out = fs::File::create(&target).map_err(io("create", &target))?;
        std::io::copy(&mut entry, &mut out).map_err(io("write", &target))?;
        // Keep tool scripts runnable; nothing else of the archive's modes is trusted.
        set_mode(&target, if executable { 0o755 } else { 0o644 })
            .map_err(io("set permissions on", &target))?;
    }
    Ok(())
}

fn common_top_dir(rels: &[PathBuf]) -> Option<PathBuf> {
    let first = rels.first()?.components().next()?;
    let all_nested = rels
        .iter()
        .all(|r| r.components().count() > 1 && r.components().next() == Some(first));
    (all_nested && !rels.iter().any(|r| r == Path::new("manifest.yaml")))
        .then(|| PathBuf::from(first.as_os_str()))
}

/// Write a file so a crash leaves either the old or the new content: a temp file beside it,
/// fsync'd, renamed over the target, then the directory fsync'd.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".lumenflow-write-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // Keep an existing file's mode; a new file gets the usual 0644 (tempfile creates 0600).
    match fs::metadata(path) {
        Ok(meta) => fs::set_permissions(tmp.path(), meta.permissions())?,
        Err(_) => set_mode(tmp.path(), 0o644)?,
    }
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Create `workspace.yaml` and `.lumenflow/` in `dir` (`lumenflow init`). Refuses to overwrite.
pub fn init_workspace(dir: &Path, id: &str, name: &str) -> Result<PathBuf, InstallError> {
    if !crate::manifest::is_config_key(id) {
        return Err(InstallError::Source(format!(
            "workspace id `{id}` must be a plain identifier (letters, digits, `_` or `-`)"
        )));
    }
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    let path = dir.join(WORKSPACE_FILE_NAME);
    if path.exists() {
        return Err(InstallError::Source(format!(
            "`{}` already exists; nothing was changed",
            path.display()
        )));
    }
    let text = workspace::initial_workspace_yaml(id, name);
    // Validate what we are about to write, so `init` can never leave a broken workspace.
    workspace::parse_workspace(
        SourceFile::new(path.display().to_string(), text.clone()),
        dir,
    )
    .map_err(InstallError::Workspace)?;
    for sub in ["", "state", "tmp"] {
        let d = dir.join(STATE_DIR).join(sub);
        fs::create_dir_all(&d).map_err(io("create", &d))?;
    }
    let gitignore = dir.join(STATE_DIR).join(".gitignore");
    workspace::ensure_state_dir(dir).map_err(io("write", &gitignore))?;
    write_file_atomically(&path, text.as_bytes()).map_err(io("write", &path))?;
    Ok(path)
}
