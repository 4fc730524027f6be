//! Payload shapes of the known v2 kinds: the tagged union of SDK-03 and its validation.
//!
//! Every kind of [`KnownKind::all`] has one payload struct here and one variant in [`Payload`].
//! [`parse_payload`] is the one entry point for validation, used both before emitting (KND-01)
//! and when an inbound event reaches a handler (EVT-10): required fields must be present with the
//! right type, and value rules (ranges, RFC 3339 times, `sha256:` digests, cross-field rules such
//! as `valid_from < valid_to`) hold. Fields nobody knows yet are ignored, never refused, so adding
//! a field to a kind is additive and never breaks an older reader (MAN-09).
//!
//! The shapes are stated by the documents where they say something (REQUIREMENTS §3.5, Q22, Q24,
//! Q28, Q38, Q40); elsewhere they are ours, and each field says what it means.
//!
//! On input an optional field that is `null` counts as absent. Required strings must not be empty
//! or blank. Numbers must be finite (JSON cannot carry NaN, but a typed payload built in code can).
//! The structs implement `Deserialize` through the same rules, so `serde_json::from_value` of a
//! payload struct validates exactly as [`parse_payload`] does; `Serialize` writes the wire form
//! (absent options omitted, enums in lower case, timestamps as `YYYY-MM-DDTHH:MM:SS.mmmZ`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::digest::Sha256Digest;
use crate::event::{build_event, BuildOptions, EventError, KernelEventV2};
use crate::kinds::{
    AgentRuntimeKind, CampusKind, ConductorKind, EmitKind, KnownKind, SidekickKind,
    SoftwareDeliveryKind, TenantEvidenceKind,
};
use crate::time::Timestamp;

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a payload does not fit the shape of its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadError {
    /// The event kind whose shape was expected.
    pub kind: String,
    /// The offending field (`curtailment_window.start` for a nested one), when there is one.
    pub field: Option<String>,
    /// What was expected and what was found, in lower case.
    pub message: String,
}

impl PayloadError {
    /// Stable error code, for error bodies and logs.
    pub fn code(&self) -> &'static str {
        "EVENT_PAYLOAD_INVALID"
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "payload of `{}`: `{field}`: {}", self.kind, self.message),
            None => write!(f, "payload of `{}`: {}", self.kind, self.message),
        }
    }
}

impl std::error::Error for PayloadError {}

// ---------------------------------------------------------------------------------------------
// Enumerated values

/// How a wire enum is read by the field reader.
trait WireEnum: Copy + 'static {
    const VALUES: &'static [Self];
    /// Whether input is matched regardless of letter case.
    const ANY_CASE: bool;
    fn wire(self) -> &'static str;
    fn from_input(input: &str) -> Option<Self>;
}

fn expected_one_of<E: WireEnum>() -> String {
    let list: Vec<String> = E::VALUES
        .iter()
        .map(|v| format!("`{}`", v.wire()))
        .collect();
    let mut text = if list.len() == 1 {
        list.join("")
    } else {
        format!("one of {}", list.join(", "))
    };
    if E::ANY_CASE {
        text.push_str(" (any letter case)");
    }
    text
}

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident, any_case = $any_case:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in wire order.
            pub const VALUES: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The wire string (always lower case).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $wire, )+
                }
            }

            /// The value for a wire string, as accepted on input.
            pub fn from_wire(input: &str) -> Option<Self> {
                <Self as WireEnum>::from_input(input)
            }
        }

        impl WireEnum for $name {
            const VALUES: &'static [Self] = $name::VALUES;
            const ANY_CASE: bool = $any_case;

            fn wire(self) -> &'static str {
                self.as_str()
            }

            fn from_input(input: &str) -> Option<Self> {
                $name::VALUES.iter().copied().find(|v| {
                    if $any_case {
                        v.as_str().eq_ignore_ascii_case(input)
                    } else {
                        v.as_str() == input
                    }
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::from_wire(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "expected {}, found `{}`",
                        expected_one_of::<$name>(),
                        shorten(&s)
                    ))
                })
            }
        }
    };
}

wire_enum! {
    /// Outcome of an agent turn that ran to its end.
    TurnStatus, any_case = false {
        Succeeded => "succeeded",
        Failed => "failed",
    }
}

wire_enum! {
    /// State left behind by an aborted turn (ABR-02).
    CleanupStatus, any_case = false {
        /// No state mutation; nothing to recover.
        Clean => "clean",
        /// Some mutations rolled back; consistent but incomplete. `recovery_action` is prose.
        Partial => "partial",
        /// State is inconsistent; `recovery_action` is a verbatim command the operator confirms.
        NeedsRecovery => "needs_recovery",
    }
}

wire_enum! {
    /// The resolved outcome of a tool call (Q40).
    ToolOutcome, any_case = false {
        Success => "success",
        Failure => "failure",
        /// Refused by scope, policy or token scope.
        Denied => "denied",
        /// Refused because a required approval was missing (Q39 step 4).
        ApprovalRequired => "approval_required",
    }
}

wire_enum! {
    /// The kinds of tenant evidence record (Q24); the same values as
    /// `tools::TENANT_EVIDENCE_RECORD_KIND_VALUES`.
    RecordKind, any_case = false {
        Checkpoint => "checkpoint",
        Gate => "gate",
        Approval => "approval",
        Attestation => "attestation",
    }
}

wire_enum! {
    /// The meter an energy reading came from (EMI-02). Input is matched in any letter case
    /// (`PDU`, `Redfish`, `SMART_METER`) and always written in lower case (Q28).
    EnergySource, any_case = true {
        Pdu => "pdu",
        Ipmi => "ipmi",
        Redfish => "redfish",
        SmartMeter => "smart_meter",
    }
}

wire_enum! {
    /// Provenance tier of an energy reading (EMI-08).
    EnergyProvenance, any_case = false {
        /// Read from a sensor (`sensor_ref` names it).
        Measured => "measured",
        /// Derived from a model (`coefficient_ref` names the coefficients).
        Modelled => "modelled",
    }
}

