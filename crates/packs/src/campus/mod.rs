//! `campus-telemetry` (slug `campus`): facility telemetry as governed read tools, built into the
//! binary (INIT-MOONSHOT MD1, CTL-01 to CTL-05, EMI-01 to EMI-08).
//!
//! The pack proposes, never actuates (GOV-01, CTL-04): its tools only read the pack's state,
//! its operator commands only record observations, and nothing in it writes to a device. Every
//! label it publishes is opaque (GOV-02): no type or enum here names a vendor.
//!
//! | part | does | module |
//! |---|---|---|
//! | `campus:list_facilities`, `campus:node_inventory`, `campus:pue_telemetry`, `campus:power_signal`, `campus:facility_energy` | the five read tools, scope `.lumenflow/state/campus/**` | [`tools`] |
//! | EMIT mapping | meter windows → `emit:energy_meter_recorded`, the `pue_applied` guard | [`energy`] |
//! | `lumenflow campus facility add`, `ingest` | registration and files of readings, validated row by row | [`ingest`], [`model`] |
//! | `lumenflow campus poll --redfish URL` | power and energy read from a DMTF Redfish service | [`redfish`] |
//! | `lumenflow campus attest` | an attestation token verified before `campus:gpu_attestation_recorded` | [`attest`] |
//! | state | `.lumenflow/state/campus/` | [`store`] |
//! | events from operator commands | kind checks, batched ledger stamps | [`events`] |
//!
//! The workspace configures the attestation verifiers in its `campus:` block (validated
//! against `config.schema.json`):
//!
//! ```yaml
//! campus:
//!   attestation:
//!     nonce_ttl_seconds: 300
//!     verifiers:
//!       - id: attestation-service-a      # opaque
//!         issuer: https://attest.example
//!         algorithm: EdDSA                # or ES256
//!         public_key_pem: "-----BEGIN PUBLIC KEY-----\n..."
//!     expected_measurements:
//!       firmware: "sha256:..."
//! ```

pub mod attest;
pub mod energy;
pub mod events;
pub mod ingest;
pub mod model;
pub mod redfish;
pub mod store;
pub mod tools;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use lumenflow_kernel::builtin::EmbeddedPack;
use lumenflow_kernel::dispatch::BuiltinFn;
use lumenflow_kernel::events::host::PackRegistration;
use lumenflow_kernel::loader::read_embedded_manifest;
use lumenflow_kernel::manifest::PackManifest;

/// The pack id.
pub const ID: &str = "campus-telemetry";
/// The pack slug: its event namespace and its state folder (`.lumenflow/state/campus/`).
pub const SLUG: &str = "campus";
/// The workspace.yaml block that configures the pack.
pub const CONFIG_KEY: &str = "campus";

/// The pack folder, embedded: the manifest, the config schema and every source file, so the
/// pack's integrity hash changes whenever its code does. A test checks this list against the
/// folder on disk.
pub const PACK: EmbeddedPack = EmbeddedPack {
    id: ID,
    files: &[
        ("attest.rs", include_bytes!("attest.rs")),
        ("config.schema.json", include_bytes!("config.schema.json")),
        ("energy.rs", include_bytes!("energy.rs")),
        ("events.rs", include_bytes!("events.rs")),
        ("ingest.rs", include_bytes!("ingest.rs")),
        ("manifest.yaml", include_bytes!("manifest.yaml")),
        ("mod.rs", include_bytes!("mod.rs")),
        ("model.rs", include_bytes!("model.rs")),
        ("redfish.rs", include_bytes!("redfish.rs")),
        ("store.rs", include_bytes!("store.rs")),
        ("tools.rs", include_bytes!("tools.rs")),
    ],
};

static MANIFEST: LazyLock<PackManifest> = LazyLock::new(|| match read_embedded_manifest(&PACK) {
    Ok(doc) => doc.manifest,
    // Unreachable in a tested build: `tests/campus.rs` parses and validates this file.
    Err(diagnostics) => {
        panic!("the embedded campus-telemetry manifest.yaml is invalid: {diagnostics:?}")
    }
});

/// The manifest, parsed from the embedded `manifest.yaml`.
pub fn manifest() -> PackManifest {
    MANIFEST.clone()
}

/// The pack as the event host registers it: it emits kinds and subscribes to none.
pub fn registration() -> PackRegistration {
    PackRegistration::new(manifest())
}

/// The Rust function behind each tool, by tool name (the names are the contracts' own,
/// `lumenflow_contracts::tools::CAMPUS_TELEMETRY_TOOL_NAMES`).
pub fn tools() -> HashMap<String, BuiltinFn> {
    let entries: [(&str, BuiltinFn); 5] = [
        ("campus:list_facilities", Arc::new(tools::list_facilities)),
        ("campus:node_inventory", Arc::new(tools::node_inventory)),
        ("campus:pue_telemetry", Arc::new(tools::pue_telemetry)),
        ("campus:power_signal", Arc::new(tools::power_signal)),
        ("campus:facility_energy", Arc::new(tools::facility_energy)),
    ];
    entries
        .into_iter()
        .map(|(name, f)| (name.to_string(), f))
        .collect()
}
