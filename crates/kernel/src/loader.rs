//! Resolving, verifying and loading pinned packs (KRN-04, KRN-05).
//!
//! Order of a load, as in the original: pin lookup, pack root resolution, manifest, id and
//! version match, entry containment, import-boundary scan, hash, integrity decision. Where the
//! original differs by source (it could load only `local` pins at runtime), here every source is
//! installed by `pack install` into the same place, `<workspace>/packs/<id>`, so one resolution
//! order serves all: `<workspace>/packs/<id>`, then `<workspace>/packages/@lumenflow/packs/<id>`,
//! then the packs built into the binary.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::builtin::EmbeddedPack;
use crate::diagnostics::{Diagnostics, SourceFile};
use crate::import_scan;
use crate::integrity::{self, HashOptions, IntegrityError, PackHash};
use crate::manifest::{self, lint, parse_entry, ManifestDocument, MANIFEST_FILE_NAME};
use crate::workspace::{self, Integrity, PackPin, PackSource, WorkspaceDocument};

/// Environment variable that marks a production runtime (`LUMENFLOW_ENV=production`).
pub const ENV_VAR: &str = "LUMENFLOW_ENV";
/// Explicit opt-in to `integrity: dev` in production.
pub const ALLOW_DEV_ENV_VAR: &str = "LUMENFLOW_ALLOW_DEV_INTEGRITY";

/// Where a pack's files are.
#[derive(Debug, Clone)]
pub enum PackLocation {
    Dir(PathBuf),
    Builtin(EmbeddedPack),
}

impl PackLocation {
    pub fn describe(&self) -> String {
        match self {
            PackLocation::Dir(p) => p.display().to_string(),
            PackLocation::Builtin(p) => format!("built-in pack `{}`", p.id),
        }
    }
}

/// A pack that passed every load check.
#[derive(Debug, Clone)]
pub struct LoadedPack {
    pub pin: PackPin,
    pub manifest: ManifestDocument,
    pub location: PackLocation,
    /// The computed pack hash (always computed, also for `dev` pins).
    pub hash: PackHash,
    pub warnings: Vec<String>,
}

/// Why a pack did not load. Messages keep the original's wording where tools match on it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("Pack \"{0}\" is not present in workspace PackPin entries.")]
    NotPinned(String),
    #[error("pack `{id}` is pinned but not installed (looked in {looked}): {fix}")]
    NotInstalled {
        id: String,
        looked: String,
        fix: String,
    },
    #[error("manifest of pack `{id}` is invalid:\n{diagnostics}")]
    Manifest {
        id: String,
        diagnostics: Diagnostics,
    },
    #[error("Pack manifest id mismatch: expected {expected}, got {actual}")]
    IdMismatch { expected: String, actual: String },
    #[error("Pack manifest version mismatch: expected {expected}, got {actual}")]
    VersionMismatch { expected: String, actual: String },
    #[error("Pack {label} \"{entry}\" resolves outside pack root.")]
    EntryOutsideRoot { label: &'static str, entry: String },
    #[error("Pack {label} \"{entry}\" is invalid: {reason}")]
    EntryInvalid {
        label: &'static str,
        entry: String,
        reason: String,
    },
    #[error("{0}")]
    ImportBoundary(String),
    #[error("cannot hash pack `{id}`: {source}")]
    Hash { id: String, source: IntegrityError },
    #[error(
        "Pack integrity mismatch for {id}: expected {expected}, got {actual} (workspace.yaml \
         pins sha256:{expected}; the pack's files changed since. Restore them, or after \
         reviewing the change re-pin with `{repin}`)"
    )]
    IntegrityMismatch {
        id: String,
        expected: String,
        actual: String,
        /// The command that pins the pack as it is now.
        repin: String,
    },
    /// The pin resolves to a pack built into the binary, and this build's pack differs from the
    /// pinned one (the binary was upgraded or rebuilt): not tampering on disk, but still refused
    /// until someone re-pins it deliberately.
    #[error(
        "Pack integrity mismatch for {id}: expected {expected}, got {actual} (the pack built \
         into this lumenflow binary is not the one pinned; after reviewing the change, re-pin it \
         with `lumenflow pack install --id {id} --version {version} --source local`)"
    )]
    BuiltinChanged {
        id: String,
        version: String,
        expected: String,
        actual: String,
    },
    #[error(
        "Pack {id}@{version} uses integrity: dev, and integrity: dev is not allowed in production. \
         Pin the pack's hash (`lumenflow pack install --id {id} --source local --version \
         {version}`), or set LUMENFLOW_ALLOW_DEV_INTEGRITY=1 to allow it deliberately."
    )]
    DevInProduction { id: String, version: String },
    #[error("{0}")]
    Workspace(Diagnostics),
    #[error("{0}")]
    Conductor(String),
}

