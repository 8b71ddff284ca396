//! How detectorctl reaches the service: one HTTP client built from the connection flags that
//! `verify`, `score` and `bench` share, and the API key read from an environment variable.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use reqwest::{redirect, Certificate, Client, RequestBuilder, Url};

/// A text long enough to be scored (the service refuses fewer than 16 tokens with 422) and short
/// enough to keep a check or a bench request cheap on a CPU.
pub const SAMPLE_TEXT: &str = "The committee met on Tuesday to review the budget for the coming \
year. After a long discussion about road repairs, the library roof and the cost of heating the \
school, the members agreed to postpone the vote until the auditors have finished their report.";

/// Connection flags shared by every command that talks to the service.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Base URL of the service: https://HOST in production (a port may follow for tests).
    #[arg(long, env = "DETECTORCTL_URL")]
    pub url: Url,
    /// Name of the environment variable that holds the API key. The key itself never goes on the
    /// command line, where `ps` and shell history would show it.
    #[arg(long, env = "DETECTORCTL_KEY_ENV", default_value = "DETECTOR_API_KEY")]
    pub key_env: String,
    /// PEM file of CA certificates to trust besides the system's (a private or test CA).
    #[arg(long, env = "DETECTORCTL_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Connect to this IP address instead of resolving the URL's host name; the Host header and
    /// TLS SNI keep the name (like curl --resolve). For checking a server before DNS points at it.
    #[arg(long, env = "DETECTORCTL_CONNECT_TO")]
    pub connect_to: Option<IpAddr>,
    /// Seconds before one request is given up. Bounded so that a hung server cannot hang the CLI.
    #[arg(long, env = "DETECTORCTL_TIMEOUT_SECS", default_value_t = 30)]
    pub timeout_secs: u64,
}

impl ConnectArgs {
    /// The host name of `--url` (what the certificate and redirects must name).
    pub fn host_name(&self) -> anyhow::Result<String> {
        match self.url.host_str() {
            Some(h) => Ok(h.trim_start_matches('[').trim_end_matches(']').to_owned()),
            None => bail!("--url {} has no host name", self.url),
        }
    }

    /// The API key from the environment variable named by `--key-env`, if set and not empty.
    pub fn api_key(&self) -> Option<String> {
        std::env::var(&self.key_env)
            .ok()
            .filter(|k| !k.trim().is_empty())
    }

    /// `path` resolved against `--url` (keeps a path prefix the URL may have).
    pub fn endpoint(&self, path: &str) -> Url {
        join_path(&self.url, path)
    }

    /// An HTTP client that does not follow redirects (verify must see the 301 itself), trusts
    /// `--ca-file` and sends every name in `names` to `--connect-to` when given.
    pub fn client(&self, names: &[&str]) -> anyhow::Result<Client> {
        let mut builder = Client::builder()
            .redirect(redirect::Policy::none())
            .timeout(Duration::from_secs(self.timeout_secs))
            .connect_timeout(Duration::from_secs(self.timeout_secs.min(10)))
            .user_agent(concat!("detectorctl/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --ca-file {}", path.display()))?;
            let certs = Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("parsing --ca-file {} as PEM", path.display()))?;
            builder = builder.tls_certs_merge(certs);
        }
        if let Some(ip) = self.connect_to {
            for name in names {
                // Port 0: the port of each URL is used, so one override serves :80 and :443.
                builder = builder.resolve(name, std::net::SocketAddr::new(ip, 0));
            }
        }
        builder.build().context("building the HTTP client")
    }
}

/// Adds the key the way the product app sends it.
pub fn with_key(request: RequestBuilder, key: &str) -> RequestBuilder {
    request.bearer_auth(key)
}

/// `base` with `path` appended to its path (so `https://h/prefix` + `/score` = `/prefix/score`).
pub fn join_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url.set_query(None);
    url
}

/// reqwest's top-level message is often just "error sending request": the cause says why.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(base: &str, path: &str, expected: &str) {
        let url = join_path(&Url::parse(base).unwrap(), path);
        assert_eq!(url.as_str(), expected);
    }

    #[test]
    fn joins_paths() {
        check("https://d.example", "/score", "https://d.example/score");
        check(
            "https://d.example/",
            "/healthz",
            "https://d.example/healthz",
        );
        check(
            "https://d.example:8443/api/",
            "score",
            "https://d.example:8443/api/score",
        );
        check(
            "http://127.0.0.1:9/?x=1",
            "/.env",
            "http://127.0.0.1:9/.env",
        );
    }
}
