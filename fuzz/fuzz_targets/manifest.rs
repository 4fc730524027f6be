//! Untrusted manifest bytes: parsing, value rules and the lint must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::manifest::{lint, parse_manifest};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    if let Ok(doc) = parse_manifest(SourceFile::new("manifest.yaml", text)) {
        let _ = lint::security_lint(&doc, None);
    }
});
