//! The SSH-mode worker: started only by the root helper, as the daemon
//! user, with the verified identity on its standard input, a socket the
//! helper made (ARCHITECTURE.md P3). It checks
//! that this is how it was started, reads the job (a typed task and the
//! verified identity), refuses anything that disagrees with it,
//! loads the system configuration (ARCHITECTURE.md P10) and prints the task's output.

use super::output::{self, Task, TaskError};
use super::relay;
use crate::core::backend::Backend;
use crate::core::broker::Broker;
use crate::core::config::Environment;
use crate::core::login_map;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Duration;
use x2gobroker_protocol::paths::DAEMON_USER_ENV;
use x2gobroker_protocol::WorkerJob;
use x2gobroker_sys::peer::PeerCredentials;

/// How long the helper may take to hand over the job.
const JOB_TIMEOUT: Duration = Duration::from_secs(10);
/// `/proc/self/status` fields reported in debug mode.
const CREDENTIAL_FIELDS: [&str; 9] = [
    "Uid",
    "Gid",
    "Groups",
    "NoNewPrivs",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
];

const PROGRAM: &str = "x2gobroker-ssh";

/// Exit status for every refusal to run or to serve.
const REFUSED: u8 = 1;

fn refuse(message: &str) -> u8 {
    eprintln!("{PROGRAM}: {message}");
    REFUSED
}

/// Worker entry point (`x2gobroker-ssh --ssh-worker`). Until the job is
/// read, standard error is the starter's (nothing, when that is the
/// helper); from then on, everything goes to the caller ([`relay`]).
pub fn main() -> ExitCode {
    // SSH connections to agents end with the task (no lingering masters).
    crate::core::agent::remote::disable_multiplexing();
    // The helper always sets it (to the user it dropped us to).
    let daemon_user = std::env::var(DAEMON_USER_ENV).unwrap_or_else(|_| "x2gobroker".into());
    if let Err(reason) = started_by_helper(&daemon_user) {
        return ExitCode::from(refuse(&format!(
            "worker mode is for x2gobroker-authhelper only and refuses to run otherwise ({reason})"
        )));
    }
    let job = match read_job() {
        Ok(job) => job,
        Err(e) => return ExitCode::from(refuse(&format!("no job from the helper: {e}"))),
    };
    relay::run(
        Duration::from_millis(job.time_limit_ms),
        move || match Environment::from_process("x2gobroker") {
            Ok(env) => serve(job, env),
            Err(e) => refuse(&format!("{e}")),
        },
    )
}

/// The checks that make worker mode useless to anyone but the helper.
fn started_by_helper(daemon_user: &str) -> Result<(), String> {
    let daemon = nix::unistd::User::from_name(daemon_user)
        .ok()
        .flatten()
        .ok_or_else(|| format!("unknown daemon user {daemon_user:?}"))?;
    let (uid, euid) = (nix::unistd::getuid(), nix::unistd::geteuid());
    if uid.is_root() || uid != daemon.uid || euid != daemon.uid {
        return Err(format!(
            "running as uid {uid}/{euid}, not as the daemon user {daemon_user}"
        ));
    }
    // SO_PEERCRED of a socketpair names the process that made it: our
    // parent, as root. Nobody else can make such a descriptor.
    let peer = PeerCredentials::of(&std::io::stdin())
        .map_err(|e| format!("standard input is not the helper's job socket: {e}"))?;
    if peer.uid != 0 || peer.pid != Some(nix::unistd::getppid().as_raw()) {
        return Err(format!(
            "standard input comes from uid {} pid {}, not from the parent helper",
            peer.uid,
            peer.pid.unwrap_or(0)
        ));
    }
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(str::trim)
            .unwrap_or("")
            .to_string()
    };
    if field("NoNewPrivs") != "1" {
        return Err("no_new_privs is not set".into());
    }
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        if u64::from_str_radix(&field(set), 16) != Ok(0) {
            return Err(format!("capability set {set} is not empty"));
        }
    }
    Ok(())
}

