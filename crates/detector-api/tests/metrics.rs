//! /metrics on its own port: each request counted exactly once, by route and status, with
//! rejections by reason, tokens, inference timings and build info.

mod common;

use common::{json, ServerBuilder, ENV_KEY, TEXT};

#[tokio::test]
async fn each_request_is_counted_once() {
    let server = ServerBuilder::new().start().await;
    let before = server.scrape().await;
    assert_eq!(
        before.get("detector_http_requests_total", &[]),
        1.0,
        "the readiness probe"
    );
    assert_eq!(before.get("detector_inference_job_slots", &[]), 4.0);
    assert_eq!(before.get("detector_inference_jobs_in_flight", &[]), 0.0);
    assert!(before.get("detector_model_load_seconds", &[]) > 0.0);
    let revision = option_env!("DETECTOR_REVISION").unwrap_or("unknown");
    assert_eq!(
        before.get(
            "detector_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", revision),
                ("model", "tiny")
            ]
        ),
        1.0
    );

    for _ in 0..3 {
        assert_eq!(server.healthz(ENV_KEY).await.status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(server.healthz("wrong-key").await.status(), 401);
    }
    let scored = server.score(ENV_KEY, TEXT).await;
    assert_eq!(scored.status(), 200);
    let tokens = json(scored).await["tokens"].as_f64().unwrap();
    assert_eq!(server.score(ENV_KEY, "Too short.").await.status(), 422);
    assert_eq!(server.score(ENV_KEY, "   ").await.status(), 422);
    let get_score = server
        .client
        .get(server.url("/score"))
        .send()
        .await
        .unwrap();
    assert_eq!(get_score.status(), 405);
    for path in ["/nope", "/.env", "/wp-login.php"] {
        assert_eq!(
            server
                .client
                .get(server.url(path))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }

    let after = server.scrape().await;
    let requests = |route: &str, status: &str| {
        after.get(
            "detector_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("/healthz", "200"), 3.0);
    assert_eq!(
        requests("/healthz", "401"),
        3.0,
        "two wrong keys and the readiness probe"
    );
    assert_eq!(requests("/score", "200"), 1.0);
    assert_eq!(requests("/score", "422"), 2.0);
    assert_eq!(requests("/score", "405"), 1.0);
    assert_eq!(
        requests("unmatched", "404"),
        3.0,
        "unmatched paths share one label"
    );
    assert_eq!(after.get("detector_http_requests_total", &[]), 13.0);

    let rejections = |reason: &str| after.get("detector_rejections_total", &[("reason", reason)]);
    assert_eq!(rejections("unauthorized"), 3.0);
    assert_eq!(rejections("invalid"), 2.0);
    assert_eq!(rejections("saturated"), 0.0);
    assert_eq!(after.get("detector_tokens_scored_total", &[]), tokens);
    // The scored text and the too-short one reach the model; whitespace is refused before.
    assert_eq!(
        after.get("detector_inference_duration_seconds_count", &[]),
        2.0
    );
    assert_eq!(after.get("detector_inference_jobs_in_flight", &[]), 0.0);

    // Scraping is not a request of the API: two scrapes change nothing.
    let again = server.scrape().await;
    assert_eq!(again.get("detector_http_requests_total", &[]), 13.0);

    // The metrics port serves nothing else, and the API port does not serve metrics.
    let other = server
        .client
        .get(format!("http://127.0.0.1:{}/score", server.metrics_port))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let on_api = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404);
}
