//! LumenFlow tokens (Q16): compact JWS, `alg: EdDSA`, claims [`TokenClaims`].
//!
//! Verification checks the signature against the issuer's key, the algorithm (only EdDSA; a
//! `none` or HMAC header is refused before any key is used), expiry, `aud` and that the subject
//! parses. Revocation is the caller's business: it holds the list.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lumenflow_contracts::identity::TokenClaims;

use crate::keys::{KeyError, KeyPair, PublicKey};

/// Clock skew tolerated on `exp` and `iat`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's signature does not verify against the issuer key")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token is for audience `{found}`, expected `{expected}`")]
    WrongAudience { expected: String, found: String },
    #[error("the token uses algorithm {0}; only EdDSA tokens are accepted")]
    WrongAlgorithm(String),
    #[error("the token was issued in the future")]
    NotYetValid,
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("the token's subject is invalid: {0}")]
    Subject(String),
}

impl TokenError {
    /// Every verification failure is `TOKEN_INVALID` (401) on the wire; the message says which.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Key(e) => e.code(),
            _ => "TOKEN_INVALID",
        }
    }
}

/// Sign `claims` with `key`.
pub fn mint(key: &KeyPair, claims: &TokenClaims) -> Result<String, TokenError> {
    let encoding = EncodingKey::from_ed_der(&key.pkcs8_der()?);
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &encoding)
        .map_err(|e| TokenError::Malformed(e.to_string()))
}

/// Verify `token` against the issuer's key and the expected audience (the workspace id).
pub fn verify(
    token: &str,
    issuer: &PublicKey,
    expected_audience: &str,
) -> Result<TokenClaims, TokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::WrongAlgorithm(format!("{:?}", header.alg)));
    }
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
    let decoding = DecodingKey::from_ed_der(&issuer.raw());
    let data = jsonwebtoken::decode::<TokenClaims>(token, &decoding, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm("other".into()),
            _ => TokenError::Malformed(e.to_string()),
        }
    })?;
    let claims = data.claims;
    if claims.aud != expected_audience {
        return Err(TokenError::WrongAudience {
            expected: expected_audience.to_string(),
            found: claims.aud,
        });
    }
    let now = now_unix();
    if claims.iat > now + LEEWAY_SECONDS as i64 {
        return Err(TokenError::NotYetValid);
    }
    claims
        .subject()
        .map_err(|e| TokenError::Subject(e.to_string()))?;
    Ok(claims)
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A random `jti` (128 bits, hex).
pub fn new_jti() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::Engine;

    fn claims(exp_in: i64) -> TokenClaims {
        let now = now_unix();
        TokenClaims {
            iss: "lumenflow-cloud".into(),
            sub: "ws-1".into(),
            aud: "ws-1".into(),
            scope: "workspace".into(),
            iat: now,
            exp: now + exp_in,
            jti: new_jti(),
            device_name: None,
        }
    }

    #[test]
    fn a_minted_token_verifies() {
        let key = KeyPair::generate();
        let token = mint(&key, &claims(600)).unwrap();
        let got = verify(&token, &key.public(), "ws-1").unwrap();
        assert_eq!(got.sub, "ws-1");
    }

    #[test]
    fn attacks_are_refused() {
        let key = KeyPair::generate();
        let other = KeyPair::generate();
        // Forged: signed by another key.
        let forged = mint(&other, &claims(600)).unwrap();
        assert!(matches!(
            verify(&forged, &key.public(), "ws-1"),
            Err(TokenError::BadSignature)
        ));
        // Expired.
        let expired = mint(&key, &claims(-3600)).unwrap();
        assert!(matches!(
            verify(&expired, &key.public(), "ws-1"),
            Err(TokenError::Expired)
        ));
        // Wrong audience.
        let token = mint(&key, &claims(600)).unwrap();
        assert!(matches!(
            verify(&token, &key.public(), "ws-2"),
            Err(TokenError::WrongAudience { .. })
        ));
        // Tampered claims with the original signature.
        let parts: Vec<&str> = token.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut c = claims(600);
        c.scope = "workspace agent:execute-turn".into();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(serde_json::to_vec(&c).unwrap()),
            parts[2]
        );
        assert!(verify(&tampered, &key.public(), "ws-1").is_err());
        // alg: none.
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&claims(600)).unwrap())
        );
        assert!(verify(&none, &key.public(), "ws-1").is_err());
        // HS256 header (key-confusion attempt).
        let hs = format!(
            "{}.{}.{}",
            b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            parts[1],
            parts[2]
        );
        assert!(verify(&hs, &key.public(), "ws-1").is_err());
        assert!(verify("garbage", &key.public(), "ws-1").is_err());
        // Bad subject.
        let mut c = claims(600);
        c.sub = "ws-1/../x".into();
        let t = mint(&key, &c).unwrap();
        assert!(matches!(
            verify(&t, &key.public(), "ws-1"),
            Err(TokenError::Subject(_))
        ));
    }
}
