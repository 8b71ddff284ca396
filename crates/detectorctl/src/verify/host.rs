//! `verify --host`: the checks that only the VM itself can make. Each one runs a host tool
//! through a [`CommandRunner`], so a missing tool (no fail2ban, no systemd as PID 1, no compose)
//! becomes a failing row that names it, never a crash, and tests can swap the tools.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::report::Check;

/// The OCI label that carries the commit the image was built from.
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";
const SERVICE_LABEL: &str = "com.docker.compose.service";
const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";

#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("`{program}` not found (is it installed and on PATH?)")]
    NotFound { program: String },
    #[error("`{program}` did not finish within {secs}s")]
    TimedOut { program: String, secs: u64 },
    #[error("`{program}` could not run: {source}")]
    Io {
        program: String,
        source: std::io::Error,
    },
}

/// Runs a host tool. The real one spawns processes; tests may answer from a table.
pub trait CommandRunner {
    fn run(
        &self,
        program: &str,
        args: &[String],
        dir: Option<&Path>,
    ) -> impl std::future::Future<Output = Result<CommandOutput, RunError>>;
}

/// Spawns the program, bounded by a timeout (a hung docker daemon must not hang verify).
pub struct SystemRunner {
    pub timeout: Duration,
}

impl CommandRunner for SystemRunner {
    async fn run(
        &self,
        program: &str,
        args: &[String],
        dir: Option<&Path>,
    ) -> Result<CommandOutput, RunError> {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let output = match tokio::time::timeout(self.timeout, command.output()).await {
            Err(_) => {
                return Err(RunError::TimedOut {
                    program: program.to_owned(),
                    secs: self.timeout.as_secs(),
                })
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RunError::NotFound {
                    program: program.to_owned(),
                })
            }
            Ok(Err(source)) => {
                return Err(RunError::Io {
                    program: program.to_owned(),
                    source,
                })
            }
            Ok(Ok(o)) => o,
        };
        Ok(CommandOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// Everything `--host` needs to know; each tool is a flag so that another path (or a stand-in)
/// can be used.
#[derive(clap::Args, Debug, Clone)]
pub struct HostArgs {
    /// The dedicated access log nginx writes to the host bind mount (DETECTOR_EDGE_LOG in
    /// nginx/edge.env).
    #[arg(
        long,
        env = "DETECTOR_EDGE_LOG",
        default_value = "/var/log/detector-stack/scoring.log"
    )]
    pub access_log: PathBuf,
    /// The access log must have been written within this many seconds.
    #[arg(
        long,
        env = "DETECTORCTL_ACCESS_LOG_MAX_AGE_SECS",
        default_value_t = 300
    )]
    pub access_log_max_age_secs: u64,
    /// fail2ban jails that must be active (comma-separated).
    #[arg(
        long,
        env = "DETECTORCTL_JAILS",
        value_delimiter = ',',
        default_value = "sshd,detector-auth,detector-botsearch"
    )]
    pub jails: Vec<String>,
    /// The systemd timer that renews certificates; must be enabled.
    #[arg(
        long,
        env = "DETECTORCTL_RENEW_TIMER",
        default_value = "certbot-renew.timer"
    )]
    pub renew_timer: String,
    /// Compose services that must be running (and healthy where they have a healthcheck).
    #[arg(
        long,
        env = "DETECTORCTL_SERVICES",
        value_delimiter = ',',
        default_value = "nginx,detector"
    )]
    pub services: Vec<String>,
    /// The compose service whose image revision must equal the checkout's HEAD.
    #[arg(long, env = "DETECTORCTL_DETECTOR_SERVICE", default_value = "detector")]
    pub detector_service: String,
    /// The deployed checkout, whose HEAD the running image must carry.
    #[arg(
        long,
        env = "DETECTOR_STACK_DIR",
        default_value = "/opt/detector-stack"
    )]
    pub checkout: PathBuf,
    /// Directory to run the compose command in [default: --checkout].
    #[arg(long, env = "DETECTORCTL_COMPOSE_DIR")]
    pub compose_dir: Option<PathBuf>,
    /// The compose command, split on spaces: the host's wrapper that fills in the project name
    /// and file (host/detector-stack-compose), or e.g. "docker-compose -f compose/compose.yaml".
    #[arg(
        long,
        env = "DETECTORCTL_COMPOSE_CMD",
        default_value = "detector-stack-compose"
    )]
    pub compose_cmd: String,
    /// The docker CLI (for `docker inspect`).
    #[arg(long, env = "DETECTORCTL_DOCKER", default_value = "docker")]
    pub docker: String,
    /// The fail2ban client.
    #[arg(
        long,
        env = "DETECTORCTL_FAIL2BAN_CLIENT",
        default_value = "fail2ban-client"
    )]
    pub fail2ban_client: String,
    /// systemctl.
    #[arg(long, env = "DETECTORCTL_SYSTEMCTL", default_value = "systemctl")]
    pub systemctl: String,
    /// git.
    #[arg(long, env = "DETECTORCTL_GIT", default_value = "git")]
    pub git: String,
}