wire_enum! {
    /// The unit of the EMIT energy contract: always joules (EMI-05).
    EnergyUnit, any_case = false {
        Joules => "joules",
    }
}

// ---------------------------------------------------------------------------------------------
// Payload structs

macro_rules! payload_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident ($label:expr) {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
        read($r:ident) $read:block
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// Validate a payload map against this shape (extra fields are ignored).
            pub fn from_map(map: &Map<String, Value>) -> Result<Self, PayloadError> {
                Self::read(&Fields { kind: $label, map })
            }

            fn read($r: &Fields<'_>) -> Result<Self, PayloadError> $read
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let map = Map::<String, Value>::deserialize(d)?;
                $name::from_map(&map).map_err(serde::de::Error::custom)
            }
        }
    };
}

payload_struct! {
    /// `conductor:recovery_requested` (inbound, queued): the operator asks a workspace to recover
    /// a work unit (ABR-05). Handlers never run a state-mutating command without consent (ABR-04).
    pub struct RecoveryRequested ("conductor:recovery_requested") {
        /// The work unit to recover, e.g. `WU-042`.
        pub wu_id: String,
        /// Why recovery was requested, as the operator wrote it.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
        /// Who asked (a user or device identity), for the audit log.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub requested_by: Option<String>,
    }
    read(r) {
        Ok(Self {
            wu_id: r.req_str("wu_id")?,
            reason: r.opt_str("reason")?,
            requested_by: r.opt_str("requested_by")?,
        })
    }
}

payload_struct! {
    /// `conductor:workspace_updated`: the workspace configuration or tool surface changed, so the
    /// control plane refreshes its registry (S3 "refreshes on workspace state change events").
    pub struct WorkspaceUpdated ("conductor:workspace_updated") {
        /// Digest or version of the effective workspace configuration after the change.
        pub config_hash: String,
        /// Entity tag of the `GET /tools` listing after the change.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub tools_etag: Option<String>,
    }
    read(r) {
        Ok(Self {
            config_hash: r.req_str("config_hash")?,
            tools_etag: r.opt_str("tools_etag")?,
        })
    }
}

payload_struct! {
    /// `agent-runtime:turn_started`.
    pub struct TurnStarted ("agent-runtime:turn_started") {
        /// Identifier of the turn, shared by its start, end and tool calls.
        pub turn_id: String,
        /// The goal the turn was started with.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub goal: Option<String>,
        /// The agent session the turn belongs to.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub session_id: Option<String>,
    }
    read(r) {
        Ok(Self {
            turn_id: r.req_str("turn_id")?,
            goal: r.opt_str("goal")?,
            session_id: r.opt_str("session_id")?,
        })
    }
}

payload_struct! {
    /// `agent-runtime:turn_completed`: a turn ran to its end.
    pub struct TurnCompleted ("agent-runtime:turn_completed") {
        /// Identifier of the turn.
        pub turn_id: String,
        /// Whether the turn reached its goal.
        pub status: TurnStatus,
        /// Number of tool calls made during the turn.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub tool_calls: Option<u64>,
        /// A one-line summary of the result.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub summary: Option<String>,
    }
    read(r) {
        Ok(Self {
            turn_id: r.req_str("turn_id")?,
            status: r.req_enum("status")?,
            tool_calls: r.opt_u64("tool_calls")?,
            summary: r.opt_str("summary")?,
        })
    }
}

payload_struct! {
    /// `agent-runtime:turn_aborted` (Q22): a turn stopped mid-flight (ABR-01 to ABR-03).
    pub struct TurnAborted ("agent-runtime:turn_aborted") {
        /// Identifier of the turn.
        pub turn_id: String,
        /// What state the abort left behind.
        pub cleanup_status: CleanupStatus,
        /// The next step: prose for `partial`, a verbatim command for `needs_recovery` (required
        /// then, e.g. `pnpm wu:recover --id WU-042`). Shown to the operator, never executed.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub recovery_action: Option<String>,
        /// Why the turn was aborted.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
        /// The agent session the turn belongs to (Q22 names `turn_id/session_id`).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub session_id: Option<String>,
    }
    read(r) {
        let payload = Self {
            turn_id: r.req_str("turn_id")?,
            cleanup_status: r.req_enum("cleanup_status")?,
            recovery_action: r.opt_str("recovery_action")?,
            reason: r.opt_str("reason")?,
            session_id: r.opt_str("session_id")?,
        };
        let has_action = payload.recovery_action.as_deref().is_some_and(|a| !a.trim().is_empty());
        if payload.cleanup_status == CleanupStatus::NeedsRecovery && !has_action {
            return Err(r.err(
                "recovery_action",
                "is required when `cleanup_status` is `needs_recovery`; expected the verbatim \
                 recovery command for the operator to confirm, e.g. `pnpm wu:recover --id WU-042`",
            ));
        }
        Ok(payload)
    }
}

payload_struct! {
    /// `agent-runtime:tool_called` (Q40): emitted by the sidecar/kernel for every tool call.
    pub struct ToolCalled ("agent-runtime:tool_called") {
        /// The tool as named in its manifest, e.g. `software-delivery:gates`.
        pub tool_name: String,
        /// `sha256:` of the canonical JSON `{tool_name, input}` (the kernel trace's input hash).
        pub envelope_hash: Sha256Digest,
        /// How the call resolved.
        pub outcome: ToolOutcome,
        /// The error code of a failed or refused call, e.g. `APPROVAL_REQUIRED`.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub error_code: Option<String>,
        /// The evidence receipt of the call, when the kernel wrote one.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub receipt_id: Option<String>,
    }
    read(r) {
        Ok(Self {
            tool_name: r.req_str("tool_name")?,
            envelope_hash: r.req_digest("envelope_hash")?,
            outcome: r.req_enum("outcome")?,
            error_code: r.opt_str("error_code")?,
            receipt_id: r.opt_str("receipt_id")?,
        })
    }
}

