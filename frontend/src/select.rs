//! selectsession: choose the X2Go server for a profile.
//!
//! Agent query mode NONE is implemented (random host, port scan with
//! fail-over). LOCAL and SSH need the broker agent; until the agent module
//! exists they behave as the original does without a working agent: LOCAL
//! (agent call fails, no load data) takes the first host, SSH (no broker
//! SSH key set up, so no agent at all) picks at random like NONE.

use crate::profiles::Selection;
use rand::seq::SliceRandom;
use std::net::SocketAddr;
use std::time::Duration;

/// The original's port scan timeout.
pub const PORTSCAN_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentQueryMode {
    None,
    Local,
    Ssh,
}

impl AgentQueryMode {
    pub fn parse(value: &str) -> AgentQueryMode {
        match value.to_uppercase().as_str() {
            "LOCAL" => AgentQueryMode::Local,
            "SSH" => AgentQueryMode::Ssh,
            _ => AgentQueryMode::None,
        }
    }
}

/// The chosen server (what the client connects to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub server: String,
    pub port: i64,
    pub private_key: Option<String>,
    pub pubkey_accepted: bool,
    pub session_info: Option<String>,
}

impl Selected {
    fn plain(server: impl Into<String>, port: i64) -> Selected {
        Selected {
            server: server.into(),
            port,
            private_key: None,
            pubkey_accepted: false,
            session_info: None,
        }
    }
}

