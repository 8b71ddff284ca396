//! detector-api: the scoring service (see the crate's modules for each concern), plus the
//! `healthcheck` subcommand used by the container and the `openapi` subcommand that prints the API
//! document.
#![forbid(unsafe_code)]

mod auth;
mod body;
mod build_info;
mod config;
mod error;
mod healthcheck;
mod json_errors;
mod keys;
mod limiter;
mod logging;
mod metrics;
mod metrics_endpoint;
mod observe;
mod openapi;
mod routes;
mod server;
mod signals;
mod state;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::config::{Cli, Command};

/// candle runs large element-wise operations on one process-wide pool of this many threads, shared
/// by every job behind one lock; with one, each job does them on its own thread, which is the
/// one-thread-per-job layout the slots assume (measured 1.29x throughput at cap 4,
/// docs/benchmarks.md). An operator's own setting wins.
const CANDLE_THREADS_DEFAULT: &str = "1";

fn main() -> ExitCode {
    // Before any thread exists: candle reads the variable once, when it first builds its pool.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", CANDLE_THREADS_DEFAULT);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck(args)) => match healthcheck(&cli.config, &args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Openapi) => {
            print!("{}", openapi::document());
            ExitCode::SUCCESS
        }
        None => serve(cli.config),
    }
}

fn healthcheck(config: &config::Config, args: &config::HealthcheckArgs) -> anyhow::Result<()> {
    let key = match &args.key {
        Some(secret) => Some(secret.api_key("DETECTOR_HEALTHCHECK_KEY")?),
        None => config.api_key()?,
    };
    healthcheck::run(
        config.bind,
        key.as_ref(),
        Duration::from_secs(args.timeout_secs),
    )
}

fn serve(config: config::Config) -> ExitCode {
    logging::init(config.log_format);
    let result = actix_web::rt::System::new().block_on(server::run(config));
    match result {
        // Exit here rather than return: a blocking job that outlived the grace period would make
        // the runtime's teardown wait for it.
        Ok(()) => std::process::exit(0),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "Start-up failed.");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
