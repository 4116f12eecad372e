//! Command line. Every option that a deployment may need to change; nothing
//! here is read from broker configuration files (the helper parses none).

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

use x2gobroker_protocol::paths::{AUTHSERVICE_SOCKET_ENV, DAEMON_USER_ENV, DEFAULT_AUTHSERVICE_SOCKET};
use x2gobroker_sys::cli_values::{parse_bool_flag, parse_mode, parse_seconds};

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

    /// Recent failures of one user at one client address that throttle
    /// that pair (docs/OPERATIONS.md "Login throttling").
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub throttle_threshold: u32,

    /// Recent failures of one user across all addresses that throttle the
    /// user at addresses where she has not logged in lately.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub throttle_user_threshold: u32,

    /// Recent failures at one address across all users that throttle the
    /// address for users who have not logged in from it lately.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub throttle_address_threshold: u32,

    /// Half-life in seconds of the failure counts used for throttling.
    #[arg(long, default_value = "60", value_parser = parse_seconds)]
    pub throttle_half_life: Duration,

    /// Seconds a successful login keeps its (user, address) pair free of
    /// the per-user and per-address thresholds.
    #[arg(long, default_value = "86400", value_parser = parse_seconds)]
    pub throttle_remember_success: Duration,

    /// Network (CIDR) whose addresses are throttled per user only
    /// (repeatable), e.g. a reverse proxy or an office NAT.
    #[arg(long = "throttle-exempt", value_name = "CIDR")]
    pub throttle_exempt: Vec<ipnet::IpNet>,

    /// Most PAM transactions running at once for one user or one address.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub pam_threads_per_key: u32,

    /// Most connections one uid other than root and the daemon user holds.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_connections_per_user: u32,

    /// Connections only root and the daemon user may take (at most half
    /// of --max-connections).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=4096))]
    pub reserved_connections: u32,

    /// A caller that runs under no sshd session (local, not over SSH):
    /// `local` treats it as the original treats a missing SSH_CLIENT
    /// (127.0.0.1), `refuse` refuses its tasks.
    #[arg(long, value_enum, default_value = "local")]
    pub ssh_without_sshd: WithoutSshd,

    /// Where an SSH-mode caller's client address comes from: `sshd` (the
    /// peer of its sshd session; keeps CAP_SYS_PTRACE) or `environment`
    /// (the caller's SSH_CLIENT, which it can set, as the original; runs
    /// without CAP_SYS_PTRACE).
    #[arg(long, value_enum, default_value = "sshd")]
    pub ssh_client_address: SshClientAddress,

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

/// `--ssh-without-sshd` (docs/OPERATIONS.md "SSH-mode client address").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WithoutSshd {
    Local,
    Refuse,
}

/// `--ssh-client-address` (docs/OPERATIONS.md "SSH-mode client address").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SshClientAddress {
    Sshd,
    Environment,
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
    fn throttling_and_fairness_defaults_are_the_documented_ones() {
        let o = Options::try_parse_from(["x"]).unwrap();
        let thresholds = (
            o.throttle_threshold,
            o.throttle_user_threshold,
            o.throttle_address_threshold,
        );
        assert_eq!(thresholds, (5, 20, 30));
        assert_eq!(o.throttle_half_life, Duration::from_secs(60));
        assert_eq!(o.throttle_remember_success, Duration::from_secs(86400));
        let limits = (
            o.pam_threads_per_key,
            o.max_connections_per_user,
            o.reserved_connections,
        );
        assert_eq!(limits, (4, 8, 64));
        assert_eq!(o.ssh_without_sshd, WithoutSshd::Local);
        assert_eq!(o.ssh_client_address, SshClientAddress::Sshd);
        // The examples in etc/default/x2gobroker-authhelper parse.
        let examples = include_str!("../../etc/default/x2gobroker-authhelper");
        for line in examples
            .lines()
            .filter_map(|l| l.strip_prefix("#AUTHHELPER_OPTS="))
        {
            let args = std::iter::once("x").chain(line.split(' '));
            assert!(Options::try_parse_from(args).is_ok(), "{line}");
        }
        let exempt = Options::try_parse_from(["x", "--throttle-exempt", "10.0.0.0/33"]);
        assert!(exempt.is_err(), "a bad network is a start-up error");
    }
}
