//! Tool names, tool contracts and channel ids of the campus and tenant-evidence packs (SDK-01).
//!
//! These are the constants `@lumenflow/conductor-sdk` publishes for campus telemetry (MD1,
//! CTL-01 to CTL-05) and tenant evidence (MD2, TEV-01 to TEV-03). A contract states what a pack
//! manifest must declare for the tool: its permission, the one path scope it requests and the
//! approvals it needs. The pack's manifest and its tests read them from here, so the published
//! surface and the shipped pack cannot drift apart.
//!
//! Governance invariants held by these values (GOV-01 to GOV-03): every campus tool only reads,
//! under the narrow `.lumenflow/state/campus/**` scope, never a broad `**`; the bundle export is
//! the single write tool, its scope narrowed to the exports subtree and gated on the
//! `tenant-evidence:export` approval; no name or description mentions a vendor.
//!
//! The event-kind halves of SDK-01 (`CAMPUS_TELEMETRY_EVENT_KIND_VALUES`,
//! `TENANT_EVIDENCE_EVENT_KIND_VALUES` and the kind enums, the Rust form of `*_EVENT_KINDS`) live
//! in [`crate::kinds`] and are re-exported here; the record kinds are also an enum,
//! [`crate::payloads::RecordKind`].

use serde::Serialize;

pub use crate::kinds::{
    CampusKind, TenantEvidenceKind, CAMPUS_TELEMETRY_EVENT_KIND_VALUES,
    TENANT_EVIDENCE_EVENT_KIND_VALUES,
};

/// Logical routing label of campus telemetry events (Q9).
pub const CAMPUS_TELEMETRY_CHANNEL_ID: &str = "campus-telemetry";
/// Logical routing label of tenant-evidence events (Q9).
pub const TENANT_EVIDENCE_CHANNEL_ID: &str = "tenant-evidence";
/// The approval every bundle export needs (TEV-03).
pub const TENANT_EVIDENCE_EXPORT_APPROVAL_ID: &str = "tenant-evidence:export";

/// The five campus telemetry tools, in catalogue order (CTL-02).
pub const CAMPUS_TELEMETRY_TOOL_NAMES: &[&str] = &[
    "campus:list_facilities",
    "campus:node_inventory",
    "campus:pue_telemetry",
    "campus:power_signal",
    "campus:facility_energy",
];

/// The five tenant-evidence tools: four record reads and the export (TEV-01, TEV-02).
pub const TENANT_EVIDENCE_TOOL_NAMES: &[&str] = &[
    "proof:checkpoint_record",
    "proof:gate_record",
    "proof:approval_record",
    "proof:attestation_record",
    "proof:export_attested_bundle",
];

/// The kinds of tenant evidence record (Q24, TEV-08), one per `proof:*_record` tool.
pub const TENANT_EVIDENCE_RECORD_KIND_VALUES: &[&str] =
    &["checkpoint", "gate", "approval", "attestation"];

/// Read scope of every campus telemetry tool (CTL-03).
pub const CAMPUS_STATE_SCOPE: &str = ".lumenflow/state/campus/**";
/// Read scope of the tenant-evidence record tools (TEV-01).
pub const TENANT_EVIDENCE_SCOPE: &str = ".lumenflow/state/campus/evidence/**";
/// Write scope of the export tool, narrowed to the exports subtree (TEV-02).
pub const TENANT_EVIDENCE_EXPORTS_SCOPE: &str = ".lumenflow/state/campus/evidence/exports/**";

/// What a pack manifest must declare for one tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ToolContract {
    /// The tool's name, `namespace:action`.
    pub name: &'static str,
    /// The tool's permission: `read` or `write`.
    pub permission: &'static str,
    /// The one path scope the tool requests.
    pub scope_pattern: &'static str,
    /// Access of that scope: `read` or `write`.
    pub access: &'static str,
    /// Approval ids the dispatch path must see before running the tool.
    pub required_approvals: &'static [&'static str],
    /// One line saying what the tool returns or does.
    pub description: &'static str,
}

const fn read_tool(
    name: &'static str,
    scope_pattern: &'static str,
    description: &'static str,
) -> ToolContract {
    ToolContract {
        name,
        permission: "read",
        scope_pattern,
        access: "read",
        required_approvals: &[],
        description,
    }
}

