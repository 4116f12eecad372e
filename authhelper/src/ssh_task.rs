//! Serving `RunSshTask`: identify the caller (SO_PEERCRED, then NSS), apply
//! the `--user` / `-C` policy, start the worker as the daemon user with the
//! verified identity on its job descriptor and the caller's connection as
//! its standard output. One task per connection; every task has a deadline
//! and the number running at once is bounded.

use crate::audit::{self, Action};
use crate::cli::Options;
use crate::server::send_within;
use crate::ssh_policy::{self, Caller};
use crate::stats::Stats;
use crate::worker_launch::{self, WorkerAccount};
use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::time::timeout;
use x2gobroker_protocol::paths;
use x2gobroker_protocol::{ErrorKind, ErrorReply, Response, SshTaskRequest, WorkerJob, WorkerStop};
use x2gobroker_sys::peer::PeerCredentials;

/// How long after its time limit a worker that has not stopped is killed.
const BACKSTOP_GRACE: Duration = Duration::from_secs(5);

/// Variables the helper hands on from its own environment (set by the
/// administrator, e.g. in /etc/default/x2gobroker-authhelper); the caller's
/// environment never reaches the worker.
pub const PASSED_ON: [&str; 10] = [
    "X2GOBROKER_CONFIG",
    "X2GOBROKER_SESSIONPROFILES",
    "X2GOBROKER_DEFAULT_BACKEND",
    paths::DAEMON_USER_ENV,
    paths::DAEMON_GROUP_ENV,
    "X2GOBROKER_AGENT_CMD",
    "X2GOBROKER_AGENT_USER",
    paths::AUTHSERVICE_SOCKET_ENV,
    "X2GOBROKER_LOADCHECKER_SOCKET",
    "LANG",
];

/// Settings for SSH-mode tasks, fixed at start-up.
pub struct SshTasks {
    pub program: PathBuf,
    pub daemon_user: String,
    pub deadline: Duration,
    /// How long a write to the caller may take.
    pub write_timeout: Duration,
    pub slots: Arc<TaskSlots>,
    pub env: Vec<(String, String)>,
}

impl SshTasks {
    pub fn new(options: &Options) -> SshTasks {
        let mut env: Vec<(String, String)> = PASSED_ON
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        // The worker must agree with us on who the daemon user is.
        env.retain(|(k, _)| k != paths::DAEMON_USER_ENV);
        env.push((paths::DAEMON_USER_ENV.into(), options.daemon_user.clone()));
        SshTasks {
            program: (options.ssh_worker_program.clone()).unwrap_or_else(worker_launch::default_program),
            daemon_user: options.daemon_user.clone(),
            deadline: options.ssh_task_timeout,
            write_timeout: options.read_timeout,
            slots: Arc::new(TaskSlots::new(options.ssh_tasks, options.ssh_tasks_per_user)),
            env,
        }
    }
}

/// Tasks running now, per caller uid, bounded in total and per caller.
pub struct TaskSlots {
    total: usize,
    per_caller: usize,
    running: Mutex<HashMap<u32, usize>>,
}

/// One running task; gives its slot back when dropped.
pub struct TaskSlot {
    slots: Arc<TaskSlots>,
    uid: u32,
}

impl TaskSlots {
    pub fn new(total: u32, per_caller: u32) -> TaskSlots {
        let (total, per_caller) = (total as usize, per_caller as usize);
        TaskSlots {
            total,
            per_caller,
            running: Mutex::new(HashMap::new()),
        }
    }

    pub fn take(slots: &Arc<TaskSlots>, uid: u32, exempt: bool) -> Result<TaskSlot, &'static str> {
        let mut running = slots.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.values().sum::<usize>() >= slots.total {
            return Err("too many SSH-mode tasks running; try again shortly");
        }
        let mine = running.entry(uid).or_insert(0);
        if !exempt && *mine >= slots.per_caller {
            return Err("too many SSH-mode tasks of yours running; try again shortly");
        }
        *mine += 1;
        Ok(TaskSlot {
            slots: slots.clone(),
            uid,
        })
    }
}

impl Drop for TaskSlot {
    fn drop(&mut self) {
        let mut running = self.slots.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&self.uid);
            }
        }
    }
}

