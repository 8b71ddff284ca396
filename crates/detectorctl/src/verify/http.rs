//! The checks a client on the internet can make over HTTP: the redirect, auth on /healthz, a real
//! score, /metrics hidden, scanner paths answered with 404.

use reqwest::header::LOCATION;
use reqwest::{Client, StatusCode, Url};
use serde_json::Value;

use super::report::Check;
use crate::client::{error_chain, join_path, with_key, SAMPLE_TEXT};

/// Paths that scanners ask for; the edge answers them with 404. One path only: the
/// detector-botsearch jail counts every hit (10 in 5 minutes bans), and an operator re-running
/// verify from outside must not ban themselves.
const SCANNER_PATHS: &[&str] = &["/.env"];

pub struct HttpTarget<'a> {
    pub client: &'a Client,
    /// The https:// base URL.
    pub url: &'a Url,
    /// The plain-HTTP side (port 80 in production).
    pub http_url: &'a Url,
    /// The host name the redirect must keep.
    pub name: &'a str,
    pub key: Option<&'a str>,
    pub key_env: &'a str,
}

pub async fn redirect(t: &HttpTarget<'_>) -> Check {
    const NAME: &str = "http-redirect";
    const HINT: &str = "the nginx server block on port 80 (return 301 https://$host$request_uri) and that port 80 is published";
    let url = join_path(t.http_url, "/healthz");
    let response = match t.client.get(url.clone()).send().await {
        Ok(r) => r,
        Err(e) => return Check::fail(NAME, format!("GET {url}: {}", error_chain(&e)), HINT),
    };
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if status != StatusCode::MOVED_PERMANENTLY {
        return Check::fail(NAME, format!("GET {url} -> {status}, expected 301"), HINT);
    }
    match Url::parse(&location) {
        Ok(target) if target.scheme() == "https" && target.host_str() == Some(t.name) => {
            Check::ok(NAME, format!("{url} -> 301 {location}"))
        }
        _ => Check::fail(
            NAME,
            format!("301 to {location:?}, expected https://{}/...", t.name),
            HINT,
        ),
    }
}

pub async fn healthz_without_key(t: &HttpTarget<'_>) -> Check {
    const NAME: &str = "healthz-no-key";
    const HINT: &str = "the service's auth (DETECTOR_API_KEY / DETECTOR_KEY_FILE set?) and that nginx proxies /healthz to it";
    let url = join_path(t.url, "/healthz");
    match t.client.get(url.clone()).send().await {
        Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
            Check::ok(NAME, format!("GET {url} without key -> 401"))
        }
        Ok(r) => Check::fail(
            NAME,
            format!("GET {url} without key -> {}, expected 401", r.status()),
            HINT,
        ),
        Err(e) => Check::fail(NAME, format!("GET {url}: {}", error_chain(&e)), HINT),
    }
}

pub async fn healthz_with_key(t: &HttpTarget<'_>) -> Check {
    const NAME: &str = "healthz-key";
    let hint = format!(
        "the key in ${} against the service's key file or DETECTOR_API_KEY; `detector-stack-compose logs detector`",
        t.key_env
    );
    let Some(key) = t.key else {
        return Check::fail(NAME, format!("${} is not set", t.key_env), hint);
    };
    let url = join_path(t.url, "/healthz");
    let response = match with_key(t.client.get(url.clone()), key).send().await {
        Ok(r) => r,
        Err(e) => return Check::fail(NAME, format!("GET {url}: {}", error_chain(&e)), hint),
    };
    let status = response.status();
    if status != StatusCode::OK {
        return Check::fail(
            NAME,
            format!("GET {url} with key -> {status}, expected 200"),
            hint,
        );
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    Check::ok(
        NAME,
        format!(
            "200 status={} version={} revision={}",
            field("status"),
            field("version"),
            field("revision")
        ),
    )
}

pub async fn score(t: &HttpTarget<'_>) -> Check {
    const NAME: &str = "score";
    const HINT: &str = "`detector-stack-compose logs detector` (model loaded? slots free?) and the nginx proxy timeouts for /score";
    let Some(key) = t.key else {
        return Check::fail(NAME, format!("${} is not set", t.key_env), HINT);
    };
    let url = join_path(t.url, "/score");
    let request =
        with_key(t.client.post(url.clone()), key).json(&serde_json::json!({ "text": SAMPLE_TEXT }));
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Check::fail(NAME, format!("POST {url}: {}", error_chain(&e)), HINT),
    };
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status != StatusCode::OK {
        return Check::fail(
            NAME,
            format!("POST {url} -> {status}, expected 200: {}", text.trim()),
            HINT,
        );
    }
    let body: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return Check::fail(NAME, format!("200 but not JSON: {e}"), HINT),
    };
    match body.get("score").and_then(Value::as_f64) {
        Some(s) if (0.0..=1.0).contains(&s) => Check::ok(
            NAME,
            format!(
                "200 score={s:.3} label={} tokens={}",
                body.get("label").and_then(Value::as_str).unwrap_or("?"),
                body.get("tokens").map(Value::to_string).unwrap_or_default()
            ),
        ),
        other => Check::fail(
            NAME,
            format!("200 but score is {other:?}, expected a number in [0, 1]"),
            HINT,
        ),
    }
}

pub async fn metrics_hidden(t: &HttpTarget<'_>) -> Check {
    const NAME: &str = "metrics-hidden";
    const HINT: &str = "nginx must not proxy /metrics; DETECTOR_METRICS_BIND must not be published";
    let url = join_path(t.url, "/metrics");
    let mut request = t.client.get(url.clone());
    // With the key too: a key must not unlock the metrics either.
    if let Some(key) = t.key {
        request = with_key(request, key);
    }
    match request.send().await {
        Ok(r) if r.status() == StatusCode::OK => {
            Check::fail(NAME, format!("GET {url} -> 200: metrics are public"), HINT)
        }
        Ok(r) => Check::ok(NAME, format!("GET {url} -> {}", r.status())),
        Err(e) => Check::fail(
            NAME,
            format!("GET {url}: {} (cannot tell)", error_chain(&e)),
            HINT,
        ),
    }
}

pub async fn scanner_paths(t: &HttpTarget<'_>) -> Check {
    const NAME: &str = "scanner-404";
    const HINT: &str = "the nginx locations: scanner paths must end in 404 at the edge, not reach the service or a file";
    let mut seen = Vec::new();
    for path in SCANNER_PATHS {
        let url = join_path(t.url, path);
        match t.client.get(url.clone()).send().await {
            Ok(r) if r.status() == StatusCode::NOT_FOUND => seen.push(format!("{path} -> 404")),
            Ok(r) => {
                return Check::fail(
                    NAME,
                    format!("GET {url} -> {}, expected 404", r.status()),
                    HINT,
                )
            }
            Err(e) => return Check::fail(NAME, format!("GET {url}: {}", error_chain(&e)), HINT),
        }
    }
    Check::ok(NAME, seen.join(", "))
}
