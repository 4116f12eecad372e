//! selectsession: choose the X2Go server for a profile.
//!
//! Agent query mode NONE: a random host. LOCAL and SSH: the agent (local,
//! or one on a server of the profile that answered) tells the user's
//! sessions (resume a suspended one, take over a running one) and session
//! counts (least busy host, ties by name). When no agent of an SSH-mode
//! profile answers, no server is handed out. Every choice is port-scanned (when
//! enabled) with fail-over to the next host.

use crate::core::agent::{Agent, SessionLine};
use crate::core::audit::shown;
use crate::core::hostnames;
use crate::core::loadchecker::Load;
pub use crate::core::portscan::{PortScanner, TcpPortScanner};
use crate::core::profiles::Selection;
use rand::seq::SliceRandom;
use std::time::Duration;

/// The original waits this long after suspending a running session.
pub const TAKEOVER_PAUSE: Duration = Duration::from_secs(2);

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
#[derive(Clone, PartialEq, Eq)]
pub struct Selected {
    /// The server's name in the profile's host list.
    pub host_name: String,
    /// Its address (`host=name (address)`), else the name.
    pub server: String,
    pub port: i64,
    /// An auto-login private key: wiped when dropped, never in Debug output.
    pub private_key: Option<zeroize::Zeroizing<String>>,
    pub pubkey_accepted: bool,
    pub session_info: Option<String>,
}

impl std::fmt::Debug for Selected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selected")
            .field("host_name", &self.host_name)
            .field("server", &self.server)
            .field("port", &self.port)
            .field("private_key", &self.private_key.as_ref().map(|_| "<redacted>"))
            .field("pubkey_accepted", &self.pubkey_accepted)
            .field("session_info", &self.session_info)
            .finish()
    }
}

