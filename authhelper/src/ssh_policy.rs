//! Who an SSH-mode task runs for (ARCHITECTURE.md P1, P2, P10), decided from
//! the kernel-verified caller and the task's typed `user` and `config_file`
//! fields. The helper parses no command line and no broker configuration;
//! the worker checks the task again against the identity decided here.

use x2gobroker_protocol::SshTask;

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
pub fn broker_user(caller: &Caller, daemon_uid: u32, task: &SshTask) -> Result<String, Refusal> {
    let privileged = caller.uid == 0 || caller.uid == daemon_uid;
    if task.config_file.is_some() && caller.uid != 0 {
        return Err(Refusal(format!(
            "{} (uid {}) may not choose the configuration (-C/--config-file): SSH-mode tasks use the \
             system configuration; only root may name another file",
            caller.name, caller.uid
        )));
    }
    match &task.user {
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

    fn alice() -> Caller {
        Caller {
            uid: 1001,
            name: "alice".into(),
        }
    }

    fn for_user(user: Option<&str>) -> SshTask {
        SshTask {
            task: "listsessions".into(),
            user: user.map(str::to_string),
            ..Default::default()
        }
    }

    const DAEMON: u32 = 999;

    #[test]
    fn ordinary_users_act_only_for_themselves() {
        assert_eq!(broker_user(&alice(), DAEMON, &for_user(None)).unwrap(), "alice");
        assert_eq!(
            broker_user(&alice(), DAEMON, &for_user(Some("alice"))).unwrap(),
            "alice"
        );
        assert!(broker_user(&alice(), DAEMON, &for_user(Some("bob"))).is_err());
        assert!(broker_user(&alice(), DAEMON, &for_user(Some("x2gobroker"))).is_err());
    }

    #[test]
    fn magic_user_and_root_may_switch() {
        let magic = Caller {
            uid: DAEMON,
            name: "x2gobroker".into(),
        };
        let root = Caller {
            uid: 0,
            name: "root".into(),
        };
        assert_eq!(
            broker_user(&magic, DAEMON, &for_user(Some("bob"))).unwrap(),
            "bob"
        );
        assert_eq!(broker_user(&root, DAEMON, &for_user(Some("bob"))).unwrap(), "bob");
        assert!(broker_user(&magic, DAEMON, &for_user(Some("../etc"))).is_err());
    }

    #[test]
    fn only_root_chooses_the_configuration() {
        let config = SshTask {
            config_file: Some("/x".into()),
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
