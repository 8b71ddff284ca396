//! The OpenAPI document against the code and against the running service:
//! - docs/openapi.json is exactly what `detector-api openapi` prints, so it cannot drift;
//! - the real binary (real model, one inference slot) answers every documented status of every
//!   documented operation, each answer's body validates against the document's schema and
//!   carries the document's headers; and the 404 for an unknown path is the documented error.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{bin, Server, ServerBuilder, ENV_KEY, TEXT};
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

const REGENERATE: &str =
    "cargo build --release -p detector-api && target/release/detector-api openapi > docs/openapi.json";

/// Responses no request from outside can produce: 500 needs the model itself to fail.
const UNREACHABLE: &[(&str, &str, &str)] = &[("post", "/score", "500")];

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

fn printed_document() -> String {
    let mut command = Command::new(bin());
    for (name, _) in std::env::vars() {
        if name.starts_with("DETECTOR_") {
            command.env_remove(name);
        }
    }
    let output = command
        .arg("openapi")
        .output()
        .expect("run detector-api openapi");
    assert!(
        output.status.success(),
        "detector-api openapi failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the document is UTF-8")
}

fn committed_document() -> Value {
    let text = std::fs::read_to_string(committed_path())
        .unwrap_or_else(|e| panic!("docs/openapi.json is unreadable ({e}); run: {REGENERATE}"));
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

#[test]
fn committed_document_is_what_the_binary_prints() {
    let committed = std::fs::read_to_string(committed_path())
        .unwrap_or_else(|e| panic!("docs/openapi.json is unreadable ({e}); run: {REGENERATE}"));
    let printed = printed_document();
    if committed != printed {
        let line = committed
            .lines()
            .zip(printed.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one is a prefix of the other".to_owned(),
                |i| format!("first difference at line {}", i + 1),
            );
        panic!(
            "docs/openapi.json differs from what the code generates ({line}); regenerate it from \
             the repository root with:\n  {REGENERATE}"
        );
    }
    let doc: Value = serde_json::from_str(&printed).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
}

// ---- a JSON Schema check of the subset the document uses -------------------------------------

/// Follows `#/components/schemas/...` references.
fn resolve<'a>(reference: &str, doc: &'a Value) -> Result<&'a Value, String> {
    let pointer = reference
        .strip_prefix('#')
        .ok_or_else(|| format!("external reference {reference}"))?;
    doc.pointer(pointer)
        .ok_or_else(|| format!("dangling reference {reference}"))
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => false,
    }
}

/// Validates `value` against `schema`; refuses keywords it does not know rather than ignoring
/// them, so a schema it cannot check fails the test instead of passing it. Strict on objects:
/// a property the schema does not list is an error (the document must name every field).
fn validate(value: &Value, schema: &Value, doc: &Value, at: &str) -> Result<(), String> {
    let rules = schema
        .as_object()
        .ok_or_else(|| format!("{at}: schema is not an object"))?;
    for (keyword, rule) in rules {
        match keyword.as_str() {
            "$ref" => validate(value, resolve(rule.as_str().unwrap_or(""), doc)?, doc, at)?,
            "description" | "format" | "title" | "example" | "examples" => {}
            "type" => {
                let names: Vec<&str> = match rule {
                    Value::String(name) => vec![name.as_str()],
                    Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
                    _ => return Err(format!("{at}: bad type rule {rule}")),
                };
                if !names.iter().any(|name| has_type(value, name)) {
                    return Err(format!("{at}: {value} is not of type {rule}"));
                }
            }
            "required" => {
                for name in rule.as_array().into_iter().flatten() {
                    let name = name.as_str().unwrap_or_default();
                    if value.get(name).is_none() {
                        return Err(format!("{at}: required field {name} is missing"));
                    }
                }
            }
            "properties" => {
                let properties = rule.as_object().expect("properties is an object");
                if let Some(fields) = value.as_object() {
                    for (name, field) in fields {
                        let field_schema = properties
                            .get(name)
                            .ok_or_else(|| format!("{at}: field {name} is not documented"))?;
                        validate(field, field_schema, doc, &format!("{at}.{name}"))?;
                    }
                }
            }
            "enum" => {
                if !rule.as_array().is_some_and(|values| values.contains(value)) {
                    return Err(format!("{at}: {value} is not one of {rule}"));
                }
            }
            "minimum" | "maximum" => {
                if let Some(number) = value.as_f64() {
                    let bound = rule.as_f64().expect("numeric bound");
                    let ok = if keyword == "minimum" {
                        number >= bound
                    } else {
                        number <= bound
                    };
                    if !ok {
                        return Err(format!("{at}: {number} is outside its {keyword} {bound}"));
                    }
                }
            }
            "pattern" => {
                if let Some(text) = value.as_str() {
                    let pattern = regex::Regex::new(rule.as_str().expect("pattern string"))
                        .map_err(|e| format!("{at}: bad pattern: {e}"))?;
                    if !pattern.is_match(text) {
                        return Err(format!("{at}: {text:?} does not match {pattern}"));
                    }
                }
            }
            "allOf" => {
                for part in rule.as_array().into_iter().flatten() {
                    validate(value, part, doc, at)?;
                }
            }
            other => return Err(format!("{at}: the test cannot check the keyword {other}")),
        }
    }
    Ok(())
}

