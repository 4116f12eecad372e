//! Who an SSH-mode task runs for (ARCHITECTURE.md P1, P2, P10), decided from
//! the kernel-verified caller and the few options of its command line that
//! concern identity or configuration. The helper parses no broker
//! configuration; the worker re-parses the whole command line and refuses
//! anything that disagrees with what is decided here.

/// Most arguments and longest argument accepted in a task's command line.
pub const MAX_ARGS: usize = 64;
pub const MAX_ARG_LEN: usize = 4096;

/// The options of a task's command line that policy looks at.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IdentityOptions {
    /// Last `--user` given (argparse semantics: the last one wins).
    pub user: Option<String>,
    /// Last `--task` given, for the audit line only.
    pub task: Option<String>,
    /// `-C` / `--config-file` appears (possibly inside a cluster of short
    /// options such as `-dC`).
    pub chooses_config: bool,
}

/// Picks the identity options out of `args`. Everything after `--` is event
/// information and ignored. Conservative on purpose: a short-option cluster
/// that merely contains `C` counts as choosing the configuration.
pub fn scan(args: &[String]) -> Result<IdentityOptions, String> {
    if args.len() > MAX_ARGS {
        return Err(format!("more than {MAX_ARGS} arguments"));
    }
    if let Some(a) = args.iter().find(|a| a.len() > MAX_ARG_LEN || a.contains('\0')) {
        return Err(format!("argument of {} bytes (or with NUL) refused", a.len()));
    }
    let mut found = IdentityOptions::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let mut value = || inline.clone().or_else(|| rest.next().cloned());
            match name {
                "user" => found.user = value(),
                "task" => found.task = value(),
                "config-file" => {
                    found.chooses_config = true;
                    value();
                }
                _ => {}
            }
        } else if arg.starts_with('-') && arg.contains('C') {
            found.chooses_config = true;
        }
    }
    Ok(found)
}

/// The caller as the kernel and NSS report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub name: String,
}

/// Why a task is refused; the text goes to the caller and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The broker user a task runs for, or why not.
///
/// * root and the magic (daemon) user may act for anyone with `--user`;
/// * everyone may name themselves;
/// * only root may choose the configuration file.
pub fn broker_user(caller: &Caller, daemon_uid: u32, options: &IdentityOptions) -> Result<String, Refusal> {
    let privileged = caller.uid == 0 || caller.uid == daemon_uid;
    if options.chooses_config && caller.uid != 0 {
        return Err(Refusal(format!(
            "{} (uid {}) may not choose the configuration (-C/--config-file): SSH-mode tasks use the \
             system configuration; only root may name another file",
            caller.name, caller.uid
        )));
    }
    match &options.user {
        None => Ok(caller.name.clone()),
        Some(user) if user == &caller.name => Ok(user.clone()),
        Some(user) if !valid_user_name(user) => Err(Refusal(format!("invalid user name {user:?}"))),
        Some(user) if privileged => Ok(user.clone()),
        Some(user) => Err(Refusal(format!(
            "{} (uid {}) may not act on behalf of {user:?}: --user is honoured only for the magic user \
             and root",
            caller.name, caller.uid
        ))),
    }
}

/// Names that can be broker users: no control characters, no path
/// separators, not empty, not an option.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('-')
        && !name.contains('/')
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn alice() -> Caller {
        Caller {
            uid: 1001,
            name: "alice".into(),
        }
    }

    const DAEMON: u32 = 999;

    #[test]
    fn scan_finds_user_task_and_config_in_every_spelling() {
        let o = scan(&args(&["--task", "listsessions", "--user", "bob"])).unwrap();
        assert_eq!(o.user.as_deref(), Some("bob"));
        assert_eq!(o.task.as_deref(), Some("listsessions"));
        assert!(!o.chooses_config);
        let o = scan(&args(&["--user=bob", "--user", "carol"])).unwrap();
        assert_eq!(o.user.as_deref(), Some("carol"), "last one wins, as in argparse");
        for config in [
            &["-C", "/x"][..],
            &["-C/x"],
            &["-dC", "/x"],
            &["--config-file=/x"],
            &["--config-file", "/x"],
        ] {
            assert!(scan(&args(config)).unwrap().chooses_config, "{config:?}");
        }
        let o = scan(&args(&["--task", "x", "--", "--user", "bob", "-C"])).unwrap();
        assert_eq!(o.user, None, "event information after -- is not an option");
        assert!(!o.chooses_config);
    }

    #[test]
    fn oversized_command_lines_are_refused() {
        assert!(scan(&vec!["-d".to_string(); MAX_ARGS + 1]).is_err());
        assert!(scan(&["x".repeat(MAX_ARG_LEN + 1)]).is_err());
    }

    #[test]
    fn ordinary_users_act_only_for_themselves() {
        let me = |user: Option<&str>| IdentityOptions {
            user: user.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(broker_user(&alice(), DAEMON, &me(None)).unwrap(), "alice");
        assert_eq!(
            broker_user(&alice(), DAEMON, &me(Some("alice"))).unwrap(),
            "alice"
        );
        assert!(broker_user(&alice(), DAEMON, &me(Some("bob"))).is_err());
        assert!(broker_user(&alice(), DAEMON, &me(Some("x2gobroker"))).is_err());
    }

    #[test]
    fn magic_user_and_root_may_switch() {
        let bob = IdentityOptions {
            user: Some("bob".into()),
            ..Default::default()
        };
        let magic = Caller {
            uid: DAEMON,
            name: "x2gobroker".into(),
        };
        let root = Caller {
            uid: 0,
            name: "root".into(),
        };
        assert_eq!(broker_user(&magic, DAEMON, &bob).unwrap(), "bob");
        assert_eq!(broker_user(&root, DAEMON, &bob).unwrap(), "bob");
        let bad = IdentityOptions {
            user: Some("../etc".into()),
            ..Default::default()
        };
        assert!(broker_user(&magic, DAEMON, &bad).is_err());
    }

    #[test]
    fn only_root_chooses_the_configuration() {
        let config = IdentityOptions {
            chooses_config: true,
            ..Default::default()
        };
        let magic = Caller {
            uid: DAEMON,
            name: "x2gobroker".into(),
        };
        assert!(broker_user(&alice(), DAEMON, &config).is_err());
        assert!(broker_user(&magic, DAEMON, &config).is_err());
        let root = Caller {
            uid: 0,
            name: "root".into(),
        };
        assert!(broker_user(&root, DAEMON, &config).is_ok());
    }
}
