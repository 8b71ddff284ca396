//! Shared by the detectorctl tests: run the CLI, start the real detector-api with the real model
//! on loopback, make throwaway certificates and TLS servers with the openssl CLI.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SAMPLE_TEXT: &str = "The committee met on Tuesday to review the budget for the coming \
year. After a long discussion about road repairs and the library's opening hours, the members \
agreed to postpone the vote until the auditors had finished their report.";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn ctl_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_detectorctl"))
}

/// detectorctl with a clean environment for its own variables; `envs` adds the key variables.
pub fn ctl(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(ctl_binary());
    command.args(args).stdin(Stdio::null());
    command.env_remove("DETECTOR_KEY_FILE");
    command.env_remove("DETECTOR_API_KEY");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("detectorctl runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A tool the test needs, or a failure that names it (never a skip).
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("this test needs `{name}` on PATH; install it (.ci/apt-packages.txt)")
        })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits (bounded) until something accepts TCP on `port`.
pub fn wait_for_port(port: u16, timeout: Duration, child: &mut Child, what: &str) {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early ({status})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on {port} within {timeout:?}");
}

/// A child process killed when the test ends, pass or fail.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real detector-api on loopback with the real model.
pub struct Service {
    pub guard: Guard,
    pub port: u16,
    pub log: PathBuf,
}

impl Service {
    /// `env` adds DETECTOR_* settings (a key file, the slot count).
    pub fn start(dir: &Path, env: &[(&str, String)]) -> Service {
        let binary = ctl_binary().with_file_name("detector-api");
        assert!(
            binary.is_file(),
            "{} is missing: build it with `cargo build --release -p detector-api`",
            binary.display()
        );
        let model = workspace_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            model.is_file(),
            "the model {} is missing: fetch it with `scripts/fetch-model`",
            model.display()
        );
        let port = free_port();
        let log = dir.join(format!("detector-api-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(&binary);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DETECTOR_BIND", format!("127.0.0.1:{port}"))
            .env(
                "DETECTOR_METRICS_BIND",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("DETECTOR_MODEL_PATH", &model)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("detector-api starts");
        // The model loads before the port opens or right after; either way 120 s is ample.
        wait_for_port(port, Duration::from_secs(120), &mut child, "detector-api");
        let service = Service {
            guard: Guard(child),
            port,
            log,
        };
        service.wait_answering(Duration::from_secs(120));
        service
    }

    pub fn pid(&self) -> u32 {
        self.guard.0.id()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_answering(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match curl_status(&format!("{}/healthz", self.url()), None) {
                Some(s) if s != 503 => return,
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        panic!(
            "detector-api did not answer /healthz within {timeout:?}; log:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A blocking HTTP GET with an optional key, through a tiny client that needs no extra crate:
/// the tests ask detectorctl-independent questions with it.
pub fn curl_status(url: &str, key: Option<&str>) -> Option<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .ok()?;
        let mut request = client.get(url);
        if let Some(k) = key {
            request = request.bearer_auth(k);
        }
        request.send().await.ok().map(|r| r.status().as_u16())
    })
}

/// The rows of `verify --json`, by name.
pub fn rows(output: &Output) -> Vec<(String, String, String)> {
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no JSON ({e}):\n{}\n{}",
            stdout(output),
            stderr(output)
        )
    });
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_owned(),
                c["outcome"].as_str().unwrap_or("").to_owned(),
                c["detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Asserts the outcome of one named row.
pub fn assert_row(output: &Output, name: &str, outcome: &str) {
    let rows = rows(output);
    let row = rows
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows:#?}"));
    assert_eq!(row.1, outcome, "row {name}: {row:?}\nall rows: {rows:#?}");
}

/// A throwaway CA and server certificates, made with the openssl CLI.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    ca_key: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let ca = dir.join("ca.pem");
        let ca_key = dir.join("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            path(&ca_key),
            "-out",
            path(&ca),
            "-days",
            "30",
            "-subj",
            "/CN=detectorctl test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        Pki {
            dir: dir.to_owned(),
            ca,
            ca_key,
        }
    }

    /// (certificate, key) for `name`, valid for `days`.
    pub fn issue(&self, name: &str, days: u32) -> (PathBuf, PathBuf) {
        let stem = self.dir.join(format!("{name}-{days}"));
        let key = stem.with_extension("key");
        let csr = stem.with_extension("csr");
        let cert = stem.with_extension("pem");
        let ext = stem.with_extension("ext");
        std::fs::write(
            &ext,
            format!("subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n"),
        )
        .expect("extension file");
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            path(&key),
            "-out",
            path(&csr),
            "-subj",
            &format!("/CN={name}"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            path(&csr),
            "-CA",
            path(&self.ca),
            "-CAkey",
            path(&self.ca_key),
            "-CAcreateserial",
            "-out",
            path(&cert),
            "-days",
            &days.to_string(),
            "-extfile",
            path(&ext),
        ]);
        (cert, key)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn openssl(args: &[&str]) {
    let out = Command::new(require_tool("openssl"))
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// `openssl s_server -www` on a free port with the given certificate; `extra` adds flags
/// (e.g. to accept TLS 1.0).
pub fn tls_server(cert: &Path, key: &Path, extra: &[&str]) -> (Guard, u16) {
    let port = free_port();
    let mut child = Command::new(require_tool("openssl"))
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server starts");
    wait_for_port(
        port,
        Duration::from_secs(10),
        &mut child,
        "openssl s_server",
    );
    (Guard(child), port)
}
