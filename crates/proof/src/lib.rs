//! Evidence bundles that a third party can verify.
//!
//! This crate will own the trusted-compute bundle manifest, Ed25519 signing with PEM keys, the
//! verifier behind `lumenflow proof verify`, and the DSSE / in-toto export. It is still empty: the
//! bundle format lands with the trusted-compute issue.
//!
//! It never touches the network and never reads kernel state; it is handed bytes and keys and
//! returns verdicts, so `openssl` and this crate can always agree on the same files.
