//! Keys, tokens and evidence bundles that a third party can verify.
//!
//! - [`keys`]: Ed25519 keys as PKCS#8 / SPKI PEM (what `openssl` reads and writes), key ids;
//! - [`token`]: the EdDSA JWTs of enrollment and scoped invocation (Q16), minted by the control
//!   plane or a standalone workspace, verified by the sidecar.
//!
//! The trusted-compute bundle manifest and its verifier land with the trusted-compute issue.
//!
//! It never touches the network and never reads kernel state; it is handed bytes and keys and
//! returns verdicts, so `openssl` and this crate can always agree on the same files.

pub mod keys;
pub mod token;

pub use keys::{KeyError, KeyPair, PublicKey};
pub use token::TokenError;