/// The profile was not found (or the user may not use it).
pub fn no_such_profile() -> Selected {
    Selected::plain("no-server-available", 22)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectError(pub String);

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

pub struct SelectOptions {
    pub mode: AgentQueryMode,
    pub portscan: bool,
    /// This machine's host name (the original replaces `localhost` by it).
    pub local_hostname: String,
}

pub async fn select_session(
    sel: &Selection,
    opts: &SelectOptions,
    scanner: &impl PortScanner,
) -> Result<Selected, SelectError> {
    let mut server_list = sel.hosts.clone();
    if server_list.is_empty() {
        return Ok(Selected::plain("no-server-available", sel.sshport));
    }
    let initial = server_list.clone();
    let mut server_name = server_list[0].clone();
    let mut server_port = sel.sshport;
    let mut server_addr;
    let random_choice = opts.mode != AgentQueryMode::Local;
    loop {
        // `localhost` entries move to the end under this host's name.
        let locals = server_list.iter().filter(|h| *h == "localhost").count();
        if locals > 0 {
            server_list.retain(|h| h != "localhost");
            for _ in 0..locals {
                server_list.push(opts.local_hostname.clone());
            }
        }
        if server_list.len() >= 2 && random_choice {
            if sel.is_shadow {
                server_list.truncate(1);
                server_name = server_list[0].clone();
            } else if let Some(choice) = server_list.choose(&mut rand::thread_rng()) {
                server_name = choice.clone();
            }
        }
        if let Some(p) = sel.host_port.get(&server_name) {
            server_port = *p;
        }
        server_addr = sel
            .host_address
            .get(&server_name)
            .cloned()
            .unwrap_or_else(|| server_name.clone());
        if !opts.portscan
            || scanner.scan(&server_name, server_port).await
            || scanner.scan(&server_addr, server_port).await
        {
            return Ok(Selected::plain(server_addr, server_port));
        }
        let Some(pos) = server_list.iter().position(|h| *h == server_name) else {
            // The original fails here (list.remove of a missing name).
            return Err(SelectError(format!(
                "server {server_name} is down and not in the profile's host list"
            )));
        };
        server_list.remove(pos);
        match server_list.first() {
            Some(next) => {
                log::warn!("failed to contact host '{server_name}', trying next server '{next}'");
                server_name = next.clone();
            }
            None => {
                log::error!(
                    "no X2Go Server could be contacted, session startup will fail, tried these hosts: {initial:?}"
                );
                break;
            }
        }
    }
    if initial.len() > 1 {
        return Ok(Selected::plain("no-X2Go-Server-available", server_port));
    }
    let name = &initial[0];
    let addr = sel
        .host_address
        .get(name)
        .cloned()
        .unwrap_or_else(|| name.clone());
    Ok(Selected::plain(addr, server_port))
}

/// The zeroconf backend always answers localhost:22.
pub fn zeroconf_selection() -> Selected {
    Selected::plain("localhost", 22)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    struct Up(HashSet<String>);
    impl PortScanner for Up {
        async fn scan(&self, host: &str, _port: i64) -> bool {
            self.0.contains(host)
        }
    }

    fn selection(hosts: &[&str]) -> Selection {
        Selection {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            host_address: HashMap::new(),
            host_port: HashMap::new(),
            sshport: 22,
            is_shadow: false,
            sshproxyhost: None,
        }
    }

    fn opts(portscan: bool) -> SelectOptions {
        SelectOptions {
            mode: AgentQueryMode::None,
            portscan,
            local_hostname: "thishost".into(),
        }
    }

    fn up(hosts: &[&str]) -> Up {
        Up(hosts.iter().map(|s| s.to_string()).collect())
    }

    #[tokio::test]
    async fn random_host_without_portscan() {
        let sel = selection(&["a", "b", "c"]);
        let mut seen = HashSet::new();
        for _ in 0..200 {
            seen.insert(select_session(&sel, &opts(false), &up(&[])).await.unwrap().server);
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
    }

    #[tokio::test]
    async fn fails_over_to_hosts_that_answer() {
        let sel = selection(&["a", "b", "c"]);
        for _ in 0..50 {
            let s = select_session(&sel, &opts(true), &up(&["c"])).await.unwrap();
            assert_eq!((s.server.as_str(), s.port), ("c", 22));
        }
        let s = select_session(&sel, &opts(true), &up(&[])).await.unwrap();
        assert_eq!(s.server, "no-X2Go-Server-available");
    }

    #[tokio::test]
    async fn address_and_port_mapping() {
        let mut sel = selection(&["srv1"]);
        sel.host_address.insert("srv1".into(), "10.0.0.1".into());
        sel.host_port.insert("srv1".into(), 2222);
        let s = select_session(&sel, &opts(true), &up(&["10.0.0.1"]))
            .await
            .unwrap();
        assert_eq!((s.server.as_str(), s.port), ("10.0.0.1", 2222));
        // A single host that is down is still handed out.
        let s = select_session(&sel, &opts(true), &up(&[])).await.unwrap();
        assert_eq!((s.server.as_str(), s.port), ("10.0.0.1", 2222));
        let s = select_session(&selection(&[]), &opts(true), &up(&[]))
            .await
            .unwrap();
        assert_eq!(s.server, "no-server-available");
    }

    #[tokio::test]
    async fn local_mode_without_agent_takes_the_first_host() {
        let sel = selection(&["a", "b", "c"]);
        let local = SelectOptions {
            mode: AgentQueryMode::Local,
            ..opts(true)
        };
        for _ in 0..20 {
            assert_eq!(
                select_session(&sel, &local, &up(&["a", "b", "c"]))
                    .await
                    .unwrap()
                    .server,
                "a"
            );
        }
        // Fail-over goes down the list in order.
        assert_eq!(
            select_session(&sel, &local, &up(&["b", "c"]))
                .await
                .unwrap()
                .server,
            "b"
        );
    }

    #[tokio::test]
    async fn shadow_uses_first_host() {
        let mut sel = selection(&["a", "b", "c"]);
        sel.is_shadow = true;
        for _ in 0..20 {
            assert_eq!(
                select_session(&sel, &opts(false), &up(&[])).await.unwrap().server,
                "a"
            );
        }
    }

    #[tokio::test]
    async fn real_port_scan() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = i64::from(listener.local_addr().unwrap().port());
        assert!(TcpPortScanner.scan("127.0.0.1", port).await);
        drop(listener);
        assert!(!TcpPortScanner.scan("127.0.0.1", port).await);
        assert!(!TcpPortScanner.scan("no-such-host.invalid", 22).await);
    }
}
