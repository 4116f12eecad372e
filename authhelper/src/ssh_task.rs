//! Serving `RunSshTask`: identify the caller (SO_PEERCRED, then NSS), apply
//! the `--user` / `-C` policy, start the worker as the daemon user with the
//! verified identity on its job descriptor and the caller's connection as
//! its standard output. One task per connection; every task has a deadline
//! and the number running at once is bounded.

use crate::audit;
use crate::cli::{Options, SshClientAddress, WithoutSshd};
use crate::server::{send_within, State};
use crate::ssh_policy;
use crate::worker_launch;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::time::timeout;
use x2gobroker_protocol::paths;
use x2gobroker_protocol::{ErrorKind, ErrorReply, Response, SshTaskRequest, WorkerJob, WorkerStop};
use x2gobroker_sys::keyed_slots::{Full, KeyedSlots};
use x2gobroker_sys::peer::PeerCredentials;
use x2gobroker_sys::privileges::Account;
use x2gobroker_sys::sshd_peer;

/// How long after its time limit a worker that has not stopped is killed.
const BACKSTOP_GRACE: Duration = Duration::from_secs(5);

/// Variables the helper hands on from its own environment (set by the
/// administrator, e.g. in /etc/default/x2gobroker-authhelper); the caller's
/// environment never reaches the worker. X2GOBROKER_DAEMON_USER is always
/// `--daemon-user`: the worker must agree with us on who that is.
pub const PASSED_ON: [&str; 9] = [
    "X2GOBROKER_CONFIG",
    "X2GOBROKER_SESSIONPROFILES",
    "X2GOBROKER_DEFAULT_BACKEND",
    paths::DAEMON_GROUP_ENV,
    "X2GOBROKER_AGENT_CMD",
    "X2GOBROKER_AGENT_USER",
    paths::AUTHSERVICE_SOCKET_ENV,
    "X2GOBROKER_LOADCHECKER_SOCKET",
    "LANG",
];

/// What SSH-mode tasks need beyond the options, fixed at start-up.
pub struct SshTasks {
    pub program: PathBuf,
    /// Running tasks per caller uid (`--ssh-tasks`, `--ssh-tasks-per-user`).
    slots: Arc<KeyedSlots<u32>>,
    env: Vec<(String, String)>,
}

impl SshTasks {
    pub fn new(options: &Options) -> SshTasks {
        let mut env: Vec<(String, String)> = PASSED_ON
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        env.push((paths::DAEMON_USER_ENV.into(), options.daemon_user.clone()));
        SshTasks {
            program: (options.ssh_worker_program.clone()).unwrap_or_else(worker_launch::default_program),
            slots: KeyedSlots::new(),
            env,
        }
    }
}

/// Serves one task on `stream`; the connection ends afterwards.
pub(crate) async fn serve(
    stream: &mut UnixStream,
    request: SshTaskRequest,
    peer: &PeerCredentials,
    state: &State,
) {
    let write_timeout = state.options.read_timeout;
    let mut caller = format!("uid {}", peer.uid);
    let (job, account) = match prepare(request, peer, state, &mut caller) {
        Ok(ready) => ready,
        Err(r) => {
            state.stats.bump(match r.kind {
                ErrorKind::DeniedByPolicy => |c| &mut c.policy_denials,
                _ => |c| &mut c.failures,
            });
            let outcome = format!("refused ({})", r.message);
            audit::decision(peer, &audit::ssh_task(&caller, None, None), &outcome);
            let _ = send_within(write_timeout, stream, &Response::Error(r)).await;
            return;
        }
    };
    let action = audit::ssh_task(&caller, Some(&job.broker_user), Some(&job.task.task));
    let outcome = run(stream, &job, &account, state).await;
    state.stats.bump(match outcome {
        Ok(0) => |c| &mut c.successes,
        _ => |c| &mut c.failures,
    });
    let text = match outcome.map(|code| (code, WorkerStop::from_exit_code(code))) {
        Ok((code, None)) => format!("ran (exit status {code})"),
        // The worker told the caller itself.
        Ok((_, Some(stop))) => format!("failed ({})", stop.reply().message),
        Err(r) => {
            let text = format!("failed ({})", r.message);
            let _ = send_within(write_timeout, stream, &Response::Error(r)).await;
            text
        }
    };
    audit::decision(peer, &action, &text);
}

/// Logs `detail` for the administrator; the caller gets `kind` and `public`.
fn logged(kind: ErrorKind, public: &str, detail: impl std::fmt::Display) -> ErrorReply {
    log::error!("SSH mode: {detail}");
    ErrorReply::new(kind, public)
}

