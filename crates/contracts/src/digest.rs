//! SHA-256 helpers and the one textual form of a digest, `sha256:<64 lowercase hex>`.
//!
//! Digests are compared as strings in manifests, lockfiles, evidence records and logs, so there is
//! exactly one accepted spelling: the algorithm prefix (so a future algorithm can never be
//! confused with this one) and lowercase hex (so two spellings of the same digest can never
//! compare unequal). Parsing rejects everything else instead of normalizing it; a digest in the
//! wrong form was written by something that does not follow the contract and should be looked at.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// The prefix of the textual form.
pub const SHA256_PREFIX: &str = "sha256:";

/// Number of hex digits in a SHA-256 digest.
const HEX_LEN: usize = 64;

/// Lowercase hex SHA-256 of bytes (no prefix).
/// Lowercase hex of bytes. Digests are formatted on every receipt and event id, so this avoids
/// the per-character iterator of `hex::encode`.
pub fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize]);
        out.push(DIGITS[(b & 0x0f) as usize]);
    }
    // Only ASCII hex digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    lower_hex(&Sha256::digest(bytes))
}

/// A SHA-256 digest, shown (and serialized) as `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Wraps an already computed digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 64 lowercase hex digits, without prefix.
    pub fn hex(&self) -> String {
        lower_hex(&self.0)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses exactly `sha256:` followed by 64 lowercase hex digits.
    pub fn parse_prefixed(s: &str) -> Result<Self, DigestParseError> {
        match s.strip_prefix(SHA256_PREFIX) {
            Some(hex) => parse_hex_at(hex, SHA256_PREFIX.len()),
            None => Err(DigestParseError::MissingPrefix {
                algorithm: s.split_once(':').map(|(algorithm, _)| shorten(algorithm)),
            }),
        }
    }

    /// Parses exactly 64 lowercase hex digits (no prefix).
    pub fn parse_hex(s: &str) -> Result<Self, DigestParseError> {
        parse_hex_at(s, 0)
    }
}

/// Parses `hex`, which starts at byte `offset` of the text the caller was given (for positions in
/// error messages).
fn parse_hex_at(hex: &str, offset: usize) -> Result<Sha256Digest, DigestParseError> {
    let length = hex.chars().count();
    if length != HEX_LEN {
        return Err(DigestParseError::WrongLength { found: length });
    }
    let mut bytes = [0u8; 32];
    let mut nibbles = hex
        .char_indices()
        .map(|(index, character)| match character {
            '0'..='9' => Ok(character as u8 - b'0'),
            'a'..='f' => Ok(character as u8 - b'a' + 10),
            _ => Err(DigestParseError::InvalidCharacter {
                position: offset + index,
                character,
            }),
        });
    for byte in &mut bytes {
        // The length check above guarantees two more characters per byte.
        let high = nibbles.next().unwrap_or(Ok(0))?;
        let low = nibbles.next().unwrap_or(Ok(0))?;
        *byte = high << 4 | low;
    }
    Ok(Sha256Digest(bytes))
}

/// Keeps error messages bounded when the input is large.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 32;
    if text.chars().count() <= MAX_CHARS {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX_CHARS).collect();
        short.push('…');
        short
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SHA256_PREFIX)?;
        f.write_str(&self.hex())
    }
}

impl FromStr for Sha256Digest {
    type Err = DigestParseError;

    /// The prefixed form, as [`Sha256Digest::parse_prefixed`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_prefixed(s)
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PrefixedVisitor;

        impl de::Visitor<'_> for PrefixedVisitor {
            type Value = Sha256Digest;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a digest string `sha256:<64 lowercase hex digits>`")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Sha256Digest, E> {
                Sha256Digest::parse_prefixed(value).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(PrefixedVisitor)
    }
}

/// Why a digest string was refused. Every message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestParseError {
    /// The text does not start with `sha256:`. `algorithm` is whatever came before the first `:`
    /// (shortened), if there was one.
    MissingPrefix {
        /// The prefix that was found instead, e.g. `sha1`.
        algorithm: Option<String>,
    },
    /// The hex part does not have 64 characters.
    WrongLength {
        /// Number of characters found.
        found: usize,
    },
    /// A character other than `0-9a-f` (uppercase hex included).
    InvalidCharacter {
        /// Byte offset of the character in the parsed text.
        position: usize,
        /// The offending character.
        character: char,
    },
}

impl fmt::Display for DigestParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingPrefix {
                algorithm: Some(algorithm),
            } => write!(
                f,
                "unsupported digest algorithm `{}`: expected `sha256:` followed by 64 lowercase \
                 hex digits",
                algorithm.escape_debug()
            ),
            Self::MissingPrefix { algorithm: None } => f.write_str(
                "missing `sha256:` prefix: expected `sha256:` followed by 64 lowercase hex digits",
            ),
            Self::WrongLength { found } => write!(
                f,
                "expected 64 lowercase hex digits in a sha256 digest, found {found} characters"
            ),
            Self::InvalidCharacter {
                position,
                character,
            } if character.is_ascii_hexdigit() => write!(
                f,
                "uppercase hex digit `{character}` at byte {position}: sha256 digests are written \
                 in lowercase hex (0-9, a-f)"
            ),
            Self::InvalidCharacter {
                position,
                character,
            } => write!(
                f,
                "invalid character `{}` at byte {position}: expected a lowercase hex digit \
                 (0-9, a-f)",
                character.escape_debug()
            ),
        }
    }
}