pub async fn host_checks<R: CommandRunner>(
    runner: &R,
    args: &HostArgs,
    skip: &dyn Fn(&str) -> bool,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut push = |c: Check| {
        if skip(&c.name) {
            checks.push(Check::skip(c.name));
        } else {
            checks.push(c);
        }
    };
    push(access_log(args));
    push(fail2ban_jails(runner, args).await);
    push(renew_timer(runner, args).await);
    let (services, revision) = compose_checks(runner, args).await;
    push(services);
    push(revision);
    checks
}

fn access_log(args: &HostArgs) -> Check {
    const NAME: &str = "access-log";
    let path = &args.access_log;
    let hint = format!(
        "the access_log directive of the nginx templates and the bind mount of {} in compose; `detector-stack-compose logs nginx`",
        path.display()
    );
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Check::fail(NAME, format!("{}: {e}", path.display()), hint),
    };
    if meta.len() == 0 {
        return Check::fail(NAME, format!("{} is empty", path.display()), hint);
    }
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    Check::from_bool(
        NAME,
        age.as_secs() <= args.access_log_max_age_secs,
        format!(
            "{} last written {}s ago (limit {}s)",
            path.display(),
            age.as_secs(),
            args.access_log_max_age_secs
        ),
        hint,
    )
}

async fn fail2ban_jails<R: CommandRunner>(runner: &R, args: &HostArgs) -> Check {
    const NAME: &str = "fail2ban-jails";
    const HINT: &str = "`systemctl status fail2ban`, `fail2ban-client status`, the jail files under /etc/fail2ban/jail.d (host/)";
    let output = match runner
        .run(&args.fail2ban_client, &["status".into()], None)
        .await
    {
        Ok(o) => o,
        Err(e) => return Check::fail(NAME, e.to_string(), HINT),
    };
    if !output.success {
        return Check::fail(
            NAME,
            format!(
                "`{} status` failed: {}",
                args.fail2ban_client,
                first_line(&output.stderr)
            ),
            HINT,
        );
    }
    let active = parse_jail_list(&output.stdout);
    let missing: Vec<&String> = args.jails.iter().filter(|j| !active.contains(j)).collect();
    if missing.is_empty() {
        Check::ok(NAME, format!("active: {}", active.join(", ")))
    } else {
        Check::fail(
            NAME,
            format!(
                "not active: {} (active: {})",
                join(&missing),
                if active.is_empty() {
                    "none".into()
                } else {
                    active.join(", ")
                }
            ),
            HINT,
        )
    }
}

