//! Compute resolver vocabulary (MD4, CRS-01 to CRS-07, Q29): peer descriptors, the resolve
//! request, the resolver policy and the result union. The algorithm lives in the kernel
//! (`lumenflow_kernel::resolver`); this module only holds the shapes.
//!
//! Every label (`capability_tier`, `provider_family`, `campus_affinity`, `data_egress_class`,
//! `residency_class`) is an **opaque semantic identifier** (CRS-04, GOV-02): the resolver compares
//! labels for equality and never interprets them, and no vendor brand appears in a type, an
//! enum value or a branch. Because tiers are opaque they have no order: only a candidate offering
//! exactly the required tier satisfies a request, so a lower tier is never picked (CRS-06).
//!
//! Wire shapes (strict: unknown fields are refused, naming the field):
//!
//! ```json
//! {"id": "peer-1", "kind": "campus-node", "capability_tier": "tier-b",
//!  "provider_family": "family-x", "campus_affinity": "campus-north",
//!  "data_egress_class": "in-campus", "residency_class": "region-1"}
//! ```
//!
//! Result, discriminated by `outcome`:
//! `{"outcome": "resolved", "target": {..}}`,
//! `{"outcome": "refused", "code": "NO_MATCHING_CANDIDATE", "reason": ".."}`,
//! `{"outcome": "permitted-with-warning", "target": {..}, "audit_warning": ".."}`.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// The descriptor kinds, exactly `['runner-node', 'campus-node']` (CRS-01).
pub const PEER_DESCRIPTOR_KINDS: &[&str] = &["runner-node", "campus-node"];

/// What kind of compute a peer is (CRS-03).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerDescriptorKind {
    /// A general-purpose runner.
    #[serde(rename = "runner-node")]
    RunnerNode,
    /// A compute node under campus governance.
    #[serde(rename = "campus-node")]
    CampusNode,
}

impl PeerDescriptorKind {
    pub const VALUES: &'static [PeerDescriptorKind] = &[
        PeerDescriptorKind::RunnerNode,
        PeerDescriptorKind::CampusNode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PeerDescriptorKind::RunnerNode => "runner-node",
            PeerDescriptorKind::CampusNode => "campus-node",
        }
    }
}

/// `PeerDescriptorSchema` (CRS-01): the JSON Schema of a [`PeerDescriptor`], in the subset the
/// kernel validates (strict object, non-empty labels, `kind` one of [`PEER_DESCRIPTOR_KINDS`]).
/// Serde parsing of [`PeerDescriptor`] accepts exactly what this schema accepts, except that
/// emptiness of a label is left to [`validate_request`].
pub const PEER_DESCRIPTOR_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "id": {"type": "string", "minLength": 1},
    "kind": {"enum": ["runner-node", "campus-node"]},
    "capability_tier": {"type": "string", "minLength": 1},
    "provider_family": {"type": "string", "minLength": 1},
    "campus_affinity": {"type": "string", "minLength": 1},
    "data_egress_class": {"type": "string", "minLength": 1},
    "residency_class": {"type": "string", "minLength": 1}
  },
  "required": ["id", "kind", "capability_tier", "provider_family"]
}"#;

/// One candidate target (Q29). Labels are opaque; compared only for equality.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerDescriptor {
    pub id: String,
    pub kind: PeerDescriptorKind,
    pub capability_tier: String,
    pub provider_family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campus_affinity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_egress_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency_class: Option<String>,
}

/// What the workload will do on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeRole {
    Executor,
    /// Reviews another agent's work: its provider family must differ from the author's.
    Reviewer,
}

/// A request to place one workload (Q29).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeResolveRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_id: Option<String>,
    pub role: ComputeRole,
    pub required_capability_tier: String,
    /// The provider family of the work under review; required for the reviewer role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_provider_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_egress_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campus_affinity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency_class: Option<String>,
    pub candidates: Vec<PeerDescriptor>,
}

/// The operator's resolver policy (CRS-07). Its one relaxation is default-off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeResolverPolicy {
    /// Permit a reviewer of the author's own provider family when no other family qualifies,
    /// with an audit warning. Omitted or `false`: such a request is refused.
    #[serde(default)]
    pub allow_same_family_reviewer: bool,
}

/// Why a request was refused: a stable code beside the human-readable reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefusalCode {
    /// The request itself is malformed (empty label, duplicate candidate id, missing author
    /// family for a reviewer).
    InvalidRequest,
    /// No candidate satisfies tier, egress, affinity and residency.
    NoMatchingCandidate,
    /// Only reviewers of the author's own family qualify and the opt-out is off.
    SameFamilyReviewer,
}

/// The result union (CRS-05), discriminated by `outcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", deny_unknown_fields)]
pub enum ComputeResolveResult {
    #[serde(rename = "resolved")]
    Resolved { target: PeerDescriptor },
    /// The safe default.
    #[serde(rename = "refused")]
    Refused { code: RefusalCode, reason: String },
    #[serde(rename = "permitted-with-warning")]
    PermittedWithWarning {
        target: PeerDescriptor,
        /// Names the relaxed constraint, the family involved and the operator decision.
        audit_warning: String,
    },
}

