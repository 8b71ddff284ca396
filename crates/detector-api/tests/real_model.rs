//! With the real model (scripts/fetch-model): a real score, the concurrency cap under
//! saturation, /healthz while every slot is busy, and SIGTERM draining a job in flight.
//!
//! One server for all four, in this order, so the real weights are loaded once. A job of
//! DETECTOR_MAX_TOKENS=512 tokens keeps the only slot busy for a visible while; the test
//! watches the jobs-in-flight gauge instead of relying on timing.

mod common;

use std::time::Duration;

use common::{json, Server, ServerBuilder, ENV_KEY, TEXT};

/// A text well over 512 tokens, so every job is a full, truncated one.
fn long_text() -> String {
    TEXT.repeat(40)
}

/// Starts a long job and returns once it holds the only slot.
async fn start_long_job(
    server: &Server,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let client = server.client.clone();
    let url = server.url("/score");
    let job = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(ENV_KEY)
            .json(&serde_json::json!({ "text": long_text() }))
            .send()
            .await
    });
    server
        .wait_metric(
            "detector_inference_jobs_in_flight",
            &[],
            |v| v == 1.0,
            Duration::from_secs(60),
        )
        .await;
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_model_scores_saturates_and_drains() {
    let mut server = ServerBuilder::new()
        .real_model()
        .env("DETECTOR_MAX_CONCURRENT_JOBS", "1")
        .env("DETECTOR_RETRY_AFTER_SECS", "3")
        .env("DETECTOR_SHUTDOWN_GRACE_SECS", "60")
        .start()
        .await;

    // A real score with the real weights.
    let response = server.score(ENV_KEY, TEXT).await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(
        body["model"]["name"], "SmolLM2-135M-Instruct.Q4_1",
        "{body}"
    );
    assert_eq!(body["model"]["sha256_short"], "b179c9523d0e", "{body}");
    assert!(
        (0.0..=1.0).contains(&body["score"].as_f64().unwrap()),
        "{body}"
    );
    assert_eq!(body["truncated"], false, "{body}");

    // Saturation at cap 1: while one job holds the slot, more requests at once get 503 with
    // Retry-After (or 200 if the job ended meanwhile), never a wait in a queue.
    let job = start_long_job(&server).await;
    // /healthz answers while every slot is busy: it never needs a slot.
    let health = server.healthz(ENV_KEY).await;
    assert_eq!(health.status(), 200);
    let contenders: Vec<_> = (0..4)
        .map(|_| {
            let client = server.client.clone();
            let url = server.url("/score");
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(ENV_KEY)
                    .json(&serde_json::json!({ "text": TEXT }))
                    .send()
                    .await
                    .expect("contender")
            })
        })
        .collect();
    let mut saturated = 0;
    for contender in contenders {
        let response = contender.await.unwrap();
        match response.status().as_u16() {
            503 => {
                saturated += 1;
                assert_eq!(response.headers()["retry-after"], "3");
                let body = json(response).await;
                assert_eq!(body["error"]["code"], "saturated", "{body}");
            }
            200 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        saturated >= 1,
        "no request was refused while the only slot was busy"
    );
    let first = job.await.unwrap().expect("the long job");
    assert_eq!(first.status(), 200);
    let first = json(first).await;
    assert_eq!(first["tokens"], 512, "{first}");
    assert_eq!(first["truncated"], true, "{first}");
    let metrics = server.scrape().await;
    assert_eq!(
        metrics.get("detector_rejections_total", &[("reason", "saturated")]),
        saturated as f64
    );

    // A client that gives up mid-job: its request is still counted exactly once, and the slot
    // comes back when the computation ends.
    let scored_before = metrics.get("detector_http_requests_total", &[("route", "/score")]);
    let job = start_long_job(&server).await;
    job.abort();
    let _ = job.await;
    server
        .wait_metric(
            "detector_inference_jobs_in_flight",
            &[],
            |v| v == 0.0,
            Duration::from_secs(120),
        )
        .await;
    server
        .wait_metric(
            "detector_http_requests_total",
            &[("route", "/score")],
            |v| v > scored_before,
            Duration::from_secs(30),
        )
        .await;
    let counted = server
        .scrape()
        .await
        .get("detector_http_requests_total", &[("route", "/score")]);
    assert_eq!(counted, scored_before + 1.0, "{}", server.logs());

    // SIGTERM while a job runs: the job finishes and answers 200, then the process exits 0.
    let job = start_long_job(&server).await;
    server.signal("TERM");
    let drained = job.await.unwrap().expect("the job in flight");
    assert_eq!(drained.status(), 200, "the job in flight was dropped");
    let status = server.wait_exit(Duration::from_secs(90));
    assert_eq!(status.code(), Some(0), "{}", server.logs());
    assert!(server.logs().contains("Shutting down"), "{}", server.logs());
    // Nothing listens any more.
    assert!(server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .is_err());
}

/// The grace period bounds the drain: with none at all, SIGTERM exits 0 at once and the job in
/// flight is abandoned (its client sees the connection close, not a hang).
#[tokio::test]
async fn sigterm_does_not_wait_beyond_the_grace_period() {
    let mut server = ServerBuilder::new()
        .real_model()
        .env("DETECTOR_MAX_CONCURRENT_JOBS", "1")
        .env("DETECTOR_SHUTDOWN_GRACE_SECS", "0")
        .start()
        .await;
    let job = start_long_job(&server).await;
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", server.logs());
    assert!(
        server
            .logs()
            .contains("Grace period over with jobs still running"),
        "{}",
        server.logs()
    );
    let abandoned = job.await.unwrap();
    assert!(
        abandoned.is_err(),
        "the job answered although the grace period was zero"
    );
}
