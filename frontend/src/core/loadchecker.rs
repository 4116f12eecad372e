//! The load checker (the original's `x2gobroker-loadchecker`): which
//! profiles use it, the load factor from an agent's `checkload`, the table
//! of the latest factors, one polling cycle, and the socket protocol both
//! ways (the service answers it, the broker asks with it).
//!
//! Protocol (the original's, byte for byte): a request is
//! `BACKEND\rPROFILE\rHOST\n`. With a host the answer is the factor
//! (`12345`) or a reason (`LOAD-UNAVAILABLE`, `HOST-UNREACHABLE`,
//! `LOAD-DATA-BOGUS`) without a newline; with an empty host it is one
//! `HOST:FACTOR\n` line per server of the profile, or a lone `\n` when
//! nothing is known. The connection stays open for further requests.

use crate::core::agent::{remote, Agent, RemoteAgent};
use crate::core::audit::shown;
use crate::core::broker::Broker;
use crate::core::profiles::Profile;
use crate::core::select::AgentQueryMode;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const UNAVAILABLE: &str = "LOAD-UNAVAILABLE";
pub const UNREACHABLE: &str = "HOST-UNREACHABLE";
pub const BOGUS: &str = "LOAD-DATA-BOGUS";
/// The only backend with profiles of its own servers.
pub const BACKEND: &str = "inifile";
/// Longest request line the service reads.
pub const MAX_REQUEST: usize = 4096;
/// Longest answer the broker reads (the original reads 1024 bytes).
const MAX_ANSWER: usize = 64 * 1024;
/// How long the broker waits for the load checker's answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// One server's load as the load checker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    /// Higher is better (more free memory and CPU per unit of load).
    Factor(i64),
    /// Why there is no factor, in the original's words.
    Failed(String),
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Factor(n) => write!(f, "{n}"),
            Load::Failed(reason) => f.write_str(reason),
        }
    }
}

impl Load {
    /// A value from an answer line, as the original's broker reads it: an
    /// integer, one of the three reasons, else bogus.
    pub fn parse(value: &str) -> Load {
        match value {
            UNREACHABLE | UNAVAILABLE | BOGUS => Load::Failed(value.to_owned()),
            _ => match parse_python_int(value) {
                Some(n) => Load::Factor(n),
                None => Load::Failed(BOGUS.to_owned()),
            },
        }
    }

    pub fn factor(&self) -> Option<i64> {
        match self {
            Load::Factor(n) => Some(*n),
            Load::Failed(_) => None,
        }
    }
}

/// Python's `int(str)`: surrounding whitespace allowed, an optional sign.
fn parse_python_int(value: &str) -> Option<i64> {
    let v = value.trim();
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// The original's load factor from `checkload`'s `key:value` pairs:
/// `int((memAvail/1000) * numCPU * typeCPU * 100 / loadavgXX)`, with
/// `myMemAvail` when `memAvail` is 0. A missing key is bogus data; so is a
/// zero load average (the original's thread dies on it).
pub fn load_factor(pairs: &[(String, f64)]) -> Load {
    // A later duplicate wins, as in the original's dict.
    let get = |key: &str| pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v);
    let factor = (|| {
        let mut mem = get("memAvail")?;
        if mem == 0.0 {
            mem = get("myMemAvail")?;
        }
        let f = ((mem / 1000.0) * get("numCPU")? * get("typeCPU")? * 100.0) / get("loadavgXX")?;
        // Python's int() truncates toward zero, as `as` does.
        f.is_finite().then_some(f as i64)
    })();
    match factor {
        Some(n) => Load::Factor(n),
        None => Load::Failed(BOGUS.to_owned()),
    }
}

/// Whether the load checker serves `profile` (the original's
/// use_load_checker): at least two hosts, some non-empty `broker-*` key,
/// `broker-use-load-checker` not false, and load checking on globally, for
/// the backend (the inifile backend's default) or for the profile.
pub fn uses_load_checker(broker: &Broker, profile: &Profile) -> bool {
    if !profile.broker.any_set || profile.selection.hosts.len() < 2 {
        return false;
    }
    let profile_says = profile
        .broker
        .use_load_checker
        .as_deref()
        .map(|v| matches!(v, "1" | "true" | "TRUE" | "True"));
    if profile_says == Some(false) {
        return false;
    }
    broker.global.default_use_load_checker || broker.inifile.use_load_checker || profile_says == Some(true)
}

