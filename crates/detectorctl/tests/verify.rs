//! `detectorctl verify` names the broken row: against the real service (a wrong key, a port left
//! open, a missing redirect), against throwaway TLS servers (an expiring certificate, a wrong
//! name, TLS 1.0 accepted) and with stand-in host tools (`--host`). The passing run through
//! nginx with TLS lives in tests/ops/test_verify.py.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

/// Rows that need the HTTP service; left out where a test only serves TLS.
const HTTP_ROWS: &str = "http-redirect,healthz-no-key,healthz-key,score,metrics-hidden,scanner-404";

#[test]
fn service_rows_fail_on_a_wrong_key_an_open_port_and_a_missing_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &[("DETECTOR_API_KEY", "verify-key-1".into())]);
    let url = service.url();
    let open = service.port.to_string();
    let closed = free_port().to_string();
    let ports = format!("{open},{closed}");
    let args = [
        "verify",
        "--url",
        &url,
        "--http-url",
        &url,
        "--closed-ports",
        &ports,
        "--key-env",
        "TEST_VERIFY_KEY",
        "--json",
    ];

    let good = ctl(&args, &[("TEST_VERIFY_KEY", "verify-key-1")]);
    assert_eq!(good.status.code(), Some(1), "{}", stderr(&good));
    for (row, outcome) in [
        ("healthz-no-key", "ok"),
        ("healthz-key", "ok"),
        ("score", "ok"),
        ("metrics-hidden", "ok"),
        // The service itself answers on the "HTTP side": no redirect there.
        ("http-redirect", "fail"),
        (format!("port-closed:{open}").as_str(), "fail"),
        (format!("port-closed:{closed}").as_str(), "ok"),
        // Plain http:// URL: the TLS rows cannot pass.
        ("cert-name", "fail"),
    ] {
        assert_row(&good, row, outcome);
    }

    let wrong = ctl(&args, &[("TEST_VERIFY_KEY", "not-the-key")]);
    assert_eq!(wrong.status.code(), Some(1));
    assert_row(&wrong, "healthz-no-key", "ok");
    assert_row(&wrong, "healthz-key", "fail");
    assert_row(&wrong, "score", "fail");

    // The table names the failing row and says where to look.
    let table = ctl(
        &args[..args.len() - 1],
        &[("TEST_VERIFY_KEY", "not-the-key")],
    );
    let text = stdout(&table);
    assert!(
        text.contains("healthz-key") && text.contains("FAIL"),
        "{text}"
    );
    assert!(text.contains("look at:"), "{text}");
    assert!(
        !text.contains("not-the-key"),
        "verify printed the key:\n{text}"
    );
}

/// One TLS case: the server's certificate and flags, and the rows expected.
fn check_tls(pki: &Pki, name: &str, days: u32, server_flags: &[&str], expected: &[(&str, &str)]) {
    let (cert, key) = pki.issue(name, days);
    let (_server, port) = tls_server(&cert, &key, server_flags);
    let url = format!("https://detector.test:{port}");
    let ca = pki.ca.to_str().unwrap();
    let out = ctl(
        &[
            "verify",
            "--url",
            &url,
            "--connect-to",
            "127.0.0.1",
            "--ca-file",
            ca,
            "--closed-ports",
            "1",
            "--skip",
            HTTP_ROWS,
            "--json",
        ],
        &[],
    );
    let all_ok = expected.iter().all(|(_, o)| *o == "ok");
    assert_eq!(
        out.status.success(),
        all_ok,
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    for (row, outcome) in expected {
        assert_row(&out, row, outcome);
    }
}

#[test]
fn tls_rows_fail_on_an_expiring_certificate_a_wrong_name_and_old_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let good = [
        ("cert-name", "ok"),
        ("cert-days", "ok"),
        ("tls1.0-refused", "ok"),
        ("tls1.1-refused", "ok"),
        ("port-closed:1", "ok"),
    ];
    check_tls(&pki, "detector.test", 90, &[], &good);
    check_tls(
        &pki,
        "detector.test",
        5,
        &[],
        &[("cert-name", "ok"), ("cert-days", "fail")],
    );
    check_tls(
        &pki,
        "other.test",
        90,
        &[],
        &[("cert-name", "fail"), ("cert-days", "ok")],
    );
    // Security level 0: the server would otherwise refuse TLS 1.0 on its own.
    check_tls(
        &pki,
        "detector.test",
        90,
        &["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"],
        &[("tls1.0-refused", "fail"), ("tls1.1-refused", "ok")],
    );
}

