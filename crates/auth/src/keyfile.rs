//! The key file: named keys stored as hashes, with optional expiry and a revoked state.
//!
//! ```json
//! {"keys": [{"id": "app", "hash": "sha256:<hex>", "created": "2026-01-01T00:00:00Z",
//!            "expires": null, "revoked": null}]}
//! ```
//! Several records may share an id: during a rotation the old and the new key are both valid
//! until the old one expires.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::key::{ApiKey, KeyHash, KeyId};
use crate::store::ENV_KEY_ID;

/// Mode of a key file written for the first time: the owner writes, the service's group reads.
/// It holds hashes only, but nobody else has a reason to read it.
const NEW_FILE_MODE: u32 = 0o640;

/// One key as stored: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub id: KeyId,
    pub hash: KeyHash,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// The key stops being accepted at this instant.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
    /// When the key was revoked; a revoked key is never accepted again.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked: Option<OffsetDateTime>,
}

/// Whether a record's key is accepted at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        }
    }
}

impl KeyRecord {
    pub fn status_at(&self, now: OffsetDateTime) -> KeyStatus {
        if self.revoked.is_some() {
            KeyStatus::Revoked
        } else if self.expires.is_some_and(|expires| now >= expires) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    pub fn status(&self) -> KeyStatus {
        self.status_at(OffsetDateTime::now_utc())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("key file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("invalid key id {0:?}: use 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    InvalidId(String),
    #[error("key id {0:?} is reserved for the DETECTOR_API_KEY environment key")]
    ReservedId(String),
    #[error("key id {0:?} already has an active key; rotate it instead")]
    DuplicateId(String),
    #[error("key id {0:?} has no active key")]
    NoActiveKey(String),
}

/// The parsed key file. Load, change with [`add`](Self::add), [`revoke`](Self::revoke) or
/// [`rotate`](Self::rotate), then [`save`](Self::save).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    keys: Vec<KeyRecord>,
}

impl KeyFile {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read(path).map_err(|source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text).map_err(|source| KeyFileError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Like [`load`](Self::load), but a file that does not exist yet is an empty key file (the
    /// first `keys new` creates it).
    pub fn load_or_default(path: &Path) -> Result<Self, KeyFileError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::new()),
            _ => Self::load(path),
        }
    }

    pub fn from_json(text: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(text)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain strings and timestamps cannot fail.
        let mut json = serde_json::to_string_pretty(self).expect("key file serializes");
        json.push('\n');
        json
    }

    /// Writes atomically: a temporary file in the same directory, flushed to disk, then renamed
    /// over `path`. The new file keeps the old one's mode (0640 for a first file): the service
    /// reads it through its group, which the key directory's setgid bit hands down. A reader (the service on SIGHUP) sees the old or the new file,
    /// never half of one.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let write_error = |source| KeyFileError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(write_error)?;
        let permissions = match std::fs::metadata(path) {
            Ok(existing) => existing.permissions(),
            Err(_) => std::fs::Permissions::from_mode(NEW_FILE_MODE),
        };
        temp.as_file()
            .set_permissions(permissions)
            .map_err(write_error)?;
        temp.write_all(self.to_json().as_bytes())
            .map_err(write_error)?;
        temp.as_file().sync_all().map_err(write_error)?;
        temp.persist(path).map_err(|e| write_error(e.error))?;
        // Make the rename itself durable; failure here leaves a correct file, so it is ignored.
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    pub fn records(&self) -> &[KeyRecord] {
        &self.keys
    }

    /// Creates a key named `id`, stores its hash and returns the key: the only time it is seen.
    pub fn add(
        &mut self,
        id: &str,
        expires: Option<OffsetDateTime>,
    ) -> Result<ApiKey, KeyFileError> {
        let now = now_whole_seconds();
        let id = Self::new_id(id)?;
        if self.active_records(&id, now).next().is_some() {
            return Err(KeyFileError::DuplicateId(id.to_string()));
        }
        Ok(self.push_new(id, now, expires))
    }

    /// Revokes every record of `id`; returns how many were newly revoked.
    pub fn revoke(&mut self, id: &str) -> Result<usize, KeyFileError> {
        let now = now_whole_seconds();
        let mut revoked = 0;
        for record in self.keys.iter_mut().filter(|r| r.id.as_str() == id) {
            if record.revoked.is_none() {
                record.revoked = Some(now);
                revoked += 1;
            }
        }
        if revoked == 0 {
            return Err(KeyFileError::NoActiveKey(id.to_owned()));
        }
        Ok(revoked)
    }

    /// Issues a new key for `id` and lets the active old one(s) live for `overlap` more (an
    /// earlier expiry is kept), so clients can switch without a failed request.
    pub fn rotate(&mut self, id: &str, overlap: Duration) -> Result<ApiKey, KeyFileError> {
        let now = now_whole_seconds();
        let id = KeyId::parse(id).ok_or_else(|| KeyFileError::InvalidId(id.to_owned()))?;
        let old_expires = now + overlap;
        let mut any_active = false;
        for record in self.keys.iter_mut() {
            if record.id == id && record.status_at(now) == KeyStatus::Active {
                any_active = true;
                record.expires = Some(record.expires.map_or(old_expires, |e| e.min(old_expires)));
            }
        }
        if !any_active {
            return Err(KeyFileError::NoActiveKey(id.to_string()));
        }
        Ok(self.push_new(id, now, None))
    }

    fn new_id(id: &str) -> Result<KeyId, KeyFileError> {
        if id == ENV_KEY_ID {
            return Err(KeyFileError::ReservedId(id.to_owned()));
        }
        KeyId::parse(id).ok_or_else(|| KeyFileError::InvalidId(id.to_owned()))
    }

    fn active_records<'a>(
        &'a self,
        id: &'a KeyId,
        now: OffsetDateTime,
    ) -> impl Iterator<Item = &'a KeyRecord> + 'a {
        self.keys
            .iter()
            .filter(move |r| &r.id == id && r.status_at(now) == KeyStatus::Active)
    }

    fn push_new(
        &mut self,
        id: KeyId,
        now: OffsetDateTime,
        expires: Option<OffsetDateTime>,
    ) -> ApiKey {
        let key = ApiKey::generate();
        self.keys.push(KeyRecord {
            id,
            hash: key.hash(),
            created: now,
            expires,
            revoked: None,
        });
        key
    }
}

/// Whole seconds keep the file readable; nothing here needs sub-second precision.
fn now_whole_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}