impl LoadError {
    pub fn code(&self) -> &'static str {
        match self {
            LoadError::NotPinned(_) => "PACK_NOT_PINNED",
            LoadError::NotInstalled { .. } => "PACK_NOT_INSTALLED",
            LoadError::Manifest { .. } => "MANIFEST_INVALID",
            LoadError::IdMismatch { .. } => "MANIFEST_ID_MISMATCH",
            LoadError::VersionMismatch { .. } => "MANIFEST_VERSION_MISMATCH",
            LoadError::EntryOutsideRoot { .. } => "ENTRY_OUTSIDE_PACK_ROOT",
            LoadError::EntryInvalid { .. } => "ENTRY_INVALID",
            LoadError::ImportBoundary(_) => "IMPORT_BOUNDARY_VIOLATION",
            LoadError::Hash { .. } => "PACK_HASH_FAILED",
            LoadError::IntegrityMismatch { .. } | LoadError::BuiltinChanged { .. } => {
                "INTEGRITY_MISMATCH"
            }
            LoadError::DevInProduction { .. } => "DEV_INTEGRITY_IN_PRODUCTION",
            LoadError::Workspace(_) => "WORKSPACE_INVALID",
            LoadError::Conductor(_) => "MANIFEST_CONDUCTOR_FIELDS",
        }
    }
}

/// Loads pinned packs for one workspace.
#[derive(Debug, Clone)]
pub struct PackLoader<'a> {
    pub workspace_dir: PathBuf,
    pub builtin: &'a [EmbeddedPack],
    pub production: bool,
    pub allow_dev_in_production: bool,
    pub import_allowlist: Vec<String>,
}

impl<'a> PackLoader<'a> {
    /// A loader for `doc`'s workspace; production mode and the dev override come from the
    /// environment (`LUMENFLOW_ENV=production`, `LUMENFLOW_ALLOW_DEV_INTEGRITY=1`).
    pub fn for_workspace(doc: &WorkspaceDocument, builtin: &'a [EmbeddedPack]) -> Self {
        let production = std::env::var(ENV_VAR).is_ok_and(|v| v == "production");
        let allow_dev_in_production =
            std::env::var(ALLOW_DEV_ENV_VAR).is_ok_and(|v| v == "1" || v == "true");
        PackLoader {
            workspace_dir: doc.dir.clone(),
            builtin,
            production,
            allow_dev_in_production,
            import_allowlist: doc.spec.security.import_allowlist.clone(),
        }
    }

    /// Candidate directories for pack `id`, in resolution order.
    pub fn candidate_dirs(&self, id: &str) -> Vec<PathBuf> {
        vec![
            self.workspace_dir.join("packs").join(id),
            self.workspace_dir
                .join("packages")
                .join("@lumenflow")
                .join("packs")
                .join(id),
        ]
    }

    /// Where pack `id` would load from, if anywhere.
    pub fn locate(&self, id: &str) -> Option<PackLocation> {
        self.candidate_dirs(id)
            .into_iter()
            .find(|dir| dir.join(MANIFEST_FILE_NAME).is_file())
            .map(PackLocation::Dir)
            .or_else(|| {
                self.builtin
                    .iter()
                    .find(|p| p.id == id)
                    .map(|p| PackLocation::Builtin(*p))
            })
    }

