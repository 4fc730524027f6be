//! Kind catalogues: every event family the product documents name (KND-01, SDK-02, Q44).
//!
//! Each family is a fieldless enum with its wire string, a `VALUES` slice (the Rust form of the
//! original's `_VALUES` tuple, so a consumer can match exhaustively and a test can iterate every
//! kind) and a lookup by name. Each kind also carries its direction and its backpressure class,
//! the enumerated rule of BKP-01: ephemeral unless it is a command or an approval.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Who sends a kind relative to the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Emitted by the workspace towards the control plane.
    Out,
    /// Delivered into the workspace (a command, a recovery request).
    In,
}

/// Delivery class (BKP-02 to BKP-05).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryClass {
    /// Sent once, dropped when the control plane is unreachable.
    Ephemeral,
    /// Persisted (outbox or inbox) until acknowledged, then replayed in order.
    Queue,
}

macro_rules! kind_family {
    (
        $(#[$meta:meta])*
        $name:ident, $values_const:ident {
            $( $variant:ident => $wire:literal, $dir:ident, $class:ident; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $variant, )+
        }

        impl $name {
            /// Every kind of the family, in catalogue order.
            pub const VALUES: &'static [$name] = &[ $( $name::$variant, )+ ];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $wire, )+
                }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( $wire => Some($name::$variant), )+
                    _ => None,
                }
            }

            pub const fn direction(self) -> Direction {
                match self {
                    $( $name::$variant => Direction::$dir, )+
                }
            }

            pub const fn delivery(self) -> DeliveryClass {
                match self {
                    $( $name::$variant => DeliveryClass::$class, )+
                }
            }
        }

        /// The wire strings of the family, in catalogue order.
        pub const $values_const: &[&str] = &[ $( $wire, )+ ];

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownKind;

            fn from_str(s: &str) -> Result<Self, UnknownKind> {
                $name::from_name(s).ok_or_else(|| UnknownKind(s.to_string()))
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
                $name::from_name(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown kind `{s}`, expected one of {}",
                        $values_const.join(", ")
                    ))
                })
            }
        }
    };
}

/// A kind string no catalogue knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKind(pub String);

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown event kind `{}`", self.0)
    }
}

impl std::error::Error for UnknownKind {}

kind_family! {
    /// Conductor kinds, intrinsic to the runtime (REQUIREMENTS Q7).
    ConductorKind, CONDUCTOR_EVENT_KIND_VALUES {
        RecoveryRequested => "conductor:recovery_requested", In, Queue;
        WorkspaceUpdated => "conductor:workspace_updated", Out, Ephemeral;
    }
}

kind_family! {
    /// The agent-runtime turn family and the kernel's `tool_called` (Q22, Q40).
    AgentRuntimeKind, AGENT_RUNTIME_EVENT_KIND_VALUES {
        TurnStarted => "agent-runtime:turn_started", Out, Ephemeral;
        TurnCompleted => "agent-runtime:turn_completed", Out, Ephemeral;
        TurnAborted => "agent-runtime:turn_aborted", Out, Ephemeral;
        ToolCalled => "agent-runtime:tool_called", Out, Ephemeral;
    }
}

kind_family! {
    /// Software-delivery work units and gates.
    SoftwareDeliveryKind, SOFTWARE_DELIVERY_EVENT_KIND_VALUES {
        WuClaimed => "software-delivery:wu_claimed", Out, Ephemeral;
        GatePassed => "software-delivery:gate_passed", Out, Ephemeral;
        GateFailed => "software-delivery:gate_failed", Out, Ephemeral;
    }
}

kind_family! {
    /// The sidekick bridge: approvals out, phone commands in, both queued (BKP-04).
    SidekickKind, SIDEKICK_EVENT_KIND_VALUES {
        ApprovalRequested => "sidekick:approval_requested", Out, Queue;
        CommandReceived => "sidekick:command_received", In, Queue;
    }
}

kind_family! {
    /// Campus telemetry: observations only, all on the campus-telemetry channel (KND-02).
    CampusKind, CAMPUS_TELEMETRY_EVENT_KIND_VALUES {
        FacilityRegistered => "campus:facility_registered", Out, Ephemeral;
        NodeInventoryUpdated => "campus:node_inventory_updated", Out, Ephemeral;
        PueSampled => "campus:pue_sampled", Out, Ephemeral;
        PowerSignalIngested => "campus:power_signal_ingested", Out, Ephemeral;
        FacilityEnergyRecorded => "campus:facility_energy_recorded", Out, Ephemeral;
        GpuAttestationRecorded => "campus:gpu_attestation_recorded", Out, Ephemeral;
    }
}

