//! The command line of `x2gobroker` and `x2gobroker-daemon` (the options of
//! the original), start-up of the HTTP(S) daemon, and `--check-config`.

use crate::cli::options::BrokerOptions;
use crate::core::broker::{Broker, Shared};
use crate::core::config::Environment;
use crate::core::profiles::split_host_address;
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    about = "X2Go Session Broker (Standalone Daemon)",
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Cli {
    /// The original's options (shared with SSH mode).
    #[command(flatten)]
    pub options: BrokerOptions,
    /// Validate the configuration and the session profiles, then exit
    #[arg(long = "check-config")]
    pub check_config: bool,
    /// Syslog socket to log to (default /dev/log; env X2GOBROKER_SYSLOG_SOCKET)
    #[arg(long = "syslog-socket", value_name = "PATH", hide = true)]
    pub syslog_socket: Option<PathBuf>,
    /// Control socket for x2gobroker-ctl (env X2GOBROKER_CONTROL_SOCKET)
    #[arg(long = "control-socket", value_name = "PATH", hide = true)]
    pub control_socket: Option<PathBuf>,
    /// Set by -D on the background process: remove the PID file on exit
    #[arg(long = "daemonized", hide = true)]
    pub daemonized: bool,
    /// --generate-man, --generate-completions
    #[command(flatten)]
    pub docs: x2gobroker_sys::docs::DocsArgs,
}

/// The bind address as the original reads it (`[address:]port`, default
/// 0.0.0.0:8080).
pub fn parse_bind(bind: &str) -> Result<SocketAddr, String> {
    let (address, port) = split_host_address(bind, 8080);
    let address = address.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("invalid bind address '{bind}' (need an IP address and port)"))?;
    let port = u16::try_from(port).map_err(|_| format!("invalid port in bind address '{bind}'"))?;
    Ok(SocketAddr::new(ip, port))
}

/// Entry point of both binaries; `program` is the executable's base name.
pub fn main(program: &str) -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = cli.docs.handle::<Cli>(program, "1") {
        return code;
    }
    let mode = match &cli.options.mode {
        Some(m) => m.to_uppercase(),
        None if cli.options.daemonize || program == "x2gobroker-daemon" => "HTTP".into(),
        None => "SSH".into(),
    };
    let ssh_mode = mode == "SSH" && program != "x2gobroker-daemon" && !cli.options.daemonize;
    let serves_here =
        !cli.check_config && !ssh_mode && !cli.options.daemonize && (mode == "SSH" || mode == "HTTP");
    // First, while this process has one thread: taking systemd's sockets
    // clears LISTEN_* from the environment (the syslog thread and the
    // runtime start later).
    let passed = if serves_here {
        x2gobroker_sys::listen_fds::take()
    } else {
        Ok(None)
    };
    // no_new_privs is per thread and inherited: set now, it covers every
    // thread to come (the drop itself comes after binding, see below), as
    // NoNewPrivileges= does in the unit.
    if serves_here && cli.options.drop_privileges && nix::unistd::getuid().is_root() {
        if let Err(e) = nix::sys::prctl::set_no_new_privs() {
            eprintln!("{program}: cannot set no_new_privs: {e}");
            return ExitCode::from(1);
        }
    }
    let debug = cli.options.debug || cli.options.debug_interactively;
    let mut env = match Environment::from_process(program) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{program}: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(c) = &cli.options.config_file {
        env.config_file = c.clone();
    }
    if debug {
        env.debug = true;
    }
    crate::daemon::logging::init(&crate::daemon::logging::LogOptions {
        program,
        debug: env.debug,
        force_stderr: cli.options.debug_interactively,
        syslog_socket: cli.syslog_socket.as_deref(),
    });
    if cli.check_config {
        return check_config(&env);
    }
    if mode != "SSH" && mode != "HTTP" {
        log::error!("Invalid mode selected. Available: SSH or HTTP.");
        return ExitCode::from(255);
    }
    if ssh_mode {
        // SSH mode (crate::ssh): the task runs through the root helper.
        return crate::ssh::main(program);
    }
    for (given, name) in [
        (cli.options.user.is_some(), "--user"),
        (cli.options.auth_cookie.is_some(), "--auth-cookie"),
        (cli.options.task.is_some(), "--task"),
        (cli.options.profile_id.is_some(), "--profile-id"),
    ] {
        if given {
            log::warn!("ignoring non-valid option {name} for broker mode HTTP...");
        }
    }
    let bind_text = cli
        .options
        .bind
        .clone()
        .unwrap_or_else(|| env.bind_address.clone());
    let addr = match parse_bind(&bind_text) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{program}: {e}");
            return ExitCode::from(1);
        }
    };
    if cli.options.daemonize {
        return daemonize(&cli);
    }
    let broker = match Broker::load(&env) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{program}: configuration error: {e}");
            return ExitCode::from(1);
        }
    };
    for w in &broker.warnings {
        log::warn!("{w}");
    }
    let mut limits = match crate::core::config::ConfigFile::load(&env.config_file)
        .map_err(|e| e.to_string())
        .and_then(|file| crate::daemon::limits::FrontendLimits::from_file(&file))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{program}: configuration error: {e}");
            return ExitCode::from(1);
        }
    };
    let (level, line) = limits.fit_descriptor_limit();
    log::log!(level, "{line}");
    crate::core::auth_gate::configure(limits.auth_helper_slots, limits.auth_helper_slots_per_client);
    let metrics = match limits.metrics_listen {
        None => None,
        Some(addr) => match std::net::TcpListener::bind(addr) {
            Ok(l) => {
                log::info!("metrics on http://{addr}/metrics");
                Some(l)
            }
            Err(e) => {
                log::error!("cannot listen on {addr} for metrics: {e}");
                eprintln!("{program}: cannot listen on {addr} for metrics: {e}");
                return ExitCode::from(1);
            }
        },
    };
    // Sockets (some need root), then privileges, then threads: the drop sets
    // no_new_privs, which is per thread.
    let sockets = match bind_sockets(&env, passed, addr, &cli) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            eprintln!("{program}: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{program}: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(env, broker, sockets, limits, metrics));
    if cli.daemonized {
        remove_own_pidfile(&cli.options.pidfile());
    }
    code
}