    /// Load the pinned pack `id` with every check.
    pub fn load(&self, spec: &workspace::WorkspaceSpec, id: &str) -> Result<LoadedPack, LoadError> {
        let pin = spec
            .pin(id)
            .cloned()
            .ok_or_else(|| LoadError::NotPinned(id.to_string()))?;
        let location = self.locate(id).ok_or_else(|| LoadError::NotInstalled {
            id: id.to_string(),
            looked: self
                .candidate_dirs(id)
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .chain(std::iter::once("the built-in packs".to_string()))
                .collect::<Vec<_>>()
                .join(", "),
            fix: missing_pack_fix(&pin),
        })?;
        let manifest = match &location {
            PackLocation::Dir(dir) => manifest::read_manifest(dir),
            PackLocation::Builtin(pack) => read_embedded_manifest(pack),
        }
        .map_err(|diagnostics| LoadError::Manifest {
            id: id.to_string(),
            diagnostics,
        })?;
        let m = &manifest.manifest;
        if m.id != pin.id {
            return Err(LoadError::IdMismatch {
                expected: pin.id.clone(),
                actual: m.id.clone(),
            });
        }
        if m.version != pin.version {
            return Err(LoadError::VersionMismatch {
                expected: pin.version.clone(),
                actual: m.version.clone(),
            });
        }
        crate::events::host::check_conductor_fields(m)
            .map_err(|e| LoadError::Conductor(e.to_string()))?;
        check_entries(&manifest, &location)?;

        let hash = match &location {
            PackLocation::Dir(dir) => {
                let files = integrity::list_pack_files(dir, integrity::DEFAULT_EXCLUSIONS)
                    .map_err(|source| LoadError::Hash {
                        id: id.to_string(),
                        source,
                    })?;
                let violations = import_scan::scan_pack_imports(&files, &self.import_allowlist)
                    .map_err(|e| LoadError::ImportBoundary(e.to_string()))?;
                if let Some(first) = violations.first() {
                    return Err(LoadError::ImportBoundary(first.to_string()));
                }
                integrity::hash_pack_files(&files, &HashOptions::default()).map_err(|source| {
                    LoadError::Hash {
                        id: id.to_string(),
                        source,
                    }
                })?
            }
            PackLocation::Builtin(pack) => pack.hash(),
        };

        let mut warnings = Vec::new();
        match &pin.integrity {
            Integrity::Dev => {
                if self.production && !self.allow_dev_in_production {
                    return Err(LoadError::DevInProduction {
                        id: pin.id.clone(),
                        version: pin.version.clone(),
                    });
                }
                warnings.push(format!(
                    "Pack {}@{} loaded with integrity: dev (verification skipped). Pin its hash \
                     with `lumenflow pack install --id {} --source local --version {}` to have \
                     its files verified.",
                    pin.id, pin.version, pin.id, pin.version
                ));
            }
            Integrity::Sha256(expected) => {
                if *expected != hash.hex() {
                    let (id, expected, actual) =
                        (pin.id.clone(), expected.clone(), hash.hex().to_string());
                    return Err(match location {
                        PackLocation::Builtin(_) => LoadError::BuiltinChanged {
                            id,
                            version: pin.version.clone(),
                            expected,
                            actual,
                        },
                        PackLocation::Dir(_) => LoadError::IntegrityMismatch {
                            repin: repin_command(&pin),
                            id,
                            expected,
                            actual,
                        },
                    });
                }
            }
        }
        Ok(LoadedPack {
            pin,
            manifest,
            location,
            hash,
            warnings,
        })
    }

    /// Load every pinned pack in pin order, then run the strict root-key check and validate each
    /// pack's config block against its `config_schema`.
    pub fn load_all(&self, doc: &WorkspaceDocument) -> Result<Vec<LoadedPack>, LoadError> {
        let mut loaded = Vec::new();
        for pin in &doc.spec.packs {
            loaded.push(self.load(&doc.spec, &pin.id)?);
        }
        let keys = config_key_map(&loaded);
        let available = self.available_manifests();
        let mut problems = workspace::validate_root_keys(doc, &keys, &available);
        for pack in &loaded {
            for d in crate::config::check_pack_block(doc, pack).0 {
                problems.push(d);
            }
        }
        problems.into_result().map_err(LoadError::Workspace)?;
        Ok(loaded)
    }

    /// `(id, version)` of every pack present under the packs roots or built in, pinned or not.
    pub fn available_manifests(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for base in [
            self.workspace_dir.join("packs"),
            self.workspace_dir
                .join("packages")
                .join("@lumenflow")
                .join("packs"),
        ] {
            let Ok(entries) = std::fs::read_dir(&base) else {
                continue;
            };
            for entry in entries.flatten() {
                if let Ok(doc) = manifest::read_manifest(&entry.path()) {
                    out.push((doc.manifest.id, doc.manifest.version));
                }
            }
        }
        for pack in self.builtin {
            if let Ok(doc) = read_embedded_manifest(pack) {
                out.push((doc.manifest.id, doc.manifest.version));
            }
        }
        out
    }
}

