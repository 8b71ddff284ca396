//! The key life cycle against the real service: a new key works after the reload, a revoked key
//! gets 401 while the others keep working and no request in flight fails, a rotated client has
//! two working keys during the overlap and one after it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn keys(args: &[&str], key_file: &str) -> std::process::Output {
    let mut all = vec!["keys"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--key-file", key_file]);
    ctl(&all, &[])
}

/// Runs `keys new|rotate` and returns the key it printed (stdout holds the key alone).
fn issued_key(args: &[&str], key_file: &str) -> String {
    let out = keys(args, key_file);
    assert!(out.status.success(), "keys {args:?}: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "stdout must be the key alone: {text:?}");
    assert!(lines[0].starts_with("det_"), "{text:?}");
    lines[0].to_owned()
}

/// Polls (bounded) until `key` gets `status` on /healthz: SIGHUP is handled asynchronously.
fn wait_status(service: &Service, key: &str, status: u16) {
    let url = format!("{}/healthz", service.url());
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while Instant::now() < deadline {
        last = curl_status(&url, Some(key));
        if last == Some(status) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "key never got {status} (last {last:?}); log:\n{}",
        service.log_text()
    );
}

#[test]
fn new_revoke_and_rotate_reach_the_running_service() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("keys.json");
    let kf = key_file.to_str().unwrap();

    // The first `new` creates the file; it holds hashes only.
    let alice = issued_key(&["new", "alice"], kf);
    let bob = issued_key(&["new", "bob", "--expires", "2099-01-01"], kf);
    let stored = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        !stored.contains(&alice) && !stored.contains(&bob),
        "{stored}"
    );
    // One active key per client: a second `new` is refused (rotate instead).
    let duplicate = keys(&["new", "alice"], kf);
    assert_eq!(duplicate.status.code(), Some(2));
    assert!(stdout(&duplicate).is_empty());

    let service = Service::start(dir.path(), &[("DETECTOR_KEY_FILE", kf.to_owned())]);
    let pid = service.pid().to_string();
    wait_status(&service, &alice, 200);
    wait_status(&service, &bob, 200);
    assert_eq!(
        curl_status(&format!("{}/healthz", service.url()), None),
        Some(401)
    );

    // A new key while the service runs: it works once the service has been told.
    let carol = issued_key(&["new", "carol", "--pid", &pid], kf);
    wait_status(&service, &carol, 200);

    // Without a reload target the change is saved, the service is not told, and the command
    // says so plainly.
    let dave_out = keys(&["new", "dave"], kf);
    assert!(dave_out.status.success());
    assert!(
        stderr(&dave_out).contains("detector-stack-compose kill -s HUP detector"),
        "{}",
        stderr(&dave_out)
    );
    let dave = stdout(&dave_out).trim().to_owned();
    assert_eq!(
        curl_status(&format!("{}/healthz", service.url()), Some(&dave)),
        Some(401)
    );

    // Revoke alice while bob's requests are in flight: none of them may fail.
    let mut load = Command::new(ctl_binary())
        .args(["bench", "--url", &service.url(), "--key-env", "BOB_KEY"])
        .args(["--requests", "8", "--concurrency", "2", "--json"])
        .env("BOB_KEY", &bob)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let revoke = keys(&["revoke", "alice", "--pid", &pid], kf);
    assert!(revoke.status.success(), "{}", stderr(&revoke));
    assert!(
        stderr(&revoke).contains("Sent SIGHUP"),
        "{}",
        stderr(&revoke)
    );
    wait_status(&service, &alice, 401);
    wait_status(&service, &bob, 200);
    wait_status(&service, &carol, 200);
    let deadline = Instant::now() + Duration::from_secs(300);
    while load.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "bench did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    let load = load.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&load.stdout)
        .unwrap_or_else(|e| panic!("bench JSON ({e}): {}", stderr(&load)));
    assert_eq!(report["requests"], 8, "{report}");
    assert_eq!(report["status"]["200"], 8, "{report}");

    // Rotate bob: both keys work during the overlap, only the new one after it.
    let bob2 = issued_key(&["rotate", "bob", "--overlap", "8s", "--pid", &pid], kf);
    wait_status(&service, &bob2, 200);
    wait_status(&service, &bob, 200);
    wait_status(&service, &bob, 401);
    wait_status(&service, &bob2, 200);

    // `list` shows every record and never a key.
    let list = keys(&["list"], kf);
    assert!(list.status.success());
    let table = stdout(&list);
    for key in [&alice, &bob, &bob2, &carol, &dave] {
        assert!(
            !table.contains(key.as_str()),
            "list printed a key:\n{table}"
        );
    }
    assert!(
        table.contains("alice") && table.contains("revoked"),
        "{table}"
    );
    let json: Value = serde_json::from_slice(&keys(&["list", "--json"], kf).stdout).unwrap();
    let bobs: Vec<&Value> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"] == "bob")
        .collect();
    assert_eq!(bobs.len(), 2, "{json}");
    assert_eq!(
        bobs.iter().filter(|r| r["status"] == "active").count(),
        1,
        "{json}"
    );
}