impl Selected {
    fn plain(server: impl Into<String>, port: i64) -> Selected {
        let server = server.into();
        Selected {
            host_name: server.clone(),
            server,
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

pub struct SelectOptions {
    pub mode: AgentQueryMode,
    /// Server loads from the load checker (profiles that use it, mode SSH);
    /// empty: select by session counts.
    pub load_factors: Vec<(String, Load)>,
    pub portscan: bool,
    /// This machine's host name (the original replaces `localhost` by it).
    pub local_hostname: String,
}

/// The agent selection asks, and about which user.
#[derive(Debug, Clone, Copy)]
pub enum AgentQuery<'a> {
    /// Mode NONE, a shadow profile, or mode SSH without a broker key.
    Off,
    /// Mode SSH, but no agent of the profile's servers answered.
    Unreachable,
    Ask(&'a Agent, &'a str),
}

impl<'a> AgentQuery<'a> {
    /// The agent and a non-empty user name, if there are both.
    fn with_user(self) -> Option<(&'a Agent, &'a str)> {
        match self {
            AgentQuery::Ask(agent, user) if !user.is_empty() => Some((agent, user)),
            _ => None,
        }
    }
}

/// The original's dynamic load balancing: (sessions + 1) / load factor per
/// server, lowest first; servers whose load is a failure are left out.
/// `None` (select by session counts) when a server has no load data.
fn by_load(counts: &[(String, i64)], load_factors: &[(String, Load)]) -> Option<Vec<(f64, String)>> {
    if load_factors.is_empty() {
        return None;
    }
    let mut ranked = Vec::new();
    for (server, sessions) in counts {
        // Names as in the profile, or without their domain as the counts may be.
        let load = load_factors.iter().find(|(h, _)| h == server).or_else(|| {
            load_factors
                .iter()
                .find(|(h, _)| h.split('.').next() == Some(server.as_str()))
        });
        match load {
            Some((_, Load::Factor(f))) => {
                ranked.push((1.0 / (*f as f64 / (*sessions + 1) as f64), server.clone()))
            }
            Some((_, Load::Failed(why))) => log::info!("server {server} left out: no load factor ({why})"),
            None => {
                log::warn!(
                    "no load data for server {server} (missing or older than two intervals): selecting by session counts"
                );
                return None;
            }
        }
    }
    Some(ranked)
}

/// The server with the fewest sessions by the agent's counts (`busy`,
/// from findbusyservers), names compared without their common domain; by
/// load factor when the load checker gave them.
pub fn pick_least_busy(
    server_list: &[String],
    busy: &mut Vec<(String, i64)>,
    load_factors: &[(String, Load)],
) -> String {
    let (normalized, domains) = hostnames::normalize(server_list);
    let mut list = server_list.to_vec();
    let mut counts = busy.clone();
    let mut use_normalized = false;
    if domains.len() == 1 {
        // The agent's names without their domain (IP addresses drop out).
        let mut short_counts: Vec<(String, i64)> = Vec::new();
        let mut agent_domains: Vec<&str> = Vec::new();
        for (server, count) in busy.iter() {
            if hostnames::is_ip(server) {
                continue;
            }
            let (host, domain) = server.split_once('.').unwrap_or((server.as_str(), ""));
            match short_counts.iter_mut().find(|(h, _)| h == host) {
                Some(entry) => entry.1 = *count,
                None => short_counts.push((host.to_owned(), *count)),
            }
            if !domain.is_empty() && !agent_domains.contains(&domain) {
                agent_domains.push(domain);
            }
        }
        if agent_domains.len() <= 1 {
            use_normalized = true;
            list = normalized;
            counts = short_counts;
        }
    }
    for server in &list {
        if !counts.iter().any(|(s, _)| s == server) {
            counts.push((server.clone(), 0));
        }
    }
    counts.retain(|(s, _)| list.contains(s));
    if !use_normalized {
        // Without normalization the original updates its table in place.
        *busy = counts.clone();
    }
    let mut ranked: Vec<(f64, String)> = match by_load(&counts, load_factors) {
        Some(ranked) => ranked,
        None => counts.into_iter().map(|(s, c)| (c as f64, s)).collect(),
    };
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    log::debug!("load balancer analysis: {ranked:?}");
    let mut name = ranked.first().map(|(_, s)| s.clone()).unwrap_or_default();
    if domains.len() == 1 {
        name = format!("{name}.{}", domains[0]);
    }
    name
}

/// Session counts per server: `getservers` with load factors (as the
/// original), else `findbusyservers`.
async fn session_counts(
    agent: &Agent,
    user: &str,
    opts: &SelectOptions,
) -> Result<Vec<(String, i64)>, crate::core::agent::AgentError> {
    if opts.mode == AgentQueryMode::Ssh && !opts.load_factors.is_empty() {
        agent.get_servers(user).await
    } else {
        agent.find_busy_servers(user).await
    }
}

pub async fn select_session(
    sel: &Selection,
    opts: &SelectOptions,
    scanner: &impl PortScanner,
    agent: AgentQuery<'_>,
) -> Result<Selected, SelectError> {
    let mut server_list = sel.hosts.clone();
    if server_list.is_empty() {
        return Ok(Selected::plain("no-server-available", sel.sshport));
    }
    let initial = server_list.clone();
    let mut server_name = server_list[0].clone();
    let mut server_port = sel.sshport;
    let mut server_addr;
    // The session counts are asked for together with the user's sessions
    // (the original asks later, only when the user has no session): one
    // round trip instead of two, and the query has no side effects.
    let (mut session_list, mut busy): (Vec<SessionLine>, Option<Vec<(String, i64)>>) = match agent.with_user()
    {
        Some((a, user)) => {
            let counts = async {
                if server_list.len() >= 2 {
                    Some(session_counts(a, user, opts).await)
                } else {
                    None
                }
            };
            let (sessions, counts) = tokio::join!(a.list_sessions(user), counts);
            let sessions = sessions.unwrap_or_else(|e| {
                log::warn!("listing the sessions of {}: {e}", shown(user));
                Vec::new()
            });
            (sessions, counts.and_then(Result::ok))
        }
        None => (Vec::new(), None),
    };
    let mut session_info: Option<String> = None;
    loop {
        // `localhost` entries move to the end under this host's name.
        let locals = server_list.iter().filter(|h| *h == "localhost").count();
        if locals > 0 {
            server_list.retain(|h| h != "localhost");
            for _ in 0..locals {
                server_list.push(opts.local_hostname.clone());
            }
        }
        if matches!(agent, AgentQuery::Unreachable) {
            log::error!("no broker agent could be contacted, no X2Go Server is handed out; tried these hosts: {initial:?}");
            // The original still looks up the first host's port first.
            if let Some(p) = sel.host_port.get(&server_name) {
                server_port = *p;
            }
            break;
        }
        let session_servers: Vec<String> = session_list.iter().map(|s| s.server().to_owned()).collect();
        let matching = if session_list.is_empty() {
            Vec::new()
        } else {
            hostnames::matching(&server_list, &session_servers)
        };
        if !matching.is_empty() {
            // Resume the user's suspended session, else take over a running one.
            let on_profile = |status: &str| {
                session_list
                    .iter()
                    .find(|s| matching.iter().any(|m| m == s.server()) && s.status() == status)
                    .cloned()
            };
            if let Some(suspended) = on_profile("S") {
                session_info = Some(suspended.0);
            } else if let Some(running) = on_profile("R") {
                if let Some((a, user)) = agent.with_user() {
                    if let Err(e) = a.suspend_session(user, running.name()).await {
                        log::error!(
                            "suspending session {} of {}: {e}",
                            shown(running.name()),
                            shown(user)
                        );
                    }
                }
                tokio::time::sleep(TAKEOVER_PAUSE).await;
                session_info = Some(running.0.replace("|R|", "|S|"));
            }
            if let Some(info) = &session_info {
                let host = SessionLine(info.clone()).server().to_owned();
                if sel.host_address.contains_key(&host) || server_list.contains(&host) {
                    server_name = host;
                } else if !hostnames::matching(&server_list, std::slice::from_ref(&host)).is_empty() {
                    if let Some(s) = server_list.iter().find(|s| s.starts_with(&host)) {
                        server_name = s.clone();
                    }
                } else {
                    log::error!("configuration error: host names in the session profile and actual server names do not match");
                    if let Some(choice) = server_list.choose(&mut rand::thread_rng()) {
                        server_name = choice.clone();
                    }
                }
            }
        } else if let Some((a, user)) = agent.with_user().filter(|_| server_list.len() >= 2) {
            if busy.is_none() {
                match session_counts(a, user, opts).await {
                    Ok(b) => busy = Some(b),
                    Err(e) => log::warn!("no session counts from the {}: {e}", a.describe()),
                }
            }
            match busy.as_mut() {
                Some(busy) => server_name = pick_least_busy(&server_list, busy, &opts.load_factors),
                // The original then sends everyone to the first host; a
                // random one spreads the load (ARCHITECTURE.md D: agent
                // failures).
                None => {
                    if let Some(choice) = server_list.choose(&mut rand::thread_rng()) {
                        server_name = choice.clone();
                    }
                }
            }
        } else if server_list.len() >= 2 {
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
            let mut selected = Selected::plain(server_addr, server_port);
            selected.host_name = server_name;
            selected.session_info = session_info;
            return Ok(selected);
        }
        let Some(pos) = server_list.iter().position(|h| *h == server_name) else {
            // The original fails here (list.remove of a missing name).
            return Err(SelectError(format!(
                "server {server_name} is down and not in the profile's host list"
            )));
        };
        server_list.remove(pos);
        if let Some(info) = session_info.take() {
            session_list.retain(|s| s.0 != info);
        }
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
    let mut selected = Selected::plain(addr, server_port);
    selected.host_name = name.clone();
    Ok(selected)
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
            sshproxyport: 22,
        }
    }

    fn opts(portscan: bool) -> SelectOptions {
        SelectOptions {
            mode: AgentQueryMode::None,
            load_factors: Vec::new(),
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
            seen.insert(
                select_session(&sel, &opts(false), &up(&[]), AgentQuery::Off)
                    .await
                    .unwrap()
                    .server,
            );
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
    }

    #[tokio::test]
    async fn fails_over_to_hosts_that_answer() {
        let sel = selection(&["a", "b", "c"]);
        for _ in 0..50 {
            let s = select_session(&sel, &opts(true), &up(&["c"]), AgentQuery::Off)
                .await
                .unwrap();
            assert_eq!((s.server.as_str(), s.port), ("c", 22));
        }
        let s = select_session(&sel, &opts(true), &up(&[]), AgentQuery::Off)
            .await
            .unwrap();
        assert_eq!(s.server, "no-X2Go-Server-available");
    }

    #[tokio::test]
    async fn address_and_port_mapping() {
        let mut sel = selection(&["srv1"]);
        sel.host_address.insert("srv1".into(), "10.0.0.1".into());
        sel.host_port.insert("srv1".into(), 2222);
        let s = select_session(&sel, &opts(true), &up(&["10.0.0.1"]), AgentQuery::Off)
            .await
            .unwrap();
        assert_eq!((s.server.as_str(), s.port), ("10.0.0.1", 2222));
        // A single host that is down is still handed out.
        let s = select_session(&sel, &opts(true), &up(&[]), AgentQuery::Off)
            .await
            .unwrap();
        assert_eq!((s.server.as_str(), s.port), ("10.0.0.1", 2222));
        let s = select_session(&selection(&[]), &opts(true), &up(&[]), AgentQuery::Off)
            .await
            .unwrap();
        assert_eq!(s.server, "no-server-available");
    }

    #[tokio::test]
    async fn local_mode_with_a_failing_agent_takes_hosts_by_name() {
        let sel = selection(&["c", "a", "b"]);
        let broken = Agent::Local(crate::core::agent::LocalAgent {
            command: "/nonexistent/x2gobroker-agent".into(),
        });
        let agent = AgentQuery::Ask(&broken, "u");
        let local = SelectOptions {
            mode: AgentQueryMode::Local,
            ..opts(true)
        };
        for _ in 0..20 {
            assert_eq!(
                select_session(&sel, &local, &up(&["a", "b", "c"]), agent)
                    .await
                    .unwrap()
                    .server,
                "a"
            );
        }
        // Fail-over goes down the list in order.
        assert_eq!(
            select_session(&sel, &local, &up(&["b", "c"]), agent)
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
                select_session(&sel, &opts(false), &up(&[]), AgentQuery::Off)
                    .await
                    .unwrap()
                    .server,
                "a"
            );
        }
    }

    #[tokio::test]
    async fn no_server_when_no_agent_answers() {
        let sel = selection(&["a", "b"]);
        let s = select_session(&sel, &opts(false), &up(&["a", "b"]), AgentQuery::Unreachable)
            .await
            .unwrap();
        assert_eq!(s.server, "no-X2Go-Server-available");
        // A single host is still handed out, as the original does.
        let s = select_session(
            &selection(&["a"]),
            &opts(false),
            &up(&["a"]),
            AgentQuery::Unreachable,
        )
        .await
        .unwrap();
        assert_eq!(s.server, "a");
    }

    /// When the agent cannot be reached for the session counts, the
    /// original sends everyone to the first host; ours picks at random.
    #[tokio::test]
    async fn unreachable_session_counts_spread_the_load() {
        let dead = Agent::Remote(crate::core::agent::RemoteAgent {
            hostname: "127.0.0.1".into(),
            hostaddr: "127.0.0.1".into(),
            port: 1, // nothing listens on tcpmux
            policy: crate::core::agent::remote::HostKeyPolicy::Reject,
            agent_user: "x2gobroker".into(),
            agent_cmd: "/usr/lib/x2go/x2gobroker-agent".into(),
        });
        let sel = selection(&["a", "b", "c"]);
        let ssh = SelectOptions {
            mode: AgentQueryMode::Ssh,
            ..opts(false)
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..60 {
            let s = select_session(&sel, &ssh, &up(&[]), AgentQuery::Ask(&dead, "u"))
                .await
                .unwrap();
            seen.insert(s.server);
        }
        assert!(seen.len() >= 2, "{seen:?}");
    }

    #[test]
    fn load_factors_weigh_sessions_and_missing_data_falls_back() {
        let counts: Vec<(String, i64)> = vec![("a".into(), 2), ("b".into(), 0), ("c".into(), 1)];
        let loads = |list: &[(&str, Load)]| -> Vec<(String, Load)> {
            list.iter().map(|(h, l)| (h.to_string(), l.clone())).collect()
        };
        let f = |n| Load::Factor(n);
        let mut busy = counts.clone();
        let hosts: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        // (2+1)/100000, (0+1)/1000, (1+1)/100000: c.
        let lf = loads(&[("a", f(100_000)), ("b", f(1000)), ("c", f(100_000))]);
        assert_eq!(pick_least_busy(&hosts, &mut busy, &lf), "c");
        // A failure leaves the server out.
        let lf = loads(&[
            ("a", f(100_000)),
            ("b", f(1000)),
            ("c", Load::Failed("HOST-UNREACHABLE".into())),
        ]);
        assert_eq!(pick_least_busy(&hosts, &mut busy, &lf), "a");
        // A server without data: session counts decide (b).
        let lf = loads(&[("a", f(100_000)), ("c", f(100_000))]);
        assert_eq!(pick_least_busy(&hosts, &mut busy, &lf), "b");
        assert!(by_load(&counts, &lf).is_none());
        // Factor 0 ranks last instead of dividing by zero.
        let lf = loads(&[("a", f(0)), ("b", f(0)), ("c", f(5))]);
        assert_eq!(pick_least_busy(&hosts, &mut busy, &lf), "c");
    }

    #[test]
    fn a_private_key_never_reaches_debug_output() {
        let mut s = Selected::plain("h1", 22);
        s.private_key = Some(zeroize::Zeroizing::new(
            "-----BEGIN RSA PRIVATE KEY-----\nsecret".into(),
        ));
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("secret") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