impl ComputeResolveResult {
    /// `resolved`, `refused` or `permitted-with-warning`.
    pub fn outcome(&self) -> &'static str {
        match self {
            ComputeResolveResult::Resolved { .. } => "resolved",
            ComputeResolveResult::Refused { .. } => "refused",
            ComputeResolveResult::PermittedWithWarning { .. } => "permitted-with-warning",
        }
    }

    /// The chosen target, unless refused.
    pub fn target(&self) -> Option<&PeerDescriptor> {
        match self {
            ComputeResolveResult::Resolved { target }
            | ComputeResolveResult::PermittedWithWarning { target, .. } => Some(target),
            ComputeResolveResult::Refused { .. } => None,
        }
    }
}

/// The port (`IComputeResolver`, CRS-01); the kernel's `ComputeResolver` implements it (CRS-02).
pub trait ComputeResolve {
    fn resolve(&self, request: &ComputeResolveRequest) -> ComputeResolveResult;
}

/// Checks what serde cannot: non-empty labels, unique candidate ids, an author family for
/// reviewers. The message names the field.
pub fn validate_request(request: &ComputeResolveRequest) -> Result<(), String> {
    fn label(field: &str, value: &str) -> Result<(), String> {
        if value.trim().is_empty() {
            Err(format!("`{field}` must not be empty"))
        } else {
            Ok(())
        }
    }
    fn opt(field: &str, value: &Option<String>) -> Result<(), String> {
        value.as_deref().map_or(Ok(()), |v| label(field, v))
    }
    opt("workload_id", &request.workload_id)?;
    label(
        "required_capability_tier",
        &request.required_capability_tier,
    )?;
    opt("author_provider_family", &request.author_provider_family)?;
    opt("data_egress_class", &request.data_egress_class)?;
    opt("campus_affinity", &request.campus_affinity)?;
    opt("residency_class", &request.residency_class)?;
    if request.role == ComputeRole::Reviewer && request.author_provider_family.is_none() {
        return Err(
            "`author_provider_family` is required for the `reviewer` role (reviewer separation \
             cannot be checked without it)"
                .into(),
        );
    }
    let mut ids = HashSet::new();
    for (i, c) in request.candidates.iter().enumerate() {
        label(&format!("candidates[{i}].id"), &c.id)?;
        label(
            &format!("candidates[{i}].capability_tier"),
            &c.capability_tier,
        )?;
        label(
            &format!("candidates[{i}].provider_family"),
            &c.provider_family,
        )?;
        opt(
            &format!("candidates[{i}].campus_affinity"),
            &c.campus_affinity,
        )?;
        opt(
            &format!("candidates[{i}].data_egress_class"),
            &c.data_egress_class,
        )?;
        opt(
            &format!("candidates[{i}].residency_class"),
            &c.residency_class,
        )?;
        if !ids.insert(c.id.as_str()) {
            return Err(format!(
                "`candidates[{i}].id` = `{}` appears twice; candidate ids must be unique",
                c.id
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_are_exactly_runner_node_and_campus_node() {
        // CRS-01.
        let from_enum: Vec<&str> = PeerDescriptorKind::VALUES
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(from_enum, PEER_DESCRIPTOR_KINDS);
        assert_eq!(PEER_DESCRIPTOR_KINDS, ["runner-node", "campus-node"]);
        for k in PeerDescriptorKind::VALUES {
            assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
        }
    }

    #[test]
    fn descriptors_are_strict_and_name_the_bad_field() {
        let bad_kind = json!({"id": "p", "kind": "gpu-node", "capability_tier": "t",
                              "provider_family": "f"});
        let err = serde_json::from_value::<PeerDescriptor>(bad_kind)
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpu-node"), "{err}");
        let extra = json!({"id": "p", "kind": "runner-node", "capability_tier": "t",
                           "provider_family": "f", "vendor": "x"});
        let err = serde_json::from_value::<PeerDescriptor>(extra)
            .unwrap_err()
            .to_string();
        assert!(err.contains("vendor"), "{err}");
    }

    #[test]
    fn the_result_is_discriminated_by_outcome() {
        let r = ComputeResolveResult::Refused {
            code: RefusalCode::NoMatchingCandidate,
            reason: "none".into(),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"outcome": "refused", "code": "NO_MATCHING_CANDIDATE", "reason": "none"})
        );
        let back: ComputeResolveResult =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.outcome(), "refused");
        assert!(r.target().is_none());
    }

    #[test]
    fn the_policy_opt_out_is_off_by_default() {
        // CRS-07.
        assert!(!ComputeResolverPolicy::default().allow_same_family_reviewer);
        let p: ComputeResolverPolicy = serde_json::from_value(json!({})).unwrap();
        assert!(!p.allow_same_family_reviewer);
    }
}