/// The names after "Jail list:" in `fail2ban-client status`.
pub fn parse_jail_list(status: &str) -> Vec<String> {
    status
        .lines()
        .find_map(|l| l.split_once("Jail list:").map(|(_, rest)| rest))
        .map(|rest| {
            rest.split(',')
                .map(|j| j.trim().to_owned())
                .filter(|j| !j.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

async fn renew_timer<R: CommandRunner>(runner: &R, args: &HostArgs) -> Check {
    const NAME: &str = "renew-timer";
    let hint = format!(
        "`systemctl enable --now {}` (installed by host/install.sh); `systemctl list-timers`",
        args.renew_timer
    );
    let run = runner
        .run(
            &args.systemctl,
            &["is-enabled".into(), args.renew_timer.clone()],
            None,
        )
        .await;
    match run {
        Err(e) => Check::fail(NAME, e.to_string(), hint),
        Ok(o) => {
            let state = o.stdout.trim();
            if o.success && state == "enabled" {
                Check::ok(NAME, format!("{} enabled", args.renew_timer))
            } else {
                let why = if state.is_empty() {
                    first_line(&o.stderr)
                } else {
                    state.to_owned()
                };
                Check::fail(NAME, format!("{}: {why}", args.renew_timer), hint)
            }
        }
    }
}

/// One container as `docker inspect` describes it, reduced to what the checks use.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerState {
    pub service: String,
    pub status: String,
    /// None when the container has no healthcheck.
    pub health: Option<String>,
    pub revision: Option<String>,
}

pub fn parse_inspect(json: &str) -> Result<Vec<ContainerState>, serde_json::Error> {
    let items: Vec<Value> = serde_json::from_str(json)?;
    Ok(items
        .iter()
        // `compose run` leaves one-off containers with the service's label: not the service.
        .filter(|c| c["Config"]["Labels"][ONEOFF_LABEL].as_str() != Some("True"))
        .map(|c| {
            let labels = &c["Config"]["Labels"];
            let text = |v: &Value| v.as_str().map(str::to_owned);
            ContainerState {
                service: text(&labels[SERVICE_LABEL]).unwrap_or_default(),
                status: text(&c["State"]["Status"]).unwrap_or_default(),
                health: text(&c["State"]["Health"]["Status"]),
                revision: text(&labels[REVISION_LABEL]).filter(|r| !r.is_empty()),
            }
        })
        .collect())
}

/// The compose project's containers: `COMPOSE ps -q` then `docker inspect`. This works with
/// docker-compose v1 (no JSON output of its own) and the v2 plugin alike.
async fn compose_containers<R: CommandRunner>(
    runner: &R,
    args: &HostArgs,
) -> Result<Vec<ContainerState>, String> {
    let mut words = args.compose_cmd.split_whitespace().map(str::to_owned);
    let program = words.next().ok_or("--compose-cmd is empty")?;
    let mut ps_args: Vec<String> = words.collect();
    ps_args.extend(["ps".into(), "-q".into()]);
    let dir = args.compose_dir.as_deref().unwrap_or(&args.checkout);
    let ps = runner
        .run(&program, &ps_args, Some(dir))
        .await
        .map_err(|e| e.to_string())?;
    if !ps.success {
        return Err(format!(
            "`{} ps -q` in {} failed: {}",
            args.compose_cmd,
            dir.display(),
            first_line(&ps.stderr)
        ));
    }
    let ids: Vec<String> = ps.stdout.split_whitespace().map(str::to_owned).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut inspect_args = vec!["inspect".to_owned()];
    inspect_args.extend(ids);
    let inspect = runner
        .run(&args.docker, &inspect_args, None)
        .await
        .map_err(|e| e.to_string())?;
    if !inspect.success {
        return Err(format!(
            "`{} inspect` failed: {}",
            args.docker,
            first_line(&inspect.stderr)
        ));
    }
    parse_inspect(&inspect.stdout).map_err(|e| format!("`docker inspect` output: {e}"))
}

async fn compose_checks<R: CommandRunner>(runner: &R, args: &HostArgs) -> (Check, Check) {
    const SERVICES: &str = "compose-services";
    const REVISION: &str = "image-revision";
    const HINT: &str =
        "`detector-stack-compose ps`, `detector-stack-compose logs SERVICE`, `systemctl status detector-stack`";
    let containers = match compose_containers(runner, args).await {
        Ok(c) => c,
        Err(e) => {
            return (
                Check::fail(SERVICES, e.clone(), HINT),
                Check::fail(REVISION, format!("no container to read: {e}"), HINT),
            )
        }
    };
    let by_service: BTreeMap<&str, &ContainerState> =
        containers.iter().map(|c| (c.service.as_str(), c)).collect();
    (
        services_check(&by_service, &args.services, SERVICES, HINT),
        revision_check(
            runner,
            args,
            by_service.get(args.detector_service.as_str()).copied(),
        )
        .await,
    )
}

fn services_check(
    by_service: &BTreeMap<&str, &ContainerState>,
    wanted: &[String],
    name: &str,
    hint: &str,
) -> Check {
    let mut seen = Vec::new();
    let mut bad = Vec::new();
    for service in wanted {
        match by_service.get(service.as_str()) {
            None => bad.push(format!("{service}: no container")),
            Some(c) => {
                let healthy = c.health.as_deref().is_none_or(|h| h == "healthy");
                let text = match &c.health {
                    Some(h) => format!("{service}: {} ({h})", c.status),
                    None => format!("{service}: {} (no healthcheck)", c.status),
                };
                if c.status == "running" && healthy {
                    seen.push(text);
                } else {
                    bad.push(text);
                }
            }
        }
    }
    if bad.is_empty() {
        Check::ok(name, seen.join(", "))
    } else {
        bad.extend(seen);
        Check::fail(name, bad.join(", "), hint)
    }
}

async fn revision_check<R: CommandRunner>(
    runner: &R,
    args: &HostArgs,
    detector: Option<&ContainerState>,
) -> Check {
    const NAME: &str = "image-revision";
    const HINT: &str = "rebuild and restart from the deployed checkout: commit or discard local edits, then `scripts/build-detector-image` and `detector-stack-compose up` (the image must be built from HEAD)";
    let Some(container) = detector else {
        return Check::fail(
            NAME,
            format!("no running container for service {}", args.detector_service),
            HINT,
        );
    };
    let Some(label) = &container.revision else {
        return Check::fail(
            NAME,
            format!(
                "the {} image has no {REVISION_LABEL} label",
                args.detector_service
            ),
            HINT,
        );
    };
    let git = |extra: &[&str]| {
        let mut a = vec!["-C".to_owned(), args.checkout.display().to_string()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let head = match runner
        .run(&args.git, &git(&["rev-parse", "HEAD"]), None)
        .await
    {
        Ok(o) if o.success => o.stdout.trim().to_owned(),
        Ok(o) => {
            return Check::fail(
                NAME,
                format!(
                    "`git rev-parse HEAD` in {}: {}",
                    args.checkout.display(),
                    first_line(&o.stderr)
                ),
                HINT,
            )
        }
        Err(e) => return Check::fail(NAME, e.to_string(), HINT),
    };
    // Tracked files only: the image is built from tracked files, so an untracked file cannot
    // change it, but an edited tracked file makes HEAD a lie about what would be built.
    let status = match runner
        .run(
            &args.git,
            &git(&["status", "--porcelain", "--untracked-files=no"]),
            None,
        )
        .await
    {
        Ok(o) if o.success => o.stdout,
        Ok(o) => {
            return Check::fail(
                NAME,
                format!("`git status`: {}", first_line(&o.stderr)),
                HINT,
            )
        }
        Err(e) => return Check::fail(NAME, e.to_string(), HINT),
    };
    let dirty: Vec<&str> = status.lines().filter(|l| !l.trim().is_empty()).collect();
    if label != &head {
        Check::fail(
            NAME,
            format!(
                "image built from {} but the checkout is at {}",
                short(label),
                short(&head)
            ),
            HINT,
        )
    } else if !dirty.is_empty() {
        Check::fail(
            NAME,
            format!(
                "image and HEAD are {} but the tree is dirty: {}",
                short(&head),
                dirty.join("; ")
            ),
            HINT,
        )
    } else {
        Check::ok(
            NAME,
            format!("image and checkout at {}, tree clean", short(&head)),
        )
    }
}

fn short(rev: &str) -> &str {
    rev.get(..12).unwrap_or(rev)
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no output)")
        .to_owned()
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Answers from a table keyed by "program arg arg..."; anything else is "not found".
    struct TableRunner(HashMap<String, CommandOutput>);

    impl CommandRunner for TableRunner {
        async fn run(
            &self,
            program: &str,
            args: &[String],
            _dir: Option<&Path>,
        ) -> Result<CommandOutput, RunError> {
            let key = std::iter::once(program.to_owned())
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            self.0.get(&key).cloned().ok_or(RunError::NotFound {
                program: program.to_owned(),
            })
        }
    }

    fn out(stdout: &str) -> CommandOutput {
        CommandOutput {
            success: true,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    fn args(log: &Path) -> HostArgs {
        HostArgs {
            access_log: log.to_owned(),
            access_log_max_age_secs: 300,
            jails: vec!["sshd".into(), "detector-auth".into()],
            renew_timer: "certbot-renew.timer".into(),
            services: vec!["nginx".into(), "detector".into()],
            detector_service: "detector".into(),
            checkout: "/srv/checkout".into(),
            compose_dir: None,
            compose_cmd: "detector-stack-compose".into(),
            docker: "docker".into(),
            fail2ban_client: "fail2ban-client".into(),
            systemctl: "systemctl".into(),
            git: "git".into(),
        }
    }

    const HEAD: &str = "0123456789abcdef0123456789abcdef01234567";

    fn inspect(detector_health: &str, revision: &str) -> String {
        serde_json::json!([
            {"Config": {"Labels": {SERVICE_LABEL: "nginx"}}, "State": {"Status": "running"}},
            {"Config": {"Labels": {SERVICE_LABEL: "detector", REVISION_LABEL: revision}},
             "State": {"Status": "running", "Health": {"Status": detector_health}}},
            // A stopped `compose run detector ...` left behind: ignored.
            {"Config": {"Labels": {SERVICE_LABEL: "detector", ONEOFF_LABEL: "True"}},
             "State": {"Status": "exited"}}
        ])
        .to_string()
    }

    fn good_table(health: &str, revision: &str, dirty: &str) -> HashMap<String, CommandOutput> {
        HashMap::from([
            (
                "fail2ban-client status".into(),
                out("Status\n|- Number of jail:\t2\n`- Jail list:\tdetector-auth, sshd\n"),
            ),
            (
                "systemctl is-enabled certbot-renew.timer".into(),
                out("enabled\n"),
            ),
            ("detector-stack-compose ps -q".into(), out("aaa\nbbb\n")),
            (
                "docker inspect aaa bbb".into(),
                out(&inspect(health, revision)),
            ),
            (
                "git -C /srv/checkout rev-parse HEAD".into(),
                out(&format!("{HEAD}\n")),
            ),
            (
                "git -C /srv/checkout status --porcelain --untracked-files=no".into(),
                out(dirty),
            ),
        ])
    }

    fn run(table: HashMap<String, CommandOutput>) -> Vec<Check> {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        std::fs::write(&log, "a line\n").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(host_checks(&TableRunner(table), &args(&log), &|_| false))
    }

    fn check(table: HashMap<String, CommandOutput>, failing: &[&str], detail_has: &str) {
        let checks = run(table);
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.outcome == super::super::report::Outcome::Fail)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, failing, "{checks:#?}");
        assert!(
            checks.iter().any(|c| c.detail.contains(detail_has)),
            "no detail contains {detail_has:?}: {checks:#?}"
        );
    }

    #[test]
    fn a_good_host_passes() {
        check(good_table("healthy", HEAD, ""), &[], "tree clean");
    }

    #[test]
    fn an_unhealthy_service_fails_compose_services() {
        check(
            good_table("unhealthy", HEAD, ""),
            &["compose-services"],
            "detector: running (unhealthy)",
        );
    }

    #[test]
    fn another_revision_fails_image_revision() {
        check(
            good_table("healthy", "fedcba9876543210", ""),
            &["image-revision"],
            "image built from fedcba987654",
        );
    }

    #[test]
    fn a_dirty_tree_fails_image_revision() {
        check(
            good_table("healthy", HEAD, " M compose/compose.yaml\n"),
            &["image-revision"],
            "tree is dirty",
        );
    }

    #[test]
    fn a_missing_jail_fails_fail2ban_jails() {
        let mut table = good_table("healthy", HEAD, "");
        table.insert(
            "fail2ban-client status".into(),
            out("Status\n`- Jail list:\tsshd\n"),
        );
        check(table, &["fail2ban-jails"], "not active: detector-auth");
    }

    #[test]
    fn missing_tools_fail_their_rows_by_name() {
        check(
            HashMap::new(),
            &[
                "fail2ban-jails",
                "renew-timer",
                "compose-services",
                "image-revision",
            ],
            "`fail2ban-client` not found",
        );
    }

    #[test]
    fn parses_jail_lists() {
        assert_eq!(parse_jail_list("`- Jail list:\t"), Vec::<String>::new());
        assert_eq!(parse_jail_list("`- Jail list:\ta,b, c"), ["a", "b", "c"]);
        assert_eq!(parse_jail_list("nothing"), Vec::<String>::new());
    }
}
