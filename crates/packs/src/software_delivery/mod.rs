//! `software-delivery`: work units in git worktrees, patches, gates and pull-request
//! preparation, built into the binary (the first half of the trusted-compute chain: "claim
//! WU-042 and run its gates").
//!
//! Why a pack and not kernel code: the kernel governs (scopes, rules, approvals, receipts) and
//! knows no particular pack; this pack only does software-delivery work, and only when the
//! dispatch path calls it. Its tools ([`manifest.yaml`](manifest) is the single source of truth
//! for what they may touch):
//!
//! | tool | does | module |
//! |---|---|---|
//! | `git:status`, `git:diff` | read-only views of a worktree or the workspace repository | [`git`] |
//! | `software-delivery:wu_claim` | branch + worktree `worktrees/<lane>-<wu>`, idempotent, emits `wu_claimed` | [`workunit`] |
//! | `software-delivery:apply_patch` | a unified diff applied inside the worktree, never outside it | [`patch`] |
//! | `software-delivery:gates` | the configured gate commands, timed out as whole process groups, output to evidence, `gate_passed`/`gate_failed`, completion facts | [`gates`] |
//! | `software-delivery:pr_prepare` | commit, PR description and diff against the base; needs the `software-delivery:pr-create` approval | [`pr`] |
//! | `software-delivery:wu_recover` | repairs a claim; `admin`, needs the `software-delivery:wu-recover` approval | [`workunit`] |
//!
//! Every git command runs with a cleared environment (`GIT_CONFIG_NOSYSTEM=1`,
//! `GIT_CONFIG_GLOBAL=/dev/null`, no hooks, a fixed identity), inside the workspace, which must
//! be the root of its git repository. Failures are `ToolOutput` failures with the codes of
//! [`common::errors`]; nothing panics on input.
//!
//! Gate results reach task completion through the kernel's generic *facts*: the gates tool
//! writes `.lumenflow/state/software-delivery/facts/<task>.json`, and the manifest's
//! `software-delivery.gate.<name>` `on_completion` rules deny while a gate's fact says `failed`
//! or `timed_out` (`when.facts`, see `lumenflow_kernel::policy::condition`).
//!
//! The workspace configures the pack in its `software_delivery:` block (validated against
//! `config.schema.json`):
//!
//! ```yaml
//! software_delivery:
//!   base_branch: main            # optional; default: the branch the workspace has checked out
//!   gates:
//!     format: {command: "cargo fmt --check", timeout_seconds: 120}
//!     test: {command: "cargo test", timeout_seconds: 900}
//! ```

pub mod common;
pub mod gates;
pub mod git;
pub mod orphans;
pub mod patch;
pub mod pr;
pub mod workunit;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use lumenflow_kernel::builtin::EmbeddedPack;
use lumenflow_kernel::dispatch::BuiltinFn;
use lumenflow_kernel::events::host::PackRegistration;
use lumenflow_kernel::loader::read_embedded_manifest;
use lumenflow_kernel::manifest::PackManifest;

/// The pack id, which is also its slug (its event namespace and state folder).
pub const ID: &str = "software-delivery";

pub const WU_CLAIMED: &str = "software-delivery:wu_claimed";
pub const GATE_PASSED: &str = "software-delivery:gate_passed";
pub const GATE_FAILED: &str = "software-delivery:gate_failed";

/// The tool names, as the manifest declares them.
pub const GIT_STATUS: &str = "git:status";
pub const GIT_DIFF: &str = "git:diff";
pub const WU_CLAIM: &str = "software-delivery:wu_claim";
pub const APPLY_PATCH: &str = "software-delivery:apply_patch";
pub const GATES: &str = "software-delivery:gates";
pub const PR_PREPARE: &str = "software-delivery:pr_prepare";
pub const WU_RECOVER: &str = "software-delivery:wu_recover";

/// The approval ids of the two risky tools.
pub const PR_CREATE_APPROVAL: &str = "software-delivery:pr-create";
pub const WU_RECOVER_APPROVAL: &str = "software-delivery:wu-recover";

/// The pack folder, embedded: the manifest, the config schema and every source file, so the
/// pack's integrity hash changes whenever its code does. A test checks this list against the
/// folder on disk.
pub const PACK: EmbeddedPack = EmbeddedPack {
    id: ID,
    files: &[
        ("common.rs", include_bytes!("common.rs")),
        ("config.schema.json", include_bytes!("config.schema.json")),
        ("gates.rs", include_bytes!("gates.rs")),
        ("git.rs", include_bytes!("git.rs")),
        ("manifest.yaml", include_bytes!("manifest.yaml")),
        ("mod.rs", include_bytes!("mod.rs")),
        ("orphans.rs", include_bytes!("orphans.rs")),
        ("patch.rs", include_bytes!("patch.rs")),
        ("pr.rs", include_bytes!("pr.rs")),
        ("workunit.rs", include_bytes!("workunit.rs")),
    ],
};

static MANIFEST: LazyLock<PackManifest> = LazyLock::new(|| match read_embedded_manifest(&PACK) {
    Ok(doc) => doc.manifest,
    // Unreachable in a tested build: `tests/software_delivery.rs` parses and validates this file.
    Err(diagnostics) => {
        panic!("the embedded software-delivery manifest.yaml is invalid: {diagnostics:?}")
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

/// The Rust function behind each tool, by tool name.
pub fn tools() -> HashMap<String, BuiltinFn> {
    let entries: [(&str, BuiltinFn); 7] = [
        (GIT_STATUS, Arc::new(git::git_status)),
        (GIT_DIFF, Arc::new(git::git_diff)),
        (WU_CLAIM, Arc::new(workunit::wu_claim)),
        (APPLY_PATCH, Arc::new(patch::apply_patch)),
        (GATES, Arc::new(gates::gates)),
        (PR_PREPARE, Arc::new(pr::pr_prepare)),
        (WU_RECOVER, Arc::new(workunit::wu_recover)),
    ];
    entries
        .into_iter()
        .map(|(name, f)| (name.to_string(), f))
        .collect()
}
