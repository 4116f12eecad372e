//! Where the front end logs: syslog (facility daemon) or stderr.
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
    let level = if opts.debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let explicit: Option<PathBuf> = opts
        .syslog_socket
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(SYSLOG_SOCKET_ENV).map(PathBuf::from));
    if let Some(socket) = explicit.filter(|_| !opts.force_stderr) {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: opts.program.to_owned(),
            pid: std::process::id(),
        };
        match syslog::unix_custom(formatter, &socket) {
            Ok(logger) => {
                if log::set_boxed_logger(Box::new(QueuedSyslog::start(logger))).is_ok() {
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
        journal: stderr_is_journal(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

/// Debug output of other crates (hyper's connection chatter) is left out.
fn wanted(m: &log::Metadata<'_>) -> bool {
    m.level() <= log::max_level()
        && (m.level() <= log::Level::Info
            || m.target().starts_with("x2gobroker")
            || m.target() == crate::core::audit::AUDIT_TARGET)
}

/// Bound of the queue towards syslog.
const SYSLOG_QUEUE: usize = 4096;

type SyslogWriter = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

/// Syslog through a bounded queue and a thread of its own: a slow or stuck
/// syslog daemon (a full datagram queue blocks the sender) must never stall
/// request handling. When the queue is full, messages are dropped and the
/// number dropped is reported once the queue drains.
struct QueuedSyslog {
    queue: std::sync::mpsc::SyncSender<(log::Level, String)>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl QueuedSyslog {
    fn start(mut writer: SyslogWriter) -> QueuedSyslog {
        use std::sync::atomic::Ordering;
        let (queue, received) = std::sync::mpsc::sync_channel::<(log::Level, String)>(SYSLOG_QUEUE);
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let dropped_seen = dropped.clone();
        let spawned = std::thread::Builder::new().name("syslog".into()).spawn(move || {
            for (level, message) in received {
                let _ = match level {
                    log::Level::Error => writer.err(message),
                    log::Level::Warn => writer.warning(message),
                    log::Level::Info => writer.info(message),
                    log::Level::Debug | log::Level::Trace => writer.debug(message),
                };
                let lost = dropped_seen.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let _ = writer.warning(format!("{lost} log messages dropped (syslog too slow)"));
                }
            }
        });
        if let Err(e) = spawned {
            eprintln!("cannot start the syslog thread: {e}");
        }
        QueuedSyslog { queue, dropped }
    }
}

impl log::Log for QueuedSyslog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        wanted(m)
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) && self.queue.try_send((r.level(), r.args().to_string())).is_err() {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

/// systemd sets JOURNAL_STREAM=DEVICE:INODE of the stream it connected;
/// stderr is the journal only if fd 2 still is that stream.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsRawFd;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM")
        .ok()
        .and_then(|v| v.split_once(':').map(|(d, i)| (d.to_owned(), i.to_owned())))
    else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr().as_raw_fd()) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(stat.st_dev) && ino.parse::<u64>().ok() == Some(stat.st_ino)
}

/// Syslog severity of a level, for the journal's `<N>` line prefix.
fn severity(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

struct StderrLogger {
    program: String,
    /// stderr is the systemd journal: prefix `<N>` so each line keeps its
    /// priority (`journalctl -p warning`), and leave out the program name,
    /// which the journal records itself.
    journal: bool,
}

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        wanted(m)
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            if self.journal {
                eprintln!("<{}>{}", severity(r.level()), r.args());
            } else {
                eprintln!("{} - {} - {}", self.program, r.level(), r.args());
            }
        }
    }

    fn flush(&self) {}
}