payload_struct! {
    /// `software-delivery:wu_claimed`: a work unit was claimed on a lane.
    pub struct WuClaimed ("software-delivery:wu_claimed") {
        /// The work unit, e.g. `WU-042`.
        pub wu_id: String,
        /// The lane it was claimed on, e.g. `Content: Site Comms`.
        pub lane: String,
        /// The worktree the claim resolved to, relative to the workspace root.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub worktree_path: Option<String>,
    }
    read(r) {
        Ok(Self {
            wu_id: r.req_str("wu_id")?,
            lane: r.req_str("lane")?,
            worktree_path: r.opt_str("worktree_path")?,
        })
    }
}

payload_struct! {
    /// `software-delivery:gate_passed` and `software-delivery:gate_failed`: one gate's outcome.
    pub struct GateResult ("software-delivery:gate_*") {
        /// The work unit the gate ran for, when it ran for one.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub wu_id: Option<String>,
        /// The gate's name, e.g. `lint` or `test`.
        pub gate: String,
        /// Wall-clock duration of the gate in milliseconds.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub duration_ms: Option<u64>,
        /// Exit code of the gate's command, when it ran one.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub exit_code: Option<i64>,
        /// A one-line summary (first failing check, counts).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub summary: Option<String>,
    }
    read(r) {
        Ok(Self {
            wu_id: r.opt_str("wu_id")?,
            gate: r.req_str("gate")?,
            duration_ms: r.opt_u64("duration_ms")?,
            exit_code: r.opt_i64("exit_code")?,
            summary: r.opt_str("summary")?,
        })
    }
}

payload_struct! {
    /// `sidekick:approval_requested` (queued): an operator decision is needed (KND-03).
    pub struct ApprovalRequested ("sidekick:approval_requested") {
        /// The approval being asked for, e.g. `tenant-evidence:export`.
        pub approval_id: String,
        /// The tool call waiting on it.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub tool_name: Option<String>,
        /// Why the approval is needed, shown to the operator.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
        /// When the request lapses (RFC 3339).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub expires_at: Option<Timestamp>,
    }
    read(r) {
        Ok(Self {
            approval_id: r.req_str("approval_id")?,
            tool_name: r.opt_str("tool_name")?,
            reason: r.opt_str("reason")?,
            expires_at: r.opt_time("expires_at")?,
        })
    }
}

payload_struct! {
    /// `sidekick:command_received` (inbound, queued): a command from the sidekick bridge or a
    /// phone device (Q37).
    pub struct CommandReceived ("sidekick:command_received") {
        /// The command name.
        pub command: String,
        /// The command's arguments.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub args: Option<Map<String, Value>>,
        /// The registered device that sent it (the `<device_id>` of a phone subject).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub device_id: Option<String>,
    }
    read(r) {
        Ok(Self {
            command: r.req_str("command")?,
            args: r.opt_object("args")?,
            device_id: r.opt_str("device_id")?,
        })
    }
}

payload_struct! {
    /// `campus:facility_registered`.
    pub struct FacilityRegistered ("campus:facility_registered") {
        /// Opaque facility identifier, e.g. `campus-fac-001`.
        pub facility_id: String,
        /// Human-readable facility name.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
        /// Region label, e.g. `eu-west-1`.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub region: Option<String>,
    }
    read(r) {
        Ok(Self {
            facility_id: r.req_str("facility_id")?,
            name: r.opt_str("name")?,
            region: r.opt_str("region")?,
        })
    }
}

payload_struct! {
    /// `campus:node_inventory_updated`: the node / accelerator inventory of one facility.
    pub struct NodeInventoryUpdated ("campus:node_inventory_updated") {
        /// The facility.
        pub facility_id: String,
        /// Number of nodes in the facility.
        pub node_count: u64,
        /// Node descriptors, with opaque labels only (GOV-02).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub nodes: Option<Vec<Value>>,
    }
    read(r) {
        Ok(Self {
            facility_id: r.req_str("facility_id")?,
            node_count: r.req_u64("node_count")?,
            nodes: r.opt_array("nodes")?,
        })
    }
}

payload_struct! {
    /// `campus:pue_sampled`: one power usage effectiveness sample.
    pub struct PueSampled ("campus:pue_sampled") {
        /// The facility.
        pub facility_id: String,
        /// Total facility power over IT power; a finite number >= 1.0.
        #[serde(serialize_with = "js_number")]
        pub pue: f64,
        /// When the sample was taken (RFC 3339).
        pub sampled_at: Timestamp,
    }
    read(r) {
        Ok(Self {
            facility_id: r.req_str("facility_id")?,
            pue: r.req_f64("pue", Min::PUE)?,
            sampled_at: r.req_time("sampled_at")?,
        })
    }
}

payload_struct! {
    /// `campus:power_signal_ingested`: the latest power reading of one facility. An observation
    /// only: nothing in the campus pack actuates power (CTL-04).
    pub struct PowerSignalIngested ("campus:power_signal_ingested") {
        /// The facility.
        pub facility_id: String,
        /// Power draw in watts; finite, >= 0.
        #[serde(serialize_with = "js_number")]
        pub watts: f64,
        /// When the reading was observed (RFC 3339).
        pub observed_at: Timestamp,
        /// Where the reading came from, e.g. `facility_meter:utility-smart-meter-a`.
        pub source: String,
    }
    read(r) {
        Ok(Self {
            facility_id: r.req_str("facility_id")?,
            watts: r.req_f64("watts", Min::ZERO)?,
            observed_at: r.req_time("observed_at")?,
            source: r.req_str("source")?,
        })
    }
}