kind_family! {
    /// Tenant evidence (Q24: the documents do not enumerate them; these are ours). Exports are
    /// queued because each one traces to an operator's approval.
    TenantEvidenceKind, TENANT_EVIDENCE_EVENT_KIND_VALUES {
        ProofRecordRead => "tenant-evidence:proof_record_read", Out, Ephemeral;
        ProofBundleExported => "tenant-evidence:proof_bundle_exported", Out, Queue;
    }
}

kind_family! {
    /// The shared EMIT energy contract; any pack may emit it (Q13).
    EmitKind, EMIT_EVENT_KIND_VALUES {
        EnergyMeterRecorded => "emit:energy_meter_recorded", Out, Ephemeral;
    }
}

kind_family! {
    /// The kernel's v1 event log kinds (schema_version 1, the legacy `task_*` family).
    KernelV1Kind, KERNEL_V1_EVENT_KIND_VALUES {
        TaskCreated => "task_created", Out, Ephemeral;
        TaskClaimed => "task_claimed", Out, Ephemeral;
        TaskBlocked => "task_blocked", Out, Ephemeral;
        TaskUnblocked => "task_unblocked", Out, Ephemeral;
        TaskWaiting => "task_waiting", Out, Ephemeral;
        TaskResumed => "task_resumed", Out, Ephemeral;
        TaskCompleted => "task_completed", Out, Ephemeral;
        TaskReleased => "task_released", Out, Ephemeral;
        TaskDelegated => "task_delegated", Out, Ephemeral;
        RunStarted => "run_started", Out, Ephemeral;
        RunPaused => "run_paused", Out, Ephemeral;
        RunFailed => "run_failed", Out, Ephemeral;
        RunSucceeded => "run_succeeded", Out, Ephemeral;
        WorkspaceUpdated => "workspace_updated", Out, Ephemeral;
        WorkspaceWarning => "workspace_warning", Out, Ephemeral;
        SpecTampered => "spec_tampered", Out, Ephemeral;
        Checkpoint => "checkpoint", Out, Ephemeral;
    }
}

/// Namespaces any pack may emit into besides its own slug (Q13).
pub const SHARED_EVENT_NAMESPACES: &[&str] = &["emit"];

/// Kinds the runtime itself emits or receives, whatever packs are loaded (Q7, Q40): a pack need
/// not declare them, and no pack may claim them.
pub fn is_intrinsic(kind: &str) -> bool {
    ConductorKind::from_name(kind).is_some()
        || kind == AgentRuntimeKind::ToolCalled.as_str()
        || KernelV1Kind::from_name(kind).is_some()
}

/// One known kind, from any family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KnownKind {
    Conductor(ConductorKind),
    AgentRuntime(AgentRuntimeKind),
    SoftwareDelivery(SoftwareDeliveryKind),
    Sidekick(SidekickKind),
    Campus(CampusKind),
    TenantEvidence(TenantEvidenceKind),
    Emit(EmitKind),
}

impl KnownKind {
    /// Every v2 kind of every catalogue.
    pub fn all() -> Vec<KnownKind> {
        let mut all = Vec::new();
        all.extend(
            ConductorKind::VALUES
                .iter()
                .map(|k| KnownKind::Conductor(*k)),
        );
        all.extend(
            AgentRuntimeKind::VALUES
                .iter()
                .map(|k| KnownKind::AgentRuntime(*k)),
        );
        all.extend(
            SoftwareDeliveryKind::VALUES
                .iter()
                .map(|k| KnownKind::SoftwareDelivery(*k)),
        );
        all.extend(SidekickKind::VALUES.iter().map(|k| KnownKind::Sidekick(*k)));
        all.extend(CampusKind::VALUES.iter().map(|k| KnownKind::Campus(*k)));
        all.extend(
            TenantEvidenceKind::VALUES
                .iter()
                .map(|k| KnownKind::TenantEvidence(*k)),
        );
        all.extend(EmitKind::VALUES.iter().map(|k| KnownKind::Emit(*k)));
        all
    }