/// As the original on exit; only a PID file that still names this process
/// (best effort: after --drop-privileges the directory may not allow it).
fn remove_own_pidfile(path: &std::path::Path) {
    let ours = std::fs::read_to_string(path)
        .map(|text| text.trim() == std::process::id().to_string())
        .unwrap_or(false);
    if ours {
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("cannot remove the PID file {}: {e}", path.display());
        }
    }
}

fn check_config(env: &Environment) -> ExitCode {
    match Broker::load(env) {
        Ok(broker) => {
            for w in &broker.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: {} session profiles in {}",
                broker.config_path.display(),
                broker.profiles.profiles.len(),
                broker.profiles_path.display()
            );
            if broker.warnings.is_empty() {
                println!("configuration OK");
                ExitCode::SUCCESS
            } else {
                println!("configuration has problems");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Starts this program again in the background (without -D) with its
/// output in the log directory, writes the PID file and returns.
fn daemonize(cli: &Cli) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let child_args: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| *a != "-D" && *a != "--daemonize")
        .collect();
    let logdir = &cli.options.logdir();
    if let Err(e) = std::fs::create_dir_all(logdir) {
        eprintln!(
            "Insufficent privileges. Cannot create directory for stdout/stderr log files: {} ({e})",
            logdir.display()
        );
        return ExitCode::from(253);
    }
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logdir.join(name))
    };
    let (Ok(out), Ok(err)) = (open("x2gobroker-daemon.stdout"), open("x2gobroker-daemon.stderr")) else {
        eprintln!(
            "Insufficent privileges. Cannot create stdout/stderr log files in {}",
            logdir.display()
        );
        return ExitCode::from(253);
    };
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("cannot find my own executable");
        return ExitCode::from(1);
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.stdin(std::process::Stdio::null()).stdout(out).stderr(err);
    // Our own options go first: the given ones may end with `-- EVENT...`.
    if cli.options.mode.is_none() && args.first().map(|a| a.ends_with("x2gobroker-daemon")) != Some(true) {
        cmd.args(["-M", "HTTP"]);
    }
    cmd.arg("--daemonized");
    // In the background, log to syslog (crate::daemon::logging) unless told otherwise.
    if cli.syslog_socket.is_none() && std::env::var_os(crate::daemon::logging::SYSLOG_SOCKET_ENV).is_none() {
        cmd.arg("--syslog-socket")
            .arg(crate::daemon::logging::DEFAULT_SYSLOG_SOCKET);
    }
    cmd.args(&child_args);
    match cmd.spawn() {
        Ok(child) => {
            if let Some(dir) = cli.options.pidfile().parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Err(e) = std::fs::write(cli.options.pidfile(), format!("{}\n", child.id())) {
                eprintln!("Cannot write PID file {}: {e}", cli.options.pidfile().display());
                return ExitCode::from(253);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot start the daemon: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--drop-privileges` as root: to X2GOBROKER_DAEMON_USER with group
/// X2GOBROKER_DAEMON_GROUP and no supplementary groups, with the checks the
/// helper applies to its SSH-mode workers (`x2gobroker_sys::privileges`).
fn drop_privileges(env: &Environment) -> Result<(), String> {
    use nix::unistd::{Group, User};
    if !nix::unistd::getuid().is_root() {
        return Ok(());
    }
    let user = User::from_name(&env.daemon_user)
        .ok()
        .flatten()
        .ok_or_else(|| format!("no such user {}", env.daemon_user))?;
    let group = Group::from_name(&env.daemon_group)
        .ok()
        .flatten()
        .ok_or_else(|| format!("no such group {}", env.daemon_group))?;
    x2gobroker_sys::privileges::drop_to(&[], group.gid, user.uid).map_err(|e| {
        format!(
            "to {}:{} (or privileges could be regained afterwards): {e}",
            env.daemon_user, env.daemon_group
        )
    })
}

/// Completes on SIGTERM or SIGINT, after telling systemd we are stopping.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    crate::daemon::sdnotify::notify("STOPPING=1");
    log::info!("shutting down: no new connections; finishing requests in flight");
}

/// What the daemon serves on, bound before privileges are dropped.
struct Sockets {
    listeners: Vec<std::net::TcpListener>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    control: Option<crate::daemon::control::ControlSocket>,
}

/// The listening sockets (systemd's, named `http`, else `bind`), TLS, the
/// control socket, then `--drop-privileges`. No runtime needed.
fn bind_sockets(
    env: &Environment,
    passed: Result<Option<Vec<x2gobroker_sys::listen_fds::Passed>>, String>,
    bind: SocketAddr,
    cli: &Cli,
) -> Result<Sockets, String> {
    log::info!("X2Go Session Broker (Rust), HTTP mode");
    log::info!("  X2GOBROKER_DAEMON_USER: {}", env.daemon_user);
    log::info!("  X2GOBROKER_DEBUG: {}", env.debug);
    log::info!("  X2GOBROKER_CONFIG: {}", env.config_file.display());
    log::info!("  X2GOBROKER_DEFAULT_BACKEND: {}", env.default_backend);
    log::info!(
        "  X2GOBROKER_AUTHSERVICE_SOCKET: {}",
        env.authservice_socket.display()
    );
    log::info!("  X2GOBROKER_SSL_CERTFILE: {}", env.ssl_certfile);
    log::info!("  X2GOBROKER_SSL_KEYFILE: {}", env.ssl_keyfile);
    let listeners = match passed? {
        Some(passed) => crate::daemon::listen_fds::http_listeners(passed)?,
        None => vec![std::net::TcpListener::bind(bind).map_err(|e| format!("cannot listen on {bind}: {e}"))?],
    };
    let tls = !env.ssl_certfile.is_empty() && !env.ssl_keyfile.is_empty();
    let acceptor = if tls {
        Some(
            crate::daemon::http_server::tls_acceptor(&env.ssl_certfile, &env.ssl_keyfile)
                .map_err(|e| format!("cannot serve HTTPS: {e}"))?,
        )
    } else {
        None
    };
    for l in &listeners {
        if let Ok(a) = l.local_addr() {
            log::info!("listening on {}://{a}", if tls { "https" } else { "http" });
        }
    }
    // Diagnostics are not essential: without the control socket the daemon
    // still serves.
    let control_path = crate::daemon::control::socket_path(cli.control_socket.as_deref());
    let control = match crate::daemon::control::bind(&control_path) {
        Ok(c) => Some(c),
        Err(e) => {
            log::warn!("{e}; x2gobroker-ctl will not reach this daemon");
            None
        }
    };
    if cli.options.drop_privileges {
        drop_privileges(env).map_err(|e| format!("cannot drop privileges: {e}"))?;
        log::info!("dropped privileges to {}:{}", env.daemon_user, env.daemon_group);
    }
    Ok(Sockets {
        listeners,
        acceptor,
        control,
    })
}

async fn serve(
    env: Environment,
    broker: Broker,
    sockets: Sockets,
    limits: crate::daemon::limits::FrontendLimits,
    metrics: Option<std::net::TcpListener>,
) -> ExitCode {
    crate::core::stats::STATS.mark_started();
    crate::core::stats::STATS.config_loaded();
    let Sockets {
        listeners,
        acceptor,
        control,
    } = sockets;
    let shared = Shared::new(broker);
    let control_task = control.map(|c| {
        tokio::spawn(crate::daemon::control::serve(
            c,
            crate::daemon::control::admin_group(),
            shared.clone(),
        ))
    });
    let (live_limits, limits) = tokio::sync::watch::channel(limits);
    let watcher = tokio::spawn(crate::daemon::reload::watch(shared.clone(), env, live_limits));
    // Auto-login keys still deployed when the daemon (or a worker) that
    // deployed them stopped are removed from here.
    let key_removals = tokio::spawn(crate::core::key_removals::run(shared.clone()));
    let metrics_task = metrics.map(|l| tokio::spawn(crate::daemon::metrics::serve(l)));
    // Counts of rate-limited log lines reach the log after a storm too.
    let log_flush = tokio::spawn(async {
        let mut tick = tokio::time::interval(crate::core::log_limit::WINDOW);
        loop {
            tick.tick().await;
            crate::core::log_limit::flush();
        }
    });
    crate::daemon::sdnotify::notify("READY=1\nSTATUS=serving; configuration generation 1");
    let result =
        crate::daemon::http_server::serve(listeners, acceptor, shared, limits, shutdown_signal()).await;
    watcher.abort();
    key_removals.abort();
    log_flush.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    if let Some(t) = control_task {
        t.abort();
        // Dropping the task drops the socket, which removes its file.
        let _ = t.await;
    }
    match result {
        Ok(true) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            log::warn!("stopped with requests still in flight after the grace period");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("cannot serve: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses() {
        assert_eq!(parse_bind("").unwrap(), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(
            parse_bind("127.0.0.1:18080").unwrap(),
            "127.0.0.1:18080".parse().unwrap()
        );
        assert_eq!(parse_bind("9000").unwrap(), "0.0.0.0:9000".parse().unwrap());
        assert_eq!(parse_bind("*:9000").unwrap(), "0.0.0.0:9000".parse().unwrap());
        assert_eq!(parse_bind("[::1]:8443").unwrap(), "[::1]:8443".parse().unwrap());
        assert!(parse_bind("nonsense:1").is_err());
    }

    #[test]
    fn cli_accepts_the_originals_options() {
        let cli = Cli::try_parse_from([
            "x2gobroker",
            "-M",
            "HTTP",
            "-C",
            "/x.conf",
            "-d",
            "-b",
            "1.2.3.4:5",
            "--next-authid",
            "c",
            "--sid",
            "p",
            "--backend",
            "inifile",
            "--task",
            "listsessions",
            "--",
            "ev",
        ])
        .unwrap();
        assert_eq!(cli.options.mode.as_deref(), Some("HTTP"));
        assert_eq!(cli.options.auth_cookie.as_deref(), Some("c"));
        assert_eq!(cli.options.profile_id.as_deref(), Some("p"));
        assert_eq!(cli.options.event_args, vec!["ev"]);
        let cli = Cli::try_parse_from(["x2gobroker", "--authid", "z"]).unwrap();
        assert_eq!(cli.options.auth_cookie.as_deref(), Some("z"));
    }

    /// argparse (the original): a repeated option's last value wins. The
    /// daemon's parser and SSH mode's must agree, whatever the program.
    #[test]
    fn repeated_options_behave_as_argparse_in_every_program() {
        let args = [
            "--task",
            "listsessions",
            "--user",
            "a",
            "--user",
            "b",
            "-C",
            "/one",
            "--config-file=/two",
            "--sid",
            "p1",
            "--profile-id",
            "p2",
        ];
        let daemon = Cli::try_parse_from(std::iter::once("x2gobroker").chain(args)).unwrap();
        let ssh = crate::ssh::args::SshArgs::parse_list(&args.map(String::from)).unwrap();
        assert_eq!(daemon.options, ssh);
        assert_eq!(ssh.user.as_deref(), Some("b"));
        assert_eq!(ssh.config_file, Some(PathBuf::from("/two")));
        assert_eq!(ssh.profile_id.as_deref(), Some("p2"));
        let daemon =
            Cli::try_parse_from(["x2gobroker-daemon", "-d", "-d", "-b", "1:1", "-b", "2:2"]).unwrap();
        assert_eq!(daemon.options.bind.as_deref(), Some("2:2"));
        assert!(daemon.options.debug);
    }
}
