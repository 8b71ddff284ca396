//! The secret itself ([`ApiKey`]), its public name ([`KeyId`]) and its stored form ([`KeyHash`]).

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of generated keys: makes a leaked key recognisable to secret scanners and to people.
const GENERATED_PREFIX: &str = "det_";
/// 32 random bytes = 256 bits of entropy, far beyond any online or offline guessing.
const GENERATED_BYTES: usize = 32;
/// Longest key accepted; header values beyond this are not keys but noise (or an attack).
const MAX_KEY_LEN: usize = 1024;

/// A secret API key. `Debug` and `Display` never show it; read it with [`ApiKey::expose`] only
/// where it must leave the process (printed once to the operator, sent in a header).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidApiKey {
    #[error("API key is empty")]
    Empty,
    #[error("API key is longer than {MAX_KEY_LEN} bytes")]
    TooLong,
    #[error("API key may contain only visible ASCII characters (no spaces or control characters)")]
    BadCharacter,
}

impl ApiKey {
    /// A fresh key from the operating system's CSPRNG (through `rand`'s thread generator, which is
    /// a ChaCha CSPRNG seeded from the OS): `det_` followed by 64 hex digits.
    pub fn generate() -> Self {
        let mut bytes = [0u8; GENERATED_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{GENERATED_PREFIX}{}", hex::encode(bytes)))
    }

    /// Accepts a key given by an operator (environment variable, flag). Keys travel in HTTP
    /// headers, so only visible ASCII is allowed.
    pub fn parse(key: &str) -> Result<Self, InvalidApiKey> {
        if key.is_empty() {
            return Err(InvalidApiKey::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(InvalidApiKey::TooLong);
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidApiKey::BadCharacter);
        }
        Ok(Self(key.to_owned()))
    }

    /// The secret. Call sites are few and deliberate: grep for `expose(`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash stored in key files and compared at verification.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.0.as_bytes())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl FromStr for ApiKey {
    type Err = InvalidApiKey;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The public name of a key: what logs, metrics and the CLI show instead of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct KeyId(String);

impl TryFrom<String> for KeyId {
    type Error = String;
    fn try_from(id: String) -> Result<Self, Self::Error> {
        Self::parse(&id).ok_or_else(|| {
            format!("invalid key id {id:?}: use 1 to 64 characters of A-Z a-z 0-9 . _ -")
        })
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> Self {
        id.0
    }
}

impl KeyId {
    /// Longest id: ids appear in every log line, so they stay short.
    pub const MAX_LEN: usize = 64;

    /// Ids are 1 to 64 characters of `[A-Za-z0-9._-]`, safe in logs, file names and shells.
    pub fn parse(id: &str) -> Option<Self> {
        let ok = !id.is_empty()
            && id.len() <= Self::MAX_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn new_unchecked(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 digest of a key, written `sha256:<64 hex digits>` in key files.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    const PREFIX: &'static str = "sha256:";

    pub fn of(key: &[u8]) -> Self {
        Self(Sha256::digest(key).into())
    }

    /// Constant-time comparison: the time taken does not depend on where the digests differ.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, hex::encode(self.0))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for KeyHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_digits = s
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| format!("hash must start with {:?}", Self::PREFIX))?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut digest)
            .map_err(|_| "hash must be sha256: followed by 64 hex digits".to_owned())?;
        Ok(Self(digest))
    }
}

impl Serialize for KeyHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