payload_struct! {
    /// `campus:facility_energy_recorded`: facility energy over one window (mapped to EMIT).
    pub struct FacilityEnergyRecorded ("campus:facility_energy_recorded") {
        /// The facility.
        pub facility_id: String,
        /// Start of the window (RFC 3339, inclusive); before `valid_to`.
        pub valid_from: Timestamp,
        /// End of the window (RFC 3339, exclusive).
        pub valid_to: Timestamp,
        /// Energy used in the window, in joules; finite, >= 0.
        #[serde(serialize_with = "js_number")]
        pub quantity_joules: f64,
    }
    read(r) {
        let payload = Self {
            facility_id: r.req_str("facility_id")?,
            valid_from: r.req_time("valid_from")?,
            valid_to: r.req_time("valid_to")?,
            quantity_joules: r.req_f64("quantity_joules", Min::ZERO)?,
        };
        r.window("valid_from", payload.valid_from, "valid_to", payload.valid_to)?;
        Ok(payload)
    }
}

payload_struct! {
    /// `campus:gpu_attestation_recorded` (Q38): recorded only after the kernel primitive verified
    /// an attestation token; a failing token is refused, never recorded.
    pub struct GpuAttestationRecorded ("campus:gpu_attestation_recorded") {
        /// The facility.
        pub facility_id: String,
        /// The attested node.
        pub node_id: String,
        /// Identifier of the attestation (the token's id).
        pub attestation_id: String,
        /// Opaque identifier of the attestation service whose keys verified the token.
        pub verifier: String,
        /// When verification succeeded (RFC 3339).
        pub verified_at: Timestamp,
        /// `sha256:` of the attestation evidence (the token as received).
        pub evidence_digest: Sha256Digest,
        /// `sha256:` of the canonical JSON of the reported measurements.
        pub measurements_digest: Sha256Digest,
    }
    read(r) {
        Ok(Self {
            facility_id: r.req_str("facility_id")?,
            node_id: r.req_str("node_id")?,
            attestation_id: r.req_str("attestation_id")?,
            verifier: r.req_str("verifier")?,
            verified_at: r.req_time("verified_at")?,
            evidence_digest: r.req_digest("evidence_digest")?,
            measurements_digest: r.req_digest("measurements_digest")?,
        })
    }
}

payload_struct! {
    /// `tenant-evidence:proof_record_read`: one of the `proof:*_record` tools read a record.
    pub struct ProofRecordRead ("tenant-evidence:proof_record_read") {
        /// Which kind of record was read.
        pub record_kind: RecordKind,
        /// The record's identifier.
        pub record_id: String,
    }
    read(r) {
        Ok(Self {
            record_kind: r.req_enum("record_kind")?,
            record_id: r.req_str("record_id")?,
        })
    }
}

payload_struct! {
    /// `tenant-evidence:proof_bundle_exported`: an approved export wrote a CanonicalReceipt (no
    /// seal: the cloud seals downstream, TEV-05 to TEV-07).
    pub struct ProofBundleExported ("tenant-evidence:proof_bundle_exported") {
        /// The exported bundle.
        pub bundle_id: String,
        /// `sha256:` content reference of the receipt, which the cloud sealer binds to.
        pub content_digest: Sha256Digest,
        /// The approval the export was made under (`tenant-evidence:export`, TEV-03).
        pub approval_id: String,
    }
    read(r) {
        Ok(Self {
            bundle_id: r.req_str("bundle_id")?,
            content_digest: r.req_digest("content_digest")?,
            approval_id: r.req_str("approval_id")?,
        })
    }
}

/// The optional curtailment window of an energy reading (EMI-03).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurtailmentWindow {
    /// When curtailment started (RFC 3339); before `end`.
    pub start: Timestamp,
    /// When curtailment ended (RFC 3339).
    pub end: Timestamp,
}

payload_struct! {
    /// `emit:energy_meter_recorded`: the shared EMIT joules meter contract (EMI-01 to EMI-08,
    /// Q28). Facility-grain (campus) and run-grain (connected compute) meters share this shape.
    /// The envelope fields Q28 lists (`kind`, `schema_version`, `event_id`, `seq`, `timestamp`)
    /// live in the v2 envelope, not here.
    pub struct EnergyMeterRecorded ("emit:energy_meter_recorded") {
        /// The workspace the energy is attributed to.
        pub workspace_id: String,
        /// The facility, for facility-grain readings.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub facility_id: Option<String>,
        /// The compute assignment the window correlates to, when known (EMI-03).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub compute_assignment_run_id: Option<String>,
        /// Region label, e.g. `eu-west-1`.
        pub region: String,
        /// Start of the window (RFC 3339, inclusive); before `valid_to`.
        pub valid_from: Timestamp,
        /// End of the window (RFC 3339, exclusive).
        pub valid_to: Timestamp,
        /// Energy in the window, in joules; finite, >= 0.
        #[serde(serialize_with = "js_number")]
        pub quantity_joules: f64,
        /// Always `joules`.
        pub unit: EnergyUnit,
        /// The meter reference, e.g. `facility_meter:utility-smart-meter-a`.
        pub source: String,
        /// The kind of meter (lower case on the wire).
        pub energy_source: EnergySource,
        /// Measured or modelled.
        pub energy_provenance: EnergyProvenance,
        /// The facility's PUE over the window; finite, >= 1.0.
        #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_js_number")]
        pub pue: Option<f64>,
        /// True when `quantity_joules` already includes facility overhead, so consumers must not
        /// multiply by the PUE again (the double-counting guard). False when absent.
        pub pue_applied: bool,
        /// Grid carbon intensity over the window, gCO2e per kWh; finite, >= 0.
        #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_js_number")]
        pub grid_carbon_intensity_gco2e_per_kwh: Option<f64>,
        /// Energy price per kWh, in `currency`; finite (negative market prices exist).
        #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_js_number")]
        pub price_per_kwh: Option<f64>,
        /// Currency of `price_per_kwh`, e.g. `EUR`.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub currency: Option<String>,
        /// A curtailment period overlapping the window.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub curtailment_window: Option<CurtailmentWindow>,
        /// Reference of the sensor behind a measured reading.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub sensor_ref: Option<String>,
        /// Reference of the coefficients behind a modelled reading.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub coefficient_ref: Option<String>,
    }
    read(r) {
        let payload = Self {
            workspace_id: r.req_str("workspace_id")?,
            facility_id: r.opt_str("facility_id")?,
            compute_assignment_run_id: r.opt_str("compute_assignment_run_id")?,
            region: r.req_str("region")?,
            valid_from: r.req_time("valid_from")?,
            valid_to: r.req_time("valid_to")?,
            quantity_joules: r.req_f64("quantity_joules", Min::ZERO)?,
            unit: r.req_enum("unit")?,
            source: r.req_str("source")?,
            energy_source: r.req_enum("energy_source")?,
            energy_provenance: r.req_enum("energy_provenance")?,
            pue: r.opt_f64("pue", Min::PUE)?,
            pue_applied: r.opt_bool("pue_applied")?.unwrap_or(false),
            grid_carbon_intensity_gco2e_per_kwh: r
                .opt_f64("grid_carbon_intensity_gco2e_per_kwh", Min::ZERO)?,
            price_per_kwh: r.opt_f64("price_per_kwh", Min::NONE)?,
            currency: r.opt_str("currency")?,
            curtailment_window: r.opt_curtailment_window("curtailment_window")?,
            sensor_ref: r.opt_str("sensor_ref")?,
            coefficient_ref: r.opt_str("coefficient_ref")?,
        };
        r.window("valid_from", payload.valid_from, "valid_to", payload.valid_to)?;
        Ok(payload)
    }
}

