//! Serving `RunSshTask`: identify the caller (SO_PEERCRED, then NSS), apply
//! the `--user` / `-C` policy, start the worker as the daemon user with the
//! verified identity on its job descriptor, and relay its output as
//! `TaskOutput` frames followed by `TaskFinished`. One task per connection;
//! every task has a deadline and the number running at once is bounded.

use crate::audit::{self, Action};
use crate::peer::PeerCredentials;
use crate::ssh_policy::{self, Caller};
use crate::stats::Stats;
use crate::worker_launch::{self, WorkerAccount};
use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::UnixStream;
use tokio::time::{timeout, Instant};
use x2gobroker_protocol::frame::nonblocking::write_message;
use x2gobroker_protocol::paths;
use x2gobroker_protocol::{
    ErrorKind, ErrorReply, FrameError, OutputStream, Response, SshTaskRequest, WorkerJob,
};

/// Largest output chunk per frame (well under the 64 KiB frame limit).
pub const CHUNK: usize = 32 * 1024;
/// A worker producing more than this in total is stopped.
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// Variables the helper hands on from its own environment (set by the
/// administrator, e.g. in /etc/default/x2gobroker-authhelper); the caller's
/// environment never reaches the worker.
pub const PASSED_ON: [&str; 9] = [
    "X2GOBROKER_CONFIG",
    "X2GOBROKER_SESSIONPROFILES",
    "X2GOBROKER_DEFAULT_BACKEND",
    paths::DAEMON_USER_ENV,
    paths::DAEMON_GROUP_ENV,
    "X2GOBROKER_AGENT_CMD",
    paths::AUTHSERVICE_SOCKET_ENV,
    "X2GOBROKER_LOADCHECKER_SOCKET",
    "LANG",
];

/// Settings for SSH-mode tasks, fixed at start-up.
pub struct SshTasks {
    pub program: PathBuf,
    pub daemon_user: String,
    pub deadline: Duration,
    pub slots: Arc<TaskSlots>,
    pub env: Vec<(String, String)>,
}

impl SshTasks {
    pub fn new(program: PathBuf, daemon_user: &str, deadline: Duration, limits: TaskLimits) -> SshTasks {
        let mut env: Vec<(String, String)> = PASSED_ON
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        // The worker must agree with us on who the daemon user is.
        env.retain(|(k, _)| k != paths::DAEMON_USER_ENV);
        env.push((paths::DAEMON_USER_ENV.into(), daemon_user.to_string()));
        SshTasks {
            program,
            daemon_user: daemon_user.to_string(),
            deadline,
            slots: Arc::new(TaskSlots::new(limits)),
            env,
        }
    }
}

/// Bounds on SSH-mode tasks running at once.
#[derive(Debug, Clone, Copy)]
pub struct TaskLimits {
    pub total: usize,
    pub per_caller: usize,
}

/// Tasks running now, in total and per caller uid.
pub struct TaskSlots {
    limits: TaskLimits,
    running: Mutex<(usize, HashMap<u32, usize>)>,
}

/// One running task; gives its slot back when dropped.
pub struct TaskSlot {
    slots: Arc<TaskSlots>,
    uid: u32,
}

impl TaskSlots {
    pub fn new(limits: TaskLimits) -> TaskSlots {
        TaskSlots {
            limits,
            running: Mutex::new((0, HashMap::new())),
        }
    }

    pub fn take(slots: &Arc<TaskSlots>, uid: u32, exempt: bool) -> Result<TaskSlot, &'static str> {
        let mut running = slots.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.0 >= slots.limits.total {
            return Err("too many SSH-mode tasks running; try again shortly");
        }
        let mine = running.1.entry(uid).or_insert(0);
        if !exempt && *mine >= slots.limits.per_caller {
            return Err("too many SSH-mode tasks of yours running; try again shortly");
        }
        *mine += 1;
        running.0 += 1;
        Ok(TaskSlot {
            slots: slots.clone(),
            uid,
        })
    }
}

impl Drop for TaskSlot {
    fn drop(&mut self) {
        let mut running = self.slots.running.lock().unwrap_or_else(|p| p.into_inner());
        running.0 = running.0.saturating_sub(1);
        if let Some(n) = running.1.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.1.remove(&self.uid);
            }
        }
    }
}

/// What the connection handler needs to answer.
pub struct Context<'a> {
    pub tasks: &'a SshTasks,
    pub stats: &'a Stats,
    pub write_timeout: Duration,
}

struct Refused {
    kind: ErrorKind,
    message: String,
}

fn refused(kind: ErrorKind, message: impl Into<String>) -> Refused {
    Refused {
        kind,
        message: message.into(),
    }
}