/// `config_key -> pack id` for loaded packs, in pin order.
pub fn config_key_map(loaded: &[LoadedPack]) -> IndexMap<String, String> {
    loaded
        .iter()
        .filter_map(|p| {
            p.manifest
                .manifest
                .config_key
                .clone()
                .map(|k| (k, p.manifest.manifest.id.clone()))
        })
        .collect()
}

/// Parse the manifest of a pack compiled into the binary.
pub fn read_embedded_manifest(pack: &EmbeddedPack) -> Result<ManifestDocument, Diagnostics> {
    let bytes = pack
        .files
        .iter()
        .find(|(p, _)| *p == MANIFEST_FILE_NAME)
        .map(|(_, b)| *b)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(bytes).into_owned();
    manifest::parse_manifest(SourceFile::new(
        format!("<built-in>/{}/{MANIFEST_FILE_NAME}", pack.id),
        text,
    ))
}

fn check_entries(doc: &ManifestDocument, location: &PackLocation) -> Result<(), LoadError> {
    let m = &doc.manifest;
    let mut entries: Vec<(&'static str, &str)> = m
        .tools
        .iter()
        .map(|t| ("tool entry", t.entry.as_str()))
        .collect();
    if let Some(f) = &m.policy_factory {
        entries.push(("policy_factory entry", f));
    }
    if let Some(f) = &m.capability_factory {
        entries.push(("capability_factory entry", f));
    }
    for (label, entry) in entries {
        let parsed = parse_entry(entry).map_err(|reason| LoadError::EntryInvalid {
            label,
            entry: entry.to_string(),
            reason,
        })?;
        match location {
            PackLocation::Dir(dir) => {
                if let Err(reason) = lint::resolve_inside(dir, parsed.module) {
                    return Err(if reason.contains("outside pack root") {
                        LoadError::EntryOutsideRoot {
                            label,
                            entry: entry.to_string(),
                        }
                    } else {
                        LoadError::EntryInvalid {
                            label,
                            entry: entry.to_string(),
                            reason,
                        }
                    });
                }
            }
            PackLocation::Builtin(pack) => {
                let module = parsed.module.trim_start_matches("./");
                if !pack.files.iter().any(|(p, _)| *p == module) {
                    return Err(LoadError::EntryInvalid {
                        label,
                        entry: entry.to_string(),
                        reason: format!("`{module}` is not a file of the built-in pack"),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The root a loaded pack's files are under, when it is a directory.
pub fn pack_dir(pack: &LoadedPack) -> Option<&Path> {
    match &pack.location {
        PackLocation::Dir(d) => Some(d),
        PackLocation::Builtin(_) => None,
    }
}

/// How to get a pinned pack's missing folder back, or to stop pinning it.
fn missing_pack_fix(pin: &PackPin) -> String {
    let fetch = match pin.source {
        // A local pin names no place to fetch from: the files must come back from where the
        // user keeps them, and the pin's hash tells whether they are the same.
        PackSource::Local => format!(
            "restore the folder `packs/{}/` from version control or a backup (the pin's hash \
             checks it is the same pack)",
            pin.id
        ),
        _ => {
            let cmd = repin_command(pin);
            let mut cmd = cmd.strip_suffix(" --force").unwrap_or(&cmd).to_string();
            // The fetch must bring back the pinned content, not whatever the source holds now.
            if let Integrity::Sha256(hex) = &pin.integrity {
                cmd.push_str(&format!(" --integrity sha256:{hex}"));
            }
            format!("fetch it again with `{cmd}`")
        }
    };
    format!(
        "{fetch}, or remove `{}` from `packs:` in workspace.yaml to stop loading it",
        pin.id
    )
}

/// The `pack install` line that pins `pin`'s pack as its files are now.
fn repin_command(pin: &PackPin) -> String {
    let mut cmd = format!(
        "lumenflow pack install --id {} --version {}",
        pin.id, pin.version
    );
    match pin.source {
        PackSource::Local => cmd.push_str(" --source local"),
        PackSource::Git => {
            cmd.push_str(" --source git");
            if let Some(url) = &pin.url {
                cmd.push_str(&format!(" --url {url}"));
            }
            if let Some(rev) = &pin.rev {
                cmd.push_str(&format!(" --rev {rev}"));
            }
        }
        PackSource::Registry => cmd.push_str(" --source registry"),
    }
    cmd.push_str(" --force");
    cmd
}
