//! Logging (syslog facility authpriv, or stderr in the foreground) and the
//! audit trail: one line per decision with user, client address, peer
//! credentials and outcome. Nothing here ever sees a password.

use std::path::Path;
use x2gobroker_sys::peer::PeerCredentials;

/// Target of audit lines, so a log reader can pick them out.
pub const AUDIT_TARGET: &str = "audit";

pub fn init(foreground: bool, debug: bool, syslog_socket: &Path) {
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    if !(foreground || debug) {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_AUTHPRIV,
            hostname: None,
            process: "x2gobroker-authhelper".into(),
            pid: std::process::id(),
        };
        match syslog::unix_custom(formatter, syslog_socket) {
            Ok(logger) => {
                if log::set_boxed_logger(Box::new(syslog::BasicLogger::new(logger))).is_ok() {
                    log::set_max_level(level);
                }
                return;
            }
            Err(e) => eprintln!(
                "x2gobroker-authhelper: cannot reach syslog at {} ({e}); logging to stderr",
                syslog_socket.display()
            ),
        }
    }
    if log::set_boxed_logger(Box::new(StderrLogger)).is_ok() {
        log::set_max_level(level);
    }
}

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "x2gobroker-authhelper[{}]: {}: {}",
                std::process::id(),
                record.level(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
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
