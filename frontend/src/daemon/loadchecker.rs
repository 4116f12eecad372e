//! `x2gobroker-loadchecker`: the load checker service (the original's
//! options). Takes its Unix socket from systemd (socket activation) or
//! binds it itself, drops to the daemon user when started as root, polls
//! the agents ([`crate::core::loadchecker`]) and answers the broker.

use crate::core::broker::Broker;
use crate::core::config::Environment;
use crate::core::loadchecker::{self, LoadTable, MAX_REQUEST};
use clap::Parser;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

const PROGRAM: &str = "x2gobroker-loadchecker";
/// A connection that sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;

#[derive(Parser, Debug)]
#[command(
    name = "x2gobroker-loadchecker",
    about = "X2Go Session Broker (Load Checker Service)",
    long_about = "X2Go Session Broker (Load Checker Service)\n\n\
        Polls the broker agents of every session profile that uses the load checker \
        (agent query mode SSH, at least two hosts) every load-checker-intervals seconds \
        and keeps each server's load factor:\n\n  \
        load-factor = int((memAvail/1000) * numCPU * typeCPU * 100 / loadavgXX)\n\n\
        The broker asks for the factors over a Unix socket (request BACKEND\\rPROFILE\\rHOST\\n) \
        and sends new sessions to the server with the lowest (sessions + 1) / load-factor. \
        Data older than two intervals is not reported. Normally started by systemd \
        (x2gobroker-loadchecker.socket)."
)]
pub struct Cli {
    /// socket file for LoadChecker communication (default: X2GOBROKER_LOADCHECKER_SOCKET or /run/x2gobroker/x2gobroker-loadchecker.socket)
    #[arg(short = 's', long = "socket-file", value_name = "LOADCHECKERSOCKET")]
    socket_file: Option<PathBuf>,
    /// owner of the LoadChecker socket file
    #[arg(short = 'o', long = "owner", default_value = "root")]
    owner: String,
    /// group ownership of the LoadChecker socket file
    #[arg(short = 'g', long = "group", default_value = "root")]
    group: String,
    /// set these file permissions for the LoadChecker socket file
    #[arg(short = 'p', long = "permissions", default_value = "0660")]
    permissions: String,
    /// enable debugging code
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// force output of log message to the stderr (rather than to the log files)
    #[arg(short = 'i', long = "debug-interactively")]
    debug_interactively: bool,
    /// Accepted for the original's init scripts; ours stays in the foreground (run it from systemd)
    #[arg(short = 'D', long = "daemonize")]
    daemonize: bool,
    /// Accepted for the original's init scripts; not used
    #[arg(short = 'P', long = "pidfile", value_name = "PIDFILE")]
    pidfile: Option<PathBuf>,
    /// Accepted for the original's init scripts; not used
    #[arg(short = 'L', long = "logdir", value_name = "LOGDIR")]
    logdir: Option<PathBuf>,
    /// --generate-man, --generate-completions
    #[command(flatten)]
    docs: x2gobroker_sys::docs::DocsArgs,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = cli.docs.handle::<Cli>(PROGRAM, "8") {
        return code;
    }
    // Before any thread: systemd's socket (clears LISTEN_*).
    let passed = match x2gobroker_sys::listen_fds::take() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            return ExitCode::from(1);
        }
    };
    let env = match Environment::from_process(PROGRAM) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            return ExitCode::from(1);
        }
    };
    x2gobroker_sys::logging::init(&x2gobroker_sys::logging::LogOptions {
        program: PROGRAM,
        facility: syslog::Facility::LOG_DAEMON,
        debug: cli.debug || cli.debug_interactively || env.debug,
        syslog_socket: None,
        audit_waits: false,
    });
    if cli.daemonize || cli.pidfile.is_some() || cli.logdir.is_some() {
        log::warn!(
            "-D/-P/-L are not supported: staying in the foreground (run the load checker from systemd)"
        );
    }
    let listener = match listener(&cli, &env, passed) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = drop_privileges(&env) {
        log::error!("cannot drop privileges: {e}");
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            log::error!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(serve(env, listener))
}

