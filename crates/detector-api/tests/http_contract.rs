//! The HTTP contract of the real binary (tiny model): every error status with its JSON body, the
//! 401 challenge, the 200 fields of /score and /healthz, truncation, and the healthcheck command.

mod common;

use common::{json, Server, ServerBuilder, ENV_KEY, TEXT};
use reqwest::Method;

/// Small body limit so the 413 cases stay small.
const BODY_LIMIT: usize = 4096;

struct Req {
    method: Method,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

fn bearer() -> (&'static str, String) {
    ("Authorization", format!("Bearer {ENV_KEY}"))
}

fn json_type() -> (&'static str, String) {
    ("Content-Type", "application/json".into())
}

/// POST /score with the key, a JSON content type and `body`.
fn post(body: impl Into<Vec<u8>>) -> Req {
    Req {
        method: Method::POST,
        path: "/score",
        headers: vec![bearer(), json_type()],
        body: Some(body.into()),
    }
}

fn req(method: Method, path: &'static str, headers: Vec<(&'static str, String)>) -> Req {
    Req {
        method,
        path,
        headers,
        body: None,
    }
}

impl Req {
    fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers = headers;
        self
    }
}

async fn check(server: &Server, name: &str, req: Req, expected_status: u16, expected_code: &str) {
    let mut builder = server
        .client
        .request(req.method.clone(), server.url(req.path));
    for (header, value) in &req.headers {
        builder = builder.header(*header, value);
    }
    if let Some(body) = req.body {
        builder = builder.body(body);
    }
    let response = builder
        .send()
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    assert_eq!(status, expected_status, "{name}: body {text}");
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "{name}: content-type {content_type:?}"
    );
    let body: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
    assert_eq!(body["error"]["code"], expected_code, "{name}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "{name}: no message in {body}");
    assert!(
        !message.contains(ENV_KEY),
        "{name}: the key leaked into {body}"
    );
    match status {
        401 => {
            let challenge = headers.get("www-authenticate").map(|v| v.to_str().unwrap());
            assert!(
                challenge.is_some_and(|c| c.starts_with("Bearer")),
                "{name}: WWW-Authenticate {challenge:?}"
            );
        }
        405 => assert!(headers.contains_key("allow"), "{name}: no Allow header"),
        _ => {}
    }
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_a_json_error() {
    let server = ServerBuilder::new()
        .env("DETECTOR_MAX_BODY_BYTES", &BODY_LIMIT.to_string())
        .start()
        .await;
    let s = &server;
    let text_body = |text: &str| serde_json::json!({ "text": text }).to_string();

    // Authentication (before any validation of the body).
    check(
        s,
        "no key",
        post(text_body(TEXT)).with_headers(vec![json_type()]),
        401,
        "unauthorized",
    )
    .await;
    check(
        s,
        "wrong key",
        post(text_body(TEXT)).with_headers(vec![
            json_type(),
            ("Authorization", "Bearer nope-nope-nope".into()),
        ]),
        401,
        "unauthorized",
    )
    .await;
    check(
        s,
        "wrong X-API-Key",
        post(text_body(TEXT)).with_headers(vec![json_type(), ("X-API-Key", "nope".into())]),
        401,
        "unauthorized",
    )
    .await;
    check(
        s,
        "basic scheme",
        post(text_body(TEXT)).with_headers(vec![
            json_type(),
            ("Authorization", format!("Basic {ENV_KEY}")),
        ]),
        401,
        "unauthorized",
    )
    .await;
    check(
        s,
        "conflicting headers",
        post(text_body(TEXT)).with_headers(vec![
            json_type(),
            bearer(),
            ("X-API-Key", "other-key".into()),
        ]),
        401,
        "unauthorized",
    )
    .await;
    check(
        s,
        "empty bearer",
        post(text_body(TEXT)).with_headers(vec![json_type(), ("Authorization", "Bearer ".into())]),
        401,
        "unauthorized",
    )
    .await;
    check(
        s,
        "no key and bad JSON",
        post("{").with_headers(vec![json_type()]),
        401,
        "unauthorized",
    )
    .await;
    check(
        s,
        "healthz without key",
        req(Method::GET, "/healthz", vec![]),
        401,
        "unauthorized",
    )
    .await;
    check(
        s,
        "healthz wrong key",
        req(Method::GET, "/healthz", vec![("X-API-Key", "wrong".into())]),
        401,
        "unauthorized",
    )
    .await;

    // Body shape.
    check(s, "invalid JSON", post("{\"text\": "), 400, "invalid_json").await;
    check(
        s,
        "trailing garbage",
        post("{\"text\": \"a\"} x"),
        400,
        "invalid_json",
    )
    .await;
    check(s, "empty body", post(""), 400, "invalid_json").await;
    check(
        s,
        "lone surrogate",
        post("{\"text\": \"\\ud800\"}"),
        400,
        "invalid_json",
    )
    .await;
    check(s, "array body", post("[\"text\"]"), 400, "invalid_body").await;
    check(s, "string body", post("\"text\""), 400, "invalid_body").await;
    check(s, "missing text", post("{}"), 400, "missing_text").await;
    check(
        s,
        "misspelt field",
        post("{\"txt\": \"hello\"}"),
        400,
        "missing_text",
    )
    .await;
    check(s, "number text", post("{\"text\": 5}"), 400, "invalid_text").await;
    check(
        s,
        "null text",
        post("{\"text\": null}"),
        400,
        "invalid_text",
    )
    .await;
    check(
        s,
        "array text",
        post("{\"text\": [\"a\"]}"),
        400,
        "invalid_text",
    )
    .await;
    let mut invalid_utf8 = b"{\"text\": \"caf".to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(b" au lait and more words\"}");
    check(s, "invalid UTF-8", post(invalid_utf8), 400, "invalid_utf8").await;

    // Content type and size.
    check(
        s,
        "text/plain",
        post(text_body(TEXT)).with_headers(vec![bearer(), ("Content-Type", "text/plain".into())]),
        415,
        "unsupported_media_type",
    )
    .await;
    check(
        s,
        "no content type",
        post(text_body(TEXT)).with_headers(vec![bearer()]),
        415,
        "unsupported_media_type",
    )
    .await;
    check(
        s,
        "form content type",
        post("text=hello").with_headers(vec![
            bearer(),
            ("Content-Type", "application/x-www-form-urlencoded".into()),
        ]),
        415,
        "unsupported_media_type",
    )
    .await;
    let big = text_body(&"word ".repeat(BODY_LIMIT / 5 + 10));
    assert!(big.len() > BODY_LIMIT);
    check(
        s,
        "body over the limit",
        post(big),
        413,
        "payload_too_large",
    )
    .await;
    let huge = text_body(&"x".repeat(4 * 1024 * 1024));
    check(
        s,
        "body far over the limit",
        post(huge),
        413,
        "payload_too_large",
    )
    .await;

    // Unscorable text.
    check(s, "empty text", post(text_body("")), 422, "empty_text").await;
    check(
        s,
        "whitespace text",
        post(text_body(" \n\t  \r\n ")),
        422,
        "empty_text",
    )
    .await;
    check(
        s,
        "too short",
        post(text_body("Hi there.")),
        422,
        "text_too_short",
    )
    .await;

    // Routing.
    check(
        s,
        "unknown route",
        req(Method::GET, "/nope", vec![bearer()]),
        404,
        "not_found",
    )
    .await;
    check(
        s,
        "unknown route without key",
        req(Method::POST, "/admin/.env", vec![]),
        404,
        "not_found",
    )
    .await;
    check(s, "root", req(Method::GET, "/", vec![]), 404, "not_found").await;
    check(
        s,
        "GET /score",
        req(Method::GET, "/score", vec![bearer()]),
        405,
        "method_not_allowed",
    )
    .await;
    check(
        s,
        "PUT /score",
        post(text_body(TEXT))
            .with_headers(vec![bearer(), json_type()])
            .method(Method::PUT),
        405,
        "method_not_allowed",
    )
    .await;
    check(
        s,
        "DELETE /healthz",
        req(Method::DELETE, "/healthz", vec![bearer()]),
        405,
        "method_not_allowed",
    )
    .await;
    check(
        s,
        "POST /healthz",
        req(Method::POST, "/healthz", vec![bearer()]),
        405,
        "method_not_allowed",
    )
    .await;

    // Still healthy after all of that.
    assert_eq!(server.healthz(ENV_KEY).await.status(), 200);
    assert!(!server.logs().contains("panicked"), "{}", server.logs());
}

impl Req {
    fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
}

#[tokio::test]
async fn score_answers_the_contract_fields() {
    let server = ServerBuilder::new().start().await;

    // Both header forms, and both at once with the same key.
    for request in [
        server
            .client
            .post(server.url("/score"))
            .bearer_auth(ENV_KEY),
        server
            .client
            .post(server.url("/score"))
            .header("X-API-Key", ENV_KEY),
        server
            .client
            .post(server.url("/score"))
            .header("authorization", format!("bearer {ENV_KEY}")),
        server
            .client
            .post(server.url("/score"))
            .bearer_auth(ENV_KEY)
            .header("X-API-Key", ENV_KEY),
    ] {
        let response = request
            .header("Content-Type", "application/json; charset=utf-8")
            .body(serde_json::json!({ "text": TEXT, "extra": "ignored" }).to_string())
            .send()
            .await
            .expect("POST /score");
        assert_eq!(response.status(), 200);
        let body = json(response).await;
        let score = body["score"].as_f64().expect("score");
        assert!((0.0..=1.0).contains(&score), "{body}");
        assert!(
            ["ai", "human", "uncertain"].contains(&body["label"].as_str().unwrap()),
            "{body}"
        );
        assert_eq!(body["model"]["name"], "tiny", "{body}");
        assert_eq!(
            body["model"]["sha256_short"].as_str().unwrap().len(),
            12,
            "{body}"
        );
        assert!(body["tokens"].as_u64().unwrap() >= 16, "{body}");
        assert_eq!(body["truncated"], false, "{body}");
        for signal in ["criterion", "mean_log_prob", "mean_entropy"] {
            assert!(
                body[signal].as_f64().is_some_and(f64::is_finite),
                "{signal}: {body}"
            );
        }
    }
}

/// Name and nice value of each thread of process `pid` (from /proc/PID/task/TID/stat, whose
/// 19th field is the nice value; the name, field 2, may hold spaces, so fields count after it).
fn thread_nice_values(pid: u32) -> Vec<(String, i64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the service's threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            let (head, tail) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_string();
            let nice = tail.split_whitespace().nth(19 - 3)?.parse().ok()?;
            Some((name, nice))
        })
        .collect()
}

