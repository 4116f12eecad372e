//! Where the front end logs: syslog (facility daemon) or stderr.
//!
//! The original's `-d` only raises the level and `-i` forces stderr. Here:
//! * `-i`, or stderr is a terminal, or stderr is the systemd journal
//!   (`JOURNAL_STREAM`): stderr, so `journalctl -u x2gobroker-daemon` and
//!   interactive runs show everything;
//! * otherwise (e.g. daemonized with `-D`), or when a syslog socket is named
//!   explicitly (`--syslog-socket`, `X2GOBROKER_SYSLOG_SOCKET`): syslog,
//!   falling back to stderr when syslog cannot be reached.

use std::io::IsTerminal;
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
    let level = if opts.debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let explicit: Option<PathBuf> = opts
        .syslog_socket
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(SYSLOG_SOCKET_ENV).map(PathBuf::from));
    let interactive = std::io::stderr().is_terminal() || stderr_is_journal();
    let use_syslog = !opts.force_stderr && (explicit.is_some() || !interactive);
    if use_syslog {
        let socket = explicit.unwrap_or_else(|| PathBuf::from(DEFAULT_SYSLOG_SOCKET));
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: opts.program.to_owned(),
            pid: std::process::id(),
        };
        match syslog::unix_custom(formatter, &socket) {
            Ok(logger) => {
                if log::set_boxed_logger(Box::new(syslog::BasicLogger::new(logger))).is_ok() {
                    log::set_max_level(level);
                }
                return;
            }
            Err(e) => eprintln!(
                "{}: cannot reach syslog at {} ({e}); logging to stderr",
                opts.program,
                socket.display()
            ),
        }
    }
    let logger = StderrLogger {
        program: opts.program.to_owned(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

/// systemd sets JOURNAL_STREAM=dev:inode of the stream it connected; it is
/// ours only if fd 2 still is that stream.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&std::io::stderr().as_fd())) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(stat.st_dev) && ino.parse::<u64>().ok() == Some(stat.st_ino)
}

struct StderrLogger {
    program: String,
}

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("{} - {} - {}", self.program, r.level(), r.args());
        }
    }

    fn flush(&self) {}
}
