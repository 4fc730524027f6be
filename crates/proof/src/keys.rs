//! Ed25519 keys in the formats stock tools read: a private key as a PKCS#8 `PRIVATE KEY` PEM
//! (what `openssl genpkey -algorithm ed25519` writes) and a public key as an SPKI `PUBLIC KEY`
//! PEM (what `openssl pkey -pubout` writes and `openssl pkeyutl -verify` reads, Q31).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use lumenflow_contracts::digest::sha256_hex;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not an Ed25519 {expected} PEM: {reason}")]
    Format {
        what: String,
        expected: &'static str,
        reason: String,
    },
    #[error("{path} is readable by other users (mode {mode:o}); a private key must be 0600")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the signature does not verify against key {key_id}")]
    BadSignature { key_id: String },
    #[error("a signature must be 64 bytes, found {0}")]
    SignatureLength(usize),
}

impl KeyError {
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::Io { .. } => "IO_ERROR",
            KeyError::Format { .. } => "KEY_INVALID",
            KeyError::Permissions { .. } => "KEY_PERMISSIONS",
            KeyError::BadSignature { .. } | KeyError::SignatureLength(_) => "SIGNATURE_INVALID",
        }
    }
}

/// A signing key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("key_id", &self.public().key_id())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> KeyPair {
        KeyPair {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// A key from its 32 secret bytes (test vectors, deterministic fixtures).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> KeyPair {
        KeyPair {
            signing: SigningKey::from_bytes(secret),
        }
    }

    pub fn from_pkcs8_pem(pem: &str, what: &str) -> Result<KeyPair, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|signing| KeyPair { signing })
            .map_err(|e| KeyError::Format {
                what: what.to_string(),
                expected: "PKCS#8 `PRIVATE KEY`",
                reason: e.to_string(),
            })
    }

    /// The PKCS#8 PEM of the secret key (a secret: write it 0600, never log it). Version 1
    /// (RFC 8410 §7, no public key attached): `ed25519-dalek`'s own encoding is v2, which
    /// OpenSSL 3.0 (`openssl pkey`) and Python's `cryptography` refuse to read. Both versions
    /// are read back.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes};
        KeypairBytes {
            secret_key: self.signing.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(Default::default())
        .map(|z| z.to_string())
        .map_err(|e| KeyError::Format {
            what: "the signing key".into(),
            expected: "PKCS#8 `PRIVATE KEY`",
            reason: e.to_string(),
        })
    }

    /// The PKCS#8 DER of the secret key (what `jsonwebtoken` takes).
    pub(crate) fn pkcs8_der(&self) -> Result<Vec<u8>, KeyError> {
        self.signing
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|e| KeyError::Format {
                what: "the signing key".into(),
                expected: "PKCS#8 `PRIVATE KEY`",
                reason: e.to_string(),
            })
    }

    /// Read the key at `path`, refusing one that others can read.
    pub fn load(path: &Path) -> Result<KeyPair, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        check_private_mode(path)?;
        let pem = fs::read_to_string(path).map_err(io)?;
        KeyPair::from_pkcs8_pem(&pem, &path.display().to_string())
    }

    /// Read the key at `path`, or create one there (0600, written to a temporary file, fsync'd,
    /// then renamed so a crash never leaves half a key). Two processes racing both end with the
    /// key that won the rename's `hard_link`.
    pub fn load_or_create(path: &Path) -> Result<KeyPair, KeyError> {
        if path.exists() {
            return KeyPair::load(path);
        }
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io)?;
        let key = KeyPair::generate();
        let pem = key.to_pkcs8_pem()?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        {
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(io)?;
            f.write_all(pem.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        // `hard_link` fails if the key appeared meanwhile: then the other writer's key wins.
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                if let Ok(d) = fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => KeyPair::load(path),
            Err(e) => Err(io(e)),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            verifying: self.signing.verifying_key(),
        }
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

#[cfg(unix)]
fn check_private_mode(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// A verifying key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    verifying: VerifyingKey,
}

impl PublicKey {
    pub fn from_pem(pem: &str, what: &str) -> Result<PublicKey, KeyError> {
        // The PEM decoder's own error for text with no armour blames a NUL byte (F14).
        if !pem.contains("-----BEGIN ") {
            return Err(KeyError::Format {
                what: what.to_string(),
                expected: "SPKI `PUBLIC KEY`",
                reason: "no `-----BEGIN PUBLIC KEY-----` line: this is not a PEM file".into(),
            });
        }
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(|verifying| PublicKey { verifying })
            .map_err(|e| KeyError::Format {
                what: what.to_string(),
                expected: "SPKI `PUBLIC KEY`",
                reason: e.to_string(),
            })
    }

    pub fn from_raw(bytes: &[u8; 32], what: &str) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_bytes(bytes)
            .map(|verifying| PublicKey { verifying })
            .map_err(|e| KeyError::Format {
                what: what.to_string(),
                expected: "raw 32-byte",
                reason: e.to_string(),
            })
    }

    /// The SPKI `PUBLIC KEY` PEM, ending in a newline.
    pub fn to_pem(&self) -> String {
        // Encoding a valid 32-byte key as SPKI cannot fail; the fallback is unreachable.
        self.verifying
            .to_public_key_pem(Default::default())
            .unwrap_or_default()
    }

    pub fn raw(&self) -> [u8; 32] {
        self.verifying.to_bytes()
    }

    /// `ed25519:` + hex SHA-256 of the raw 32-byte key (Q31).
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", sha256_hex(&self.raw()))
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        let bytes: [u8; 64] = signature
            .try_into()
            .map_err(|_| KeyError::SignatureLength(signature.len()))?;
        self.verifying
            .verify_strict(message, &Signature::from_bytes(&bytes))
            .map_err(|_| KeyError::BadSignature {
                key_id: self.key_id(),
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_signatures_verify() {
        let key = KeyPair::generate();
        let again = KeyPair::from_pkcs8_pem(&key.to_pkcs8_pem().unwrap(), "test").unwrap();
        assert_eq!(again.public(), key.public());
        let public = PublicKey::from_pem(&key.public().to_pem(), "test").unwrap();
        let sig = key.sign(b"hello");
        public.verify(b"hello", &sig).unwrap();
        assert!(public.verify(b"hellO", &sig).is_err());
        assert!(public.verify(b"hello", &sig[..63]).is_err());
    }

    #[test]
    fn load_or_create_writes_0600_and_reuses_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/workspace.pem");
        let a = KeyPair::load_or_create(&path).unwrap();
        let b = KeyPair::load_or_create(&path).unwrap();
        assert_eq!(a.public(), b.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(KeyPair::load(&path).unwrap_err().code(), "KEY_PERMISSIONS");
        }
    }

    #[test]
    fn garbage_pem_is_a_clear_error() {
        let err = PublicKey::from_pem("not a key", "pinned.pem").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("pinned.pem is not an Ed25519 SPKI"));
    }
}