#[tokio::test]
async fn inference_runs_at_the_configured_nice_value_and_http_does_not() {
    let server = ServerBuilder::new()
        .env("DETECTOR_INFERENCE_NICE", "7")
        .start()
        .await;
    let response = server
        .client
        .post(server.url("/score"))
        .bearer_auth(ENV_KEY)
        .json(&serde_json::json!({ "text": TEXT }))
        .send()
        .await
        .expect("POST /score");
    assert_eq!(response.status(), 200);

    let threads = thread_nice_values(server.child.id());
    assert!(
        threads.iter().any(|(_, nice)| *nice == 7),
        "no thread at nice 7 after a scoring: {threads:?}"
    );
    let http: Vec<_> = threads
        .iter()
        .filter(|(name, _)| name.starts_with("actix"))
        .collect();
    assert!(!http.is_empty(), "no actix threads in {threads:?}");
    assert!(
        http.iter().all(|(_, nice)| *nice == 0),
        "an HTTP thread left priority 0: {threads:?}"
    );
    assert!(
        server.logs().contains("inference_nice=7"),
        "the start-up log does not say the nice value:\n{}",
        server.logs()
    );
}

#[tokio::test]
async fn long_text_is_scored_on_the_first_max_tokens() {
    let server = ServerBuilder::new()
        .env("DETECTOR_MAX_TOKENS", "64")
        .start()
        .await;
    let long = TEXT.repeat(10);
    let response = server.score(ENV_KEY, &long).await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["tokens"], 64, "{body}");
    assert_eq!(body["truncated"], true, "{body}");
    // Unicode of every shape is text like any other.
    let mixed =
        "Ünïcödé text with emoji 👩🏽‍💻, CJK 漢字かな, RTL שלום, NUL \u{0} and ZWSP \u{200b} in it.";
    let response = server.score(ENV_KEY, mixed).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn healthz_reports_model_version_and_revision() {
    let server = ServerBuilder::new().start().await;
    let response = server.healthz(ENV_KEY).await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["model_loaded"], true, "{body}");
    assert_eq!(body["model"]["name"], "tiny", "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"), "{body}");
    let expected_revision = option_env!("DETECTOR_REVISION").unwrap_or("unknown");
    assert_eq!(body["revision"], expected_revision, "{body}");
    let head = server
        .client
        .head(server.url("/healthz"))
        .bearer_auth(ENV_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
}

