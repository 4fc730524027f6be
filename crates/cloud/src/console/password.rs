//! Operator passwords: argon2id with the crate's default (OWASP) parameters, stored as PHC
//! strings, so parameters can be raised later without invalidating existing hashes.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::{CloudError, CloudResult};

/// The shortest password `operator add` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest accepted (argon2 takes any length; this bounds the work an attacker can ask for).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password is refused when an operator is added (the message names the rule).
pub fn check_policy(password: &str) -> CloudResult<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(CloudError::BadRequest(format!(
            "the password has {chars} characters; use at least {MIN_PASSWORD_CHARS}"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(CloudError::BadRequest(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    if password.trim() != password {
        return Err(CloudError::BadRequest(
            "the password starts or ends with whitespace (a stray newline?)".into(),
        ));
    }
    Ok(())
}

/// The argon2id PHC string of `password` with a fresh random salt.
pub fn hash(password: &str) -> CloudResult<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CloudError::Internal(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches the stored PHC string. A malformed stored hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the operator is unknown or disabled, so that failure path
/// costs the same argon2 work as a wrong password (no timing oracle for valid names).
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        // The hash of a random password: nothing can match it. Hashing cannot fail with the
        // default parameters; should it, a fixed PHC string of the same parameters stands in.
        let random = hex::encode(rand::random::<[u8; 32]>());
        hash(&random).unwrap_or_else(|_| {
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
             2Yk4j0ETy9PQy3iBfVWtgKFXq0oYk0dQvkO6V3hCw8c"
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("correct horse battery", "not a phc string"));
        assert!(!verify("anything at all", dummy_hash()));
    }

    #[test]
    fn policy_names_the_rule() {
        let short = check_policy("short").unwrap_err().to_string();
        assert!(short.contains("at least 12"), "{short}");
        assert!(check_policy("twelve chars").is_ok());
        assert!(check_policy("a long password\n").is_err());
    }
}
