//! The conformance harness for packs (HND-07): call it from a pack's tests.
//!
//! [`check_emitter`] runs an emitter twice against a recording sink and checks the envelope: one
//! push per run, a declared kind, `schema_version` 2, an `event_id` that is present and the same
//! on the retry, and `from` equal to the workspace identity. [`check_handlers`] registers the
//! pack in a scratch workspace and delivers every subscribed kind twice; a second delivery that
//! runs the effect again fails with "handler called twice".

use std::fmt;
use std::sync::Arc;

use lumenflow_contracts::event::{KernelEventV2, SCHEMA_VERSION};

use super::emit::{MemorySink, PackEmitter};
use super::handler::HandlerStatus;
use super::host::{PackHost, PackRegistration};
use crate::manifest::{PackManifest, Surface};

/// A conformance failure, phrased for the pack author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConformanceFailure(pub String);

impl fmt::Display for ConformanceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pack conformance failed: {}", self.0)
    }
}

impl std::error::Error for ConformanceFailure {}

fn fail<T>(message: impl Into<String>) -> Result<T, ConformanceFailure> {
    Err(ConformanceFailure(message.into()))
}

/// Run `emitter` twice (the second run is a retry of the same job) and check what it pushed.
/// Returns the event of the first run.
pub fn check_emitter(
    manifest: &PackManifest,
    identity: &str,
    emitter: impl Fn(&PackEmitter),
) -> Result<KernelEventV2, ConformanceFailure> {
    let manifest = Arc::new(manifest.clone());
    let mut runs = Vec::new();
    for run in 1..=2 {
        let sink = Arc::new(MemorySink::new());
        let handle = PackEmitter::new(manifest.clone(), identity, sink.clone(), None);
        emitter(&handle);
        let pushes = sink.pushes();
        if pushes.len() != 1 {
            return fail(format!(
                "run {run}: expected exactly one push to the event sink, saw {}",
                pushes.len()
            ));
        }
        let batch = &pushes[0];
        if batch.len() != 1 {
            return fail(format!(
                "run {run}: expected one event in the push, saw {}",
                batch.len()
            ));
        }
        let event = batch[0].clone();
        if !manifest.emitted_event_kinds.contains(&event.kind) {
            return fail(format!(
                "run {run}: emitted `{}`, which is not in emitted_event_kinds",
                event.kind
            ));
        }
        if event.schema_version != SCHEMA_VERSION {
            return fail(format!(
                "run {run}: schema_version is {}, expected 2",
                event.schema_version
            ));
        }
        if event.event_id.trim().is_empty() {
            return fail(format!("run {run}: event_id is empty"));
        }
        if event.from != identity {
            return fail(format!(
                "run {run}: `from` is `{}`, expected the workspace identity `{identity}` (from must come from the enrollment token subject)",
                event.from
            ));
        }
        runs.push(event);
    }
    if runs[0].event_id != runs[1].event_id {
        return fail(format!(
            "event_id is not stable under retry: `{}` then `{}` (pass an idempotency key such as `<job_id>:completed`)",
            runs[0].event_id, runs[1].event_id
        ));
    }
    Ok(runs.remove(0))
}

/// Register the pack made by `registration` in a scratch workspace and deliver each sample twice.
/// There must be a sample for every subscribed kind. `effects`, when given, counts how many times
/// the handler's effect ran for an event (read from the scratch workspace's files, say); more than
/// one is a failure even if the handler reported `replayed`.
#[allow(clippy::type_complexity)] // `effects` reads best spelt out for pack authors
pub fn check_handlers(
    registration: impl FnOnce() -> PackRegistration,
    samples: &[KernelEventV2],
    effects: Option<&dyn Fn(&std::path::Path, &KernelEventV2) -> usize>,
) -> Result<(), ConformanceFailure> {
    let scratch = tempfile::tempdir()
        .map_err(|e| ConformanceFailure(format!("cannot create a scratch workspace: {e}")))?;
    let mut host = PackHost::new(
        scratch.path(),
        &[Surface::Http, Surface::Mcp, Surface::SidekickChannel],
    );
    let reg = registration();
    let subscribed = reg.manifest.subscribed_event_kinds.clone();
    host.register(reg)
        .map_err(|e| ConformanceFailure(format!("the pack does not register: {e}")))?;
    for kind in &subscribed {
        if !samples.iter().any(|s| &s.kind == kind) {
            return fail(format!("no sample event for subscribed kind `{kind}`"));
        }
    }
    if let Some(stray) = samples.iter().find(|s| !subscribed.contains(&s.kind)) {
        return fail(format!(
            "sample `{}` has kind `{}`, which the pack does not subscribe to",
            stray.event_id, stray.kind
        ));
    }
    let mut handled_any = false;
    for sample in samples {
        let first = host.deliver(sample);
        handled_any |= first.iter().any(|d| {
            d.outcome()
                .is_some_and(|o| o.status == HandlerStatus::Handled)
        });
        let second = host.deliver(sample);
        for (a, b) in first.iter().zip(&second) {
            let (Some(first_outcome), Some(second_outcome)) = (a.outcome(), b.outcome()) else {
                return fail(format!(
                    "handler of `{}` in pack `{}` failed on `{}`: {:?} / {:?}",
                    a.kind, a.pack_id, sample.event_id, a.result, b.result
                ));
            };
            if first_outcome.status == HandlerStatus::Handled
                && second_outcome.status == HandlerStatus::Handled
            {
                return fail(format!(
                    "handler called twice: pack `{}` handled `{}` ({}) again on re-delivery; check the replay log before the effect and record the key after it",
                    a.pack_id, sample.event_id, sample.kind
                ));
            }
        }
        if let Some(count) = effects {
            let n = count(scratch.path(), sample);
            if n > 1 {
                return fail(format!(
                    "handler called twice: the effect for `{}` ({}) ran {n} times; make it upsert-shaped and guard it with the replay log",
                    sample.event_id, sample.kind
                ));
            }
        }
    }
    if !handled_any {
        return fail(
            "no sample was handled on first delivery; include a sample the handler acts on, so the harness can see its effect run once",
        );
    }
    Ok(())
}