// ---- the service against the document --------------------------------------------------------

struct Check<'a> {
    doc: &'a Value,
    server: &'a Server,
    /// (method, path, status) of every documented response seen from the service.
    seen: BTreeSet<(String, String, String)>,
}

impl Check<'_> {
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.server.client.request(method, self.server.url(path))
    }

    /// Sends the request and checks its answer (see `verify`).
    async fn expect(
        &mut self,
        request: RequestBuilder,
        status: u16,
        code: Option<&str>,
    ) -> Option<Value> {
        let built = request.build().expect("request");
        let method = built.method().as_str().to_lowercase();
        let path = built.url().path().to_owned();
        let response = self.server.client.execute(built).await.expect("send");
        self.verify(&method, &path, response, status, code).await
    }

    /// Expects `status` (and the error `code`, if any) and checks the answer against the
    /// document's response for this operation and status: its headers and its body's schema.
    /// A 405 is documented on the operations of its path (it answers the methods they do not
    /// have); a 404 on no path, as the error body every unknown path gets.
    async fn verify(
        &mut self,
        method: &str,
        path: &str,
        response: reqwest::Response,
        status: u16,
        code: Option<&str>,
    ) -> Option<Value> {
        let what = format!("{} {path} -> {status}", method.to_uppercase());
        assert_eq!(response.status().as_u16(), status, "{what}");
        let status_key = status.to_string();

        let operations: Vec<String> = match self.doc["paths"][path].as_object() {
            None => vec![],
            Some(_) if status == 405 => self.doc["paths"][path]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, op)| op["responses"].get(&status_key).is_some())
                .map(|(m, _)| m.clone())
                .collect(),
            Some(_) => vec![method.to_owned()],
        };
        let documented = match operations.first() {
            Some(op) => self.doc["paths"][path][op]["responses"]
                .get(&status_key)
                .unwrap_or_else(|| panic!("{what}: the document has no such response"))
                .clone(),
            None => {
                assert_eq!(status, 404, "{what}: the document has no such operation");
                json!({"content": {"application/json": {"schema":
                    {"$ref": "#/components/schemas/ErrorBody"}}}})
            }
        };
        // HEAD answers carry no body, whatever the response documents for GET.
        let documented_content = if method == "head" {
            Value::Null
        } else {
            documented["content"].clone()
        };

        for (name, header) in documented["headers"].as_object().into_iter().flatten() {
            let value = response
                .headers()
                .get(name.as_str())
                .unwrap_or_else(|| panic!("{what}: the documented header {name} is missing"))
                .to_str()
                .expect("header is ASCII")
                .to_owned();
            let parsed = match serde_json::from_str::<Value>(&value) {
                Ok(number @ Value::Number(_)) => number,
                _ => Value::String(value),
            };
            validate(&parsed, &header["schema"], self.doc, name).unwrap_or_else(|e| {
                panic!("{what}: header {name}: {e}");
            });
        }

        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = response.bytes().await.expect(&what);
        let body = match documented_content.as_object() {
            Some(content) if !content.is_empty() => {
                let (media, spec) = content.iter().next().unwrap();
                assert!(
                    content_type
                        .as_deref()
                        .unwrap_or_default()
                        .starts_with(media.as_str()),
                    "{what}: Content-Type {content_type:?}, documented {media}"
                );
                let body: Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e})"));
                validate(&body, &spec["schema"], self.doc, "body")
                    .unwrap_or_else(|e| panic!("{what}: {e}\n{body}"));
                if let Some(code) = code {
                    assert_eq!(body["error"]["code"], code, "{what}: {body}");
                }
                Some(body)
            }
            _ => {
                assert!(body.is_empty(), "{what}: a body where none is documented");
                None
            }
        };
        for op in operations {
            self.seen.insert((op, path.to_owned(), status_key.clone()));
        }
        body
    }
}

