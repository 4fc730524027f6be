//! Bearer tokens are untrusted text from every caller of the sidecar and the control plane. The
//! verifier must refuse garbage and forged signatures without panicking; and whatever claims the
//! issuer signed (the fuzzer plays the issuer here), verification reports, never panics.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use lumenflow_proof::keys::KeyPair;
use lumenflow_proof::token;

fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(KeyPair::generate)
}

fuzz_target!(|data: &[u8]| {
    let key = key();
    // As a token string.
    let text = String::from_utf8_lossy(data);
    let _ = token::verify(&text, &key.public(), "ws");
    // As the claims of a token the issuer signed: header and signature are right, the claims
    // are anything.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(data));
    let signature = URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes()));
    if let Ok(claims) = token::verify(&format!("{signing_input}.{signature}"), &key.public(), "ws")
    {
        assert_eq!(claims.aud, "ws");
        assert!(claims.subject().is_ok());
    }
});
