//! Command line. Every option that a deployment may need to change; nothing
//! here is read from broker configuration files (the helper parses none).

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

use x2gobroker_protocol::paths::{AUTHSERVICE_SOCKET_ENV, DAEMON_USER_ENV, DEFAULT_AUTHSERVICE_SOCKET};

pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "x2gobroker-authhelper",
    version,
    about = "Root PAM helper of the X2Go Session Broker"
)]
pub struct Options {
    /// Socket to listen on (ignored when systemd hands one over).
    #[arg(long, env = AUTHSERVICE_SOCKET_ENV, default_value = DEFAULT_AUTHSERVICE_SOCKET)]
    pub socket: PathBuf,

    /// Owner of a socket the helper binds itself.
    #[arg(long, default_value = "root")]
    pub socket_owner: String,

    /// Group of a socket the helper binds itself (the socket unit's).
    #[arg(long, default_value = "x2gobroker-users")]
    pub socket_group: String,

    /// Permission bits (octal) of a socket the helper binds itself.
    #[arg(long, default_value = "0660", value_parser = parse_mode)]
    pub socket_mode: u32,

    /// The broker daemon's user; it (and root) may ask for authentication.
    #[arg(long, env = DAEMON_USER_ENV, default_value = "x2gobroker")]
    pub daemon_user: String,

    /// Members of this group (and root) may query `x2gobroker-ctl status`.
    #[arg(long, default_value = "adm")]
    pub admin_group: String,

    /// PAM service used when a request names none.
    #[arg(long, default_value = "x2gobroker")]
    pub pam_service: String,

    /// A further PAM service that requests may name (repeatable).
    #[arg(long = "allow-pam-service", value_name = "SERVICE")]
    pub extra_pam_services: Vec<String>,

    /// Most PAM transactions running at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub pam_threads: u32,

    /// Most client connections open at once; further ones are refused.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_connections: u32,

    /// Seconds a client may take to send each message before it is dropped.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub read_timeout: Duration,

    /// Seconds one PAM transaction may take (then: "unavailable").
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    pub pam_timeout: Duration,

    /// Recent failures (per user, per client address) that throttle PAM.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub throttle_threshold: u32,

    /// Half-life in seconds of the failure count used for throttling.
    #[arg(long, default_value = "60", value_parser = parse_seconds)]
    pub throttle_half_life: Duration,

    /// Syslog socket for the log and the audit trail (facility authpriv).
    #[arg(long, env = "X2GOBROKER_AUTHHELPER_SYSLOG_SOCKET", default_value = DEFAULT_SYSLOG_SOCKET)]
    pub syslog_socket: PathBuf,

    /// Log to stderr instead of syslog.
    #[arg(short, long)]
    pub foreground: bool,

    /// Log debug messages too (implies --foreground).
    #[arg(short, long, env = "X2GOBROKER_DEBUG", value_parser = parse_bool_flag, num_args = 0, default_missing_value = "1", default_value = "0")]
    pub debug: bool,

    /// Run as the daemon user with --ssh-worker for SSH-mode tasks; default:
    /// x2gobroker-ssh next to this program, in ../bin, or /usr/bin.
    #[arg(long, value_name = "PATH")]
    pub ssh_worker_program: Option<PathBuf>,

    /// Seconds an SSH-mode task may run before it is stopped.
    #[arg(long, default_value = "120", value_parser = parse_seconds)]
    pub ssh_task_timeout: Duration,

    /// Most SSH-mode tasks running at once; further ones are refused.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub ssh_tasks: u32,

    /// Most SSH-mode tasks one caller (not root, the daemon user) may run.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub ssh_tasks_per_user: u32,
}

impl Options {
    /// The PAM services requests may name; the default comes first.
    pub fn pam_allow_list(&self) -> Vec<String> {
        let mut list = vec![self.pam_service.clone()];
        for s in &self.extra_pam_services {
            if !list.contains(s) {
                list.push(s.clone());
            }
        }
        list
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let mode =
        u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|e| format!("not an octal mode: {e}"))?;
    if mode > 0o777 {
        return Err("mode must be at most 0777".into());
    }
    Ok(mode)
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("not a number of seconds: {e}"))?;
    if !(0.01..=86400.0).contains(&secs) {
        return Err("must be between 0.01 and 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// X2GOBROKER_DEBUG uses the original's boolean spellings.
fn parse_bool_flag(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" | "" => Ok(false),
        other => Err(format!("not a boolean: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_consistent() {
        use clap::CommandFactory;
        Options::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_original() {
        let o = Options::try_parse_from(["x"]).unwrap();
        assert_eq!(o.pam_allow_list(), vec!["x2gobroker".to_string()]);
        assert_eq!(o.socket_mode, 0o660);
        assert!(!o.debug);
    }

    #[test]
    fn socket_defaults_are_the_socket_units() {
        let unit = include_str!("../../systemd/x2gobroker-authhelper.socket");
        let o = Options::try_parse_from(["x"]).unwrap();
        for (key, value) in [
            ("SocketUser", o.socket_owner.clone()),
            ("SocketGroup", o.socket_group.clone()),
            ("SocketMode", format!("{:04o}", o.socket_mode)),
            ("ListenStream", o.socket.display().to_string()),
        ] {
            assert!(
                unit.lines().any(|l| l == format!("{key}={value}")),
                "{key}={value}"
            );
        }
    }

    #[test]
    fn modes_and_seconds_are_validated() {
        assert!(parse_mode("0777").is_ok());
        assert!(parse_mode("1777").is_err());
        assert!(parse_mode("rw").is_err());
        assert_eq!(parse_seconds("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_seconds("-1").is_err());
    }
}
