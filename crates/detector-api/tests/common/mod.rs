//! Test harness: starts the real `detector-api` binary on free loopback ports with a tiny
//! random-weight model (or the real one), and helpers to talk to it, signal it and read its logs.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The env key every test server accepts unless a test says otherwise.
pub const ENV_KEY: &str = "test-env-key-0123456789abcdef";

/// Real text long enough to pass the default 16-token minimum with either model.
pub const TEXT: &str = "The committee met on Tuesday to review the budget for the coming year, \
and after a long discussion it agreed to postpone the decision until the next meeting.";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_detector-api")
}

pub fn real_model_path() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "the real model is missing at {}; run scripts/fetch-model",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

pub struct ServerBuilder {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl ServerBuilder {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("tiny.gguf");
        inference::testing::write_tiny_model(&model, 7).expect("write the tiny model");
        let mut env = BTreeMap::new();
        env.insert("DETECTOR_MODEL_PATH".into(), model.display().to_string());
        env.insert("DETECTOR_API_KEY".into(), ENV_KEY.into());
        Self { dir, env }
    }

    pub fn real_model(self) -> Self {
        let path = real_model_path();
        self.env("DETECTOR_MODEL_PATH", &path.display().to_string())
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.env.remove(name);
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Spawns the binary without waiting for it to listen.
    pub fn spawn(self) -> Server {
        let port = free_port();
        let metrics_port = free_port();
        let log_path = self.dir.path().join("service.log");
        let log = File::create(&log_path).expect("create log file");
        let mut command = Command::new(bin());
        for (name, _) in std::env::vars() {
            if name.starts_with("DETECTOR_") {
                command.env_remove(name);
            }
        }
        command
            .env("DETECTOR_BIND", format!("127.0.0.1:{port}"))
            .env("DETECTOR_METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
            .env_remove("RUST_LOG")
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let child = command.spawn().expect("spawn detector-api");
        Server {
            child,
            port,
            metrics_port,
            log_path,
            dir: self.dir,
            client: client(),
        }
    }

    /// Spawns the binary and waits until it answers HTTP.
    pub async fn start(self) -> Server {
        let mut server = self.spawn();
        server.wait_ready().await;
        server
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("reqwest client")
}

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub metrics_port: u16,
    pub log_path: PathBuf,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Any HTTP answer (a 401 for /healthz without key) means the server is up.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("detector-api exited early ({status}):\n{}", self.logs());
            }
            if self.client.get(self.url("/healthz")).send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "detector-api did not listen within 120 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("the `kill` tool (procps) is needed to signal the service");
        assert!(status.success(), "kill -s {name} failed");
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "detector-api did not exit within {timeout:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn scrape(&self) -> Metrics {
        let text = self
            .client
            .get(self.metrics_url())
            .send()
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .expect("metrics body");
        Metrics::parse(&text)
    }

    /// Polls the metric until `pred` holds; panics after `timeout`.
    pub async fn wait_metric(
        &self,
        series: &str,
        labels: &[(&str, &str)],
        pred: impl Fn(f64) -> bool,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.scrape().await.get(series, labels);
            if pred(value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} stayed at {value}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn score(&self, key: &str, text: &str) -> reqwest::Response {
        self.client
            .post(self.url("/score"))
            .bearer_auth(key)
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
            .expect("POST /score")
    }

    pub async fn healthz(&self, key: &str) -> reqwest::Response {
        self.client
            .get(self.url("/healthz"))
            .header("X-API-Key", key)
            .send()
            .await
            .expect("GET /healthz")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples of a Prometheus text exposition.
pub struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().expect("sample value");
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest.trim_end_matches('}');
                    let labels = rest
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label pair");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            };
            samples.push((name, labels, value));
        }
        Self(samples)
    }

    /// Sum of the samples of `name` whose labels include `labels` (0 when there is none).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

pub async fn json(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}
