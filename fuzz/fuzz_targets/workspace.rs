//! Untrusted workspace.yaml bytes must never panic the reader or its value rules.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::workspace::parse_workspace;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = parse_workspace(
        SourceFile::new("workspace.yaml", text),
        std::path::Path::new("."),
    );
});