/// Everything that is decided before a worker starts.
fn prepare(
    request: SshTaskRequest,
    peer: &PeerCredentials,
    state: &State,
    audit_caller: &mut String,
) -> Result<(WorkerJob, Account), ErrorReply> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer.uid))
        .ok()
        .flatten();
    let unnamed = format!("uid {} has no name in the user database", peer.uid);
    let name = (user.map(|u| u.name)).ok_or_else(|| ErrorReply::new(ErrorKind::DeniedByPolicy, unnamed))?;
    *audit_caller = format!("{name:?}");
    let options = &state.options;
    let account = Account::resolve(&options.daemon_user).map_err(|e| {
        let public = "SSH mode is unavailable (daemon user); see the helper's log";
        logged(ErrorKind::Unavailable, public, format!("daemon user: {e}"))
    })?;
    let broker_user = ssh_policy::broker_user(peer.uid, &name, account.uid.as_raw(), &request.task)?;
    x2gobroker_sys::files::check_program(&state.ssh_tasks.program).map_err(|e| {
        let public = "SSH mode is unavailable (worker program); see the helper's log";
        logged(ErrorKind::Unavailable, public, e)
    })?;
    let job = WorkerJob {
        broker_user,
        caller_uid: peer.uid,
        task: request.task,
        ssh_client: client_address(request.ssh_client, peer, options)?,
        time_limit_ms: u64::try_from(options.ssh_task_timeout.as_millis()).unwrap_or(u64::MAX),
    };
    Ok((job, account))
}

/// The client address ACLs and verify-ip see (ARCHITECTURE.md P11): the
/// peer of the sshd session the caller runs under, never the caller's own
/// SSH_CLIENT — except root's, who could forge the other too, and where
/// the admin chose the original's rule (`--ssh-client-address environment`).
fn client_address(
    sent: Option<String>,
    peer: &PeerCredentials,
    options: &Options,
) -> Result<Option<String>, ErrorReply> {
    if peer.uid == 0 {
        return Ok(sent);
    }
    let found = match options.ssh_client_address {
        // Without SSH_CLIENT the caller counts as not logged in over SSH.
        SshClientAddress::Environment => sent,
        SshClientAddress::Sshd => (peer.pid).and_then(|pid| sshd_peer::ssh_client_of(pid, peer.uid)),
    };
    if found.is_none() && options.ssh_without_sshd == WithoutSshd::Refuse {
        return Err(ErrorReply::new(
            ErrorKind::DeniedByPolicy,
            "SSH-mode tasks are for callers logged in over SSH (--ssh-without-sshd=refuse)",
        ));
    }
    Ok(found)
}

/// Starts the worker with the caller's connection as its standard output:
/// it sends the caller its output and exit status itself, and stops at the
/// job's time limit, when the caller goes away or when it produced too much
/// (ssh/relay.rs of the front end). Killing it a little after the time
/// limit is the backstop. Ok(its exit status).
async fn run(
    stream: &UnixStream,
    job: &WorkerJob,
    account: &Account,
    state: &State,
) -> Result<i32, ErrorReply> {
    let (options, tasks) = (&state.options, &state.ssh_tasks);
    // Refused rather than queued: a queue would hold connections that the
    // daemon's PAM requests need. Root and the magic user (a central
    // service asking for many users) have no per-caller limit.
    let exempt = job.caller_uid == 0 || job.caller_uid == account.uid.as_raw();
    let per_caller = Some(options.ssh_tasks_per_user as usize).filter(|_| !exempt);
    let _slot = (tasks
        .slots
        .try_take(job.caller_uid, per_caller, options.ssh_tasks as usize))
    .map_err(|full| {
        let why = match full {
            Full::Total => "too many SSH-mode tasks running; try again shortly",
            Full::Key => "too many SSH-mode tasks of yours running; try again shortly",
        };
        ErrorReply::new(ErrorKind::Unavailable, why)
    })?;
    let frame = x2gobroker_protocol::encode(job)
        .map_err(|e| ErrorReply::new(ErrorKind::BadRequest, e.to_string()))?;
    let started = stream
        .as_fd()
        .try_clone_to_owned()
        .and_then(|caller| worker_launch::spawn(&tasks.program, account, &tasks.env, caller));
    let (mut worker, mut job_socket) = started.map_err(|e| {
        let detail = format!("cannot start {}: {e}", tasks.program.display());
        logged(
            ErrorKind::Unavailable,
            "cannot start the SSH-mode worker; see the helper's log",
            detail,
        )
    })?;
    // The frame fits the socket buffer, so this does not wait for the worker.
    job_socket.write_all(&frame).map_err(|e| {
        let what = "cannot hand the job to the worker";
        logged(ErrorKind::Internal, what, format!("{what}: {e}"))
    })?;
    let _ = job_socket.shutdown(std::net::Shutdown::Write);
    let status = match timeout(options.ssh_task_timeout + BACKSTOP_GRACE, worker.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            return Err(ErrorReply::new(
                ErrorKind::Internal,
                format!("waiting for the worker: {e}"),
            ))
        }
        Err(_) => {
            // SIGKILL (across uids thanks to CAP_KILL), then reap.
            let _ = worker.start_kill();
            let _ = timeout(Duration::from_secs(5), worker.wait()).await;
            log::warn!(
                "SSH mode: worker for {:?} outlived its time limit; killed",
                job.broker_user
            );
            return Err(WorkerStop::TimeLimit.reply());
        }
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
