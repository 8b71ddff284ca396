//! `detectorctl bench` against the real service: it sends exactly the requests it was told to and
//! counts every status, including the 503s of a service with one inference slot.

mod common;

use common::*;
use serde_json::Value;

fn bench(service: &Service, key: &str, args: &[&str]) -> Value {
    let url = service.url();
    let mut all = vec![
        "bench",
        "--url",
        url.as_str(),
        "--key-env",
        "TEST_BENCH_KEY",
        "--json",
    ];
    all.extend_from_slice(args);
    let out = ctl(&all, &[("TEST_BENCH_KEY", key)]);
    assert!(out.status.success(), "bench {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bench printed no JSON ({e}): {}", stdout(&out)))
}

fn count(report: &Value, status: &str) -> u64 {
    report["status"][status]
        .as_u64()
        .unwrap_or_else(|| panic!("{status} in {report}"))
}

/// Every request is counted once, in exactly one bucket.
fn assert_adds_up(report: &Value) {
    let sum: u64 = ["200", "429", "503", "other", "errors"]
        .iter()
        .map(|s| count(report, s))
        .sum();
    assert_eq!(report["requests"].as_u64(), Some(sum), "{report}");
}

#[test]
fn bench_respects_its_bounds_and_counts_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &[
            ("DETECTOR_API_KEY", "bench-key".into()),
            ("DETECTOR_MAX_CONCURRENT_JOBS", "1".into()),
        ],
    );

    // One at a time against one slot: exactly N, all scored.
    let serial = bench(
        &service,
        "bench-key",
        &["--requests", "3", "--concurrency", "1"],
    );
    assert_eq!(serial["requests"], 3, "{serial}");
    assert_eq!(count(&serial, "200"), 3, "{serial}");
    assert_adds_up(&serial);
    assert!(
        serial["latency_200"]["p99_ms"].as_f64().unwrap() > 0.0,
        "{serial}"
    );

    // Four workers against one slot: still exactly N, and the refusals are counted as 503.
    let crowded = bench(
        &service,
        "bench-key",
        &["--requests", "12", "--concurrency", "4"],
    );
    assert_eq!(crowded["requests"], 12, "{crowded}");
    assert!(count(&crowded, "200") >= 1, "{crowded}");
    assert!(count(&crowded, "503") >= 1, "{crowded}");
    assert_eq!(
        count(&crowded, "200") + count(&crowded, "503"),
        12,
        "{crowded}"
    );
    assert_adds_up(&crowded);

    // A wrong key: every answer is a 401, counted under "other" and by code.
    let denied = bench(
        &service,
        "wrong-key",
        &["--requests", "3", "--concurrency", "2"],
    );
    assert_eq!(count(&denied, "other"), 3, "{denied}");
    assert_eq!(denied["other_statuses"]["401"], 3, "{denied}");
    assert_adds_up(&denied);

    // A duration bound: it stops by itself, and every request is accounted for.
    let timed = bench(
        &service,
        "bench-key",
        &["--duration", "1", "--concurrency", "2"],
    );
    assert!(timed["requests"].as_u64().unwrap() >= 1, "{timed}");
    assert_adds_up(&timed);

    // Both bounds: whichever comes first; --requests caps it.
    let both = bench(
        &service,
        "bench-key",
        &["--duration", "60", "--requests", "2", "--concurrency", "2"],
    );
    assert_eq!(both["requests"], 2, "{both}");
}

#[test]
fn bench_reports_connection_errors_and_needs_a_bound() {
    let port = free_port().to_string();
    let url = format!("http://127.0.0.1:{port}");
    let out = ctl(
        &[
            "bench",
            "--url",
            &url,
            "--key-env",
            "K",
            "--requests",
            "3",
            "--concurrency",
            "2",
            "--json",
        ],
        &[("K", "x")],
    );
    // Nothing answered: the run failed, and says how.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(count(&report, "errors"), 3, "{report}");
    assert!(
        report["first_error"].as_str().unwrap().contains("onnect"),
        "{report}"
    );

    let unbounded = ctl(&["bench", "--url", &url, "--key-env", "K"], &[("K", "x")]);
    assert_eq!(unbounded.status.code(), Some(2));
    assert!(
        stderr(&unbounded).contains("--duration"),
        "{}",
        stderr(&unbounded)
    );
}
