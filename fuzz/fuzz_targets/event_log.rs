//! The kernel's event log is read back from disk, where a crash, a full disk or a hand edit can
//! leave any bytes. Opening, verifying and replaying it must report, never panic; a log that
//! opens takes an append, and a log that verified before the append still verifies after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumenflow_kernel::eventlog::{self, EventLog, LogOptions, ReplayFilter};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("events.jsonl");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = eventlog::replay(&path, &ReplayFilter::all());
    let verified = eventlog::verify(&path).is_ok();
    let Ok(log) = EventLog::open(&path, LogOptions::default()) else {
        return;
    };
    let Value::Object(record) = json!({"kind": "fuzz_probe", "n": 1}) else {
        return;
    };
    let appended: Result<_, _> = log.append(record);
    if verified {
        assert!(
            appended.is_ok(),
            "a verified log takes an append: {appended:?}"
        );
        let after = eventlog::verify(&path);
        assert!(
            after.is_ok(),
            "the chain still verifies after an append: {after:?}"
        );
    }
    let _ = log.replay(&ReplayFilter::all());
});
