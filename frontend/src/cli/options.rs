//! The original's command line (`x2gobroker --help`), defined once and
//! flattened into the daemon's parser (`daemon::startup::Cli`) and SSH
//! mode's (`ssh::args::SshArgs`), so help, manual pages and completions of
//! every program come from the same definition. Repeated options behave as
//! in argparse, whichever program parses them: the last one wins (the
//! parsers set `args_override_self`).

use clap::Args;
use std::path::PathBuf;
use x2gobroker_protocol::SshTask;

/// The daemon's PID file unless `-P` names another.
pub const DEFAULT_PIDFILE: &str = "/run/x2gobroker/x2gobroker-daemon.pid";
/// Where `-D` puts the daemon's stdout and stderr unless `-L` says otherwise.
pub const DEFAULT_LOGDIR: &str = "/var/log/x2gobroker/";

#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerOptions {
    /// Mode of the X2Go Session Broker to run in (available: SSH, HTTP)
    #[arg(short = 'M', long = "mode", value_name = "BROKER_MODE")]
    pub mode: Option<String>,
    /// Specify a special configuration file name (default: X2GOBROKER_CONFIG; root only in SSH mode)
    #[arg(short = 'C', long = "config-file", value_name = "CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Enable debugging code; also allow testing in a web browser (GET)
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// Force output of log messages to stderr (implies --debug)
    #[arg(short = 'i', long = "debug-interactively")]
    pub debug_interactively: bool,
    /// HTTP mode: the [address:]port that the http-engine shall bind to (default: 0.0.0.0:8080)
    #[arg(short = 'b', long = "bind", value_name = "BIND_ADDRESS")]
    pub bind: Option<String>,
    /// HTTP mode: detach from the terminal and run in the background
    #[arg(short = 'D', long = "daemonize")]
    pub daemonize: bool,
    /// HTTP mode: alternative file path for the daemon's PID file (default: /run/x2gobroker/x2gobroker-daemon.pid)
    #[arg(short = 'P', long = "pidfile", value_name = "PIDFILE")]
    pub pidfile: Option<PathBuf>,
    /// HTTP mode: directory for the stdout and stderr log files of a daemonized process (default: /var/log/x2gobroker/)
    #[arg(short = 'L', long = "logdir", value_name = "LOGDIR")]
    pub logdir: Option<PathBuf>,
    /// HTTP mode: drop privileges to X2GOBROKER_DAEMON_USER / X2GOBROKER_DAEMON_GROUP (root only)
    #[arg(long = "drop-privileges")]
    pub drop_privileges: bool,
    /// broker task (listsessions, selectsession, setpass, testcon)
    #[arg(long = "task", value_name = "BROKER_TASK")]
    pub task: Option<String>,
    /// Operate on behalf of this X2Go Broker user name (SSH mode: magic user and root only)
    #[arg(long = "user", value_name = "USER_NAME")]
    pub user: Option<String>,
    /// Operate on behalf of this X2Go Server user name
    #[arg(long = "login", value_name = "LOGIN_NAME")]
    pub login: Option<String>,
    /// not-yet supported feature, ignored
    #[arg(long = "event", value_name = "EVENT_NAME")]
    pub event: Option<String>,
    /// Pre-shared (dynamic) authentication ID
    #[arg(
        long = "auth-cookie",
        visible_aliases = ["next-authid", "authid"],
        value_name = "AUTH_ID"
    )]
    pub auth_cookie: Option<String>,
    /// for task: the profile ID selected from the list of available session profiles
    #[arg(long = "profile-id", visible_alias = "sid", value_name = "PROFILE_ID")]
    pub profile_id: Option<String>,
    /// select a non-default broker backend
    #[arg(long = "backend", value_name = "BROKER_BACKEND")]
    pub backend: Option<String>,
    /// Event information after `--`
    #[arg(last = true)]
    pub event_args: Vec<String>,
}

impl BrokerOptions {
    /// The typed task SSH mode sends to the helper (and the helper to the
    /// worker), or `None` without `--task`.
    pub fn to_task(&self) -> Option<SshTask> {
        Some(SshTask {
            task: self.task.clone()?,
            user: self.user.clone(),
            login: self.login.clone(),
            auth_cookie: self.auth_cookie.clone(),
            profile_id: self.profile_id.clone(),
            backend: self.backend.clone(),
            config_file: self
                .config_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            debug: self.debug || self.debug_interactively,
            password: None,
            new_password: None,
        })
    }

    /// A mode other than SSH, or an HTTP-only action, was asked for.
    pub fn asks_for_http(&self) -> bool {
        let other_mode = matches!(self.mode.as_deref(), Some(m) if !m.eq_ignore_ascii_case("SSH"));
        other_mode || self.daemonize
    }

    pub fn pidfile(&self) -> PathBuf {
        self.pidfile.clone().unwrap_or_else(|| DEFAULT_PIDFILE.into())
    }

    pub fn logdir(&self) -> PathBuf {
        self.logdir.clone().unwrap_or_else(|| DEFAULT_LOGDIR.into())
    }
}
