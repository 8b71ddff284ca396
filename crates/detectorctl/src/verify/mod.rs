//! `detectorctl verify`: the runbook's post-deploy proof as one command. Every check is a row;
//! the command exits non-zero when any row fails.

mod host;
mod http;
mod ports;
mod report;
mod tls;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};
use openssl::ssl::SslVersion;
use reqwest::Url;

pub use host::{CommandRunner, HostArgs, SystemRunner};
pub use report::{Check, Report};

use crate::client::ConnectArgs;
use http::HttpTarget;
use tls::TlsTarget;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The plain-HTTP side that must redirect to https on the same name
    /// [default: http://HOST/ built from --url].
    #[arg(long, env = "DETECTORCTL_HTTP_URL")]
    pub http_url: Option<Url>,
    /// Fail when the served certificate has fewer days left than this.
    #[arg(long, env = "DETECTORCTL_MIN_CERT_DAYS", default_value_t = 14)]
    pub min_cert_days: i32,
    /// Ports that must refuse (or drop) connections from here: the detector's internal port, its
    /// metrics port and the legacy plaintext listener.
    #[arg(
        long,
        env = "DETECTORCTL_CLOSED_PORTS",
        value_delimiter = ',',
        default_value = "8080,9464,8000"
    )]
    pub closed_ports: Vec<u16>,
    /// Seconds to wait for a port or TLS probe before taking it as dropped.
    #[arg(long, env = "DETECTORCTL_PROBE_TIMEOUT_SECS", default_value_t = 3)]
    pub probe_timeout_secs: u64,
    /// Leave out these checks (by row name, comma-separated); they show as "skip".
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Print the rows as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also run the checks only the VM itself can make (log, fail2ban, timer, compose, revision).
    #[arg(long)]
    pub host: bool,
    #[command(flatten)]
    pub host_args: HostArgs,
}

/// Runs every check and prints the report; returns whether all passed.
pub async fn run(args: &VerifyArgs) -> anyhow::Result<bool> {
    let runner = SystemRunner {
        timeout: Duration::from_secs(20),
    };
    let report = checks(args, &runner).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(report.ok)
}

pub async fn checks<R: CommandRunner>(args: &VerifyArgs, runner: &R) -> anyhow::Result<Report> {
    let connect = &args.connect;
    let name = connect.host_name()?;
    let http_url = match &args.http_url {
        Some(u) => u.clone(),
        None => {
            let mut u = connect.url.clone();
            u.set_scheme("http")
                .ok()
                .and_then(|_| u.set_port(None).ok())
                .context("deriving --http-url from --url")?;
            u
        }
    };
    let http_name = http_url.host_str().unwrap_or(&name).to_owned();
    let client = connect.client(&[name.as_str(), http_name.as_str()])?;
    let key = connect.api_key();
    let target = HttpTarget {
        client: &client,
        url: &connect.url,
        http_url: &http_url,
        name: &name,
        key: key.as_deref(),
        key_env: &connect.key_env,
    };
    let skipped = |row: &str| {
        args.skip
            .iter()
            .any(|s| s == row || (s == "port-closed" && row.starts_with("port-closed:")))
    };
    let mut rows = Vec::new();
    macro_rules! row {
        ($name:expr, $check:expr) => {
            if skipped($name) {
                rows.push(Check::skip($name));
            } else {
                rows.push($check);
            }
        };
    }
    row!("http-redirect", http::redirect(&target).await);
    row!("healthz-no-key", http::healthz_without_key(&target).await);
    row!("healthz-key", http::healthz_with_key(&target).await);
    row!("score", http::score(&target).await);
    row!("metrics-hidden", http::metrics_hidden(&target).await);
    row!("scanner-404", http::scanner_paths(&target).await);

    let timeout = Duration::from_secs(args.probe_timeout_secs);
    match target_ip(connect, &name) {
        Ok(ip) => {
            for check in socket_checks(args, &name, ip, timeout).await? {
                row!(check.name.clone().as_str(), check);
            }
        }
        // Without an address there is nothing to probe; the host rows below still run.
        Err(e) => rows.push(Check::fail(
            "resolve",
            format!("{name}: {e}"),
            "DNS for the name, or --connect-to IP",
        )),
    }

    if args.host {
        rows.extend(host::host_checks(runner, &args.host_args, &skipped).await);
    }
    Ok(Report::new(rows))
}

/// The rows that open their own connections: the certificate, old TLS versions, closed ports.
async fn socket_checks(
    args: &VerifyArgs,
    name: &str,
    ip: IpAddr,
    timeout: Duration,
) -> anyhow::Result<Vec<Check>> {
    let connect = &args.connect;
    let mut rows = if connect.url.scheme() == "https" {
        let tls = TlsTarget {
            addr: SocketAddr::new(ip, connect.url.port_or_known_default().unwrap_or(443)),
            name: name.to_owned(),
            ca_file: connect.ca_file.clone(),
            timeout,
        };
        let min_days = args.min_cert_days;
        tokio::task::spawn_blocking(move || {
            let mut rows = tls::certificate_checks(&tls, min_days);
            rows.push(tls::legacy_protocol_check(&tls, SslVersion::TLS1, "1.0"));
            rows.push(tls::legacy_protocol_check(&tls, SslVersion::TLS1_1, "1.1"));
            rows
        })
        .await?
    } else {
        let why = format!("--url {} is not https", connect.url);
        ["cert-name", "cert-days", "tls1.0-refused", "tls1.1-refused"]
            .iter()
            .map(|n| Check::fail(*n, why.clone(), "use https://HOST as --url"))
            .collect()
    };
    let ports = args.closed_ports.clone();
    rows.extend(
        tokio::task::spawn_blocking(move || {
            ports
                .iter()
                .map(|p| ports::closed_port_check(ip, *p, timeout))
                .collect::<Vec<_>>()
        })
        .await?,
    );
    Ok(rows)
}

/// The address the probes dial: `--connect-to`, or the first address the name resolves to.
fn target_ip(connect: &ConnectArgs, name: &str) -> anyhow::Result<IpAddr> {
    if let Some(ip) = connect.connect_to {
        return Ok(ip);
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ip);
    }
    match (name, 443).to_socket_addrs()?.next() {
        Some(addr) => Ok(addr.ip()),
        None => bail!("{name} resolves to no address"),
    }
}
