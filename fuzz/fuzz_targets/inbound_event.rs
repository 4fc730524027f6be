//! The sidecar's `POST /events` body is untrusted bytes from the network: the inbound checks must
//! answer with an event or a rejection naming a code, never panic, and an accepted event must be
//! a v2 event whose kind has a subscriber and that survives a round trip through its JSON form.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lumenflow_contracts::event::KernelEventV2;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::events::handler::{HandlerContext, HandlerError, HandlerOutcome};
use lumenflow_kernel::events::host::{PackHost, PackRegistration};
use lumenflow_kernel::events::inbound;
use lumenflow_kernel::manifest::{parse_manifest, Surface};

const MANIFEST: &str = "id: fuzz-pack\nversion: 0.1.0\ntask_types: []\nsubscribed_event_kinds: [conductor:recovery_requested, sidekick:command_received, acme:anything]\n";

fn accept(_: &KernelEventV2, _: &HandlerContext<'_>) -> Result<HandlerOutcome, HandlerError> {
    Ok(HandlerOutcome::handled("fuzz"))
}

struct Rig {
    _dir: tempfile::TempDir,
    host: PackHost,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = parse_manifest(SourceFile::new(
            "fuzz-pack/manifest.yaml",
            MANIFEST.to_string(),
        ))
        .expect("fuzz manifest")
        .manifest;
        let mut reg = PackRegistration::new(manifest);
        for kind in [
            "conductor:recovery_requested",
            "sidekick:command_received",
            "acme:anything",
        ] {
            reg = reg.handler(kind, accept);
        }
        let mut host = PackHost::new(dir.path(), &[Surface::Http]);
        host.register(reg).expect("register the fuzz pack");
        Rig { _dir: dir, host }
    })
}

fuzz_target!(|data: &[u8]| {
    let host = &rig().host;
    match inbound::check(host, data) {
        Ok(event) => {
            assert_eq!(event.schema_version, 2);
            assert!(host.has_subscriber(&event.kind));
            let again = serde_json::to_value(&event).expect("an accepted event serializes");
            let back = KernelEventV2::from_json_value(again).expect("and reads back");
            assert_eq!(back.event_id, event.event_id);
        }
        Err(rejection) => assert!(!rejection.code.is_empty()),
    }
});