#[tokio::test]
async fn healthcheck_subcommand_exits_0_when_healthy_and_1_otherwise() {
    let server = ServerBuilder::new().start().await;
    let run = |envs: &[(&str, String)]| {
        let mut command = std::process::Command::new(common::bin());
        for (name, _) in std::env::vars() {
            if name.starts_with("DETECTOR_") {
                command.env_remove(name);
            }
        }
        let output = command
            .arg("healthcheck")
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run detector-api healthcheck");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let bind = format!("127.0.0.1:{}", server.port);
    let (code, stderr) = run(&[
        ("DETECTOR_BIND", bind.clone()),
        ("DETECTOR_API_KEY", ENV_KEY.into()),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    // A wildcard bind is reached over loopback, as inside a container.
    let wildcard = format!("0.0.0.0:{}", server.port);
    let (code, stderr) = run(&[
        ("DETECTOR_BIND", wildcard),
        ("DETECTOR_HEALTHCHECK_KEY", ENV_KEY.into()),
    ]);
    assert_eq!(code, Some(0), "{stderr}");

    let (code, stderr) = run(&[
        ("DETECTOR_BIND", bind.clone()),
        ("DETECTOR_API_KEY", "wrong-key-wrong-key".into()),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("wrong-key-wrong-key"), "{stderr}");
    let (code, stderr) = run(&[("DETECTOR_BIND", bind)]);
    assert_eq!(code, Some(1), "{stderr}");
    let dead = format!("127.0.0.1:{}", common::free_port());
    let (code, stderr) = run(&[
        ("DETECTOR_BIND", dead),
        ("DETECTOR_API_KEY", ENV_KEY.into()),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
}

/// A chunked body has no Content-Length to refuse up front: the limit holds while reading.
#[tokio::test]
async fn chunked_body_over_the_limit_gets_413() {
    let server = ServerBuilder::new()
        .env("DETECTOR_MAX_BODY_BYTES", &BODY_LIMIT.to_string())
        .start()
        .await;
    let mut request = format!(
        "POST /score HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ENV_KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let chunk = "x".repeat(1000);
    request.push_str("a\r\n{\"text\": \"\r\n");
    for _ in 0..(BODY_LIMIT / 1000 + 2) {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("2\r\n\"}\r\n0\r\n\r\n");
    let answer = raw_exchange(&server, &request).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"payload_too_large\""), "{answer}");
}

/// Sends `request` as raw bytes (for framing an HTTP client would refuse to produce) and reads
/// the answer until the server closes the connection.
async fn raw_exchange(server: &common::Server, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("an answer, not a hang")
    .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Broken chunk framing reaches only the service's body reader (nginx answers it at the edge):
/// the client gets a fixed message, never the transport library's own wording.
#[tokio::test]
async fn broken_chunking_gets_a_fixed_message() {
    let server = ServerBuilder::new().start().await;
    let request = format!(
        "POST /score HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ENV_KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         zz\r\n{{}}\r\n0\r\n\r\n"
    );
    let answer = raw_exchange(&server, &request).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("\"The request body could not be read.\""),
        "{answer}"
    );
    assert!(
        !answer.contains("EOF") && !answer.contains("payload"),
        "{answer}"
    );
}
