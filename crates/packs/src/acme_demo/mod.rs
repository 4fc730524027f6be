//! `acme-demo`: the pack of the pack-authoring quickstart (S2, HND-10), built into the binary.
//!
//! The smallest pack that uses every part of the event bus: it declares one emitted kind and one
//! subscribed kind in [`manifest.yaml`](manifest), emits `acme-demo:job_completed` when a (mock)
//! job finishes ([`emit::run_job`]), and handles inbound `conductor:recovery_requested` for its
//! own jobs, idempotently ([`handlers::OnRecoveryRequested`]). `docs/pack-authoring.md` walks
//! through it line by line; the code shown there is this code.
//!
//! `manifest.yaml` is the single source of truth for what the pack declares: [`manifest`] parses
//! the embedded file with the kernel's own parser, so the Rust side can never drift from what
//! `lumenflow pack validate --builtin acme-demo` checks.

pub mod emit;
pub mod handlers;

use std::sync::LazyLock;

use lumenflow_contracts::kinds::ConductorKind;
use lumenflow_kernel::builtin::EmbeddedPack;
use lumenflow_kernel::events::host::PackRegistration;
use lumenflow_kernel::loader::read_embedded_manifest;
use lumenflow_kernel::manifest::PackManifest;

pub use emit::{run_job, Completion, JobContext, JobResult};
pub use handlers::{FileJobStore, JobStore, OnRecoveryRequested};

/// The pack id, which is also its slug (its event namespace).
pub const ID: &str = "acme-demo";

/// The one kind this pack emits (ephemeral, per `backpressure_policy`).
pub const JOB_COMPLETED: &str = "acme-demo:job_completed";

/// The one kind this pack subscribes to (an intrinsic conductor kind, queue + replay).
pub const RECOVERY_REQUESTED: &str = ConductorKind::RecoveryRequested.as_str();

/// The job ids this pack owns; recovery requests for any other id are someone else's.
pub const JOB_ID_PREFIX: &str = "acme-job-";

/// The pack folder, embedded: the manifest and every source file, so the pack's integrity hash
/// changes whenever its code does. A test checks this list against the folder on disk.
pub const PACK: EmbeddedPack = EmbeddedPack {
    id: ID,
    files: &[
        ("emit.rs", include_bytes!("emit.rs")),
        ("handlers.rs", include_bytes!("handlers.rs")),
        ("manifest.yaml", include_bytes!("manifest.yaml")),
        ("mod.rs", include_bytes!("mod.rs")),
    ],
};

static MANIFEST: LazyLock<PackManifest> = LazyLock::new(|| match read_embedded_manifest(&PACK) {
    Ok(doc) => doc.manifest,
    // Unreachable in a tested build: `tests/acme_demo.rs` parses and validates this file.
    Err(diagnostics) => panic!("the embedded acme-demo manifest.yaml is invalid: {diagnostics:?}"),
});

/// The manifest, parsed from the embedded `manifest.yaml`.
pub fn manifest() -> PackManifest {
    MANIFEST.clone()
}

/// The pack as the host registers it: the manifest, and a handler for each subscribed kind.
pub fn registration() -> PackRegistration {
    registration_with(FileJobStore::default())
}

/// The same registration with another job store (tests count effects with one).
pub fn registration_with<S: JobStore + 'static>(store: S) -> PackRegistration {
    PackRegistration::new(manifest()).handler(RECOVERY_REQUESTED, OnRecoveryRequested::new(store))
}