/// Contracts of the campus telemetry tools, in the order of [`CAMPUS_TELEMETRY_TOOL_NAMES`]: all
/// read-only, all scoped to [`CAMPUS_STATE_SCOPE`] (CTL-02, CTL-03, CTL-04).
pub const CAMPUS_TELEMETRY_TOOL_CONTRACTS: &[ToolContract] = &[
    read_tool(
        "campus:list_facilities",
        CAMPUS_STATE_SCOPE,
        "All registered campus facilities.",
    ),
    read_tool(
        "campus:node_inventory",
        CAMPUS_STATE_SCOPE,
        "Node and accelerator inventory for one facility.",
    ),
    read_tool(
        "campus:pue_telemetry",
        CAMPUS_STATE_SCOPE,
        "PUE (power usage effectiveness) samples.",
    ),
    read_tool(
        "campus:power_signal",
        CAMPUS_STATE_SCOPE,
        "The latest power signal for one facility.",
    ),
    read_tool(
        "campus:facility_energy",
        CAMPUS_STATE_SCOPE,
        "Facility energy windows mapped to the EMIT joules meter contract.",
    ),
];

/// Contracts of the tenant-evidence tools, in the order of [`TENANT_EVIDENCE_TOOL_NAMES`]: four
/// reads of the evidence tree, and the export, which writes only the exports subtree and needs
/// [`TENANT_EVIDENCE_EXPORT_APPROVAL_ID`] (TEV-01 to TEV-03).
pub const TENANT_EVIDENCE_TOOL_CONTRACTS: &[ToolContract] = &[
    read_tool(
        "proof:checkpoint_record",
        TENANT_EVIDENCE_SCOPE,
        "One checkpoint record of a tenant.",
    ),
    read_tool(
        "proof:gate_record",
        TENANT_EVIDENCE_SCOPE,
        "One gate record of a tenant.",
    ),
    read_tool(
        "proof:approval_record",
        TENANT_EVIDENCE_SCOPE,
        "One approval record of a tenant.",
    ),
    read_tool(
        "proof:attestation_record",
        TENANT_EVIDENCE_SCOPE,
        "One attestation record of a tenant.",
    ),
    ToolContract {
        name: "proof:export_attested_bundle",
        permission: "write",
        scope_pattern: TENANT_EVIDENCE_EXPORTS_SCOPE,
        access: "write",
        required_approvals: &[TENANT_EVIDENCE_EXPORT_APPROVAL_ID],
        description:
            "Serializes an unsealed CanonicalReceipt of a tenant's proof bundle into the exports \
                      subtree; refused without the tenant-evidence:export approval.",
    },
];