fn read_job() -> Result<WorkerJob, String> {
    let stdin = std::io::stdin();
    let timeout = TimeVal::new(JOB_TIMEOUT.as_secs() as _, 0);
    setsockopt(&stdin.as_fd(), sockopt::ReceiveTimeout, &timeout).map_err(|e| e.to_string())?;
    x2gobroker_protocol::frame::blocking::read_message(&mut stdin.lock()).map_err(|e| e.to_string())
}

fn serve(job: WorkerJob, mut env: Environment) -> u8 {
    let args = &job.task;
    // The helper decided who this task is for; the task must agree.
    if args.user.as_deref().is_some_and(|u| u != job.broker_user) {
        return refuse("--user disagrees with the identity the helper verified; refusing");
    }
    if args.config_file.is_some() && job.caller_uid != 0 {
        return refuse("only root may choose the configuration file (-C) in SSH mode");
    }
    if let Some(config) = &args.config_file {
        env.config_file = config.into();
    }
    let debug = args.debug || env.debug;
    init_logging(debug);
    if debug {
        report_credentials();
    }
    let mut broker = match Broker::load(&env) {
        Ok(b) => b,
        Err(e) => return refuse(&format!("configuration error: {e}")),
    };
    output::trust_ssh_authentication(&mut broker);
    let backend_name = args
        .backend
        .clone()
        .unwrap_or_else(|| env.default_backend.clone());
    // A fixed table (the original passes the name to exec()).
    let Some(backend) = Backend::from_name(&backend_name) else {
        return refuse(&format!("unknown backend: {backend_name}"));
    };
    let login = args.login.clone().unwrap_or_else(|| job.broker_user.clone());
    if let Err(e) = login_map::check(&broker.config_path, &job.broker_user, &login) {
        return refuse(&format!("refused: {e}"));
    }
    // The original's SSH_CLIENT reading: its first word, an IP address.
    let client: IpAddr = match job.ssh_client.as_deref().map(str::trim) {
        None | Some("") => IpAddr::from([127, 0, 0, 1]),
        Some(text) => match text.split_whitespace().next().unwrap_or("").parse() {
            Ok(ip) => ip,
            Err(_) => return refuse(&format!("SSH_CLIENT {text:?} does not start with an IP address")),
        },
    };
    let task = Task {
        backend,
        broker_user: &job.broker_user,
        login: &login,
        client,
        cookie: args.auth_cookie.as_deref().unwrap_or(""),
        task: &args.task,
        profile_id: args.profile_id.as_deref().unwrap_or(""),
        passwords: args.password.as_ref().zip(args.new_password.as_ref()),
        own_account: nix::unistd::User::from_name(&job.broker_user)
            .ok()
            .flatten()
            .is_some_and(|u| u.uid.as_raw() == job.caller_uid),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return refuse(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(output::render(&broker, &task)) {
        Ok(text) => {
            // The original print()s the output when there is any.
            if !text.is_empty() {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.write_all(b"\n");
                let _ = stdout.flush();
            }
            0
        }
        Err(TaskError(e)) => refuse(&e),
    }
}

/// In debug mode: the worker's own credentials, so an administrator (and
/// the system tests) can see what a task runs with.
fn report_credentials() {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return;
    };
    for line in status.lines() {
        if let Some((name, value)) = line.split_once(':') {
            if CREDENTIAL_FIELDS.contains(&name) {
                log::debug!("worker-credentials {name}: {}", value.trim());
            }
        }
    }
}

struct StderrLogger {
    level: log::LevelFilter,
}

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("{PROGRAM} - {} - {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

/// Errors only, unless debugging: X2Go Client shows stderr to the user.
fn init_logging(debug: bool) {
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Error
    };
    let logger = Box::leak(Box::new(StderrLogger { level }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
