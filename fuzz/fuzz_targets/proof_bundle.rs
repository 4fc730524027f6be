//! Bundle manifests and signatures are untrusted bytes from whoever handed over the bundle:
//! the verifier must report, never panic, whatever they contain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumenflow_proof::bundle;

fuzz_target!(|data: &[u8]| {
    let _ = bundle::parse_manifest(data);
    let Ok(dir) = tempfile::tempdir() else { return };
    let (manifest, rest) = data.split_at(data.len() / 2);
    let (sig, pem) = rest.split_at(rest.len() / 2);
    let _ = std::fs::write(dir.path().join(bundle::MANIFEST_FILE), manifest);
    let _ = std::fs::write(dir.path().join(bundle::SIGNATURE_FILE), sig);
    let _ = std::fs::write(dir.path().join(bundle::PUBLIC_KEY_FILE), pem);
    for name in bundle::REQUIRED_ARTIFACTS {
        let _ = std::fs::write(dir.path().join(name), name);
    }
    let v = bundle::verify(dir.path(), None);
    assert_eq!(v.checks.len(), 4);
});