// ---------------------------------------------------------------------------------------------
// The tagged union

macro_rules! payload_union {
    ( $( $variant:ident ( $ty:ty ) => $kind:expr, )+ ) => {
        /// The payload of a known v2 kind (SDK-03): one variant per kind of [`KnownKind::all`].
        #[derive(Debug, Clone, PartialEq)]
        pub enum Payload {
            $( $variant($ty), )+
        }

        impl Payload {
            /// The kind this payload belongs to.
            pub fn kind(&self) -> KnownKind {
                match self {
                    $( Payload::$variant(_) => $kind, )+
                }
            }

            /// The payload as the map the event builder takes (absent options omitted).
            pub fn to_map(&self) -> Map<String, Value> {
                match self {
                    $( Payload::$variant(p) => object_of(p), )+
                }
            }

            fn read(kind: KnownKind, fields: &Fields<'_>) -> Result<Payload, PayloadError> {
                $(
                    if kind == $kind {
                        return <$ty>::read(fields).map(Payload::$variant);
                    }
                )+
                Err(fields.whole(format!("no payload shape is registered for `{}`", kind.as_str())))
            }
        }

        /// Serializes as the payload object itself (the kind travels in the envelope).
        impl Serialize for Payload {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( Payload::$variant(p) => p.serialize(s), )+
                }
            }
        }
    };
}

payload_union! {
    RecoveryRequested(RecoveryRequested) => KnownKind::Conductor(ConductorKind::RecoveryRequested),
    WorkspaceUpdated(WorkspaceUpdated) => KnownKind::Conductor(ConductorKind::WorkspaceUpdated),
    TurnStarted(TurnStarted) => KnownKind::AgentRuntime(AgentRuntimeKind::TurnStarted),
    TurnCompleted(TurnCompleted) => KnownKind::AgentRuntime(AgentRuntimeKind::TurnCompleted),
    TurnAborted(TurnAborted) => KnownKind::AgentRuntime(AgentRuntimeKind::TurnAborted),
    ToolCalled(ToolCalled) => KnownKind::AgentRuntime(AgentRuntimeKind::ToolCalled),
    WuClaimed(WuClaimed) => KnownKind::SoftwareDelivery(SoftwareDeliveryKind::WuClaimed),
    GatePassed(GateResult) => KnownKind::SoftwareDelivery(SoftwareDeliveryKind::GatePassed),
    GateFailed(GateResult) => KnownKind::SoftwareDelivery(SoftwareDeliveryKind::GateFailed),
    ApprovalRequested(ApprovalRequested) => KnownKind::Sidekick(SidekickKind::ApprovalRequested),
    CommandReceived(CommandReceived) => KnownKind::Sidekick(SidekickKind::CommandReceived),
    FacilityRegistered(FacilityRegistered) => KnownKind::Campus(CampusKind::FacilityRegistered),
    NodeInventoryUpdated(NodeInventoryUpdated) => KnownKind::Campus(CampusKind::NodeInventoryUpdated),
    PueSampled(PueSampled) => KnownKind::Campus(CampusKind::PueSampled),
    PowerSignalIngested(PowerSignalIngested) => KnownKind::Campus(CampusKind::PowerSignalIngested),
    FacilityEnergyRecorded(FacilityEnergyRecorded) => KnownKind::Campus(CampusKind::FacilityEnergyRecorded),
    GpuAttestationRecorded(GpuAttestationRecorded) => KnownKind::Campus(CampusKind::GpuAttestationRecorded),
    ProofRecordRead(ProofRecordRead) => KnownKind::TenantEvidence(TenantEvidenceKind::ProofRecordRead),
    ProofBundleExported(ProofBundleExported) => KnownKind::TenantEvidence(TenantEvidenceKind::ProofBundleExported),
    EnergyMeterRecorded(EnergyMeterRecorded) => KnownKind::Emit(EmitKind::EnergyMeterRecorded),
}

impl Payload {
    /// Check a payload built in code against the same rules as received ones (a typed payload
    /// can still hold, say, a PUE below 1.0 or a NaN).
    pub fn validate(&self) -> Result<(), PayloadError> {
        let kind = self.kind();
        let map = self.to_map();
        Payload::read(
            kind,
            &Fields {
                kind: kind.as_str(),
                map: &map,
            },
        )
        .map(|_| ())
    }

    /// Build the v2 event carrying this payload, validating it first.
    pub fn to_event(
        &self,
        from: &str,
        options: BuildOptions,
    ) -> Result<KernelEventV2, PayloadEventError> {
        let kind = self.kind();
        let map = self.to_map();
        let fields = Fields {
            kind: kind.as_str(),
            map: &map,
        };
        Payload::read(kind, &fields).map_err(PayloadEventError::Payload)?;
        build_event(kind.as_str(), from, map, options).map_err(PayloadEventError::Event)
    }
}

