//! The auth crate's public behaviour: key format and redaction, key file round trips and
//! lifecycle (add, revoke, rotate), verification against env and file keys, header parsing.

use std::time::Duration;

use auth::{
    presented_key, ApiKey, AuthError, KeyFile, KeyFileError, KeyHash, KeyId, KeyStatus, KeyStore,
};
use time::OffsetDateTime;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[test]
fn generated_keys_are_long_random_and_redacted() {
    let a = ApiKey::generate();
    let b = ApiKey::generate();
    assert_ne!(a, b);
    assert!(a.expose().starts_with("det_"));
    assert_eq!(a.expose().len(), 4 + 64);
    let debug = format!("{a:?}");
    assert!(!debug.contains(a.expose()), "Debug leaks the key: {debug}");
    assert_eq!(debug, "ApiKey(<redacted>)");
    // A generated key is also a valid operator-supplied key.
    assert_eq!(ApiKey::parse(a.expose()).unwrap(), a);
}

#[test]
fn operator_keys_are_validated() {
    fn check(input: &str, ok: bool) {
        assert_eq!(ApiKey::parse(input).is_ok(), ok, "input {input:?}");
    }
    check("a-long-enough-shared-secret", true);
    check("x", true);
    check("", false);
    check("with space", false);
    check("tab\there", false);
    check("newline\n", false);
    check("ünïcode", false);
    check(&"k".repeat(1024), true);
    check(&"k".repeat(1025), false);
}

#[test]
fn key_ids_are_validated() {
    fn check(input: &str, ok: bool) {
        assert_eq!(KeyId::parse(input).is_some(), ok, "input {input:?}");
    }
    check("app", true);
    check("app-2.prod_eu", true);
    check("", false);
    check("has space", false);
    check("slash/", false);
    check("quote\"", false);
    check(&"a".repeat(64), true);
    check(&"a".repeat(65), false);
}

#[test]
fn hash_text_form_round_trips() {
    let key = ApiKey::parse("secret-value").unwrap();
    let text = key.hash().to_string();
    assert!(text.starts_with("sha256:"));
    assert_eq!(text.len(), 7 + 64);
    assert_eq!(text.parse::<KeyHash>().unwrap(), key.hash());
    assert!("md5:00".parse::<KeyHash>().is_err());
    assert!("sha256:zz".parse::<KeyHash>().is_err());
    assert!(format!("sha256:{}", "0".repeat(62))
        .parse::<KeyHash>()
        .is_err());
}

#[test]
fn key_file_stores_hashes_only_and_round_trips_through_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let mut file = KeyFile::load_or_default(&path).unwrap();
    assert!(file.records().is_empty());
    let app = file.add("app", None).unwrap();
    let ci = file
        .add("ci", Some(now() + Duration::from_secs(3600)))
        .unwrap();
    file.save(&path).unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(app.expose()) && !text.contains(ci.expose()));
    assert!(text.contains(&app.hash().to_string()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let record = &json["keys"][0];
    assert_eq!(record["id"], "app");
    assert!(record["created"].as_str().unwrap().ends_with('Z'));
    assert!(record["expires"].is_null() && record["revoked"].is_null());

    let loaded = KeyFile::load(&path).unwrap();
    assert_eq!(loaded, file);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "temp file left behind"
    );
}

#[cfg(unix)]
#[test]
fn saved_key_file_is_readable_by_its_group_only_and_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let mode_of = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode();
    let mut file = KeyFile::new();
    file.add("app", None).unwrap();
    file.save(&path).unwrap();
    // The service runs under another uid and reads the file through its group.
    assert_eq!(mode_of(&path) & 0o777, 0o640, "mode {:o}", mode_of(&path));

    // An operator's stricter choice survives the next save (a rename of a new file).
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    file.add("other", None).unwrap();
    file.save(&path).unwrap();
    assert_eq!(mode_of(&path) & 0o777, 0o600, "mode {:o}", mode_of(&path));
}