/// Serves one task on `stream`; the connection ends afterwards.
pub async fn serve(
    stream: &mut UnixStream,
    request: SshTaskRequest,
    peer: &PeerCredentials,
    ctx: &Context<'_>,
) {
    let mut audit_caller = format!("uid {}", peer.uid);
    let prepared = prepare(request, peer, ctx, &mut audit_caller);
    let (job, account) = match prepared {
        Ok(ready) => ready,
        Err(r) => {
            if r.kind == ErrorKind::DeniedByPolicy {
                Stats::bump(&ctx.stats.policy_denials);
            } else {
                Stats::bump(&ctx.stats.failures);
            }
            let action = Action::SshTask {
                caller: &audit_caller,
                broker_user: None,
                task: None,
            };
            audit::decision(peer, &action, &format!("refused ({})", r.message));
            let _ = send(stream, ctx, &Response::Error(ErrorReply::new(r.kind, r.message))).await;
            return;
        }
    };
    let action = Action::SshTask {
        caller: &audit_caller,
        broker_user: Some(&job.broker_user),
        task: Some(&job.task.task),
    };
    let outcome = run(stream, &job, &account, ctx).await;
    match &outcome {
        Ok(0) => Stats::bump(&ctx.stats.successes),
        _ => Stats::bump(&ctx.stats.failures),
    }
    let text = match outcome {
        Ok(code) => format!("ran (exit status {code})"),
        Err(r) => {
            let text = format!("failed ({})", r.message);
            let _ = send(stream, ctx, &Response::Error(ErrorReply::new(r.kind, r.message))).await;
            text
        }
    };
    audit::decision(peer, &action, &text);
}

/// Everything that is decided before a worker starts.
fn prepare(
    request: SshTaskRequest,
    peer: &PeerCredentials,
    ctx: &Context<'_>,
    audit_caller: &mut String,
) -> Result<(WorkerJob, WorkerAccount), Refused> {
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer.uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or_else(|| {
            refused(
                ErrorKind::DeniedByPolicy,
                format!("uid {} has no name in the user database", peer.uid),
            )
        })?;
    *audit_caller = format!("{name:?}");
    let caller = Caller { uid: peer.uid, name };
    let account = WorkerAccount::resolve(&ctx.tasks.daemon_user).map_err(|e| {
        log::error!("SSH mode: daemon user: {e}");
        refused(
            ErrorKind::Unavailable,
            "SSH mode is unavailable (daemon user); see the helper's log",
        )
    })?;
    let broker_user = ssh_policy::broker_user(&caller, account.uid.as_raw(), &request.task)
        .map_err(|r| refused(ErrorKind::DeniedByPolicy, r.0))?;
    let client_address = match request.ssh_client.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => {
            let first = text.split_whitespace().next().unwrap_or("");
            let ip: IpAddr = first.parse().map_err(|_| {
                refused(
                    ErrorKind::BadRequest,
                    format!("SSH_CLIENT {text:?} does not start with an IP address"),
                )
            })?;
            Some(ip.to_string())
        }
    };
    worker_launch::check_program(&ctx.tasks.program).map_err(|e| {
        log::error!("SSH mode: {e}");
        refused(
            ErrorKind::Unavailable,
            "SSH mode is unavailable (worker program); see the helper's log",
        )
    })?;
    Ok((
        WorkerJob {
            broker_user,
            caller_uid: peer.uid,
            task: request.task,
            client_address,
        },
        account,
    ))
}