/// The contract of a campus or tenant-evidence tool, by name.
pub fn tool_contract(name: &str) -> Option<&'static ToolContract> {
    CAMPUS_TELEMETRY_TOOL_CONTRACTS
        .iter()
        .chain(TENANT_EVIDENCE_TOOL_CONTRACTS)
        .find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::RecordKind;

    fn all_contracts() -> impl Iterator<Item = &'static ToolContract> {
        CAMPUS_TELEMETRY_TOOL_CONTRACTS
            .iter()
            .chain(TENANT_EVIDENCE_TOOL_CONTRACTS)
    }

    #[test]
    fn name_lists_match_the_contracts_in_order() {
        // SDK-01
        let campus: Vec<&str> = CAMPUS_TELEMETRY_TOOL_CONTRACTS
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(campus, CAMPUS_TELEMETRY_TOOL_NAMES);
        let evidence: Vec<&str> = TENANT_EVIDENCE_TOOL_CONTRACTS
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(evidence, TENANT_EVIDENCE_TOOL_NAMES);
        for c in all_contracts() {
            assert_eq!(tool_contract(c.name), Some(c));
        }
        assert_eq!(tool_contract("campus:actuate_power"), None);
    }

    #[test]
    fn campus_tools_read_only_under_the_narrow_campus_scope() {
        // CTL-02, CTL-03, CTL-04, Q27
        for c in CAMPUS_TELEMETRY_TOOL_CONTRACTS {
            assert!(c.name.starts_with("campus:"), "{}", c.name);
            assert_eq!((c.permission, c.access), ("read", "read"), "{}", c.name);
            assert_eq!(c.scope_pattern, ".lumenflow/state/campus/**", "{}", c.name);
            assert!(c.required_approvals.is_empty(), "{}", c.name);
        }
        for c in all_contracts() {
            let broad = c
                .scope_pattern
                .split('/')
                .all(|segment| segment.chars().all(|ch| ch == '*'));
            assert!(
                !broad,
                "{} requests the broad wildcard `{}`",
                c.name, c.scope_pattern
            );
            assert!(
                c.scope_pattern.starts_with(".lumenflow/state/campus/"),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn export_is_the_only_write_tool_and_needs_the_approval() {
        // TEV-01, TEV-02, TEV-03, GOV-03
        let writers: Vec<&ToolContract> = all_contracts()
            .filter(|c| c.permission != "read" || c.access != "read")
            .collect();
        assert_eq!(writers.len(), 1);
        let export = writers[0];
        assert_eq!(export.name, "proof:export_attested_bundle");
        assert_eq!((export.permission, export.access), ("write", "write"));
        assert_eq!(
            export.scope_pattern,
            ".lumenflow/state/campus/evidence/exports/**"
        );
        assert_eq!(export.required_approvals, &["tenant-evidence:export"]);
        assert_eq!(TENANT_EVIDENCE_EXPORT_APPROVAL_ID, "tenant-evidence:export");
        for c in &TENANT_EVIDENCE_TOOL_CONTRACTS[..4] {
            assert!(
                c.name.starts_with("proof:") && c.name.ends_with("_record"),
                "{}",
                c.name
            );
            assert_eq!(c.scope_pattern, ".lumenflow/state/campus/evidence/**");
            assert!(c.required_approvals.is_empty());
        }
    }

    #[test]
    fn record_kinds_match_the_record_tools_and_the_payload_enum() {
        // TEV-08, Q24
        let from_enum: Vec<&str> = RecordKind::VALUES.iter().map(|k| k.as_str()).collect();
        assert_eq!(from_enum, TENANT_EVIDENCE_RECORD_KIND_VALUES);
        for (kind, tool) in TENANT_EVIDENCE_RECORD_KIND_VALUES
            .iter()
            .zip(TENANT_EVIDENCE_TOOL_NAMES)
        {
            assert_eq!(*tool, format!("proof:{kind}_record"));
        }
    }

    #[test]
    fn channel_ids_and_kind_values() {
        // Q9, KND-02
        assert_eq!(CAMPUS_TELEMETRY_CHANNEL_ID, "campus-telemetry");
        assert_eq!(TENANT_EVIDENCE_CHANNEL_ID, "tenant-evidence");
        assert!(CAMPUS_TELEMETRY_EVENT_KIND_VALUES
            .iter()
            .all(|k| k.starts_with("campus:")));
        assert_eq!(
            TENANT_EVIDENCE_EVENT_KIND_VALUES.len(),
            TenantEvidenceKind::VALUES.len()
        );
        assert_eq!(
            CAMPUS_TELEMETRY_EVENT_KIND_VALUES.len(),
            CampusKind::VALUES.len()
        );
    }

    #[test]
    fn no_vendor_brand_in_any_name_or_description() {
        // GOV-02, CRS-04
        const DENY: &[&str] = &[
            "nvidia",
            "amd",
            "intel",
            "aws",
            "azure",
            "gcp",
            "google",
            "dell",
            "hpe",
            "supermicro",
            "schneider",
            "cuda",
            "h100",
            "a100",
            "sgx",
            "tdx",
            "sev",
        ];
        let words = |text: &str| -> Vec<String> {
            text.to_ascii_lowercase()
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        };
        for c in all_contracts() {
            for text in [c.name, c.description, c.scope_pattern] {
                for word in words(text) {
                    assert!(
                        !DENY.contains(&word.as_str()),
                        "vendor `{word}` in `{text}`"
                    );
                }
                let lower = text.to_ascii_lowercase();
                for brand in ["nvidia", "supermicro", "schneider", "google", "azure"] {
                    assert!(!lower.contains(brand), "vendor `{brand}` in `{text}`");
                }
            }
        }
    }
}
