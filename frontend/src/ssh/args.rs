//! The original's command line as SSH mode reads it. Both the command line
//! program and the worker parse with this; the worker's parse is the one
//! that counts.

use clap::Parser;
use std::path::PathBuf;
use x2gobroker_protocol::SshTask;

#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "x2gobroker",
    about = "X2Go Session Broker (SSH mode)",
    disable_version_flag = true,
    args_override_self = true
)]
pub struct SshArgs {
    /// Mode of the X2Go Session Broker to run in (available: SSH, HTTP)
    #[arg(short = 'M', long = "mode", value_name = "BROKER_MODE")]
    pub mode: Option<String>,
    /// Specify a special configuration file name (root only in SSH mode)
    #[arg(short = 'C', long = "config-file", value_name = "CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Enable debugging output on stderr
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// Force output of log messages to stderr (implies --debug)
    #[arg(short = 'i', long = "debug-interactively")]
    pub debug_interactively: bool,
    /// HTTP mode only
    #[arg(short = 'b', long = "bind", value_name = "BIND_ADDRESS")]
    pub bind: Option<String>,
    /// HTTP mode only
    #[arg(short = 'D', long = "daemonize")]
    pub daemonize: bool,
    /// HTTP mode only
    #[arg(short = 'P', long = "pidfile", value_name = "PIDFILE")]
    pub pidfile: Option<PathBuf>,
    /// HTTP mode only
    #[arg(short = 'L', long = "logdir", value_name = "LOGDIR")]
    pub logdir: Option<PathBuf>,
    /// HTTP mode only (root)
    #[arg(long = "drop-privileges")]
    pub drop_privileges: bool,
    /// broker task (listsessions, selectsession, setpass, testcon)
    #[arg(long = "task", value_name = "BROKER_TASK")]
    pub task: Option<String>,
    /// Operate on behalf of this X2Go Broker user name (magic user and root only)
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
    #[arg(last = true, hide = true)]
    pub event_args: Vec<String>,
}

impl SshArgs {
    /// Parses `args` (without the program name).
    pub fn parse_list(args: &[String]) -> Result<SshArgs, clap::Error> {
        SshArgs::try_parse_from(std::iter::once("x2gobroker".to_string()).chain(args.iter().cloned()))
    }

    /// The typed task sent to the helper (and by it to the worker), or
    /// `None` without `--task`.
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
        })
    }

    /// A mode other than SSH, or an HTTP-only action, was asked for.
    pub fn asks_for_http(&self) -> bool {
        let other_mode = matches!(self.mode.as_deref(), Some(m) if !m.eq_ignore_ascii_case("SSH"));
        other_mode || self.daemonize
    }
}

/// What the original prints on stdout when `--task` is missing (then exits
/// with 254). argparse lists `--drop-privileges` only when run by root.
pub fn missing_task_text(as_root: bool) -> &'static str {
    if as_root {
        "\nusage: x2gobroker [-h] [-M BROKER_MODE] [-C CONFIG_FILE] [-d] [-i]\n                  \
         [-b BIND_ADDRESS] [-D] [-P PIDFILE] [-L LOGDIR]\n                  \
         [--drop-privileges] [--task BROKER_TASK] [--user USER_NAME]\n                  \
         [--login LOGIN_NAME] [--event EVENT_NAME]\n                  \
         [--auth-cookie AUTH_ID] [--profile-id PROFILE_ID]\n                  \
         [--backend BROKER_BACKEND]\nNo task specified, doing nothing...\n\n"
    } else {
        "\nusage: x2gobroker [-h] [-M BROKER_MODE] [-C CONFIG_FILE] [-d] [-i]\n                  \
         [-b BIND_ADDRESS] [-D] [-P PIDFILE] [-L LOGDIR]\n                  \
         [--task BROKER_TASK] [--user USER_NAME] [--login LOGIN_NAME]\n                  \
         [--event EVENT_NAME] [--auth-cookie AUTH_ID]\n                  \
         [--profile-id PROFILE_ID] [--backend BROKER_BACKEND]\nNo task specified, doing nothing...\n\n"
    }
}

/// Exit status of the original when `--task` is missing (`sys.exit(-2)`).
pub const MISSING_TASK_EXIT: u8 = 254;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> SshArgs {
        SshArgs::parse_list(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn options_are_consistent() {
        use clap::CommandFactory;
        SshArgs::command().debug_assert();
    }

    #[test]
    fn the_originals_spellings_are_accepted() {
        let a = parse(&[
            "--task",
            "selectsession",
            "--sid",
            "p1",
            "--authid",
            "c1",
            "--user",
            "u",
        ]);
        assert_eq!(a.task.as_deref(), Some("selectsession"));
        assert_eq!(a.profile_id.as_deref(), Some("p1"));
        assert_eq!(a.auth_cookie.as_deref(), Some("c1"));
        assert_eq!(parse(&["--next-authid", "c2"]).auth_cookie.as_deref(), Some("c2"));
        assert_eq!(parse(&["--auth-cookie=c3"]).auth_cookie.as_deref(), Some("c3"));
        assert_eq!(parse(&["--profile-id", "p2"]).profile_id.as_deref(), Some("p2"));
        let a = parse(&["--user", "a", "--user", "b", "-d", "--event", "e", "--", "x", "y"]);
        assert_eq!(a.user.as_deref(), Some("b"), "the last one wins, as in argparse");
        assert_eq!(a.event_args, vec!["x", "y"]);
        assert!(a.debug);
        assert!(!parse(&["-M", "ssh"]).asks_for_http());
        assert!(parse(&["-M", "HTTP"]).asks_for_http());
        assert!(parse(&["-D"]).asks_for_http());
        assert_eq!(parse(&["-dC/x"]).config_file, Some(PathBuf::from("/x")));
        let task = parse(&["-dC/x", "--task", "t", "--user", "u", "--sid", "p"])
            .to_task()
            .unwrap();
        assert_eq!(task.config_file.as_deref(), Some("/x"));
        assert_eq!((task.task.as_str(), task.user.as_deref()), ("t", Some("u")));
        assert_eq!(task.profile_id.as_deref(), Some("p"));
        assert!(task.debug);
        assert!(parse(&["-d"]).to_task().is_none());
    }

    #[test]
    fn missing_task_text_ends_like_the_originals() {
        for root in [true, false] {
            let text = missing_task_text(root);
            assert!(text.starts_with("\nusage: x2gobroker [-h]"));
            assert!(text.ends_with("[--backend BROKER_BACKEND]\nNo task specified, doing nothing...\n\n"));
            assert_eq!(text.contains("--drop-privileges"), root);
        }
    }
}
