//! [`KeyStore`]: every key the service accepts right now, and the constant-time check of a
//! presented key against all of them.

use std::path::Path;

use time::OffsetDateTime;

use crate::key::{ApiKey, KeyHash, KeyId};
use crate::keyfile::{KeyFile, KeyFileError, KeyRecord, KeyStatus};

/// The id under which the `DETECTOR_API_KEY` environment key is logged.
pub const ENV_KEY_ID: &str = "env";

/// Why a request was not authenticated. Every variant becomes the same 401 for the client; the
/// variant (never the key) goes to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no API key was presented")]
    Missing,
    #[error("the API key header is malformed: {0}")]
    Malformed(&'static str),
    #[error("Authorization and X-API-Key carry different keys")]
    Conflicting,
    #[error("the API key is not known")]
    Unknown,
    #[error("the API key {0} has expired")]
    Expired(KeyId),
    #[error("the API key {0} was revoked")]
    Revoked(KeyId),
}

impl AuthError {
    /// A short stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::Conflicting => "conflicting",
            AuthError::Unknown => "unknown",
            AuthError::Expired(_) => "expired",
            AuthError::Revoked(_) => "revoked",
        }
    }
}

#[derive(Clone)]
struct Entry {
    id: KeyId,
    hash: KeyHash,
    expires: Option<OffsetDateTime>,
    revoked: bool,
}

impl Entry {
    fn from_record(record: &KeyRecord) -> Self {
        Self {
            id: record.id.clone(),
            hash: record.hash,
            expires: record.expires,
            revoked: record.revoked.is_some(),
        }
    }

    fn status_at(&self, now: OffsetDateTime) -> KeyStatus {
        if self.revoked {
            KeyStatus::Revoked
        } else if self.expires.is_some_and(|expires| now >= expires) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

/// An immutable snapshot of the accepted keys. The service swaps a whole new store in on reload,
/// so a request always verifies against one consistent set.
#[derive(Clone, Default)]
pub struct KeyStore {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field(
                "ids",
                &self.entries.iter().map(|e| &e.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KeyStore {
    /// The environment key (id `env`) and/or the records of a key file.
    pub fn new(env_key: Option<&ApiKey>, key_file: Option<&KeyFile>) -> Self {
        let env_entry = env_key.map(|key| Entry {
            id: KeyId::new_unchecked(ENV_KEY_ID),
            hash: key.hash(),
            expires: None,
            revoked: false,
        });
        let file_entries = key_file
            .into_iter()
            .flat_map(|file| file.records().iter().map(Entry::from_record));
        Self {
            entries: env_entry.into_iter().chain(file_entries).collect(),
        }
    }

    /// Reads the key file (if any) and builds the store.
    pub fn load(env_key: Option<&ApiKey>, key_file: Option<&Path>) -> Result<Self, KeyFileError> {
        let file = key_file.map(KeyFile::load).transpose()?;
        Ok(Self::new(env_key, file.as_ref()))
    }

    /// Number of records, whatever their state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of keys accepted now.
    pub fn active_count(&self) -> usize {
        let now = OffsetDateTime::now_utc();
        self.entries
            .iter()
            .filter(|e| e.status_at(now) == KeyStatus::Active)
            .count()
    }

    pub fn verify(&self, presented: &[u8]) -> Result<KeyId, AuthError> {
        self.verify_at(presented, OffsetDateTime::now_utc())
    }

    /// Compares the presented key's SHA-256 with every record, each in constant time and without
    /// stopping at the first match, so timing reveals neither which record matched nor how much
    /// of a digest did. An active match wins over an expired or revoked one of the same key.
    pub fn verify_at(&self, presented: &[u8], now: OffsetDateTime) -> Result<KeyId, AuthError> {
        let presented = KeyHash::of(presented);
        let mut active = None;
        let mut inactive = None;
        for entry in &self.entries {
            if entry.hash.ct_eq(&presented) {
                match entry.status_at(now) {
                    KeyStatus::Active => {
                        active.get_or_insert(entry);
                    }
                    status => {
                        inactive.get_or_insert((entry, status));
                    }
                }
            }
        }
        match (active, inactive) {
            (Some(entry), _) => Ok(entry.id.clone()),
            (None, Some((entry, KeyStatus::Expired))) => Err(AuthError::Expired(entry.id.clone())),
            (None, Some((entry, _))) => Err(AuthError::Revoked(entry.id.clone())),
            (None, None) => Err(AuthError::Unknown),
        }
    }
}
