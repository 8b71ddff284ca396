//! detectorctl: the operator's command line for detector-stack. Keys are edited through the
//! `auth` crate; everything else talks to the service over HTTP(S) like any client.
#![forbid(unsafe_code)]

mod bench;
mod client;
mod keys;
mod reload;
mod score;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
// A flag given twice takes its last value, so a wrapper script's defaults can be overridden.
#[command(name = "detectorctl", version, about, long_about = None, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, list, revoke and rotate API keys in the service's key file.
    Keys(keys::KeysArgs),
    /// Prove a deployment: every check a row; exits 1 if any fails.
    Verify(Box<verify::VerifyArgs>),
    /// Score a text (a file or stdin) through the API.
    Score(score::ScoreArgs),
    /// Bounded load on /score: throughput, latency percentiles, status counts.
    Bench(bench::BenchArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Keys(args) => keys::run(args).map(|()| true),
        Command::Verify(args) => verify::run(args).await,
        Command::Score(args) => score::run(args).await,
        Command::Bench(args) => bench::run(args).await,
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            // 2: the command could not run at all, as opposed to 1: it ran and found a failure.
            ExitCode::from(2)
        }
    }
}
