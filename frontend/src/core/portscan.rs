//! The original's port scan: does a TCP port accept connections? Used
//! before handing out a server and before talking to a remote agent.

use std::net::SocketAddr;
use std::time::Duration;

/// The original's port scan timeout.
pub const PORTSCAN_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers whether a TCP port accepts connections. Swappable for tests.
pub trait PortScanner {
    fn scan(&self, host: &str, port: i64) -> impl std::future::Future<Output = bool> + Send;
}

/// The original's portscan(): IPv6 resolution first, then IPv4; one connect
/// with a two-second timeout.
pub struct TcpPortScanner;

impl PortScanner for TcpPortScanner {
    async fn scan(&self, host: &str, port: i64) -> bool {
        let Ok(port) = u16::try_from(port) else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> =
            match tokio::time::timeout(PORTSCAN_TIMEOUT, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(a)) => a.collect(),
                _ => return false,
            };
        let target = addrs
            .iter()
            .find(|a| a.is_ipv6())
            .or_else(|| addrs.iter().find(|a| a.is_ipv4()))
            .copied();
        let Some(target) = target else { return false };
        matches!(
            tokio::time::timeout(PORTSCAN_TIMEOUT, tokio::net::TcpStream::connect(target)).await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn real_port_scan() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = i64::from(listener.local_addr().unwrap().port());
        assert!(TcpPortScanner.scan("127.0.0.1", port).await);
        drop(listener);
        // Port 1 (tcpmux) is not served on any test machine.
        assert!(!TcpPortScanner.scan("127.0.0.1", 1).await);
        assert!(!TcpPortScanner.scan("no-such-host.invalid", 22).await);
    }
}
