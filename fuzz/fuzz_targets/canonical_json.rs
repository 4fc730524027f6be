//! Canonical JSON of untrusted text: never panics, and canonical output is a fixed point.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lumenflow_contracts::canonical_json::canonicalize_str;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(canonical) = canonicalize_str(text) {
        assert_eq!(
            canonicalize_str(&canonical).expect("canonical output re-parses"),
            canonical
        );
    }
});
