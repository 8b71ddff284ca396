//! The API key headers: `auth::presented_key` on arbitrary raw values of `Authorization` and
//! `X-API-Key` (any count, any bytes, as the service hands them over), then `KeyStore::verify`.
//!
//! Checked: no panic; a key found is non-empty, has no surrounding whitespace and is a slice of
//! what was sent; two different keys are never accepted at once; only the one configured key
//! verifies.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use auth::{presented_key, ApiKey, AuthError, KeyStore};
use libfuzzer_sys::fuzz_target;

const KNOWN_KEY: &str = "det_fuzz_known_key_0123456789abcdef";

#[derive(Debug, Arbitrary)]
struct Headers {
    authorization: Vec<Vec<u8>>,
    x_api_key: Vec<Vec<u8>>,
}

fn store() -> &'static KeyStore {
    static STORE: OnceLock<KeyStore> = OnceLock::new();
    STORE.get_or_init(|| KeyStore::new(Some(&ApiKey::parse(KNOWN_KEY).unwrap()), None))
}

fn is_within(part: &[u8], whole: &[u8]) -> bool {
    let (start, end) = (whole.as_ptr() as usize, whole.as_ptr() as usize + whole.len());
    let p = part.as_ptr() as usize;
    p >= start && p + part.len() <= end
}

fuzz_target!(|headers: Headers| {
    let authorization: Vec<&[u8]> = headers.authorization.iter().map(Vec::as_slice).collect();
    let x_api_key: Vec<&[u8]> = headers.x_api_key.iter().map(Vec::as_slice).collect();
    match presented_key(&authorization, &x_api_key) {
        Ok(key) => {
            assert!(!key.is_empty());
            assert_eq!(key, key.trim_ascii(), "whitespace around the key");
            assert!(authorization.len() <= 1 && x_api_key.len() <= 1, "a repeated header was accepted");
            assert!(
                authorization.iter().chain(&x_api_key).any(|v| is_within(key, v)),
                "the key is not a slice of a header value"
            );
            match store().verify(key) {
                Ok(id) => {
                    assert_eq!(key, KNOWN_KEY.as_bytes(), "another key verified");
                    assert_eq!(id.as_str(), auth::ENV_KEY_ID);
                }
                Err(error) => {
                    assert_ne!(key, KNOWN_KEY.as_bytes(), "the known key was refused");
                    assert_eq!(error, AuthError::Unknown);
                }
            }
        }
        Err(AuthError::Missing) => assert!(authorization.is_empty() && x_api_key.is_empty()),
        Err(AuthError::Malformed(_) | AuthError::Conflicting) => {}
        Err(other) => panic!("header parsing returned {other:?}"),
    }
    // ApiKey::parse is the other door for a key (environment, flags): it must never panic, and
    // what it accepts is visible ASCII only.
    for value in headers.authorization.iter().chain(&headers.x_api_key) {
        if let Ok(text) = std::str::from_utf8(value) {
            if let Ok(key) = ApiKey::parse(text) {
                assert!(key.expose().bytes().all(|b| b.is_ascii_graphic()));
            }
        }
    }
});
