//! The demo's bundle signer: one Ed25519 key reused across runs, with its public half written
//! once next to it (`<key>.pub.pem` for `<key>.pem`), outside every bundle.
//!
//! Why the separate public file: each bundle carries `verifier-public-key.pem`, but a key that
//! ships inside the bundle proves nothing (a forger re-signs with their own key and ships that).
//! A verifier pins a key obtained some other way; the demo's hint points at this file.
//!
//! Why PKCS#8 v1: `ed25519-dalek` writes v2 (`OneAsymmetricKey`, public key attached), which
//! OpenSSL 3.0 (`openssl pkey`) and Python's `cryptography` refuse. `KeyPair::to_pkcs8_pem`
//! writes v1, which holds the same secret; a v2 file written by an earlier version is rewritten
//! as v1 on first use, keeping the key.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use lumenflow_proof::{KeyPair, PublicKey};

use crate::output::CliError;

/// The DER prefix of a PKCS#8 v1 Ed25519 key (RFC 8410 section 10.3): SEQUENCE, version 0,
/// AlgorithmIdentifier id-Ed25519, OCTET STRING wrapping the 32-byte secret's OCTET STRING.
const V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The signer and the path of its public key (written if it was missing).
pub struct Signer {
    pub key: KeyPair,
    pub public_key_path: PathBuf,
}

/// `<dir>/signer-ed25519.pem` -> `<dir>/signer-ed25519.pub.pem`.
pub fn public_key_path(private: &Path) -> PathBuf {
    let name = private
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "signer".into());
    let stem = name.strip_suffix(".pem").unwrap_or(&name);
    private.with_file_name(format!("{stem}.pub.pem"))
}

/// Load the signing key at `path` (creating it 0600 on first use), make sure it is stored as
/// PKCS#8 v1, and make sure its public key sits next to it.
pub fn load_or_create(path: &Path) -> Result<Signer, CliError> {
    let key_err = |e: lumenflow_proof::keys::KeyError| CliError::new(e.code(), e.to_string());
    let key = KeyPair::load_or_create(path).map_err(key_err)?;
    let pem = fs::read_to_string(path).map_err(|e| io_error(path, &e))?;
    if !is_v1(&pem) {
        // Same secret, the format stock tools read; proven by re-reading before replacing.
        let v1 = v1_pem(&key)?;
        let again = KeyPair::from_pkcs8_pem(&v1, "the rewritten signing key").map_err(key_err)?;
        if again.public() != key.public() {
            return Err(CliError::new(
                "KEY_INVALID",
                format!(
                    "rewriting {} as PKCS#8 v1 changed the key; left it as it was",
                    path.display()
                ),
            ));
        }
        replace_file(path, v1.as_bytes(), 0o600)?;
    }
    let public_key_path = public_key_path(path);
    let public_pem = key.public().to_pem();
    match fs::read_to_string(&public_key_path) {
        Ok(existing) => {
            let pinned = PublicKey::from_pem(&existing, &public_key_path.display().to_string())
                .map_err(key_err)?;
            // The file is what verifiers copy and pin: never overwrite it silently with another
            // key, and never sign with a key it does not name.
            if pinned != key.public() {
                return Err(CliError::new(
                    "KEY_MISMATCH",
                    format!(
                        "{} holds {}, not the signing key {} ({}); remove it to write the signer's public key again",
                        public_key_path.display(),
                        pinned.key_id(),
                        path.display(),
                        key.public().key_id()
                    ),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            replace_file(&public_key_path, public_pem.as_bytes(), 0o644)?;
        }
        Err(e) => return Err(io_error(&public_key_path, &e)),
    }
    Ok(Signer {
        key,
        public_key_path,
    })
}

fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn is_v1(pem: &str) -> bool {
    pem_der(pem).is_some_and(|der| der.len() == 48 && der.starts_with(&V1_PREFIX))
}

/// The key as a PKCS#8 v1 PEM (what `KeyPair::to_pkcs8_pem` writes).
fn v1_pem(key: &KeyPair) -> Result<String, CliError> {
    key.to_pkcs8_pem()
        .map_err(|e| CliError::new(e.code(), e.to_string()))
}

/// Write `bytes` to `path` through a temporary file (created with `mode`, fsync'd, renamed), so
/// a crash never leaves half a key.
fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error(path, &e)
    })
}

fn io_error(path: &Path, e: &std::io::Error) -> CliError {
    CliError::new("IO_ERROR", format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_encoding_keeps_the_key() {
        let key = KeyPair::generate();
        let v1 = v1_pem(&key).expect("v1");
        assert!(is_v1(&v1));
        let again = KeyPair::from_pkcs8_pem(&v1, "test").expect("read v1");
        assert_eq!(again.public(), key.public());
    }

    #[test]
    fn public_key_sits_next_to_the_private_key() {
        assert_eq!(
            public_key_path(Path::new("/e/.keys/signer-ed25519.pem")),
            Path::new("/e/.keys/signer-ed25519.pub.pem")
        );
        assert_eq!(
            public_key_path(Path::new("/e/k")),
            Path::new("/e/k.pub.pem")
        );
    }
}