/// One profile's agents to poll: (host name, agent), the last host first as
/// the original lists them (its answers keep that order).
pub struct Target {
    pub profile: String,
    pub agents: Vec<(String, Agent)>,
}

/// The profiles the load checker polls, with their agents (the original's
/// get_all_remote_agents: mode SSH with a broker key only).
pub fn targets(broker: &Broker) -> Vec<Target> {
    if !broker.inifile.enable {
        return Vec::new();
    }
    let key = remote::broker_key_present();
    let mut list: Vec<Target> = Vec::new();
    for profile in broker.profiles.sorted() {
        if !uses_load_checker(broker, profile) {
            continue;
        }
        let mut agents = Vec::new();
        if !profile.selection.is_shadow && agent_mode(broker, profile) == AgentQueryMode::Ssh && key {
            let sel = &profile.selection;
            for name in sel.hosts.iter().rev() {
                let addr = sel.host_address.get(name).map_or(name.as_str(), String::as_str);
                let port = sel.host_port.get(name).copied().unwrap_or(sel.sshport);
                let Ok(port) = u16::try_from(port) else {
                    log::error!("profile {}: host {name} has an invalid port {port}", profile.id);
                    continue;
                };
                agents.push((
                    name.clone(),
                    Agent::Remote(RemoteAgent {
                        hostname: name.clone(),
                        hostaddr: addr.to_owned(),
                        port,
                        policy: crate::core::tasks::hostkey_policy(broker, profile),
                        agent_user: broker.env.agent_user.clone(),
                        agent_cmd: broker.env.agent_cmd.clone(),
                    }),
                ));
            }
        }
        list.push(Target {
            profile: profile.id.clone(),
            agents,
        });
    }
    list
}

fn agent_mode(broker: &Broker, profile: &Profile) -> AgentQueryMode {
    crate::core::tasks::agent_mode(broker, profile)
}

/// Asks one agent and turns the answer into a load.
pub async fn check(agent: &Agent) -> Load {
    match agent.check_load().await {
        Ok(pairs) => load_factor(&pairs),
        Err(e) => {
            log::warn!("{}: {e}", agent.describe());
            Load::Failed(UNREACHABLE.to_owned())
        }
    }
}

struct Entry {
    host: String,
    load: Load,
    at: Instant,
}

/// The latest load of every polled server, per (backend, profile).
pub struct LoadTable {
    inner: Mutex<Table>,
}

struct Table {
    profiles: HashMap<(String, String), Vec<Entry>>,
    /// Data older than this is not reported (two polling intervals).
    max_age: Duration,
}

