//! The keys in force, swappable at runtime: a SIGHUP re-reads the key file and swaps in a whole
//! new `KeyStore`. Requests that already passed auth are unaffected; a key file that fails to load
//! leaves the previous keys in force.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use auth::{ApiKey, KeyFileError, KeyStore};

pub struct KeyRing {
    env_key: Option<ApiKey>,
    key_file: Option<PathBuf>,
    current: RwLock<Arc<KeyStore>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("no API key is configured: set DETECTOR_API_KEY and/or DETECTOR_KEY_FILE")]
    NoKeySource,
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
}

impl KeyRing {
    pub fn load(env_key: Option<ApiKey>, key_file: Option<PathBuf>) -> Result<Self, KeyRingError> {
        if env_key.is_none() && key_file.is_none() {
            // An open service is never the default: refuse to start without a key.
            return Err(KeyRingError::NoKeySource);
        }
        let store = KeyStore::load(env_key.as_ref(), key_file.as_deref())?;
        Ok(Self {
            env_key,
            key_file,
            current: RwLock::new(Arc::new(store)),
        })
    }

    /// The store to verify a request against: a snapshot, so a concurrent reload cannot change
    /// the keys halfway through a check.
    pub fn snapshot(&self) -> Arc<KeyStore> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc; the Arc is intact.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Re-reads the key file; on failure the old keys stay in force and the error is returned.
    pub fn reload(&self) -> Result<Arc<KeyStore>, KeyFileError> {
        let store = Arc::new(KeyStore::load(
            self.env_key.as_ref(),
            self.key_file.as_deref(),
        )?);
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = store.clone();
        Ok(store)
    }

    pub fn key_file(&self) -> Option<&std::path::Path> {
        self.key_file.as_deref()
    }
}