impl std::error::Error for DigestParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    // KRN-15: FIPS 180-2 vectors for the empty string and "abc".
    #[test]
    fn sha256_hex_matches_known_vectors() {
        assert_eq!(sha256_hex(b""), EMPTY);
        assert_eq!(sha256_hex(b"abc"), ABC);
        assert_eq!(Sha256Digest::of(b"abc").hex(), ABC);
        assert_eq!(Sha256Digest::of(b"abc").as_bytes()[..2], [0xba, 0x78]);
    }

    // KRN-15: both textual forms round-trip; Display, FromStr and serde use the prefixed form.
    #[test]
    fn prefixed_and_bare_forms_round_trip() {
        let digest = Sha256Digest::of(b"abc");
        let prefixed = format!("sha256:{ABC}");
        assert_eq!(digest.to_string(), prefixed);
        assert_eq!(Sha256Digest::parse_prefixed(&prefixed), Ok(digest.clone()));
        assert_eq!(Sha256Digest::parse_hex(ABC), Ok(digest.clone()));
        assert_eq!(prefixed.parse::<Sha256Digest>(), Ok(digest.clone()));
        assert_eq!(
            Sha256Digest::from_bytes(*digest.as_bytes()),
            digest,
            "from_bytes/as_bytes"
        );

        let json = serde_json::to_string(&digest).expect("serializes");
        assert_eq!(json, format!("\"{prefixed}\""));
        let back: Sha256Digest = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, digest);
        let err = serde_json::from_str::<Sha256Digest>(&format!("\"{ABC}\""))
            .expect_err("bare hex is not the serde form");
        assert!(
            err.to_string().contains("missing `sha256:` prefix"),
            "{err}"
        );
        assert!(serde_json::from_str::<Sha256Digest>("42").is_err());
    }

    // KRN-15: uppercase hex is refused, not normalized.
    #[test]
    fn rejects_uppercase_hex() {
        let upper = ABC.to_uppercase();
        let err = Sha256Digest::parse_hex(&upper).expect_err("uppercase");
        assert_eq!(
            err,
            DigestParseError::InvalidCharacter {
                position: 0,
                character: 'B'
            }
        );
        assert!(err.to_string().contains("lowercase"), "{err}");

        let mut one_upper = format!("sha256:{ABC}");
        one_upper.replace_range(9..10, "F");
        let err = Sha256Digest::parse_prefixed(&one_upper).expect_err("one uppercase digit");
        assert_eq!(
            err,
            DigestParseError::InvalidCharacter {
                position: 9,
                character: 'F'
            }
        );
        assert_eq!(
            err.to_string(),
            "uppercase hex digit `F` at byte 9: sha256 digests are written in lowercase hex \
             (0-9, a-f)"
        );
        assert!(Sha256Digest::parse_prefixed(&format!("SHA256:{ABC}")).is_err());
    }

    // KRN-15: wrong length and foreign characters, in both forms.
    #[test]
    fn rejects_wrong_length_and_characters() {
        for bad in [&ABC[..63], "", &format!("{ABC}0"), &format!("{ABC} ")] {
            let err = Sha256Digest::parse_hex(bad).expect_err("wrong length");
            assert!(matches!(err, DigestParseError::WrongLength { .. }), "{bad}");
            let err = Sha256Digest::parse_prefixed(&format!("sha256:{bad}")).expect_err("length");
            assert_eq!(
                err.to_string(),
                format!(
                    "expected 64 lowercase hex digits in a sha256 digest, found {} characters",
                    bad.len()
                )
            );
        }
        let mut with_g = ABC.to_owned();
        with_g.replace_range(63..64, "g");
        assert_eq!(
            Sha256Digest::parse_hex(&with_g),
            Err(DigestParseError::InvalidCharacter {
                position: 63,
                character: 'g'
            })
        );
        // 64 characters but 65 bytes: counted in characters, reported as the bad character.
        let mut with_accent = ABC[..63].to_owned();
        with_accent.push('é');
        let err = Sha256Digest::parse_hex(&with_accent).expect_err("non-ascii");
        assert_eq!(
            err.to_string(),
            "invalid character `é` at byte 63: expected a lowercase hex digit (0-9, a-f)"
        );
    }

    // KRN-15: only `sha256:` is accepted as the algorithm prefix.
    #[test]
    fn rejects_other_prefixes() {
        let err = Sha256Digest::parse_prefixed(&format!("sha1:{ABC}")).expect_err("sha1");
        assert_eq!(
            err,
            DigestParseError::MissingPrefix {
                algorithm: Some("sha1".into())
            }
        );
        assert_eq!(
            err.to_string(),
            "unsupported digest algorithm `sha1`: expected `sha256:` followed by 64 lowercase \
             hex digits"
        );
        let err = Sha256Digest::parse_prefixed(ABC).expect_err("no prefix");
        assert_eq!(err, DigestParseError::MissingPrefix { algorithm: None });
        assert!(Sha256Digest::parse_prefixed(&format!("sha256: {ABC}")).is_err());
        assert!(Sha256Digest::parse_prefixed(&format!(" sha256:{ABC}")).is_err());
        let long = format!("{}:{ABC}", "x".repeat(1000));
        let message = Sha256Digest::parse_prefixed(&long)
            .expect_err("long prefix")
            .to_string();
        assert!(message.len() < 200, "{message}");
    }
}
