//! The original's command line as SSH mode reads it: the shared definition
//! ([`BrokerOptions`]) under SSH mode's name and help. The command line
//! program parses with it and sends the helper the typed task.

use crate::cli::options::BrokerOptions;
use clap::Parser;

#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "x2gobroker",
    about = "X2Go Session Broker (SSH mode)",
    disable_version_flag = true,
    args_override_self = true
)]
pub struct SshArgs {
    #[command(flatten)]
    pub options: BrokerOptions,
    /// for task setpass: the new password, as X2Go Client sends it (visible in the process list: prefer standard input)
    #[arg(long = "newpass", value_name = "NEW_PASSWORD")]
    pub newpass: Option<String>,
}

impl SshArgs {
    /// Parses `args` (without the program name).
    pub fn parse_list(args: &[String]) -> Result<BrokerOptions, clap::Error> {
        SshArgs::parse_all(args).map(|a| a.options)
    }

    /// As [`SshArgs::parse_list`], with SSH mode's own options.
    pub fn parse_all(args: &[String]) -> Result<SshArgs, clap::Error> {
        SshArgs::try_parse_from(std::iter::once("x2gobroker".to_string()).chain(args.iter().cloned()))
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

    use std::path::PathBuf;

    fn parse(list: &[&str]) -> BrokerOptions {
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