/// systemd's socket, else one bound at `-s` (owner, group and mode as given).
fn listener(
    cli: &Cli,
    env: &Environment,
    passed: Option<Vec<x2gobroker_sys::listen_fds::Passed>>,
) -> Result<std::os::unix::net::UnixListener, String> {
    if let Some(passed) = passed {
        let mut fds = passed.into_iter();
        let first = fds.next().ok_or("systemd passed no socket")?;
        if fds.next().is_some() {
            log::warn!("systemd passed more than one socket; serving the first");
        }
        x2gobroker_sys::listen_fds::check_stream_listener(&first.fd)?;
        if !x2gobroker_sys::listen_fds::is_unix_socket(&first.fd) {
            return Err("the socket systemd passed is not a Unix socket".into());
        }
        log::info!("serving the socket passed by systemd");
        return Ok(std::os::unix::net::UnixListener::from(first.fd));
    }
    let path = cli
        .socket_file
        .clone()
        .unwrap_or_else(|| env.loadchecker_socket.clone());
    let mode = u32::from_str_radix(cli.permissions.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("-p {}: not an octal file mode", cli.permissions))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let listener = x2gobroker_sys::socket::bind_replacing_stale(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    set_owner(&path, &cli.owner, &cli.group)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    log::info!("listening on {} (mode {mode:04o})", path.display());
    Ok(listener)
}

/// As the original: owner and group only when we may change them.
fn set_owner(path: &Path, owner: &str, group: &str) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let uid = nix::unistd::User::from_name(owner)
        .ok()
        .flatten()
        .ok_or_else(|| format!("-o {owner}: no such user"))?
        .uid;
    let gid = nix::unistd::Group::from_name(group)
        .ok()
        .flatten()
        .ok_or_else(|| format!("-g {group}: no such group"))?
        .gid;
    nix::unistd::chown(path, Some(uid), Some(gid)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Started as root (by hand): on to the daemon user, whose SSH key the
/// agents accept.
fn drop_privileges(env: &Environment) -> Result<(), String> {
    if !nix::unistd::getuid().is_root() {
        return Ok(());
    }
    let account = x2gobroker_sys::privileges::Account::resolve(&env.daemon_user)?;
    x2gobroker_sys::privileges::drop_to(&account.groups, account.gid, account.uid)
        .map_err(|e| e.to_string())?;
    // OpenSSH and the key look-up go by the account's home.
    std::env::set_var("HOME", &account.home);
    log::info!("dropped privileges to {}", account.name);
    Ok(())
}

async fn serve(env: Environment, listener: std::os::unix::net::UnixListener) -> ExitCode {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|_| UnixListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            log::error!("socket: {e}");
            return ExitCode::from(1);
        }
    };
    let table = Arc::new(LoadTable::new(Duration::from_secs(300)));
    tokio::spawn(poll_forever(env, table.clone()));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let own_uid = nix::unistd::geteuid().as_raw();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        log::warn!("{MAX_CONNECTIONS} connections open; refusing another");
                        continue;
                    };
                    let table = table.clone();
                    tokio::spawn(async move {
                        serve_connection(stream, &table, own_uid).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    log::error!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown() => {
                log::info!("stopping");
                return ExitCode::SUCCESS;
            }
        }
    }
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => std::future::pending().await,
    }
}

/// Requests, one per line, until EOF, an idle timeout or a bad request.
/// Only root and the service's own account (the broker's daemon user) are
/// answered, besides the socket's file permissions.
async fn serve_connection(stream: UnixStream, table: &LoadTable, own_uid: u32) {
    match x2gobroker_sys::peer::PeerCredentials::of(&stream) {
        Ok(peer) if peer.uid == 0 || peer.uid == own_uid => {}
        Ok(peer) => {
            log::warn!("refusing a connection from uid {}", peer.uid);
            return;
        }
        Err(e) => {
            log::warn!("peer credentials: {e}");
            return;
        }
    }
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(u64::MAX);
    loop {
        let mut line = Vec::new();
        reader.set_limit(MAX_REQUEST as u64 + 1);
        let read = tokio::time::timeout(IDLE_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
        let Ok(Ok(n)) = read else { return };
        if n == 0 || line.last() != Some(&b'\n') {
            // EOF, or a line too long / cut off.
            return;
        }
        line.pop();
        let Some(answer) = table.answer(&String::from_utf8_lossy(&line)) else {
            log::warn!("malformed request; closing the connection");
            return;
        };
        if write.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The original's loop: the first cycle asks every agent at once, later
/// ones spread their queries over the interval. The configuration and the
/// profiles are read again for every cycle.
async fn poll_forever(env: Environment, table: Arc<LoadTable>) {
    let mut spacing = Duration::ZERO;
    loop {
        let broker = match Broker::load(&env) {
            Ok(b) => b,
            Err(e) => {
                log::error!("configuration: {e}; trying again in 60 s");
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            }
        };
        let interval = Duration::from_secs(broker.global.load_checker_intervals.max(1).unsigned_abs());
        table.set_interval(interval);
        let targets = loadchecker::targets(&broker);
        log::debug!(
            "polling profiles {:?}",
            targets.iter().map(|t| t.profile.as_str()).collect::<Vec<_>>()
        );
        let (queries, failed) = loadchecker::poll_once(&table, &targets, spacing).await;
        if spacing.is_zero() {
            tokio::time::sleep(interval).await;
        }
        if queries > 0 {
            if !spacing.is_zero() {
                tokio::time::sleep(spacing).await;
            }
            log::debug!("{queries} queries ({failed} failed) in this cycle");
            spacing = interval / (queries as u32 + 1);
        } else {
            log::warn!(
                "no server to query in this cycle; if this repeats, consider disabling the load checker"
            );
            spacing = Duration::ZERO;
        }
    }
}