#[test]
fn key_file_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    assert!(matches!(
        KeyFile::load(&missing),
        Err(KeyFileError::Read { .. })
    ));

    fn check(json: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, json).unwrap();
        let err = KeyFile::load(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Parse { .. }), "{json}: {err}");
        assert!(err.to_string().contains("keys.json"));
    }
    check("");
    check("{");
    check("[]");
    check(r#"{"keys": [{"id": "a"}]}"#);
    check(
        r#"{"keys": [{"id": "bad id", "hash": "sha256:00", "created": "2026-01-01T00:00:00Z"}]}"#,
    );
    let hash = format!("sha256:{}", "ab".repeat(32));
    check(&format!(
        r#"{{"keys": [{{"id": "a", "hash": "{hash}", "created": "yesterday"}}]}}"#
    ));
    check(&format!(
        r#"{{"keys": [{{"id": "a", "hash": "{hash}", "created": "2026-01-01T00:00:00Z", "key": "x"}}]}}"#
    ));
}

#[test]
fn add_refuses_bad_reserved_and_duplicate_ids() {
    let mut file = KeyFile::new();
    file.add("app", None).unwrap();
    assert!(matches!(
        file.add("app", None),
        Err(KeyFileError::DuplicateId(_))
    ));
    assert!(matches!(
        file.add("env", None),
        Err(KeyFileError::ReservedId(_))
    ));
    assert!(matches!(
        file.add("a b", None),
        Err(KeyFileError::InvalidId(_))
    ));
    // Once revoked, the id can be reused.
    file.revoke("app").unwrap();
    file.add("app", None).unwrap();
}

#[test]
fn revoke_marks_every_record_of_the_id() {
    let mut file = KeyFile::new();
    let old = file.add("app", None).unwrap();
    let new = file.rotate("app", Duration::from_secs(3600)).unwrap();
    assert_eq!(file.revoke("app").unwrap(), 2);
    assert!(file
        .records()
        .iter()
        .all(|r| r.status() == KeyStatus::Revoked));
    assert!(matches!(
        file.revoke("app"),
        Err(KeyFileError::NoActiveKey(_))
    ));
    assert!(matches!(
        file.revoke("nobody"),
        Err(KeyFileError::NoActiveKey(_))
    ));
    let store = KeyStore::new(None, Some(&file));
    for key in [old, new] {
        assert!(matches!(
            store.verify(key.expose().as_bytes()),
            Err(AuthError::Revoked(_))
        ));
    }
}

#[test]
fn rotate_gives_the_old_key_an_overlap() {
    let mut file = KeyFile::new();
    let old = file.add("app", None).unwrap();
    let before = now();
    let new = file.rotate("app", Duration::from_secs(600)).unwrap();
    assert_ne!(old, new);
    let records = file.records();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.id.as_str() == "app"));
    let old_expires = records[0].expires.expect("old key gets an expiry");
    let expected = before + Duration::from_secs(600);
    assert!((old_expires - expected).abs() < time::Duration::seconds(2));
    assert_eq!(records[1].expires, None);

    let store = KeyStore::new(None, Some(&file));
    let in_overlap = before + Duration::from_secs(300);
    let after_overlap = before + Duration::from_secs(700);
    let id = |s: &str| KeyId::parse(s).unwrap();
    assert_eq!(
        store.verify_at(old.expose().as_bytes(), in_overlap),
        Ok(id("app"))
    );
    assert_eq!(
        store.verify_at(new.expose().as_bytes(), in_overlap),
        Ok(id("app"))
    );
    assert_eq!(
        store.verify_at(old.expose().as_bytes(), after_overlap),
        Err(AuthError::Expired(id("app")))
    );
    assert_eq!(
        store.verify_at(new.expose().as_bytes(), after_overlap),
        Ok(id("app"))
    );

    // A shorter second rotation shortens, never lengthens, an existing expiry.
    file.rotate("app", Duration::from_secs(60)).unwrap();
    assert!(file.records()[0].expires.unwrap() <= old_expires);
    assert!(matches!(
        file.rotate("nobody", Duration::ZERO),
        Err(KeyFileError::NoActiveKey(_))
    ));
}

