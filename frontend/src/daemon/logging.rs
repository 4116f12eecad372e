//! Where the front end logs: syslog (facility daemon) or stderr, through
//! the logger the helper uses too (`x2gobroker_sys::logging`).
//!
//! `-d` raises the level to debug, as in the original. Where lines go:
//! * in the foreground (by hand, or under systemd, whose stderr is the
//!   journal: `journalctl -u x2gobroker-daemon`): stderr;
//! * daemonized with `-D` (the background process is started with
//!   `--syslog-socket /dev/log`), or whenever a syslog socket is named
//!   (`--syslog-socket`, `X2GOBROKER_SYSLOG_SOCKET`): syslog, facility
//!   daemon, falling back to stderr when syslog cannot be reached;
//! * `-i` forces stderr in every case.

use std::path::{Path, PathBuf};

/// The system logger's socket.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";
/// Environment variable naming another syslog socket (tests).
pub const SYSLOG_SOCKET_ENV: &str = "X2GOBROKER_SYSLOG_SOCKET";

pub struct LogOptions<'a> {
    pub program: &'a str,
    pub debug: bool,
    /// `-i`: stderr whatever else is set.
    pub force_stderr: bool,
    /// `--syslog-socket`.
    pub syslog_socket: Option<&'a Path>,
}

pub fn init(opts: &LogOptions<'_>) {
    let explicit: Option<PathBuf> = opts
        .syslog_socket
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(SYSLOG_SOCKET_ENV).map(PathBuf::from));
    x2gobroker_sys::logging::init(&x2gobroker_sys::logging::LogOptions {
        program: opts.program,
        facility: syslog::Facility::LOG_DAEMON,
        debug: opts.debug,
        syslog_socket: explicit.as_deref().filter(|_| !opts.force_stderr),
        // A slow syslog must never stall request handling.
        audit_waits: false,
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn audit_lines_pass_the_debug_filter() {
        assert_eq!(
            crate::core::audit::AUDIT_TARGET,
            x2gobroker_sys::logging::AUDIT_TARGET
        );
    }
}
