//! Logging for the helper and the daemon: syslog (the facility each
//! chooses) through a bounded queue and a thread of its own, or stderr
//! (with the journal's `<N>` priority prefixes when stderr is the journal).
//! `debug` adds debug lines of our own crates and audit lines, not other
//! crates' chatter (hyper's connection debug output).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};

/// Target of audit lines, so a log reader can pick them out.
pub const AUDIT_TARGET: &str = "audit";

/// Bound of the queue towards syslog.
const SYSLOG_QUEUE: usize = 4096;

pub struct LogOptions<'a> {
    /// Name in syslog and in stderr lines.
    pub program: &'a str,
    pub facility: syslog::Facility,
    pub debug: bool,
    /// Where syslog listens; `None`: stderr.
    pub syslog_socket: Option<&'a Path>,
    /// Audit lines wait for room in the syslog queue instead of being
    /// dropped with other lines when syslog falls behind (the helper: no
    /// decision goes unrecorded).
    pub audit_waits: bool,
}

pub fn init(opts: &LogOptions<'_>) {
    let level = match opts.debug {
        true => log::LevelFilter::Debug,
        false => log::LevelFilter::Info,
    };
    let logger: Box<dyn log::Log> = match opts.syslog_socket.map(|socket| syslog_writer(opts, socket)) {
        Some(Ok(writer)) => Box::new(QueuedSyslog::start(writer, opts.audit_waits)),
        Some(Err(e)) => {
            eprintln!("{}: {e}; logging to stderr", opts.program);
            Box::new(stderr_logger(opts.program))
        }
        None => Box::new(stderr_logger(opts.program)),
    };
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

fn syslog_writer(opts: &LogOptions<'_>, socket: &Path) -> Result<SyslogWriter, String> {
    let formatter = syslog::Formatter3164 {
        facility: opts.facility,
        hostname: None,
        process: opts.program.to_owned(),
        pid: std::process::id(),
    };
    syslog::unix_custom(formatter, socket)
        .map_err(|e| format!("cannot reach syslog at {} ({e})", socket.display()))
}

fn wanted(m: &log::Metadata<'_>) -> bool {
    m.level() <= log::max_level()
        && (m.level() <= log::Level::Info
            || m.target().starts_with("x2gobroker")
            || m.target() == AUDIT_TARGET)
}

type SyslogWriter = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

/// A slow or stuck syslog daemon (a full datagram queue blocks the sender)
/// must never stall request handling: when the queue is full, lines are
/// dropped (audit lines wait if `audit_waits`) and the number dropped is
/// reported once the queue drains.
struct QueuedSyslog {
    queue: mpsc::SyncSender<(log::Level, String)>,
    dropped: Arc<AtomicU64>,
    audit_waits: bool,
}

impl QueuedSyslog {
    fn start(mut writer: SyslogWriter, audit_waits: bool) -> QueuedSyslog {
        let (queue, received) = mpsc::sync_channel::<(log::Level, String)>(SYSLOG_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let dropped_seen = dropped.clone();
        let spawned = std::thread::Builder::new().name("syslog".into()).spawn(move || {
            for (level, message) in received {
                let _ = match level {
                    log::Level::Error => writer.err(message),
                    log::Level::Warn => writer.warning(message),
                    log::Level::Info => writer.info(message),
                    log::Level::Debug | log::Level::Trace => writer.debug(message),
                };
                let lost = dropped_seen.swap(0, Relaxed);
                if lost > 0 {
                    let _ = writer.warning(format!("{lost} log messages dropped (syslog too slow)"));
                }
            }
        });
        if let Err(e) = spawned {
            eprintln!("cannot start the syslog thread: {e}");
        }
        QueuedSyslog {
            queue,
            dropped,
            audit_waits,
        }
    }
}

impl log::Log for QueuedSyslog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        wanted(m)
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = (r.level(), r.args().to_string());
        let sent = match self.audit_waits && r.target() == AUDIT_TARGET {
            true => self
                .queue
                .send(line)
                .map_err(|e| mpsc::TrySendError::Disconnected(e.0)),
            false => self.queue.try_send(line),
        };
        if let Err(e) = sent {
            self.dropped.fetch_add(1, Relaxed);
            if let mpsc::TrySendError::Disconnected((_, line)) = e {
                eprintln!("{line}");
            }
        }
    }

    fn flush(&self) {}
}

fn stderr_logger(program: &str) -> StderrLogger {
    StderrLogger {
        program: program.to_owned(),
        journal: stderr_is_journal(),
    }
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
