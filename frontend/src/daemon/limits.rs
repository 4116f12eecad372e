//! The front end's limits (x2gobroker.conf `[global]`, ours, not the
//! original's): how many client connections the daemon holds, overall and
//! per client address, how long it waits for a request's header and body,
//! how long an idle keep-alive connection stays open, how long one request
//! may take, and how many PAM calls it sends to the helper at once. Read at
//! start-up and on every reload (`metrics-listen` only at start-up),
//! checked against the process's descriptor limit so that clients can
//! never take the descriptors the daemon needs to reach the helper, agents
//! and its log.

use crate::core::config::ConfigFile;
use std::net::SocketAddr;
use std::time::Duration;

/// Descriptors kept back from client connections: the helper connections
/// (at most `auth-helper-slots`), agent ssh processes (64, three pipes
/// each), listeners, the control socket, syslog, files.
pub const FD_RESERVE: u64 = 320;
/// Never fewer connections than this, however low the descriptor limit.
const MIN_CONNECTIONS: u64 = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendLimits {
    /// `max-connections`: client connections held at once.
    pub max_connections: usize,
    /// `max-connections-per-client`: of these, from one client address.
    pub max_connections_per_client: usize,
    /// `header-read-timeout`: from the first byte of a request to the end
    /// of its header.
    pub header_read_timeout: Duration,
    /// `body-read-timeout`: for the whole request body.
    pub body_read_timeout: Duration,
    /// `keepalive-timeout`: an open connection without a request in
    /// flight is closed after this (also one that never sends a byte).
    pub keepalive_timeout: Duration,
    /// `request-timeout`: a request not answered by then gets 503.
    pub request_timeout: Duration,
    /// `auth-helper-slots`: PAM calls to the helper in flight at once.
    pub auth_helper_slots: usize,
    /// `auth-helper-slots-per-client`: of these, for one client address.
    pub auth_helper_slots_per_client: usize,
    /// `metrics-listen`: where the OpenMetrics text is served (off when unset).
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for FrontendLimits {
    fn default() -> Self {
        FrontendLimits {
            max_connections: 512,
            max_connections_per_client: 64,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            auth_helper_slots: 8,
            auth_helper_slots_per_client: 2,
            metrics_listen: None,
        }
    }
}

/// The limits in force. Each connection takes a copy when it is accepted;
/// a reload publishes new ones ([`publish`]).
pub type LiveLimits = tokio::sync::watch::Sender<FrontendLimits>;

/// Puts reloaded limits in force: new connections and PAM calls get them,
/// connections already open keep theirs (a client over a lowered limit
/// loses one idle connection per new one). `metrics-listen` needs a restart.
pub fn publish(live: &LiveLimits, mut new: FrontendLimits) {
    let old = live.borrow().clone();
    if new.metrics_listen != old.metrics_listen {
        log::warn!("metrics-listen changed: it takes effect when the daemon is restarted");
        new.metrics_listen = old.metrics_listen;
    }
    let (level, line) = new.fit_descriptor_limit();
    if new == old {
        return;
    }
    crate::core::auth_gate::configure(new.auth_helper_slots, new.auth_helper_slots_per_client);
    live.send_replace(new);
    log::log!(level, "reload: {line}");
}

impl FrontendLimits {
    /// The limits from `[global]`; unset keys keep their defaults, a value
    /// that is not a positive number is an error naming the key.
    pub fn from_file(file: &ConfigFile) -> Result<FrontendLimits, String> {
        let d = FrontendLimits::default();
        let number = |key: &str, default: u64| -> Result<u64, String> {
            match file.raw("global", key) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!(
                        "{}: [global] {key} = {v}: not a positive integer",
                        file.path().display()
                    )),
                },
            }
        };
        let secs = |key: &str, default: Duration| number(key, default.as_secs()).map(Duration::from_secs);
        let metrics_listen = match file.raw("global", "metrics-listen").map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| {
                format!(
                    "{}: [global] metrics-listen = {v}: not an address:port",
                    file.path().display()
                )
            })?),
        };
        Ok(FrontendLimits {
            max_connections: number("max-connections", d.max_connections as u64)? as usize,
            max_connections_per_client: number(
                "max-connections-per-client",
                d.max_connections_per_client as u64,
            )? as usize,
            header_read_timeout: secs("header-read-timeout", d.header_read_timeout)?,
            body_read_timeout: secs("body-read-timeout", d.body_read_timeout)?,
            keepalive_timeout: secs("keepalive-timeout", d.keepalive_timeout)?,
            request_timeout: secs("request-timeout", d.request_timeout)?,
            auth_helper_slots: number("auth-helper-slots", d.auth_helper_slots as u64)? as usize,
            auth_helper_slots_per_client: number(
                "auth-helper-slots-per-client",
                d.auth_helper_slots_per_client as u64,
            )? as usize,
            metrics_listen,
        })
    }

    /// Fits `max-connections` under the descriptor limit: raises the soft
    /// RLIMIT_NOFILE towards the hard one if needed, else lowers the cap so
    /// that [`FD_RESERVE`] descriptors stay free. Returns the log line.
    pub fn fit_descriptor_limit(&mut self) -> (log::Level, String) {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let wanted = self.max_connections as u64 + FD_RESERVE;
        let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
            return (
                log::Level::Warn,
                "cannot read RLIMIT_NOFILE; connection limits unchecked".into(),
            );
        };
        let mut limit = soft;
        if soft < wanted {
            let raised = wanted.min(hard);
            if raised > soft && setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() {
                limit = raised;
            }
        }
        if limit >= wanted {
            return (
                log::Level::Info,
                format!(
                    "front-end limits: {} connections ({} per client), RLIMIT_NOFILE {limit} \
                     ({FD_RESERVE} kept for the helper, agents and logs)",
                    self.max_connections, self.max_connections_per_client
                ),
            );
        }
        let fitted = limit.saturating_sub(FD_RESERVE).max(MIN_CONNECTIONS) as usize;
        let line = format!(
            "max-connections lowered from {} to {fitted}: RLIMIT_NOFILE is {limit} and {FD_RESERVE} \
             descriptors are kept for the helper, agents and logs (raise LimitNOFILE= in the unit)",
            self.max_connections
        );
        self.max_connections = fitted;
        self.max_connections_per_client = self.max_connections_per_client.min(fitted);
        (log::Level::Warn, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ini::Ini;

    fn file(text: &str) -> ConfigFile {
        let path = std::path::Path::new("/x.conf");
        ConfigFile::from_ini(path, Ini::parse(text, path).expect("ini"))
    }

    #[test]
    fn defaults_overrides_and_errors() {
        assert_eq!(
            FrontendLimits::from_file(&file("[global]\n")).unwrap(),
            FrontendLimits::default()
        );
        let l = FrontendLimits::from_file(&file(
            "[global]\nmax-connections = 100\nkeepalive-timeout = 3\nmetrics-listen = 127.0.0.1:9650\n",
        ))
        .unwrap();
        assert_eq!(l.max_connections, 100);
        assert_eq!(l.keepalive_timeout, Duration::from_secs(3));
        assert_eq!(l.metrics_listen, Some("127.0.0.1:9650".parse().unwrap()));
        let e = FrontendLimits::from_file(&file("[global]\nrequest-timeout = 0\n")).unwrap_err();
        assert!(e.contains("request-timeout = 0"), "{e}");
        assert!(FrontendLimits::from_file(&file("[global]\nmetrics-listen = x\n")).is_err());
    }
}
