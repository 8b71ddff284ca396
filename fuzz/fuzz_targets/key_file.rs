//! The key file (`DETECTOR_KEY_FILE`, re-read on SIGHUP): `auth::KeyFile::from_json` on arbitrary
//! bytes, the way `KeyFile::load` reads it.
//!
//! Checked: no panic in parsing, in writing back (`to_json` has an `expect`) or in building and
//! querying a `KeyStore`; what was accepted is written back to a file that parses to the same
//! records.
#![no_main]

use auth::{KeyFile, KeyStore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(file) = KeyFile::from_json(bytes) else {
        return;
    };
    let written = file.to_json();
    let again = KeyFile::from_json(written.as_bytes())
        .unwrap_or_else(|e| panic!("written key file does not parse: {e}\n{written}"));
    assert_eq!(again, file, "records changed through a write and a read");
    for record in file.records() {
        let _ = record.status();
    }
    let store = KeyStore::new(None, Some(&file));
    assert_eq!(store.len(), file.records().len());
    let _ = store.active_count();
    let _ = store.verify(bytes);
});