#[test]
fn keys_commands_refuse_what_they_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let kf = dir.path().join("keys.json");
    let kf = kf.to_str().unwrap();
    let check = |args: &[&str], message: &str| {
        let out = keys(args, kf);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stdout(&out).is_empty(), "{args:?} printed {}", stdout(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    };
    // `generate` stores nothing: a key for DETECTOR_API_KEY.
    let generated = ctl(&["keys", "generate"], &[]);
    assert!(generated.status.success());
    assert!(stdout(&generated).trim().starts_with("det_"));
    assert!(!std::path::Path::new(kf).exists());
    let no_file = ctl(&["keys", "list"], &[]);
    assert_eq!(no_file.status.code(), Some(2));
    assert!(
        stderr(&no_file).contains("no key file"),
        "{}",
        stderr(&no_file)
    );
    check(&["list"], "cannot read key file");
    check(&["revoke", "nobody"], "cannot read key file");
    issued_key(&["new", "app"], kf);
    check(&["revoke", "nobody"], "has no active key");
    check(&["rotate", "nobody"], "has no active key");
    check(&["new", "bad id!"], "invalid key id");
    check(&["new", "app"], "already has an active key");
    // A bad reload target is found before the file changes: no key issued, none lost.
    check(&["new", "app2", "--pid", "0"], "not a single process");
    let missing_pid_file = dir.path().join("none.pid");
    check(
        &[
            "new",
            "app2",
            "--pid-file",
            missing_pid_file.to_str().unwrap(),
        ],
        "reading --pid-file",
    );
    assert!(!std::fs::read_to_string(kf).unwrap().contains("app2"));

    // --compose-service runs `COMPOSE kill -s HUP SERVICE`; a stand-in compose records it.
    let record = dir.path().join("compose-args");
    let compose = dir.path().join("compose");
    std::fs::write(
        &compose,
        format!("#!/bin/sh\necho \"$*\" > {}\n", record.display()),
    )
    .unwrap();
    std::fs::set_permissions(&compose, std::fs::Permissions::from_mode(0o755)).unwrap();
    let compose = compose.to_str().unwrap();
    issued_key(
        &[
            "new",
            "app3",
            "--compose-service",
            "detector",
            "--compose-cmd",
            compose,
        ],
        kf,
    );
    assert_eq!(
        std::fs::read_to_string(&record).unwrap().trim(),
        "kill -s HUP detector"
    );
    // A reload that fails after the save: the key is still printed (it exists now), and the
    // command fails saying the service was not told.
    let failing = keys(
        &[
            "new",
            "app4",
            "--compose-service",
            "detector",
            "--compose-cmd",
            "false",
        ],
        kf,
    );
    assert_eq!(failing.status.code(), Some(2));
    assert!(stdout(&failing).starts_with("det_"));
    assert!(
        stderr(&failing).contains("the key file is saved but the service was not reloaded"),
        "{}",
        stderr(&failing)
    );
}
