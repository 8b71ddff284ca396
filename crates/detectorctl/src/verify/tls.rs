//! Low-level TLS probes with OpenSSL: the served certificate (valid for the name, days left) and
//! whether the server still completes a TLS 1.0 or 1.1 handshake. reqwest hides both.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509VerifyResult;

use super::report::Check;

/// Where to open a TLS connection: the address to dial and the name to send as SNI and check.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    pub addr: SocketAddr,
    pub name: String,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("TCP connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("OpenSSL set-up: {0}")]
    Setup(#[from] openssl::error::ErrorStack),
    #[error("TLS handshake: {0}")]
    Handshake(String),
}

struct CertificateSeen {
    verify: X509VerifyResult,
    days_left: i32,
    subject: String,
    issuer: String,
    protocol: &'static str,
}

fn connect_tcp(target: &TlsTarget) -> Result<TcpStream, ProbeError> {
    let stream = TcpStream::connect_timeout(&target.addr, target.timeout).map_err(|source| {
        ProbeError::Connect {
            addr: target.addr,
            source,
        }
    })?;
    // Bounded reads: a server that accepts TCP and never answers must not hang verify.
    let io = |source| ProbeError::Connect {
        addr: target.addr,
        source,
    };
    stream.set_read_timeout(Some(target.timeout)).map_err(io)?;
    stream.set_write_timeout(Some(target.timeout)).map_err(io)?;
    Ok(stream)
}

fn fetch_certificate(target: &TlsTarget) -> Result<CertificateSeen, ProbeError> {
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    if let Some(ca) = &target.ca_file {
        builder.set_ca_file(ca)?;
    }
    // Finish the handshake whatever the chain looks like, then read the verdict from
    // verify_result(): that way a bad certificate is described, not just refused.
    builder.set_verify(SslVerifyMode::NONE);
    let connector = builder.build();
    let stream = connect_tcp(target)?;
    // configure() turns on host name verification for `name`; its result lands in verify_result.
    let tls = connector
        .configure()?
        .connect(&target.name, stream)
        .map_err(|e| ProbeError::Handshake(e.to_string()))?;
    let ssl = tls.ssl();
    let cert = ssl
        .peer_certificate()
        .ok_or_else(|| ProbeError::Handshake("the server sent no certificate".into()))?;
    let now = Asn1Time::days_from_now(0)?;
    let days_left = now.diff(cert.not_after())?.days;
    let names = |n: &openssl::x509::X509NameRef| {
        n.entries()
            .filter_map(|e| e.data().to_string().ok())
            .collect::<Vec<_>>()
            .join(",")
    };
    Ok(CertificateSeen {
        verify: ssl.verify_result(),
        days_left,
        subject: names(cert.subject_name()),
        issuer: names(cert.issuer_name()),
        protocol: ssl.version_str(),
    })
}

/// Two rows: the certificate is valid for the name (chain and host name), and it has at least
/// `min_days` left.
pub fn certificate_checks(target: &TlsTarget, min_days: i32) -> Vec<Check> {
    const HINT_NAME: &str = "the certificate nginx serves (ssl_certificate under /etc/letsencrypt/live/NAME), the server_name, and --ca-file for a private CA";
    const HINT_DAYS: &str = "renewal: `systemctl status certbot-renew.timer`, `journalctl -u certbot-renew.service`; renew by hand with the runbook's certificate section";
    match fetch_certificate(target) {
        Err(e) => vec![
            Check::fail("cert-name", e.to_string(), HINT_NAME),
            Check::fail("cert-days", "no certificate seen", HINT_DAYS),
        ],
        Ok(seen) => {
            let name_ok = seen.verify == X509VerifyResult::OK;
            let name_detail = if name_ok {
                format!(
                    "valid for {} (subject {}, issuer {}, {})",
                    target.name, seen.subject, seen.issuer, seen.protocol
                )
            } else {
                format!(
                    "not valid for {}: {} (subject {}, issuer {})",
                    target.name,
                    seen.verify.error_string(),
                    seen.subject,
                    seen.issuer
                )
            };
            let days_ok = seen.days_left >= min_days;
            vec![
                Check::from_bool("cert-name", name_ok, name_detail, HINT_NAME),
                Check::from_bool(
                    "cert-days",
                    days_ok,
                    format!("{} days left (threshold {min_days})", seen.days_left),
                    HINT_DAYS,
                ),
            ]
        }
    }
}

/// Whether a handshake offering only `version` completes.
fn handshake_completes(target: &TlsTarget, version: SslVersion) -> Result<bool, ProbeError> {
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    builder.set_min_proto_version(Some(version))?;
    builder.set_max_proto_version(Some(version))?;
    // Security level 0: without it OpenSSL 3 will not even offer TLS 1.0/1.1, and the probe
    // would "pass" without ever asking the server.
    builder.set_cipher_list("DEFAULT:@SECLEVEL=0")?;
    builder.set_security_level(0);
    builder.set_verify(SslVerifyMode::NONE);
    let connector = builder.build();
    let stream = connect_tcp(target)?;
    let mut config = connector.configure()?;
    config.set_verify_hostname(false);
    Ok(config.connect(&target.name, stream).is_ok())
}

pub fn legacy_protocol_check(target: &TlsTarget, version: SslVersion, label: &str) -> Check {
    let name = format!("tls{label}-refused");
    const HINT: &str =
        "ssl_protocols in the nginx templates: TLSv1.2 TLSv1.3 only, then reload nginx";
    match handshake_completes(target, version) {
        Ok(false) => Check::ok(name, format!("TLS {label} handshake refused")),
        Ok(true) => Check::fail(
            name,
            format!("the server completed a TLS {label} handshake"),
            HINT,
        ),
        Err(e) => Check::fail(name, format!("cannot tell: {e}"), HINT),
    }
}