    pub fn from_name(name: &str) -> Option<Self> {
        ConductorKind::from_name(name)
            .map(KnownKind::Conductor)
            .or_else(|| AgentRuntimeKind::from_name(name).map(KnownKind::AgentRuntime))
            .or_else(|| SoftwareDeliveryKind::from_name(name).map(KnownKind::SoftwareDelivery))
            .or_else(|| SidekickKind::from_name(name).map(KnownKind::Sidekick))
            .or_else(|| CampusKind::from_name(name).map(KnownKind::Campus))
            .or_else(|| TenantEvidenceKind::from_name(name).map(KnownKind::TenantEvidence))
            .or_else(|| EmitKind::from_name(name).map(KnownKind::Emit))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KnownKind::Conductor(k) => k.as_str(),
            KnownKind::AgentRuntime(k) => k.as_str(),
            KnownKind::SoftwareDelivery(k) => k.as_str(),
            KnownKind::Sidekick(k) => k.as_str(),
            KnownKind::Campus(k) => k.as_str(),
            KnownKind::TenantEvidence(k) => k.as_str(),
            KnownKind::Emit(k) => k.as_str(),
        }
    }

    pub fn direction(self) -> Direction {
        match self {
            KnownKind::Conductor(k) => k.direction(),
            KnownKind::AgentRuntime(k) => k.direction(),
            KnownKind::SoftwareDelivery(k) => k.direction(),
            KnownKind::Sidekick(k) => k.direction(),
            KnownKind::Campus(k) => k.direction(),
            KnownKind::TenantEvidence(k) => k.direction(),
            KnownKind::Emit(k) => k.direction(),
        }
    }

    pub fn delivery(self) -> DeliveryClass {
        match self {
            KnownKind::Conductor(k) => k.delivery(),
            KnownKind::AgentRuntime(k) => k.delivery(),
            KnownKind::SoftwareDelivery(k) => k.delivery(),
            KnownKind::Sidekick(k) => k.delivery(),
            KnownKind::Campus(k) => k.delivery(),
            KnownKind::TenantEvidence(k) => k.delivery(),
            KnownKind::Emit(k) => k.delivery(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::check_kind_syntax;

    #[test]
    fn every_kind_round_trips_by_name_and_is_well_formed() {
        // KND-01, Q44: iterate VALUES to prove the catalogue is exhaustive and consistent.
        let all = KnownKind::all();
        assert_eq!(all.len(), 20);
        for k in &all {
            assert_eq!(KnownKind::from_name(k.as_str()), Some(*k));
            check_kind_syntax(k.as_str()).expect("namespaced snake_case");
        }
        for k in KernelV1Kind::VALUES {
            assert_eq!(KernelV1Kind::from_name(k.as_str()), Some(*k));
            check_kind_syntax(k.as_str()).expect("unprefixed snake_case");
        }
        assert_eq!(KERNEL_V1_EVENT_KIND_VALUES.len(), 17);
        assert_eq!(CAMPUS_TELEMETRY_EVENT_KIND_VALUES.len(), 6);
        assert!(CAMPUS_TELEMETRY_EVENT_KIND_VALUES
            .iter()
            .all(|k| k.starts_with("campus:")));
    }

    #[test]
    fn backpressure_follows_the_enumerated_rule() {
        // BKP-02 and BKP-04
        for k in AgentRuntimeKind::VALUES {
            assert_eq!(k.delivery(), DeliveryClass::Ephemeral);
        }
        for k in SoftwareDeliveryKind::VALUES {
            assert_eq!(k.delivery(), DeliveryClass::Ephemeral);
        }
        assert_eq!(
            SidekickKind::ApprovalRequested.delivery(),
            DeliveryClass::Queue
        );
        assert_eq!(SidekickKind::CommandReceived.direction(), Direction::In);
        assert_eq!(
            ConductorKind::RecoveryRequested.delivery(),
            DeliveryClass::Queue
        );
        assert!(is_intrinsic("conductor:recovery_requested"));
        assert!(is_intrinsic("agent-runtime:tool_called"));
        assert!(!is_intrinsic("agent-runtime:turn_started"));
    }

    #[test]
    fn serde_uses_the_wire_string() {
        let json = serde_json::to_string(&CampusKind::PueSampled).expect("ser");
        assert_eq!(json, "\"campus:pue_sampled\"");
        let err = serde_json::from_str::<CampusKind>("\"campus:pue\"").expect_err("unknown");
        assert!(err.to_string().contains("unknown kind `campus:pue`"));
    }
}
