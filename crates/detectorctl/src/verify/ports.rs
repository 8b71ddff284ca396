//! Ports that must not answer from outside: the detector's internal port, its metrics port and
//! the legacy plaintext listener that the audit found still running after the migration.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use super::report::Check;

/// A refused or silently dropped connection both pass; only an accepted one fails.
pub fn closed_port_check(ip: IpAddr, port: u16, timeout: Duration) -> Check {
    let name = format!("port-closed:{port}");
    let addr = SocketAddr::new(ip, port);
    let hint = format!(
        "what listens on {port} (`ss -ltnp 'sport = :{port}'`), the nftables baseline (host/) and that compose publishes only 80 and 443"
    );
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => Check::fail(name, format!("{addr} accepts TCP connections"), hint),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            Check::ok(name, format!("{addr} refused"))
        }
        Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
            Check::ok(
                name,
                format!("{addr} no answer in {}s (dropped)", timeout.as_secs()),
            )
        }
        Err(e) => Check::ok(name, format!("{addr} not reachable: {e}")),
    }
}
