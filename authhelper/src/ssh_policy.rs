//! Who an SSH-mode task runs for (ARCHITECTURE.md P1, P2, P10), decided from
//! the kernel-verified caller and the task's typed `user` and `config_file`
//! fields. The helper parses no command line and no broker configuration;
//! the worker checks the task again against the identity decided here.

use x2gobroker_protocol::{ErrorKind, ErrorReply, SshTask};

/// The broker user a task of the caller (`uid`, and its `name` from NSS)
/// runs for, or why not (the text goes to the caller and the audit trail).
///
/// * root and the magic (daemon) user may act for anyone with `--user`;
/// * everyone may name themselves;
/// * only root may choose the configuration file.
pub fn broker_user(uid: u32, name: &str, daemon_uid: u32, task: &SshTask) -> Result<String, ErrorReply> {
    let privileged = uid == 0 || uid == daemon_uid;
    let refused = |why: String| Err(ErrorReply::new(ErrorKind::DeniedByPolicy, why));
    if task.config_file.is_some() && uid != 0 {
        return refused(format!(
            "{name} (uid {uid}) may not choose the configuration (-C/--config-file): SSH-mode tasks use the \
             system configuration; only root may name another file"
        ));
    }
    match &task.user {
        None => Ok(name.to_string()),
        Some(user) if user == name => Ok(user.clone()),
        Some(user) if !valid_user_name(user) => refused(format!("invalid user name {user:?}")),
        Some(user) if privileged => Ok(user.clone()),
        Some(user) => refused(format!(
            "{name} (uid {uid}) may not act on behalf of {user:?}: --user is honoured only for the magic user \
             and root"
        )),
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

    fn for_user(user: Option<&str>) -> SshTask {
        SshTask {
            task: "listsessions".into(),
            user: user.map(str::to_string),
            ..Default::default()
        }
    }

    const DAEMON: u32 = 999;
    const ALICE: u32 = 1001;

    #[test]
    fn ordinary_users_act_only_for_themselves() {
        assert_eq!(
            broker_user(ALICE, "alice", DAEMON, &for_user(None)).unwrap(),
            "alice"
        );
        assert_eq!(
            broker_user(ALICE, "alice", DAEMON, &for_user(Some("alice"))).unwrap(),
            "alice"
        );
        assert!(broker_user(ALICE, "alice", DAEMON, &for_user(Some("bob"))).is_err());
        assert!(broker_user(ALICE, "alice", DAEMON, &for_user(Some("x2gobroker"))).is_err());
    }

    #[test]
    fn magic_user_and_root_may_switch() {
        assert_eq!(
            broker_user(DAEMON, "x2gobroker", DAEMON, &for_user(Some("bob"))).unwrap(),
            "bob"
        );
        assert_eq!(
            broker_user(0, "root", DAEMON, &for_user(Some("bob"))).unwrap(),
            "bob"
        );
        assert!(broker_user(DAEMON, "x2gobroker", DAEMON, &for_user(Some("../etc"))).is_err());
    }

    #[test]
    fn only_root_chooses_the_configuration() {
        let config = SshTask {
            config_file: Some("/x".into()),
            ..Default::default()
        };
        assert!(broker_user(ALICE, "alice", DAEMON, &config).is_err());
        assert!(broker_user(DAEMON, "x2gobroker", DAEMON, &config).is_err());
        assert!(broker_user(0, "root", DAEMON, &config).is_ok());
    }
}