/// Runs the worker and relays its output; Ok(exit status).
async fn run(
    stream: &mut UnixStream,
    job: &WorkerJob,
    account: &WorkerAccount,
    ctx: &Context<'_>,
) -> Result<i32, Refused> {
    let deadline = Instant::now() + ctx.tasks.deadline;
    // Refused rather than queued: a queue would hold connections that the
    // daemon's PAM requests need. Root and the magic user (a central
    // service asking for many users) have no per-caller limit.
    let exempt = job.caller_uid == 0 || job.caller_uid == account.uid.as_raw();
    let _slot = TaskSlots::take(&ctx.tasks.slots, job.caller_uid, exempt)
        .map_err(|why| refused(ErrorKind::Unavailable, why))?;
    let frame =
        x2gobroker_protocol::encode(job).map_err(|e| refused(ErrorKind::BadRequest, e.to_string()))?;
    let mut worker = worker_launch::spawn(&ctx.tasks.program, account, &ctx.tasks.env).map_err(|e| {
        log::error!("SSH mode: cannot start {}: {e}", ctx.tasks.program.display());
        refused(
            ErrorKind::Unavailable,
            "cannot start the SSH-mode worker; see the helper's log",
        )
    })?;
    // The frame fits the socket buffer, so this does not wait for the worker.
    worker.job_socket.write_all(&frame).map_err(|e| {
        log::error!("SSH mode: cannot hand the job to the worker: {e}");
        refused(ErrorKind::Internal, "cannot hand the job to the worker")
    })?;
    let _ = worker.job_socket.shutdown(std::net::Shutdown::Write);

    let mut stdout = worker.child.stdout.take();
    let mut stderr = worker.child.stderr.take();
    let mut out_buf = vec![0u8; CHUNK];
    let mut err_buf = vec![0u8; CHUNK];
    let mut total = 0usize;
    while stdout.is_some() || stderr.is_some() {
        let (which, read) = tokio::select! {
            r = read_some(&mut stdout, &mut out_buf) => (OutputStream::Stdout, r),
            r = read_some(&mut stderr, &mut err_buf) => (OutputStream::Stderr, r),
            // The caller sends nothing after its request: readable means
            // it hung up (or broke the protocol); either way, stop.
            _ = caller_hung_up(stream) => {
                stop(&mut worker.child).await;
                return Err(refused(ErrorKind::BadRequest, "the caller went away or sent more"));
            }
            _ = tokio::time::sleep_until(deadline) => {
                stop(&mut worker.child).await;
                log::warn!("SSH mode: worker for {:?} ran past its deadline; stopped", job.broker_user);
                return Err(refused(ErrorKind::Unavailable, "the task ran past its time limit and was stopped"));
            }
        };
        let n = match read {
            Ok(n) if n > 0 => n,
            _ => {
                match which {
                    OutputStream::Stdout => stdout = None,
                    OutputStream::Stderr => stderr = None,
                }
                continue;
            }
        };
        total += n;
        if total > MAX_OUTPUT {
            stop(&mut worker.child).await;
            return Err(refused(
                ErrorKind::Internal,
                "the task produced too much output and was stopped",
            ));
        }
        let data = match which {
            OutputStream::Stdout => out_buf[..n].to_vec(),
            OutputStream::Stderr => err_buf[..n].to_vec(),
        };
        if send(stream, ctx, &Response::TaskOutput { stream: which, data })
            .await
            .is_err()
        {
            stop(&mut worker.child).await;
            return Err(refused(ErrorKind::Unavailable, "the caller went away"));
        }
    }
    let status = match tokio::time::timeout_at(deadline, worker.child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            return Err(refused(
                ErrorKind::Internal,
                format!("waiting for the worker: {e}"),
            ))
        }
        Err(_) => {
            stop(&mut worker.child).await;
            return Err(refused(
                ErrorKind::Unavailable,
                "the task ran past its time limit and was stopped",
            ));
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let exit_code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let _ = send(stream, ctx, &Response::TaskFinished { exit_code }).await;
    Ok(exit_code)
}

/// Completes when the caller closes its end or sends anything.
async fn caller_hung_up(stream: &mut UnixStream) {
    let mut probe = [0u8; 1];
    let _ = stream.read(&mut probe).await;
}

/// Kills a worker (SIGKILL; across uids thanks to CAP_KILL) and reaps it, so
/// no zombie is left behind.
async fn stop(child: &mut tokio::process::Child) {
    let _ = child.start_kill();
    let _ = timeout(Duration::from_secs(5), child.wait()).await;
}

/// Reads from a pipe that may already be finished (then never ready).
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> std::io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn send(stream: &mut UnixStream, ctx: &Context<'_>, response: &Response) -> Result<(), FrameError> {
    timeout(ctx.write_timeout, write_message(stream, response))
        .await
        .unwrap_or(Err(FrameError::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_slots_bound_totals_and_callers_but_not_exempt_callers() {
        let slots = Arc::new(TaskSlots::new(TaskLimits {
            total: 3,
            per_caller: 2,
        }));
        let a1 = TaskSlots::take(&slots, 1001, false).unwrap();
        let _a2 = TaskSlots::take(&slots, 1001, false).unwrap();
        assert!(TaskSlots::take(&slots, 1001, false).is_err(), "per caller");
        let _m = TaskSlots::take(&slots, 104, true).unwrap();
        assert!(TaskSlots::take(&slots, 104, true).is_err(), "in total");
        drop(a1);
        let _a3 = TaskSlots::take(&slots, 1001, false).unwrap();
    }

    #[test]
    fn output_chunks_fit_a_frame() {
        let frame = x2gobroker_protocol::encode(&Response::TaskOutput {
            stream: OutputStream::Stderr,
            data: vec![0xff; CHUNK],
        });
        assert!(frame.is_ok());
    }
}
