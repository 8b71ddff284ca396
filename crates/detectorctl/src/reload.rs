//! Telling the running service to re-read its key file: SIGHUP to a pid, SIGHUP through compose,
//! or, when neither was asked for, a printed reminder of how. Never silent.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How to reach the running service after a key change.
#[derive(clap::Args, Debug, Clone)]
pub struct ReloadArgs {
    /// Send SIGHUP to this process (detector-api running on the host) after the change.
    #[arg(long, env = "DETECTORCTL_PID", conflicts_with_all = ["pid_file", "compose_service"])]
    pub pid: Option<i32>,
    /// Read the pid to signal from this file.
    #[arg(long, env = "DETECTORCTL_PID_FILE", conflicts_with = "compose_service")]
    pub pid_file: Option<PathBuf>,
    /// Signal this compose service instead: runs `COMPOSE kill -s HUP SERVICE`.
    #[arg(long, env = "DETECTORCTL_COMPOSE_SERVICE")]
    pub compose_service: Option<String>,
    /// The compose command for --compose-service, split on spaces.
    #[arg(
        long,
        env = "DETECTORCTL_COMPOSE_CMD",
        default_value = "detector-stack-compose"
    )]
    pub compose_cmd: String,
    /// Directory to run the compose command in.
    #[arg(long, env = "DETECTORCTL_COMPOSE_DIR")]
    pub compose_dir: Option<PathBuf>,
}

/// The reminder printed when no reload target was given.
pub const RELOAD_REMINDER: &str =
    "The running service has not been told. Reload its keys without a restart: \
`detector-stack-compose kill -s HUP detector`, or `kill -HUP <pid of detector-api>`, \
or pass --pid, --pid-file or --compose-service to this command.";

impl ReloadArgs {
    /// Checks the reload target before the key file changes, so that a typo in `--pid` fails
    /// the command with the file untouched (rather than after a key was issued).
    pub fn preflight(&self) -> anyhow::Result<()> {
        if let Some(pid) = self.pid_to_signal()? {
            check_pid(pid)?;
        }
        Ok(())
    }

    fn pid_to_signal(&self) -> anyhow::Result<Option<i32>> {
        if let Some(pid) = self.pid {
            return Ok(Some(pid));
        }
        let Some(path) = &self.pid_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --pid-file {}", path.display()))?;
        let pid = text
            .trim()
            .parse()
            .with_context(|| format!("--pid-file {} does not hold a pid", path.display()))?;
        Ok(Some(pid))
    }

    /// Signals the service; returns a sentence for the operator saying what was done.
    pub fn reload(&self) -> anyhow::Result<String> {
        if let Some(pid) = self.pid_to_signal()? {
            check_pid(pid)?;
            kill(Pid::from_raw(pid), Signal::SIGHUP)
                .with_context(|| format!("sending SIGHUP to pid {pid}"))?;
            return Ok(format!(
                "Sent SIGHUP to pid {pid}: the service reloads its keys."
            ));
        }
        if let Some(service) = &self.compose_service {
            let mut words = self.compose_cmd.split_whitespace();
            let program = words.next().context("--compose-cmd is empty")?;
            let mut command = Command::new(program);
            command.args(words).args(["kill", "-s", "HUP", service]);
            if let Some(dir) = &self.compose_dir {
                command.current_dir(dir);
            }
            let status = command
                .status()
                .with_context(|| format!("running `{} kill -s HUP {service}`", self.compose_cmd))?;
            if !status.success() {
                bail!(
                    "`{} kill -s HUP {service}` failed ({status})",
                    self.compose_cmd
                );
            }
            return Ok(format!(
                "Sent SIGHUP to compose service {service}: the service reloads its keys."
            ));
        }
        Ok(RELOAD_REMINDER.to_owned())
    }
}

fn check_pid(pid: i32) -> anyhow::Result<()> {
    if pid <= 0 {
        // kill(0) and kill(-1) signal whole process groups: never what an operator means.
        bail!("pid {pid} is not a single process");
    }
    // No signal: only asks whether the process exists and may be signalled.
    kill(Pid::from_raw(pid), None).with_context(|| format!("no process {pid} to signal"))
}