/// Why [`Payload::to_event`] failed.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadEventError {
    Payload(PayloadError),
    Event(EventError),
}

impl fmt::Display for PayloadEventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadEventError::Payload(e) => e.fmt(f),
            PayloadEventError::Event(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PayloadEventError {}

/// The typed payload of a known kind, or why the map does not fit its shape.
///
/// Unknown kinds (a pack's own kinds, the v1 `task_*` family) give `Ok(None)`: rejecting a kind
/// is the builder's and the registry's job (EVT-07, Q7), not this function's. Fields not in the
/// shape are ignored (MAN-09).
pub fn parse_payload(
    kind: &str,
    payload: &Map<String, Value>,
) -> Result<Option<Payload>, PayloadError> {
    let Some(known) = KnownKind::from_name(kind) else {
        return Ok(None);
    };
    Payload::read(
        known,
        &Fields {
            kind: known.as_str(),
            map: payload,
        },
    )
    .map(Some)
}

// ---------------------------------------------------------------------------------------------
// Field reader

/// A lower bound for a number field.
#[derive(Clone, Copy)]
struct Min(Option<(f64, &'static str)>);

impl Min {
    const NONE: Min = Min(None);
    const ZERO: Min = Min(Some((0.0, "0")));
    const PUE: Min = Min(Some((1.0, "1.0")));
}

/// Reads typed fields out of a payload map, with errors that name the field.
struct Fields<'a> {
    kind: &'a str,
    map: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> PayloadError {
        PayloadError {
            kind: self.kind.to_string(),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn whole(&self, message: impl Into<String>) -> PayloadError {
        PayloadError {
            kind: self.kind.to_string(),
            field: None,
            message: message.into(),
        }
    }

    /// The value of a field; `null` counts as absent.
    fn get(&self, field: &str) -> Option<&Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn required<'v>(
        &self,
        field: &str,
        value: Option<&'v Value>,
        expected: &str,
    ) -> Result<&'v Value, PayloadError> {
        match value {
            Some(v) => Ok(v),
            None if self.map.contains_key(field) => {
                Err(self.err(field, format!("expected {expected}, found null")))
            }
            None => Err(self.err(field, format!("is required; expected {expected}"))),
        }
    }

    fn req_str(&self, field: &str) -> Result<String, PayloadError> {
        const EXPECTED: &str = "a non-empty string";
        let value = self.required(field, self.get(field), EXPECTED)?;
        match value {
            Value::String(s) if s.trim().is_empty() => {
                Err(self.err(field, format!("expected {EXPECTED}, found an empty string")))
            }
            Value::String(s) => Ok(s.clone()),
            other => Err(self.err(
                field,
                format!("expected {EXPECTED}, found {}", describe(other)),
            )),
        }
    }

    fn opt_str(&self, field: &str) -> Result<Option<String>, PayloadError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(
                field,
                format!("expected a string, found {}", describe(other)),
            )),
        }
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, PayloadError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(
                field,
                format!("expected `true` or `false`, found {}", describe(other)),
            )),
        }
    }

    fn req_u64(&self, field: &str) -> Result<u64, PayloadError> {
        let value = self.required(field, self.get(field), "a non-negative integer")?;
        self.u64_of(field, value)
    }

    fn opt_u64(&self, field: &str) -> Result<Option<u64>, PayloadError> {
        self.get(field).map(|v| self.u64_of(field, v)).transpose()
    }

    fn u64_of(&self, field: &str, value: &Value) -> Result<u64, PayloadError> {
        value.as_u64().ok_or_else(|| {
            self.err(
                field,
                format!("expected a non-negative integer, found {}", describe(value)),
            )
        })
    }

    fn opt_i64(&self, field: &str) -> Result<Option<i64>, PayloadError> {
        self.get(field)
            .map(|v| {
                v.as_i64().ok_or_else(|| {
                    self.err(field, format!("expected an integer, found {}", describe(v)))
                })
            })
            .transpose()
    }

    fn req_f64(&self, field: &str, min: Min) -> Result<f64, PayloadError> {
        let value = self.required(field, self.get(field), &expected_number(min))?;
        self.f64_of(field, value, min)
    }

    fn opt_f64(&self, field: &str, min: Min) -> Result<Option<f64>, PayloadError> {
        self.get(field)
            .map(|v| self.f64_of(field, v, min))
            .transpose()
    }

    fn f64_of(&self, field: &str, value: &Value, min: Min) -> Result<f64, PayloadError> {
        let expected = expected_number(min);
        let Some(n) = value.as_f64() else {
            return Err(self.err(
                field,
                format!("expected {expected}, found {}", describe(value)),
            ));
        };
        let below = min.0.is_some_and(|(lowest, _)| n < lowest);
        if !n.is_finite() || below {
            return Err(self.err(
                field,
                format!("expected {expected}, found {}", describe(value)),
            ));
        }
        Ok(n)
    }

    fn req_time(&self, field: &str) -> Result<Timestamp, PayloadError> {
        const EXPECTED: &str = "an RFC 3339 timestamp such as `2026-04-20T00:00:00.000Z`";
        let value = self.required(field, self.get(field), EXPECTED)?;
        self.time_of(field, value)
    }

    fn opt_time(&self, field: &str) -> Result<Option<Timestamp>, PayloadError> {
        self.get(field).map(|v| self.time_of(field, v)).transpose()
    }

    fn time_of(&self, field: &str, value: &Value) -> Result<Timestamp, PayloadError> {
        match value {
            Value::String(s) => Timestamp::parse(s).map_err(|e| self.err(field, e.to_string())),
            other => Err(self.err(
                field,
                format!(
                    "expected an RFC 3339 timestamp string, found {}",
                    describe(other)
                ),
            )),
        }
    }

    /// `from` must be strictly before `to`.
    fn window(
        &self,
        from_field: &str,
        from: Timestamp,
        to_field: &str,
        to: Timestamp,
    ) -> Result<(), PayloadError> {
        if from < to {
            return Ok(());
        }
        Err(self.err(
            from_field,
            format!("expected a time before `{to_field}` ({to}), found {from}"),
        ))
    }

    fn req_digest(&self, field: &str) -> Result<Sha256Digest, PayloadError> {
        const EXPECTED: &str = "`sha256:` followed by 64 lowercase hex digits";
        let value = self.required(field, self.get(field), EXPECTED)?;
        match value {
            Value::String(s) => {
                Sha256Digest::parse_prefixed(s).map_err(|e| self.err(field, e.to_string()))
            }
            other => Err(self.err(
                field,
                format!("expected {EXPECTED}, found {}", describe(other)),
            )),
        }
    }

    fn req_enum<E: WireEnum>(&self, field: &str) -> Result<E, PayloadError> {
        let value = self.required(field, self.get(field), &expected_one_of::<E>())?;
        match value {
            Value::String(s) => E::from_input(s).ok_or_else(|| {
                self.err(
                    field,
                    format!(
                        "expected {}, found `{}`",
                        expected_one_of::<E>(),
                        shorten(s)
                    ),
                )
            }),
            other => Err(self.err(
                field,
                format!(
                    "expected {}, found {}",
                    expected_one_of::<E>(),
                    describe(other)
                ),
            )),
        }
    }

    fn opt_object(&self, field: &str) -> Result<Option<Map<String, Value>>, PayloadError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(other) => Err(self.err(
                field,
                format!("expected an object, found {}", describe(other)),
            )),
        }
    }

    fn opt_curtailment_window(
        &self,
        field: &str,
    ) -> Result<Option<CurtailmentWindow>, PayloadError> {
        let Some(window) = self.opt_object(field)? else {
            return Ok(None);
        };
        let inner = Fields {
            kind: self.kind,
            map: &window,
        };
        let read = || {
            let start = inner.req_time("start")?;
            let end = inner.req_time("end")?;
            inner.window("start", start, "end", end)?;
            Ok(CurtailmentWindow { start, end })
        };
        read().map(Some).map_err(|e| nest(e, field))
    }

    fn opt_array(&self, field: &str) -> Result<Option<Vec<Value>>, PayloadError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a.clone())),
            Some(other) => Err(self.err(
                field,
                format!("expected an array, found {}", describe(other)),
            )),
        }
    }
}