#[test]
fn the_min_cert_days_threshold_is_the_operators() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (cert, key) = pki.issue("detector.test", 5);
    let (_server, port) = tls_server(&cert, &key, &[]);
    let url = format!("https://detector.test:{port}");
    let run = |min: &str| {
        ctl(
            &[
                "verify",
                "--url",
                &url,
                "--connect-to",
                "127.0.0.1",
                "--ca-file",
                pki.ca.to_str().unwrap(),
                "--closed-ports",
                "1",
                "--skip",
                HTTP_ROWS,
                "--min-cert-days",
                min,
                "--json",
            ],
            &[],
        )
    };
    assert_row(&run("14"), "cert-days", "fail");
    assert_row(&run("3"), "cert-days", "ok");
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_owned()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(require_tool("git"))
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[test]
fn host_rows_come_from_the_tools_and_fail_by_name_when_one_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A deployed checkout with one commit.
    let checkout = d.join("checkout");
    std::fs::create_dir_all(checkout.join("compose")).unwrap();
    std::fs::write(checkout.join("compose/compose.yaml"), "services: {}\n").unwrap();
    git(&checkout, &["init", "-q"]);
    git(&checkout, &["add", "."]);
    git(&checkout, &["commit", "-q", "-m", "deploy"]);
    let head = git(&checkout, &["rev-parse", "HEAD"]);

    let log = d.join("scoring.log");
    std::fs::write(&log, "127.0.0.1 - - \"POST /score HTTP/1.1\" 200\n").unwrap();
    let fail2ban = script(
        d,
        "fail2ban-client",
        "printf 'Status\\n|- Number of jail:\\t3\\n`- Jail list:\\tdetector-auth, detector-botsearch, sshd\\n'",
    );
    let systemctl = script(
        d,
        "systemctl",
        "[ \"$2\" = certbot-renew.timer ] && echo enabled",
    );
    let compose = script(
        d,
        "compose",
        "[ \"$1 $2\" = 'ps -q' ] && printf 'c1\\nc2\\n'",
    );
    let inspect = format!(
        r#"[{{"Config":{{"Labels":{{"com.docker.compose.service":"nginx"}}}},"State":{{"Status":"running"}}}},
{{"Config":{{"Labels":{{"com.docker.compose.service":"detector","org.opencontainers.image.revision":"{head}"}}}},"State":{{"Status":"running","Health":{{"Status":"healthy"}}}}}}]"#
    );
    std::fs::write(d.join("inspect.json"), inspect).unwrap();
    let docker = script(
        d,
        "docker",
        &format!(
            "[ \"$*\" = 'inspect c1 c2' ] && cat {}",
            d.join("inspect.json").display()
        ),
    );

    let run = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--url",
            "http://127.0.0.1:1",
            "--closed-ports",
            "1",
            "--json",
            "--host",
            "--access-log",
            log.to_str().unwrap(),
            "--checkout",
            checkout.to_str().unwrap(),
            "--fail2ban-client",
            &fail2ban,
            "--systemctl",
            &systemctl,
            "--compose-cmd",
            &compose,
            "--docker",
            &docker,
        ];
        args.extend_from_slice(extra);
        ctl(&args, &[])
    };
    let host_rows = [
        "access-log",
        "fail2ban-jails",
        "renew-timer",
        "compose-services",
        "image-revision",
    ];

    let good = run(&[]);
    for row in host_rows {
        assert_row(&good, row, "ok");
    }

    // A tracked file edited after the deploy: the image no longer matches the tree.
    std::fs::write(checkout.join("compose/compose.yaml"), "services: {x: {}}\n").unwrap();
    assert_row(&run(&[]), "image-revision", "fail");
    git(&checkout, &["commit", "-q", "-am", "drift"]);
    let moved = run(&[]);
    assert_row(&moved, "image-revision", "fail");
    assert!(
        rows(&moved)
            .iter()
            .any(|(_, _, d)| d.contains("image built from")),
        "{:#?}",
        rows(&moved)
    );

    // A jail that is not active, a log nobody writes to.
    let missing_jail = run(&["--jails", "sshd,detector-auth,recidive"]);
    assert_row(&missing_jail, "fail2ban-jails", "fail");
    let touched = Command::new(require_tool("touch"))
        .args(["-d", "1 hour ago"])
        .arg(&log)
        .status()
        .unwrap();
    assert!(touched.success());
    assert_row(&run(&[]), "access-log", "fail");
    let absent = run(&["--access-log", d.join("nope.log").to_str().unwrap()]);
    assert_row(&absent, "access-log", "fail");

    // No such tools on this machine: each row fails and names its tool; nothing crashes.
    let gone = d.join("gone");
    let gone = gone.to_str().unwrap();
    let f2b = format!("{gone}/fail2ban-client");
    let sctl = format!("{gone}/systemctl");
    let dc = format!("{gone}/docker-compose");
    let missing = run(&[
        "--fail2ban-client",
        &f2b,
        "--systemctl",
        &sctl,
        "--compose-cmd",
        &dc,
    ]);
    assert_eq!(missing.status.code(), Some(1));
    for (row, tool) in [
        ("fail2ban-jails", "fail2ban-client"),
        ("renew-timer", "systemctl"),
        ("compose-services", "docker-compose"),
    ] {
        assert_row(&missing, row, "fail");
        let detail = rows(&missing).into_iter().find(|r| r.0 == row).unwrap().2;
        assert!(
            detail.contains(tool) && detail.contains("not found"),
            "{row}: {detail}"
        );
    }
}
