//! Keys, tokens and evidence bundles that a third party can verify.
//!
//! - [`keys`]: Ed25519 keys as PKCS#8 / SPKI PEM (what `openssl` reads and writes), key ids;
//! - [`token`]: the EdDSA JWTs of enrollment and scoped invocation (Q16), minted by the control
//!   plane or a standalone workspace, verified by the sidecar;
//! - [`bundle`]: the trusted-compute evidence bundle: nine proof files, a canonical-JSON
//!   manifest of their hashes, a detached raw Ed25519 signature and the SPKI public key, sealed
//!   and verified so that `openssl pkeyutl -verify` and `sha256sum` agree with us;
//! - [`dsse`]: the same bundle as an in-toto Statement in a DSSE envelope, signed by its signer.
//!
//! It never touches the network and never reads kernel state; it is handed bytes and keys and
//! returns verdicts, so `openssl` and this crate can always agree on the same files.

pub mod bundle;
pub mod dsse;
pub mod keys;
pub mod token;

pub use keys::{KeyError, KeyPair, PublicKey};
pub use token::TokenError;