#[test]
fn store_verifies_env_and_file_keys() {
    let env = ApiKey::parse("the-shared-env-key").unwrap();
    let mut file = KeyFile::new();
    let app = file.add("app", None).unwrap();
    let soon = file
        .add("soon", Some(now() + Duration::from_secs(60)))
        .unwrap();
    let gone = file
        .add("gone", Some(now() - Duration::from_secs(1)))
        .unwrap();
    let revoked = file.add("revoked", None).unwrap();
    file.revoke("revoked").unwrap();
    let store = KeyStore::new(Some(&env), Some(&file));
    assert_eq!(store.len(), 5);
    assert_eq!(store.active_count(), 3);
    let debug = format!("{store:?}");
    assert!(!debug.contains(env.expose()) && !debug.contains("sha256"));

    fn check(store: &KeyStore, presented: &[u8], expected: Result<&str, &str>) {
        let got = store.verify(presented);
        match expected {
            Ok(id) => assert_eq!(got.as_ref().map(|k| k.as_str()), Ok(id)),
            Err(reason) => assert_eq!(got.unwrap_err().reason(), reason),
        }
    }
    check(&store, env.expose().as_bytes(), Ok("env"));
    check(&store, app.expose().as_bytes(), Ok("app"));
    check(&store, soon.expose().as_bytes(), Ok("soon"));
    check(&store, gone.expose().as_bytes(), Err("expired"));
    check(&store, revoked.expose().as_bytes(), Err("revoked"));
    check(&store, b"", Err("unknown"));
    check(&store, b"the-shared-env-ke", Err("unknown"));
    check(&store, b"the-shared-env-key ", Err("unknown"));
    check(&store, &[0xff, 0xfe], Err("unknown"));

    let empty = KeyStore::new(None, None);
    assert!(empty.is_empty());
    check(&empty, env.expose().as_bytes(), Err("unknown"));
}

#[test]
fn store_loads_from_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let mut file = KeyFile::new();
    let key = file.add("app", None).unwrap();
    file.save(&path).unwrap();
    let store = KeyStore::load(None, Some(&path)).unwrap();
    assert_eq!(
        store.verify(key.expose().as_bytes()).unwrap().as_str(),
        "app"
    );
    std::fs::write(&path, "{broken").unwrap();
    assert!(KeyStore::load(None, Some(&path)).is_err());
}

#[test]
fn headers_yield_the_presented_key() {
    fn check(authorization: &[&str], x_api_key: &[&str], expected: Result<&str, &str>) {
        let auth: Vec<&[u8]> = authorization.iter().map(|v| v.as_bytes()).collect();
        let xkey: Vec<&[u8]> = x_api_key.iter().map(|v| v.as_bytes()).collect();
        let got = presented_key(&auth, &xkey);
        match expected {
            Ok(key) => assert_eq!(got, Ok(key.as_bytes()), "{authorization:?} {x_api_key:?}"),
            Err(reason) => assert_eq!(
                got.map_err(|e| e.reason()),
                Err(reason),
                "{authorization:?} {x_api_key:?}"
            ),
        }
    }
    check(&["Bearer k1"], &[], Ok("k1"));
    check(&["bearer k1"], &[], Ok("k1"));
    check(&["BEARER   k1  "], &[], Ok("k1"));
    check(&[], &["k1"], Ok("k1"));
    check(&[], &[" k1 "], Ok("k1"));
    check(&["Bearer k1"], &["k1"], Ok("k1"));
    check(&["Bearer k1"], &["k2"], Err("conflicting"));
    check(&["Bearer k1"], &["k12"], Err("conflicting"));
    check(&[], &[], Err("missing"));
    check(&["Basic dXNlcjpwYXNz"], &[], Err("malformed"));
    check(&["Bearer"], &[], Err("malformed"));
    check(&["Bearer "], &[], Err("malformed"));
    check(&["Bearerk1"], &[], Err("malformed"));
    check(&["Bearer k1 k2"], &[], Err("malformed"));
    check(&["k1"], &[], Err("malformed"));
    check(&[], &[""], Err("malformed"));
    check(&["Bearer k1", "Bearer k1"], &[], Err("malformed"));
    check(&[], &["k1", "k2"], Err("malformed"));
}
