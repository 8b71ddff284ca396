//! `detector-api healthcheck`: one GET /healthz over loopback with the configured key; success is
//! a 200. Plain HTTP/1.1 over a TCP socket keeps an HTTP client library out of the binary.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use auth::ApiKey;

/// Where to reach a server bound to `bind`: a wildcard bind is reached over loopback.
pub fn target(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

pub fn run(bind: SocketAddr, key: Option<&ApiKey>, timeout: Duration) -> anyhow::Result<()> {
    let key = key.context(
        "no key to send: set DETECTOR_HEALTHCHECK_KEY or DETECTOR_API_KEY (/healthz needs a key)",
    )?;
    let addr = target(bind);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        key.expose()
    );
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("cannot send the request to {addr}"))?;
    // The status line is all that is needed; a short bounded read is enough.
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < head.len() {
        let n = stream.read(&mut head[len..]).context("no answer")?;
        if n == 0 {
            break;
        }
        len += n;
        if head[..len].contains(&b'\n') {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head[..len]);
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!(
            "/healthz on {addr} answered {:?}",
            line.lines().next().unwrap_or("")
        );
    }
    Ok(())
}
