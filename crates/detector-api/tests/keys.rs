//! Keys at runtime: a key file reloaded by SIGHUP while requests run (only a revoked key's
//! requests start failing), rotation overlap, a broken file keeping the old keys, and logs that
//! carry key ids but never a key.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use auth::{ApiKey, KeyFile};
use common::{Server, ServerBuilder, ENV_KEY, TEXT};

/// Sends requests with `key` until `stop`, alternating /healthz and /score; returns the statuses.
fn hammer(
    server: &Server,
    key: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u16>> {
    let client = server.client.clone();
    let healthz = server.url("/healthz");
    let score = server.url("/score");
    tokio::spawn(async move {
        let mut statuses = Vec::new();
        // Bounded: at most 5000 requests even if the stop flag never comes.
        for i in 0..5000 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let request = if i % 2 == 0 {
                client.get(&healthz)
            } else {
                client
                    .post(&score)
                    .json(&serde_json::json!({ "text": TEXT }))
            };
            let response = request.bearer_auth(&key).send().await.expect("request");
            statuses.push(response.status().as_u16());
        }
        statuses
    })
}

fn save(file: &KeyFile, path: &Path) {
    file.save(path).expect("save key file");
}

#[tokio::test]
async fn sighup_reloads_the_key_file_without_failing_requests_in_flight() {
    let builder = ServerBuilder::new().env("DETECTOR_LOG_FORMAT", "json");
    let key_path = builder.dir().join("keys.json");
    let mut file = KeyFile::new();
    let alpha = file.add("alpha", None).unwrap();
    let beta = file.add("beta", None).unwrap();
    save(&file, &key_path);
    let server = builder
        .env("DETECTOR_KEY_FILE", &key_path.display().to_string())
        .start()
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let alpha_task = hammer(&server, alpha.expose().to_owned(), stop.clone());
    let beta_task = hammer(&server, beta.expose().to_owned(), stop.clone());
    let env_task = hammer(&server, ENV_KEY.to_owned(), stop.clone());
    // Let every worker get some requests through before the reload.
    server
        .wait_metric(
            "detector_http_requests_total",
            &[("status", "200")],
            |v| v >= 30.0,
            Duration::from_secs(30),
        )
        .await;

    // Revoke beta, add gamma, rotate alpha with an overlap: the old alpha stays valid.
    file.revoke("beta").unwrap();
    let gamma = file.add("gamma", None).unwrap();
    let alpha_new = file.rotate("alpha", Duration::from_secs(3600)).unwrap();
    save(&file, &key_path);
    server.signal("HUP");
    server
        .wait_log("Key file reloaded.", Duration::from_secs(10))
        .await;

    // Beta is refused from now on; give the workers a moment of requests after the swap.
    let reloaded_at = server
        .scrape()
        .await
        .get("detector_http_requests_total", &[]);
    server
        .wait_metric(
            "detector_http_requests_total",
            &[],
            |v| v >= reloaded_at + 30.0,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(server.healthz(gamma.expose()).await.status(), 200);
    assert_eq!(server.healthz(alpha_new.expose()).await.status(), 200);
    assert_eq!(server.healthz(beta.expose()).await.status(), 401);

    // A broken key file: the reload fails loudly and the keys in force stay.
    std::fs::write(&key_path, "{\"keys\": [{\"id\": ").unwrap();
    server.signal("HUP");
    server
        .wait_log("Key file reload failed", Duration::from_secs(10))
        .await;
    let after_broken = server
        .scrape()
        .await
        .get("detector_http_requests_total", &[]);
    server
        .wait_metric(
            "detector_http_requests_total",
            &[],
            |v| v >= after_broken + 20.0,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(server.healthz(gamma.expose()).await.status(), 200);
    assert_eq!(server.healthz(beta.expose()).await.status(), 401);

    stop.store(true, Ordering::SeqCst);
    let alpha_statuses = alpha_task.await.unwrap();
    let beta_statuses = beta_task.await.unwrap();
    let env_statuses = env_task.await.unwrap();

    for (name, statuses) in [("alpha", &alpha_statuses), ("env", &env_statuses)] {
        assert!(statuses.len() >= 10, "{name}: {statuses:?}");
        assert!(statuses.iter().all(|&s| s == 200), "{name}: {statuses:?}");
    }
    // Beta: successes until the reload, then only 401s.
    let first_refusal = beta_statuses
        .iter()
        .position(|&s| s != 200)
        .expect("beta was never refused");
    assert!(
        first_refusal > 0,
        "beta failed before the reload: {beta_statuses:?}"
    );
    assert!(
        beta_statuses[first_refusal..].iter().all(|&s| s == 401),
        "beta: {beta_statuses:?}"
    );

    let metrics = server.scrape().await;
    assert_eq!(
        metrics.get("detector_key_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        metrics.get("detector_key_reloads_total", &[("result", "error")]),
        1.0
    );
    assert_eq!(
        metrics.get("detector_keys_active", &[]),
        4.0,
        "env, alpha old and new, gamma"
    );

    // The JSON log: one line per request naming the key id, never a key.
    let logs = server.logs();
    for key in [
        alpha.expose(),
        beta.expose(),
        gamma.expose(),
        alpha_new.expose(),
        ENV_KEY,
    ] {
        assert!(!logs.contains(key), "a key reached the log");
    }
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let requests: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "Request served.")
        .collect();
    let alpha_lines = requests.iter().filter(|l| l["key_id"] == "alpha").count();
    assert!(
        alpha_lines >= alpha_statuses.len(),
        "{alpha_lines} alpha lines"
    );
    assert!(requests.iter().any(|l| l["key_id"] == "env"));
    let scored = requests
        .iter()
        .find(|l| l["route"] == "/score" && l["status"] == 200)
        .expect("a scored request");
    for field in [
        "method",
        "route",
        "status",
        "latency_ms",
        "key_id",
        "tokens",
    ] {
        assert!(!scored[field].is_null(), "no {field} in {scored}");
    }
    let refused = requests
        .iter()
        .find(|l| l["status"] == 401)
        .expect("a refused request");
    assert_eq!(refused["code"], "unauthorized");
    assert_eq!(refused["key_id"], "-");
}

#[tokio::test]
async fn no_key_ever_reaches_the_text_log() {
    let builder = ServerBuilder::new();
    let key_path = builder.dir().join("keys.json");
    let mut file = KeyFile::new();
    let app = file.add("app", None).unwrap();
    let expired = file
        .add(
            "old",
            Some(time::OffsetDateTime::now_utc() - Duration::from_secs(60)),
        )
        .unwrap();
    save(&file, &key_path);
    let mut server = builder
        .env("DETECTOR_KEY_FILE", &key_path.display().to_string())
        .start()
        .await;
    let unknown = ApiKey::generate();
    let client = &server.client;

    let keys = [app.expose(), expired.expose(), unknown.expose(), ENV_KEY];
    for key in keys {
        let url = server.url("/healthz");
        client.get(&url).bearer_auth(key).send().await.unwrap();
        client
            .get(&url)
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap();
        client
            .get(&url)
            .bearer_auth(key)
            .header("X-API-Key", "conflict")
            .send()
            .await
            .unwrap();
        client
            .get(&url)
            .header("Authorization", format!("Basic {key}"))
            .send()
            .await
            .unwrap();
        client
            .get(&url)
            .header("Authorization", key)
            .send()
            .await
            .unwrap();
        // A key in the URL or the body is not a key header, but must not be logged either.
        client
            .get(server.url(&format!("/healthz?key={key}")))
            .send()
            .await
            .unwrap();
        client
            .get(server.url(&format!("/{key}")))
            .send()
            .await
            .unwrap();
        server.score(key, &format!("{TEXT} {key}")).await;
        client
            .post(server.url("/score"))
            .bearer_auth(key)
            .header("Content-Type", "application/json")
            .body(format!("{{\"text\": \"{key}"))
            .send()
            .await
            .unwrap();
    }
    server.signal("HUP");
    server
        .wait_log("Key file reloaded.", Duration::from_secs(10))
        .await;
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(30)).success());

    let logs = server.logs();
    assert!(logs.contains("Request served."), "{logs}");
    assert!(logs.contains("app"), "the key id is logged: {logs}");
    for key in keys {
        assert!(!logs.contains(key), "a key reached the log:\n{logs}");
    }
}
