//! `POST /api/v1/events` bodies are untrusted bytes from the network: the control plane's batch
//! check must refuse or accept them, never panic. An accepted batch has one row per event, all
//! for the batch's workspace, each with a dedupe key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumenflow_cloud::ingest::batch_rows_raw;
use lumenflow_contracts::identity::Subject;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let Some((&who, body)) = data.split_first() else {
        return;
    };
    // The caller: the workspace's own token or one of its phones.
    let subject = if who % 2 == 0 {
        "ws-1"
    } else {
        "ws-1:phone:p1"
    };
    let Ok(subject) = Subject::parse(subject) else {
        return;
    };
    let Ok(events) = serde_json::from_slice::<Vec<Box<RawValue>>>(body) else {
        return;
    };
    let texts: Vec<&str> = events.iter().map(|e| e.get()).collect();
    if let Ok(rows) = batch_rows_raw("ws-1", &subject, &texts) {
        assert_eq!(rows.len(), texts.len());
        for row in &rows {
            assert_eq!(row.workspace_id, "ws-1");
            assert!(!row.dedupe_key().is_empty());
        }
    }
});