/// Serves one task on `stream`; the connection ends afterwards.
pub async fn serve(
    stream: &mut UnixStream,
    request: SshTaskRequest,
    peer: &PeerCredentials,
    tasks: &SshTasks,
    stats: &Stats,
) {
    let mut audit_caller = format!("uid {}", peer.uid);
    let (job, account) = match prepare(request, peer, tasks, &mut audit_caller) {
        Ok(ready) => ready,
        Err(r) => {
            let denied = r.kind == ErrorKind::DeniedByPolicy;
            Stats::bump(if denied {
                &stats.policy_denials
            } else {
                &stats.failures
            });
            let action = Action::SshTask {
                caller: &audit_caller,
                broker_user: None,
                task: None,
            };
            audit::decision(peer, &action, &format!("refused ({})", r.message));
            let _ = send_within(tasks.write_timeout, stream, &Response::Error(r)).await;
            return;
        }
    };
    let action = Action::SshTask {
        caller: &audit_caller,
        broker_user: Some(&job.broker_user),
        task: Some(&job.task.task),
    };
    let outcome = run(stream, &job, &account, tasks).await;
    Stats::bump(if matches!(outcome, Ok(0)) {
        &stats.successes
    } else {
        &stats.failures
    });
    let text = match outcome.map(|code| (code, WorkerStop::from_exit_code(code))) {
        Ok((code, None)) => format!("ran (exit status {code})"),
        // The worker told the caller itself.
        Ok((_, Some(stop))) => format!("failed ({})", stop.reply().message),
        Err(r) => {
            let text = format!("failed ({})", r.message);
            let _ = send_within(tasks.write_timeout, stream, &Response::Error(r)).await;
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
    tasks: &SshTasks,
    audit_caller: &mut String,
) -> Result<(WorkerJob, WorkerAccount), ErrorReply> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer.uid))
        .ok()
        .flatten();
    let unnamed = format!("uid {} has no name in the user database", peer.uid);
    let name = (user.map(|u| u.name)).ok_or_else(|| ErrorReply::new(ErrorKind::DeniedByPolicy, unnamed))?;
    *audit_caller = format!("{name:?}");
    let caller = Caller { uid: peer.uid, name };
    let account = WorkerAccount::resolve(&tasks.daemon_user).map_err(|e| {
        let public = "SSH mode is unavailable (daemon user); see the helper's log";
        logged(ErrorKind::Unavailable, public, format!("daemon user: {e}"))
    })?;
    let broker_user = ssh_policy::broker_user(&caller, account.uid.as_raw(), &request.task)
        .map_err(|r| ErrorReply::new(ErrorKind::DeniedByPolicy, r.0))?;
    worker_launch::check_program(&tasks.program).map_err(|e| {
        let public = "SSH mode is unavailable (worker program); see the helper's log";
        logged(ErrorKind::Unavailable, public, e)
    })?;
    let job = WorkerJob {
        broker_user,
        caller_uid: peer.uid,
        task: request.task,
        ssh_client: request.ssh_client,
        time_limit_ms: tasks.deadline.as_millis().try_into().unwrap_or(u64::MAX),
    };
    Ok((job, account))
}

/// Starts the worker with the caller's connection as its standard output:
/// it sends the caller its output and exit status itself, and stops at the
/// job's time limit, when the caller goes away or when it produced too much
/// (ssh/relay.rs of the front end). Killing it a little after the time
/// limit is the backstop. Ok(its exit status).
async fn run(
    stream: &UnixStream,
    job: &WorkerJob,
    account: &WorkerAccount,
    tasks: &SshTasks,
) -> Result<i32, ErrorReply> {
    // Refused rather than queued: a queue would hold connections that the
    // daemon's PAM requests need. Root and the magic user (a central
    // service asking for many users) have no per-caller limit.
    let exempt = job.caller_uid == 0 || job.caller_uid == account.uid.as_raw();
    let _slot = TaskSlots::take(&tasks.slots, job.caller_uid, exempt)
        .map_err(|why| ErrorReply::new(ErrorKind::Unavailable, why))?;
    let frame = x2gobroker_protocol::encode(job)
        .map_err(|e| ErrorReply::new(ErrorKind::BadRequest, e.to_string()))?;
    let started = stream
        .as_fd()
        .try_clone_to_owned()
        .and_then(|caller| worker_launch::spawn(&tasks.program, account, &tasks.env, caller));
    let mut worker = started.map_err(|e| {
        let detail = format!("cannot start {}: {e}", tasks.program.display());
        logged(
            ErrorKind::Unavailable,
            "cannot start the SSH-mode worker; see the helper's log",
            detail,
        )
    })?;
    // The frame fits the socket buffer, so this does not wait for the worker.
    worker.job_socket.write_all(&frame).map_err(|e| {
        let what = "cannot hand the job to the worker";
        logged(ErrorKind::Internal, what, format!("{what}: {e}"))
    })?;
    let _ = worker.job_socket.shutdown(std::net::Shutdown::Write);
    let status = match timeout(tasks.deadline + BACKSTOP_GRACE, worker.child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            return Err(ErrorReply::new(
                ErrorKind::Internal,
                format!("waiting for the worker: {e}"),
            ))
        }
        Err(_) => {
            // SIGKILL (across uids thanks to CAP_KILL), then reap.
            let _ = worker.child.start_kill();
            let _ = timeout(Duration::from_secs(5), worker.child.wait()).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_slots_bound_totals_and_callers_but_not_exempt_callers() {
        let slots = Arc::new(TaskSlots::new(3, 2));
        let a1 = TaskSlots::take(&slots, 1001, false).unwrap();
        let _a2 = TaskSlots::take(&slots, 1001, false).unwrap();
        assert!(TaskSlots::take(&slots, 1001, false).is_err(), "per caller");
        let _m = TaskSlots::take(&slots, 104, true).unwrap();
        assert!(TaskSlots::take(&slots, 104, true).is_err(), "in total");
        drop(a1);
        let _a3 = TaskSlots::take(&slots, 1001, false).unwrap();
    }
}
