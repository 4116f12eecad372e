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

/// What was asked, for the audit line.
pub enum Action<'a> {
    Authenticate {
        user: &'a str,
        client_address: Option<&'a str>,
        service: &'a str,
    },
    Status,
    /// `caller` is the kernel-verified caller (name, or uid when it has
    /// none); `broker_user` the identity the task runs for once decided.
    SshTask {
        caller: &'a str,
        broker_user: Option<&'a str>,
        task: Option<&'a str>,
    },
}

/// Logs one decision. User names and addresses come from clients, so they
/// are printed escaped (`{:?}`) and cannot forge log lines.
pub fn decision(peer: &PeerCredentials, action: &Action<'_>, outcome: &str) {
    match action {
        Action::Authenticate {
            user,
            client_address,
            service,
        } => log::info!(
            target: AUDIT_TARGET,
            "AUDIT auth user={user:?} client={:?} service={service:?} {peer} outcome={outcome}",
            client_address.unwrap_or("-")
        ),
        Action::Status => log::info!(target: AUDIT_TARGET, "AUDIT status {peer} outcome={outcome}"),
        Action::SshTask {
            caller,
            broker_user,
            task,
        } => log::info!(
            target: AUDIT_TARGET,
            "AUDIT ssh-task caller={caller} user={:?} task={:?} {peer} outcome={outcome}",
            broker_user.unwrap_or("-"),
            task.unwrap_or("-")
        ),
    }
}