fn long_text() -> String {
    TEXT.repeat(40)
}

/// One way to spoil a valid answer.
type Spoil = fn(&mut Value);

/// The validator itself must be able to fail, or the check above proves nothing.
fn assert_validator_refuses(doc: &Value, score: &Value, error: &Value) {
    let response = json!({"$ref": "#/components/schemas/ScoreResponse"});
    let error_body = json!({"$ref": "#/components/schemas/ErrorBody"});
    validate(score, &response, doc, "body").expect("the real answer validates");
    let broken: [(&str, Spoil); 6] = [
        ("missing label", |v| {
            drop(v.as_object_mut().unwrap().remove("label"))
        }),
        ("score above 1", |v| v["score"] = json!(1.5)),
        ("unknown label", |v| v["label"] = json!("robot")),
        ("tokens as text", |v| v["tokens"] = json!("12")),
        ("undocumented field", |v| v["extra"] = json!(1)),
        ("short hash too long", |v| {
            v["model"]["sha256_short"] = json!("0123456789abc")
        }),
    ];
    for (name, breaks) in broken {
        let mut bad = score.clone();
        breaks(&mut bad);
        assert!(
            validate(&bad, &response, doc, "body").is_err(),
            "validator accepted {name}"
        );
    }
    let mut bad = error.clone();
    bad["error"]["code"] = json!("no_such_code");
    assert!(
        validate(&bad, &error_body, doc, "body").is_err(),
        "validator accepted a bad code"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_running_service_answers_as_documented() {
    let doc = committed_document();
    let server = ServerBuilder::new()
        .real_model()
        .env("DETECTOR_MAX_CONCURRENT_JOBS", "1")
        .env("DETECTOR_RETRY_AFTER_SECS", "2")
        .start()
        .await;
    let mut check = Check {
        doc: &doc,
        server: &server,
        seen: BTreeSet::new(),
    };
    let text = json!({ "text": TEXT });

    // 200 on both routes, with either header form of the key.
    let score = check
        .expect(
            check
                .request(Method::POST, "/score")
                .bearer_auth(ENV_KEY)
                .json(&text),
            200,
            None,
        )
        .await
        .expect("a score");
    check
        .expect(
            check
                .request(Method::POST, "/score")
                .header("X-API-Key", ENV_KEY)
                .json(&text),
            200,
            None,
        )
        .await;
    check
        .expect(
            check.request(Method::GET, "/healthz").bearer_auth(ENV_KEY),
            200,
            None,
        )
        .await;
    check
        .expect(
            check
                .request(Method::GET, "/healthz")
                .header("X-API-Key", ENV_KEY),
            200,
            None,
        )
        .await;
    check
        .expect(
            check.request(Method::HEAD, "/healthz").bearer_auth(ENV_KEY),
            200,
            None,
        )
        .await;

    // 401: no key, an unknown key; WWW-Authenticate is checked as a documented header.
    check
        .expect(
            check.request(Method::POST, "/score").json(&text),
            401,
            Some("unauthorized"),
        )
        .await;
    check
        .expect(
            check
                .request(Method::POST, "/score")
                .bearer_auth("not-a-key")
                .json(&text),
            401,
            Some("unauthorized"),
        )
        .await;
    let error = check
        .expect(
            check.request(Method::GET, "/healthz"),
            401,
            Some("unauthorized"),
        )
        .await
        .expect("an error body");
    check
        .expect(check.request(Method::HEAD, "/healthz"), 401, None)
        .await;

    // 400: not JSON, not an object, no text, text not a string.
    let bad_bodies: [(&[u8], &str); 4] = [
        (b"{\"text\": ", "invalid_json"),
        (b"[\"text\"]", "invalid_body"),
        (b"{\"txt\": \"hello\"}", "missing_text"),
        (b"{\"text\": 42}", "invalid_text"),
    ];
    for (body, code) in bad_bodies {
        check
            .expect(
                check
                    .request(Method::POST, "/score")
                    .bearer_auth(ENV_KEY)
                    .header("Content-Type", "application/json")
                    .body(body.to_vec()),
                400,
                Some(code),
            )
            .await;
    }

    // 404, 405 (with Allow), 413, 415, 422.
    check
        .expect(
            check
                .request(Method::GET, "/no-such-path")
                .bearer_auth(ENV_KEY),
            404,
            Some("not_found"),
        )
        .await;
    check
        .expect(
            check.request(Method::GET, "/score").bearer_auth(ENV_KEY),
            405,
            Some("method_not_allowed"),
        )
        .await;
    check
        .expect(
            check.request(Method::POST, "/healthz").bearer_auth(ENV_KEY),
            405,
            Some("method_not_allowed"),
        )
        .await;
    let too_large = json!({ "text": "a".repeat(70_000) });
    check
        .expect(
            check
                .request(Method::POST, "/score")
                .bearer_auth(ENV_KEY)
                .json(&too_large),
            413,
            Some("payload_too_large"),
        )
        .await;
    check
        .expect(
            check
                .request(Method::POST, "/score")
                .bearer_auth(ENV_KEY)
                .header("Content-Type", "text/plain")
                .body(TEXT),
            415,
            Some("unsupported_media_type"),
        )
        .await;
    check
        .expect(
            check
                .request(Method::POST, "/score")
                .bearer_auth(ENV_KEY)
                .json(&json!({ "text": "Too short." })),
            422,
            Some("text_too_short"),
        )
        .await;
    check
        .expect(
            check
                .request(Method::POST, "/score")
                .bearer_auth(ENV_KEY)
                .json(&json!({ "text": "   " })),
            422,
            Some("empty_text"),
        )
        .await;

    // 503 with Retry-After: while a long job holds the only slot, the next request is refused
    // at once. If the job ends first, the contender gets 200; a few rounds make that harmless.
    let mut saturated = false;
    for _ in 0..5 {
        let client = server.client.clone();
        let url = server.url("/score");
        let job = tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(ENV_KEY)
                .json(&json!({ "text": long_text() }))
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
        let contender = check
            .request(Method::POST, "/score")
            .bearer_auth(ENV_KEY)
            .json(&text)
            .send()
            .await
            .expect("contender");
        if contender.status() == 503 {
            check
                .verify("post", "/score", contender, 503, Some("saturated"))
                .await;
            saturated = true;
        } else {
            assert_eq!(contender.status(), 200, "the contender");
        }
        let first = job.await.unwrap().expect("the long job");
        assert_eq!(first.status(), 200);
        if saturated {
            break;
        }
    }
    assert!(
        saturated,
        "no 503 while the only slot was busy, in 5 rounds"
    );

    assert_validator_refuses(&doc, &score, &error);

    // Every documented response was produced and checked.
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            for status in operation["responses"]
                .as_object()
                .expect("responses")
                .keys()
            {
                if !UNREACHABLE.contains(&(method.as_str(), path.as_str(), status.as_str())) {
                    documented.insert((method.clone(), path.clone(), status.clone()));
                }
            }
        }
    }
    let unchecked: Vec<_> = documented.difference(&check.seen).collect();
    assert!(
        unchecked.is_empty(),
        "documented but never produced: {unchecked:?}"
    );
}
