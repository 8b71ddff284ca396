//! API keys for the scoring service: generate, hash, store as hashes in a key file, and verify a
//! presented key in constant time.
//!
//! This crate knows nothing of HTTP frameworks: the service hands it raw header bytes and gets back
//! the id of the key that matched (the only thing about a key that may be logged) or an
//! [`AuthError`].
//!
//! Keys are high-entropy random strings, so a single SHA-256 is the right hash: there is nothing
//! for a slow password hash to protect against, and verification stays cheap enough to run on
//! every request.
#![forbid(unsafe_code)]

mod header;
mod key;
mod keyfile;
mod store;

pub use header::presented_key;
pub use key::{ApiKey, InvalidApiKey, KeyHash, KeyId};
pub use keyfile::{KeyFile, KeyFileError, KeyRecord, KeyStatus};
pub use store::{AuthError, KeyStore, ENV_KEY_ID};