impl LoadTable {
    pub fn new(interval: Duration) -> LoadTable {
        LoadTable {
            inner: Mutex::new(Table {
                profiles: HashMap::new(),
                max_age: interval * 2,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic elsewhere leaves consistent data: entries are replaced whole.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_interval(&self, interval: Duration) {
        self.lock().max_age = interval * 2;
    }

    pub fn store(&self, profile: &str, host: &str, load: Load) {
        let mut t = self.lock();
        let entries = t
            .profiles
            .entry((BACKEND.to_owned(), profile.to_owned()))
            .or_default();
        let entry = Entry {
            host: host.to_owned(),
            load,
            at: Instant::now(),
        };
        match entries.iter_mut().find(|e| e.host == host) {
            Some(e) => *e = entry,
            None => entries.push(entry),
        }
    }

    /// Forgets profiles no longer polled and hosts no longer in them.
    pub fn retain(&self, targets: &[Target]) {
        let mut t = self.lock();
        t.profiles.retain(|(_, profile), entries| {
            let Some(target) = targets.iter().find(|x| &x.profile == profile) else {
                return false;
            };
            entries.retain(|e| target.agents.iter().any(|(h, _)| *h == e.host));
            true
        });
        for target in targets {
            t.profiles
                .entry((BACKEND.to_owned(), target.profile.clone()))
                .or_default();
        }
    }

    /// The known loads of a profile's servers; data older than two
    /// intervals is left out (and said so in the log).
    pub fn profile(&self, backend: &str, profile: &str) -> Vec<(String, Load)> {
        self.profile_at(backend, profile, Instant::now())
    }

    fn profile_at(&self, backend: &str, profile: &str, now: Instant) -> Vec<(String, Load)> {
        let t = self.lock();
        let Some(entries) = t.profiles.get(&(backend.to_owned(), profile.to_owned())) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter(|e| {
                let age = now.saturating_duration_since(e.at);
                let fresh = age <= t.max_age;
                if !fresh {
                    log::warn!(
                        "load of {} (profile {}) is {} s old, older than two intervals: not reported",
                        e.host,
                        profile,
                        age.as_secs()
                    );
                }
                fresh
            })
            .map(|e| (e.host.clone(), e.load.clone()))
            .collect()
    }

    /// The answer to one request line (without its `\n`); `None` for a
    /// malformed request (the original then drops the connection).
    pub fn answer(&self, request: &str) -> Option<String> {
        self.answer_at(request, Instant::now())
    }

    fn answer_at(&self, request: &str, now: Instant) -> Option<String> {
        let mut parts = request.split('\r');
        let (Some(backend), Some(profile), Some(host), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let loads = self.profile_at(backend, profile, now);
        if !host.is_empty() {
            let load = loads.into_iter().find(|(h, _)| h == host).map(|(_, l)| l);
            log::debug!(
                "load of {} (backend {}, profile {}): {load:?}",
                shown(host),
                shown(backend),
                shown(profile)
            );
            return Some(load.map_or_else(|| UNAVAILABLE.to_owned(), |l| l.to_string()));
        }
        if loads.is_empty() {
            log::warn!(
                "no load data for backend {}, profile {}",
                shown(backend),
                shown(profile)
            );
            return Some("\n".to_owned());
        }
        Some(loads.iter().map(|(h, l)| format!("{h}:{l}\n")).collect())
    }
}

/// One polling pass over every target. `spacing` is the pause after each
/// query (the original spreads a cycle's queries over the interval).
/// Returns (queries, failed ones).
pub async fn poll_once(table: &LoadTable, targets: &[Target], spacing: Duration) -> (usize, usize) {
    table.retain(targets);
    let (mut queries, mut failed) = (0, 0);
    for target in targets {
        for (host, agent) in &target.agents {
            let load = check(agent).await;
            queries += 1;
            match &load {
                Load::Factor(n) => log::info!("profile {}, host {host}: load factor {n}", target.profile),
                Load::Failed(why) => {
                    failed += 1;
                    log::warn!("profile {}, host {host}: no load factor ({why})", target.profile);
                }
            }
            table.store(&target.profile, host, load);
            if !spacing.is_zero() {
                tokio::time::sleep(spacing).await;
            }
        }
    }
    (queries, failed)
}

/// The broker's side: the loads of a profile's servers from the load
/// checker at `socket`, as the original's check_load reads them. Any
/// failure (no service, timeout) yields nothing, which means "select by
/// session counts".
pub async fn query_profile(socket: &Path, backend: &str, profile: &str) -> Vec<(String, Load)> {
    match tokio::time::timeout(QUERY_TIMEOUT, ask(socket, &format!("{backend}\r{profile}\r\n"))).await {
        Ok(Ok(answer)) => parse_profile_answer(&answer),
        Ok(Err(e)) => {
            log::error!("load checker at {}: {e}", socket.display());
            Vec::new()
        }
        Err(_) => {
            log::error!(
                "load checker at {}: no answer within {QUERY_TIMEOUT:?}",
                socket.display()
            );
            Vec::new()
        }
    }
}

/// Sends one request; reads until the answer ends with a newline (or EOF).
async fn ask(socket: &Path, request: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        answer.extend_from_slice(&buf[..n]);
        if n == 0 || answer.ends_with(b"\n") || answer.len() >= MAX_ANSWER {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// `HOST:VALUE` lines; others are skipped.
pub fn parse_profile_answer(answer: &str) -> Vec<(String, Load)> {
    let mut loads: Vec<(String, Load)> = Vec::new();
    for line in answer.split('\n') {
        if let Some((host, value)) = line.split_once(':') {
            let load = Load::parse(value);
            match loads.iter_mut().find(|(h, _)| h == host) {
                Some(entry) => entry.1 = load,
                None => loads.push((host.to_owned(), load)),
            }
        }
    }
    loads
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, f64)]) -> Vec<(String, f64)> {
        list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn the_factor_is_computed_as_the_original() {
        // int(((8000/1000) * 4 * 2400 * 100) / 150) = 51200
        let p = pairs(&[
            ("loadavgXX", 150.0),
            ("memAvail", 8000.0),
            ("myMemAvail", 7000.0),
            ("numCPU", 4.0),
            ("typeCPU", 2400.0),
        ]);
        assert_eq!(load_factor(&p), Load::Factor(51200));
        // memAvail 0: myMemAvail instead; truncation toward zero.
        let p = pairs(&[
            ("loadavgXX", 7.0),
            ("memAvail", 0.0),
            ("myMemAvail", 1.0),
            ("numCPU", 1.0),
            ("typeCPU", 1.0),
        ]);
        // (0.001 * 1 * 1 * 100) / 7 = 0.0142... -> 0
        assert_eq!(load_factor(&p), Load::Factor(0));
        let missing = pairs(&[("memAvail", 1.0), ("numCPU", 1.0), ("typeCPU", 1.0)]);
        assert_eq!(load_factor(&missing), Load::Failed(BOGUS.into()));
        let zero = pairs(&[
            ("loadavgXX", 0.0),
            ("memAvail", 1.0),
            ("numCPU", 1.0),
            ("typeCPU", 1.0),
        ]);
        assert_eq!(load_factor(&zero), Load::Failed(BOGUS.into()));
    }

    #[test]
    fn answers_are_the_originals_bytes() {
        let t = LoadTable::new(Duration::from_secs(300));
        assert_eq!(t.answer("inifile\rp\r").as_deref(), Some("\n"));
        assert_eq!(t.answer("inifile\rp\rh1").as_deref(), Some(UNAVAILABLE));
        t.store("p", "h2", Load::Factor(42));
        t.store("p", "h1", Load::Failed(UNREACHABLE.into()));
        assert_eq!(
            t.answer("inifile\rp\r").as_deref(),
            Some("h2:42\nh1:HOST-UNREACHABLE\n")
        );
        assert_eq!(t.answer("inifile\rp\rh2").as_deref(), Some("42"));
        assert_eq!(t.answer("inifile\rp\rh1").as_deref(), Some(UNREACHABLE));
        assert_eq!(t.answer("zeroconf\rp\r").as_deref(), Some("\n"));
        assert_eq!(t.answer("inifile\rp"), None);
        assert_eq!(t.answer("a\rb\rc\rd"), None);
    }

    #[test]
    fn stale_data_is_not_reported() {
        let t = LoadTable::new(Duration::from_secs(10));
        t.store("p", "h1", Load::Factor(1));
        let later = Instant::now() + Duration::from_secs(19);
        assert_eq!(t.answer_at("inifile\rp\rh1", later).as_deref(), Some("1"));
        let too_late = Instant::now() + Duration::from_secs(21);
        assert_eq!(
            t.answer_at("inifile\rp\rh1", too_late).as_deref(),
            Some(UNAVAILABLE)
        );
        assert_eq!(t.answer_at("inifile\rp\r", too_late).as_deref(), Some("\n"));
    }

    #[test]
    fn answers_are_read_as_the_original_broker_reads_them() {
        assert_eq!(
            parse_profile_answer("h1:12\nh2:HOST-UNREACHABLE\nh3:x\n\n"),
            vec![
                ("h1".into(), Load::Factor(12)),
                ("h2".into(), Load::Failed(UNREACHABLE.into())),
                ("h3".into(), Load::Failed(BOGUS.into())),
            ]
        );
        assert!(parse_profile_answer("\n").is_empty());
        assert_eq!(Load::parse(" -3 "), Load::Factor(-3));
        assert_eq!(Load::parse("1.5"), Load::Failed(BOGUS.into()));
    }
}
