//! The one place where the service is configured: every flag is also a `DETECTOR_*` environment
//! variable, and each doc comment below is its `--help` text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use auth::ApiKey;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "detector-api",
    version,
    about = "AI-generated-text detector: the HTTP scoring service."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Calls /healthz on the configured bind address with the configured key; exits 0 when the
    /// service answers 200, 1 otherwise (the container healthcheck, so the image needs no curl).
    Healthcheck(HealthcheckArgs),
    /// Prints the service's OpenAPI document (JSON) and exits; docs/openapi.json is its output.
    Openapi,
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Key to send; defaults to DETECTOR_API_KEY. Needed when only a key file is configured,
    /// because the key file holds hashes.
    #[arg(long, env = "DETECTOR_HEALTHCHECK_KEY", hide_env_values = true)]
    pub key: Option<Secret>,
    /// Give up after this many seconds.
    #[arg(long, env = "DETECTOR_HEALTHCHECK_TIMEOUT_SECS", default_value_t = 5)]
    pub timeout_secs: u64,
}

/// Service settings. Defaults are the safe production values; `Debug` redacts the key.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// API listen address.
    #[arg(long, env = "DETECTOR_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Prometheus /metrics listen address; kept apart so the edge never proxies it.
    #[arg(long, env = "DETECTOR_METRICS_BIND", default_value = "127.0.0.1:9464")]
    pub metrics_bind: SocketAddr,

    /// GGUF weights of the detector model (fetched by scripts/fetch-model).
    #[arg(
        long,
        env = "DETECTOR_MODEL_PATH",
        default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    )]
    pub model_path: PathBuf,

    /// Inference jobs that may run at once; one more gets 503 + Retry-After at once, never a
    /// queue. 4 fits a 2-core VM: one thread per job, the rest of the work is IO.
    #[arg(long, env = "DETECTOR_MAX_CONCURRENT_JOBS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_concurrent_jobs: u32,

    /// Seconds announced in Retry-After when every inference slot is busy.
    #[arg(long, env = "DETECTOR_RETRY_AFTER_SECS", default_value_t = 1)]
    pub retry_after_secs: u32,

    /// Largest request body accepted; larger ones get 413. 64 KiB holds far more text than the
    /// token limit scores.
    #[arg(long, env = "DETECTOR_MAX_BODY_BYTES", default_value_t = 65536,
          value_parser = clap::value_parser!(u64).range(1..=16 * 1024 * 1024))]
    pub max_body_bytes: u64,

    /// Texts with fewer tokens are unscorable (422).
    #[arg(long, env = "DETECTOR_MIN_TOKENS", default_value_t = 16)]
    pub min_tokens: usize,

    /// Only the first this-many tokens are scored; the response then says `truncated: true`.
    #[arg(long, env = "DETECTOR_MAX_TOKENS", default_value_t = 512)]
    pub max_tokens: usize,

    /// Nice value (0-19) of the threads that run inference jobs. Above 0, /healthz and refusals
    /// are answered ahead of running jobs on a saturated machine, at the cost of goodput when
    /// refusals are many (docs/benchmarks.md); 0 keeps the service's own priority.
    #[arg(long, env = "DETECTOR_INFERENCE_NICE", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=inference::MAX_JOB_NICE as i64))]
    pub inference_nice: u8,

    /// The one shared key of a simple deployment (logged as key id "env").
    #[arg(long, env = "DETECTOR_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,

    /// JSON key file of named, hashed keys (managed with `detectorctl keys`); reloaded on SIGHUP.
    #[arg(long, env = "DETECTOR_KEY_FILE")]
    pub key_file: Option<PathBuf>,

    /// Log format: text for people, json for collectors.
    #[arg(long, env = "DETECTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// On SIGTERM, jobs in flight get at most this long to finish before the process exits.
    #[arg(long, env = "DETECTOR_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A secret as clap reads it. Parsing never fails here, because clap would echo the rejected
/// value in its error message; the key is validated by [`Secret::api_key`] instead.
#[derive(Clone)]
pub struct Secret(String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Secret {
    /// The key, validated; `name` is the variable named in the error (the value never is).
    pub fn api_key(&self, name: &str) -> anyhow::Result<ApiKey> {
        ApiKey::parse(&self.0).map_err(|e| anyhow::anyhow!("{name} is not a usable key: {e}"))
    }
}

impl Config {
    /// The environment key; an empty variable counts as unset (Compose files often pass one).
    pub fn api_key(&self) -> anyhow::Result<Option<ApiKey>> {
        self.api_key
            .as_ref()
            .filter(|secret| !secret.0.is_empty())
            .map(|secret| secret.api_key("DETECTOR_API_KEY"))
            .transpose()
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn detector_config(&self) -> inference::DetectorConfig {
        inference::DetectorConfig {
            min_tokens: self.min_tokens,
            max_tokens: self.max_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_the_keys() {
        let cli = Cli::parse_from([
            "detector-api",
            "--api-key",
            "super-secret-value",
            "healthcheck",
            "--key",
            "other-secret-value",
        ]);
        let debug = format!("{cli:?}");
        assert!(!debug.contains("super-secret-value"), "{debug}");
        assert!(!debug.contains("other-secret-value"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn defaults_are_the_documented_production_values() {
        let config = Cli::parse_from(["detector-api"]).config;
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.metrics_bind.to_string(), "127.0.0.1:9464");
        assert_eq!(config.max_concurrent_jobs, 4);
        assert_eq!(config.retry_after_secs, 1);
        assert_eq!(config.max_body_bytes, 65536);
        assert_eq!((config.min_tokens, config.max_tokens), (16, 512));
        assert_eq!(config.inference_nice, 0);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.shutdown_grace_secs, 20);
    }
}
