//! Logging (syslog facility authpriv, or stderr in the foreground; the
//! logger is `x2gobroker_sys::logging`) and the audit trail: one line per
//! decision with user, client address, peer credentials and outcome.
//! Nothing here ever sees a password.

use std::path::Path;
use x2gobroker_sys::logging::{LogOptions, AUDIT_TARGET};
use x2gobroker_sys::peer::PeerCredentials;

/// Syslog unless in the foreground; audit lines are never dropped.
pub fn init(foreground: bool, debug: bool, syslog_socket: &Path) {
    x2gobroker_sys::logging::init(&LogOptions {
        program: "x2gobroker-authhelper",
        facility: syslog::Facility::LOG_AUTHPRIV,
        debug,
        syslog_socket: Some(syslog_socket).filter(|_| !(foreground || debug)),
        audit_waits: true,
    });
}

/// Logs one decision: `action` is what was asked ([`authentication`],
/// [`ssh_task`] or `"status"`).
pub fn decision(peer: &PeerCredentials, action: &str, outcome: &str) {
    log::info!(target: AUDIT_TARGET, "AUDIT {action} {peer} outcome={outcome}");
}

// User names and addresses come from clients, so they are printed escaped
// (`{:?}`) and cannot forge log lines.

pub fn authentication(user: &str, client_address: Option<&str>, service: &str) -> String {
    let client = client_address.unwrap_or("-");
    format!("auth user={user:?} client={client:?} service={service:?}")
}

/// `caller` is the kernel-verified caller (name, or uid when it has none);
/// `broker_user` the identity the task runs for once decided.
pub fn ssh_task(caller: &str, broker_user: Option<&str>, task: Option<&str>) -> String {
    let (user, task) = (broker_user.unwrap_or("-"), task.unwrap_or("-"));
    format!("ssh-task caller={caller} user={user:?} task={task:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_values_are_escaped() {
        let auth = authentication("eve\" outcome=success", Some("10.0.0.1"), "x2gobroker");
        let expected = r#"auth user="eve\" outcome=success" client="10.0.0.1" service="x2gobroker""#;
        assert_eq!(auth, expected);
        let task = ssh_task("\"alice\"", Some("bob\nAUDIT"), None);
        assert_eq!(task, r#"ssh-task caller="alice" user="bob\nAUDIT" task="-""#);
        assert_eq!(
            authentication("a", None, "s"),
            r#"auth user="a" client="-" service="s""#
        );
    }
}