fn expected_number(min: Min) -> String {
    match min.0 {
        Some((_, label)) => format!("a finite number >= {label}"),
        None => "a finite number".to_string(),
    }
}

/// Prefix the field of a nested error with its parent.
fn nest(mut e: PayloadError, parent: &str) -> PayloadError {
    e.field = Some(match e.field.take() {
        Some(field) => format!("{parent}.{field}"),
        None => parent.to_string(),
    });
    e
}

/// A short description of a JSON value for error messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("the string `{}`", shorten(s)),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// Keeps user input in messages bounded.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 48;
    if text.chars().count() <= MAX_CHARS {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(MAX_CHARS).collect();
        short.push('…');
        short
    }
}

/// Write a number as JavaScript would: an integral value within 2^53 as an integer (`982000`,
/// not `982000.0`), so the wire bytes match the TypeScript SDK's and the seed's examples. The
/// canonical form (and so `event_id`) is the same either way.
fn js_number<S: Serializer>(n: &f64, s: S) -> Result<S::Ok, S::Error> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if n.is_finite() && n.fract() == 0.0 && n.abs() <= MAX_SAFE {
        // Exact: the value is an integer of at most 53 bits.
        s.serialize_i64(*n as i64)
    } else {
        s.serialize_f64(*n)
    }
}

fn opt_js_number<S: Serializer>(n: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match n {
        Some(n) => js_number(n, s),
        None => s.serialize_none(),
    }
}

