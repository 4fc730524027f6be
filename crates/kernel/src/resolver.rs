//! The compute resolver (MD4, CRS-02 to CRS-07, Q29): places one workload on one peer
//! descriptor, refusing rather than falling back.
//!
//! A pure function of the request and the operator's policy; no I/O. The algorithm:
//!
//! 1. A malformed request (empty label, duplicate candidate id, reviewer without an author
//!    family) is refused with `INVALID_REQUEST`, naming the field.
//! 2. Candidates are filtered by **equality** of the opaque labels: exactly the required
//!    capability tier (labels have no order, so a lower tier is never picked, CRS-06), and the
//!    requested data egress class, campus affinity and residency class where the request names
//!    them (a candidate without the label does not match). Nothing left: `NO_MATCHING_CANDIDATE`,
//!    with a count of what eliminated the candidates.
//! 3. An executor gets the first remaining candidate, in input order.
//! 4. A reviewer gets the first remaining candidate whose provider family differs from the
//!    author's. If only same-family candidates remain, the request is refused
//!    (`SAME_FAMILY_REVIEWER`) unless the policy's default-off `allow_same_family_reviewer` is on;
//!    then the first of them is `permitted-with-warning`, with an audit warning naming the
//!    relaxed constraint, the family and the operator decision (CRS-05, CRS-07).
//!
//! There is no other branch: no label is interpreted, and no vendor is named (CRS-04).

use lumenflow_contracts::resolver::{
    validate_request, ComputeResolve, ComputeResolveRequest, ComputeResolveResult,
    ComputeResolverPolicy, ComputeRole, PeerDescriptor, RefusalCode,
};

/// The concrete resolver (CRS-02): the operator's policy, applied to each request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ComputeResolver {
    pub policy: ComputeResolverPolicy,
}

impl ComputeResolver {
    pub fn new(policy: ComputeResolverPolicy) -> Self {
        Self { policy }
    }
}

impl ComputeResolve for ComputeResolver {
    fn resolve(&self, request: &ComputeResolveRequest) -> ComputeResolveResult {
        resolve(request, &self.policy)
    }
}

fn refused(code: RefusalCode, reason: String) -> ComputeResolveResult {
    ComputeResolveResult::Refused { code, reason }
}

/// Does the candidate carry the requested label (when the request names one)?
fn label_matches(wanted: &Option<String>, offered: &Option<String>) -> bool {
    match wanted {
        None => true,
        Some(w) => offered.as_deref() == Some(w.as_str()),
    }
}

/// Resolve `request` under `policy`. See the module documentation for the algorithm.
pub fn resolve(
    request: &ComputeResolveRequest,
    policy: &ComputeResolverPolicy,
) -> ComputeResolveResult {
    if let Err(reason) = validate_request(request) {
        return refused(
            RefusalCode::InvalidRequest,
            format!("invalid request: {reason}"),
        );
    }
    let mut other_tier = 0usize;
    let mut wrong_egress = 0usize;
    let mut wrong_affinity = 0usize;
    let mut wrong_residency = 0usize;
    let eligible: Vec<&PeerDescriptor> = request
        .candidates
        .iter()
        .filter(|c| {
            if c.capability_tier != request.required_capability_tier {
                other_tier += 1;
                false
            } else if !label_matches(&request.data_egress_class, &c.data_egress_class) {
                wrong_egress += 1;
                false
            } else if !label_matches(&request.campus_affinity, &c.campus_affinity) {
                wrong_affinity += 1;
                false
            } else if !label_matches(&request.residency_class, &c.residency_class) {
                wrong_residency += 1;
                false
            } else {
                true
            }
        })
        .collect();
    if eligible.is_empty() {
        return refused(
            RefusalCode::NoMatchingCandidate,
            no_match_reason(
                request,
                [other_tier, wrong_egress, wrong_affinity, wrong_residency],
            ),
        );
    }
    match request.role {
        ComputeRole::Executor => ComputeResolveResult::Resolved {
            target: eligible[0].clone(),
        },
        ComputeRole::Reviewer => {
            // validate_request guarantees the author family for reviewers.
            let author = request
                .author_provider_family
                .as_deref()
                .unwrap_or_default();
            if let Some(other) = eligible.iter().find(|c| c.provider_family != author) {
                return ComputeResolveResult::Resolved {
                    target: (*other).clone(),
                };
            }
            let same = eligible[0];
            if policy.allow_same_family_reviewer {
                ComputeResolveResult::PermittedWithWarning {
                    target: same.clone(),
                    audit_warning: format!(
                        "reviewer separation relaxed: reviewer `{}` shares provider family \
                         `{author}` with the author; permitted only because an operator decision \
                         enabled allow_same_family_reviewer",
                        same.id
                    ),
                }
            } else {
                let ids: Vec<String> = eligible.iter().map(|c| format!("`{}`", c.id)).collect();
                refused(
                    RefusalCode::SameFamilyReviewer,
                    format!(
                        "only reviewers of the author's provider family `{author}` satisfy the \
                         request ({}); a same-family reviewer is refused unless the operator \
                         enables allow_same_family_reviewer",
                        ids.join(", ")
                    ),
                )
            }
        }
    }
}

fn no_match_reason(request: &ComputeResolveRequest, counts: [usize; 4]) -> String {
    if request.candidates.is_empty() {
        return "no candidate satisfies the request: the request lists no candidates".into();
    }
    let [tier, egress, affinity, residency] = counts;
    let mut parts = Vec::new();
    if tier > 0 {
        parts.push(format!(
            "{tier} offer another capability tier than `{}` (a lower tier is never substituted)",
            request.required_capability_tier
        ));
    }
    let mut named = |n: usize, what: &str, wanted: &Option<String>| {
        if n > 0 {
            parts.push(format!(
                "{n} lack {what} `{}`",
                wanted.as_deref().unwrap_or_default()
            ));
        }
    };
    named(egress, "data egress class", &request.data_egress_class);
    named(affinity, "campus affinity", &request.campus_affinity);
    named(residency, "residency class", &request.residency_class);
    format!(
        "no candidate satisfies the request: of {} candidates, {}",
        request.candidates.len(),
        parts.join("; ")
    )
}