/// The JSON object of a payload struct. Every field type here serializes to JSON (strings,
/// numbers, booleans, maps), and a struct always serializes to an object, so the fallback (an
/// empty map, which then fails validation) is never taken in practice.
fn object_of<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn check_err(kind: &str, payload: Value, field: &str, needle: &str) {
        let err = parse_payload(kind, &map(payload.clone())).expect_err("refused");
        assert_eq!(err.field.as_deref(), Some(field), "{payload}: {err}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("payload of `{kind}`: `{field}`: ")),
            "{text}"
        );
        assert!(text.contains(needle), "{text} should contain {needle}");
    }

    #[test]
    fn unknown_kinds_are_not_this_modules_business() {
        assert_eq!(
            parse_payload("acme-demo:job_completed", &Map::new()),
            Ok(None)
        );
        assert_eq!(parse_payload("task_created", &Map::new()), Ok(None));
    }

    #[test]
    fn errors_name_the_field_and_what_was_expected() {
        check_err(
            "conductor:recovery_requested",
            json!({}),
            "wu_id",
            "is required; expected a non-empty string",
        );
        check_err(
            "conductor:recovery_requested",
            json!({"wu_id": null}),
            "wu_id",
            "found null",
        );
        check_err(
            "conductor:recovery_requested",
            json!({"wu_id": " "}),
            "wu_id",
            "found an empty string",
        );
        check_err(
            "conductor:recovery_requested",
            json!({"wu_id": 42}),
            "wu_id",
            "found 42",
        );
        check_err(
            "conductor:recovery_requested",
            json!({"wu_id": "WU-1", "reason": 1}),
            "reason",
            "expected a string",
        );
        check_err(
            "campus:node_inventory_updated",
            json!({"facility_id": "f", "node_count": -1}),
            "node_count",
            "non-negative integer",
        );
        check_err(
            "campus:node_inventory_updated",
            json!({"facility_id": "f", "node_count": 2.5}),
            "node_count",
            "non-negative integer",
        );
        check_err(
            "software-delivery:gate_failed",
            json!({"gate": "lint", "exit_code": "1"}),
            "exit_code",
            "expected an integer",
        );
        check_err(
            "sidekick:command_received",
            json!({"command": "x", "args": [1]}),
            "args",
            "expected an object",
        );
        check_err(
            "sidekick:approval_requested",
            json!({"approval_id": "a", "expires_at": "soon"}),
            "expires_at",
            "RFC 3339",
        );
        check_err(
            "agent-runtime:tool_called",
            json!({"tool_name": "t", "envelope_hash": format!("sha256:{}", "A".repeat(64)), "outcome": "success"}),
            "envelope_hash",
            "lowercase",
        );
        check_err(
            "agent-runtime:tool_called",
            json!({"tool_name": "t", "envelope_hash": format!("sha256:{}", "a".repeat(64)), "outcome": "ok"}),
            "outcome",
            "expected one of `success`, `failure`, `denied`, `approval_required`, found `ok`",
        );
    }

    #[test]
    fn curtailment_window_errors_are_nested_and_ordered() {
        let base = json!({
            "workspace_id": "ws", "region": "eu-west-1", "valid_from": "2026-06-13T15:45:00.000Z",
            "valid_to": "2026-06-13T16:00:00.000Z", "quantity_joules": 1, "unit": "joules",
            "source": "s", "energy_source": "Redfish", "energy_provenance": "measured",
        });
        let mut bad = base.clone();
        bad["curtailment_window"] =
            json!({"start": "2026-06-13T16:00:00Z", "end": "2026-06-13T15:00:00Z"});
        check_err(
            "emit:energy_meter_recorded",
            bad,
            "curtailment_window.start",
            "expected a time before `end`",
        );
        let mut missing = base.clone();
        missing["curtailment_window"] = json!({"start": "2026-06-13T16:00:00Z"});
        check_err(
            "emit:energy_meter_recorded",
            missing,
            "curtailment_window.end",
            "is required",
        );
        let Ok(Some(Payload::EnergyMeterRecorded(p))) =
            parse_payload("emit:energy_meter_recorded", &map(base))
        else {
            panic!("valid EMIT payload refused");
        };
        assert_eq!(p.energy_source, EnergySource::Redfish);
        assert!(!p.pue_applied);
        assert_eq!(
            Payload::EnergyMeterRecorded(p).to_map()["energy_source"],
            "redfish"
        );
    }

    #[test]
    fn enums_serialize_in_lower_case_and_energy_source_reads_any_case() {
        for (input, expected) in [
            ("PDU", EnergySource::Pdu),
            ("IPMI", EnergySource::Ipmi),
            ("Redfish", EnergySource::Redfish),
            ("SMART_METER", EnergySource::SmartMeter),
            ("smart_meter", EnergySource::SmartMeter),
        ] {
            let parsed: EnergySource = serde_json::from_value(json!(input)).expect(input);
            assert_eq!(parsed, expected);
            assert_eq!(
                serde_json::to_value(parsed).expect("ser"),
                json!(expected.as_str())
            );
        }
        assert!(serde_json::from_value::<EnergySource>(json!("smart-meter")).is_err());
        // Only energy_source is lenient: the other enums are exact.
        assert!(serde_json::from_value::<EnergyProvenance>(json!("Measured")).is_err());
        let err = serde_json::from_value::<EnergyUnit>(json!("kwh")).expect_err("kwh");
        assert_eq!(err.to_string(), "expected `joules`, found `kwh`");
    }

    #[test]
    fn integral_numbers_are_written_as_javascript_would() {
        let energy = FacilityEnergyRecorded {
            facility_id: "f".into(),
            valid_from: Timestamp::from_unix_millis(0),
            valid_to: Timestamp::from_unix_millis(1),
            quantity_joules: 982_000.0,
        };
        let text = serde_json::to_string(&energy).expect("ser");
        assert!(text.contains(r#""quantity_joules":982000}"#), "{text}");
        for (n, wire) in [
            (1.18, "1.18"),
            (-0.0, "0"),
            (1e300, "1e+300"),
            (9_007_199_254_740_992.0, "9007199254740992.0"),
        ] {
            let pue = PueSampled {
                facility_id: "f".into(),
                pue: n,
                sampled_at: Timestamp::from_unix_millis(0),
            };
            let text = serde_json::to_string(&pue).expect("ser");
            assert!(text.contains(&format!(r#""pue":{wire},"#)), "{text}");
        }
    }

    #[test]
    fn struct_deserialize_applies_the_same_rules() {
        let ok: TurnAborted = serde_json::from_value(
            json!({"turn_id": "t", "cleanup_status": "clean", "future_field": 1}),
        )
        .expect("extra fields are fine (MAN-09)");
        assert_eq!(ok.cleanup_status, CleanupStatus::Clean);
        let err = serde_json::from_value::<TurnAborted>(
            json!({"turn_id": "t", "cleanup_status": "needs_recovery"}),
        )
        .expect_err("needs a command");
        assert!(
            err.to_string().contains("`recovery_action`: is required"),
            "{err}"
        );
    }

    #[test]
    fn typed_payloads_built_in_code_are_validated_too() {
        let pue = Payload::PueSampled(PueSampled {
            facility_id: "f".into(),
            pue: f64::NAN,
            sampled_at: Timestamp::from_unix_millis(0),
        });
        // NaN serializes as null, which the required-field check reports.
        let err = pue.validate().expect_err("nan");
        assert_eq!(err.field.as_deref(), Some("pue"));
        let err = pue
            .to_event("ws", BuildOptions::default())
            .expect_err("not built");
        assert!(matches!(err, PayloadEventError::Payload(_)));
        let ok = Payload::RecoveryRequested(RecoveryRequested {
            wu_id: "WU-1".into(),
            reason: None,
            requested_by: None,
        });
        let event = ok.to_event("ws", BuildOptions::default()).expect("built");
        assert_eq!(event.kind, "conductor:recovery_requested");
        assert_eq!(event.payload, map(json!({"wu_id": "WU-1"})));
    }
}
