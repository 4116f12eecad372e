//! Start-up sequence and the connection loop.
//!
//! Order matters: check root, take systemd's socket (it clears LISTEN_*
//! from the environment, which is sound only while no other thread runs),
//! resolve names, bind (needs CAP_CHOWN/CAP_FOWNER), drop capabilities, and
//! only then start threads — the logger's first (capabilities are per
//! thread; every thread inherits the reduced sets).

use crate::audit;
use crate::cli::{Options, SshClientAddress};
use crate::listener;
use crate::pam::{self, PamOutcome};
use crate::policy::{Policy, Who};
use crate::privileges;
use crate::ssh_task::{self, SshTasks};
use crate::stats::Stats;
use crate::throttle::{Limits, Throttle};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UnixStream;
use tokio::time::timeout;
use x2gobroker_protocol::frame::nonblocking::{read_message, write_message};
use x2gobroker_protocol::{
    AuthRequest, ErrorKind, ErrorReply, FrameError, Password, Request, Response, PROTOCOL_VERSION,
};
use x2gobroker_sys::client_net::client_unit_key;
use x2gobroker_sys::keyed_slots::{FairQueue, KeyedSlots};
use x2gobroker_sys::peer::PeerCredentials;

/// Longest user name, PAM service or client address accepted.
const MAX_NAME_LEN: usize = 256;

pub(crate) struct State {
    pub(crate) options: Options,
    policy: Policy,
    throttle: Throttle,
    pub(crate) stats: Stats,
    started: Instant,
    /// PAM threads, at most `--pam-threads-per-key` per user and per address.
    pam_turns: Arc<FairQueue<String>>,
    pam_services: Vec<String>,
    pub(crate) ssh_tasks: SshTasks,
}

pub fn run(options: Options) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "must be started as root (it runs PAM and drops SSH-mode workers to the daemon user)".into(),
        );
    }
    let passed = x2gobroker_sys::listen_fds::take()?;
    let policy = Policy::new(&options.daemon_user, &options.admin_group)?;
    let listener = listener::open(passed, &options)?;
    privileges::drop_to_kept(options.ssh_client_address == SshClientAddress::Sshd)?;
    // Its thread starts with reduced capabilities; earlier errors go to stderr.
    audit::init(options.foreground, options.debug, &options.syslog_socket);

    let state = Arc::new(State {
        policy,
        throttle: Throttle::new(Limits {
            per_pair: options.throttle_threshold,
            per_user: options.throttle_user_threshold,
            per_address: options.throttle_address_threshold,
            half_life: options.throttle_half_life,
            remember_success: options.throttle_remember_success,
            exempt: options.throttle_exempt.clone(),
        }),
        stats: Stats::default(),
        started: Instant::now(),
        pam_turns: FairQueue::new(options.pam_threads as usize, options.pam_threads_per_key as usize),
        pam_services: options.pam_allow_list(),
        ssh_tasks: SshTasks::new(&options),
        options,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(async {
        let socket = (listener.socket.try_clone())
            .and_then(|socket| socket.set_nonblocking(true).map(|()| socket))
            .and_then(tokio::net::UnixListener::from_std)
            .map_err(|e| format!("socket: {e}"))?;
        log::info!(
            "serving on {} (PAM services {:?}, protocol {PROTOCOL_VERSION}, SSH-mode worker {})",
            listener.description,
            state.pam_services,
            state.ssh_tasks.program.display()
        );
        if let Err(e) = x2gobroker_sys::files::check_program(&state.ssh_tasks.program) {
            log::warn!("SSH-mode tasks will be refused until this is fixed: {e}");
        }
        serve(socket, state).await
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(listener);
    log::info!("stopped");
    result
}

/// Connections: `--max-connections` in total; a uid other than root and
/// the daemon user's at most `--max-connections-per-user`, and all of those
/// together what `--reserved-connections` leaves (HTTP logins need them).
async fn serve(socket: tokio::net::UnixListener, state: Arc<State>) -> Result<(), String> {
    let options = &state.options;
    let total = options.max_connections as usize;
    let unprivileged_total = total - (options.reserved_connections.min(options.max_connections / 2)) as usize;
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("signal handler: {e}"))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("signal handler: {e}"))?;
    let connection_slots = KeyedSlots::new();
    loop {
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, _)) => {
                    let peer = match PeerCredentials::of(&stream) {
                        Ok(peer) => peer,
                        Err(e) => {
                            log::warn!("cannot read peer credentials, dropping the connection: {e}");
                            continue;
                        }
                    };
                    let privileged = state.policy.admits(Who::DaemonOrRoot, &peer);
                    let (per_user, total) = match privileged {
                        true => (None, total),
                        false => (Some(options.max_connections_per_user as usize), unprivileged_total),
                    };
                    match connection_slots.try_take(peer.uid, per_user, total) {
                        Ok(slot) => {
                            let state = state.clone();
                            tokio::spawn(async move {
                                handle_connection(stream, peer, privileged, &state).await;
                                drop(slot);
                            });
                        }
                        Err(full) => {
                            log::warn!("{peer}: connection limit reached ({full:?}); refusing a connection");
                            refuse_now(&stream, ErrorKind::Unavailable, "too many connections");
                        }
                    }
                }
                Err(e) => {
                    // E.g. out of descriptors: back off instead of spinning.
                    log::error!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
        }
    }
}

/// Best-effort error frame without waiting (the socket buffer takes it).
fn refuse_now(stream: &UnixStream, kind: ErrorKind, message: &str) {
    if let Ok(frame) = x2gobroker_protocol::encode(&Response::Error(ErrorReply::new(kind, message))) {
        let _ = stream.try_write(&frame);
    }
}

/// Who may ask for each request after the handshake, and why others are
/// refused: checked before any handler runs, from SO_PEERCRED only — one
/// table, like OpenSSH's monitor, that a new request cannot bypass (the
/// match is exhaustive).
fn who_may_ask(request: &Request) -> (Who, &'static str) {
    match request {
        Request::Authenticate(_) | Request::ChangePassword(..) => (
            Who::DaemonOrRoot,
            "only root and the daemon user may request authentication",
        ),
        Request::Status => (Who::Admin, "status is for root and the admin group only"),
        // The handler decides from the caller's uid (ARCHITECTURE.md P2).
        Request::RunSshTask(_) => (Who::AnyConnected, ""),
        // Refused to anyone as "already exchanged".
        Request::Hello { .. } => (Who::AnyConnected, ""),
    }
}

/// `privileged`: root or the daemon user. Others' connections end after a
/// refused or invalid request, so they cannot be held open with repeats.
async fn handle_connection(mut stream: UnixStream, peer: PeerCredentials, privileged: bool, state: &State) {
    let hello = match read_request(&mut stream, state).await {
        Ok(Request::Hello { version }) if version == PROTOCOL_VERSION => Ok(Response::Hello {
            version: PROTOCOL_VERSION,
            server_version: env!("CARGO_PKG_VERSION").to_string(),
        }),
        Ok(Request::Hello { version }) => {
            log::info!("{peer}: protocol version {version} refused");
            let kind = ErrorKind::VersionMismatch {
                supported: PROTOCOL_VERSION,
            };
            Err(error(kind, "unsupported protocol version"))
        }
        Ok(_) => Err(error(ErrorKind::BadRequest, "expected Hello first")),
        Err(e) => return answer_frame_error(&mut stream, state, &peer, e).await,
    };
    // After a refused Hello the connection ends.
    let (Ok(response) | Err(response)) = &hello;
    if send_within(state.options.read_timeout, &mut stream, response)
        .await
        .is_err()
        || hello.is_err()
    {
        return;
    }
    loop {
        let request = match read_request(&mut stream, state).await {
            Ok(request) => request,
            Err(e) => return answer_frame_error(&mut stream, state, &peer, e).await,
        };
        state.stats.bump(|c| &mut c.requests);
        let (who, refusal) = who_may_ask(&request);
        let (response, refused) = match request {
            Request::Hello { .. } => (error(ErrorKind::BadRequest, "Hello was already exchanged"), true),
            request if !state.policy.admits(who, &peer) => {
                state.stats.bump(|c| &mut c.policy_denials);
                let outcome = format!("denied by policy ({refusal})");
                audit::decision(&peer, &audit_action(&request, state), &outcome);
                let reply = error(ErrorKind::DeniedByPolicy, &format!("uid {}: {refusal}", peer.uid));
                (reply, true)
            }
            Request::Status => {
                audit::decision(&peer, "status", "granted");
                (Response::Status(state.stats.report(state.started)), false)
            }
            // Answered with a stream of frames; one task per connection.
            Request::RunSshTask(task) => return ssh_task::serve(&mut stream, task, &peer, state).await,
            Request::Authenticate(auth) => (authenticate(auth, None, &peer, state).await, false),
            Request::ChangePassword(auth, new) => (authenticate(auth, Some(new), &peer, state).await, false),
        };
        if send_within(state.options.read_timeout, &mut stream, &response)
            .await
            .is_err()
            || (refused && !privileged)
        {
            return;
        }
    }
}

/// What a refused request asked for, for the audit line.
fn audit_action(request: &Request, state: &State) -> String {
    match request {
        Request::Authenticate(a) | Request::ChangePassword(a, _) => audit::authentication(
            &a.user,
            a.client_address.as_deref(),
            a.service.as_deref().unwrap_or(&state.pam_services[0]),
        ),
        Request::RunSshTask(t) => audit::ssh_task("-", None, Some(&t.task.task)),
        Request::Hello { .. } | Request::Status => "status".into(),
    }
}

async fn read_request(stream: &mut UnixStream, state: &State) -> Result<Request, FrameError> {
    timeout(state.options.read_timeout, read_message::<Request, _>(stream))
        .await
        .unwrap_or(Err(FrameError::TimedOut))
}

/// Writes one frame, giving up after `limit`.
pub(crate) async fn send_within(
    limit: Duration,
    stream: &mut UnixStream,
    response: &Response,
) -> Result<(), FrameError> {
    timeout(limit, write_message(stream, response))
        .await
        .unwrap_or(Err(FrameError::TimedOut))
}

/// Malformed input gets an error frame; then the connection is closed,
/// because after a bad frame the stream position cannot be trusted.
async fn answer_frame_error(stream: &mut UnixStream, state: &State, peer: &PeerCredentials, e: FrameError) {
    match e {
        FrameError::Closed => {}
        FrameError::TimedOut => {
            log::info!("{peer}: no complete request within the deadline; closing");
            refuse_now(stream, ErrorKind::Unavailable, "timed out waiting for a request");
        }
        FrameError::Io(_) => log::debug!("{peer}: {e}"),
        FrameError::TooLarge(_)
        | FrameError::Truncated
        | FrameError::TrailingBytes
        | FrameError::Malformed(_) => {
            log::info!("{peer}: bad request: {e}");
            let reply = error(ErrorKind::BadRequest, &e.to_string());
            let _ = send_within(state.options.read_timeout, stream, &reply).await;
        }
    }
}

fn error(kind: ErrorKind, message: &str) -> Response {
    Response::Error(ErrorReply::new(kind, message))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.chars().any(char::is_control)
}

/// PAM for a caller the table admitted: allow-listed service, valid names,
/// throttling, a bounded number of transactions, each with a deadline. A
/// password change (`setpass`, `new_password`) is a login followed by
/// `pam_chauthtok`.
async fn authenticate(
    auth: AuthRequest,
    new_password: Option<Password>,
    peer: &PeerCredentials,
    state: &State,
) -> Response {
    let (granted, success) = match new_password {
        Some(_) => (Response::PasswordChanged, "success (password changed)"),
        None => (Response::Authenticated, "success"),
    };
    let service = (auth.service.clone()).unwrap_or_else(|| state.pam_services[0].clone());
    let client_address = auth.client_address.as_deref();
    let action = audit::authentication(&auth.user, client_address, &service);
    let audit = |outcome: &str| audit::decision(peer, &action, outcome);

    if !state.pam_services.contains(&service) {
        state.stats.bump(|c| &mut c.policy_denials);
        audit("denied by policy (PAM service not allowed)");
        return error(
            ErrorKind::DeniedByPolicy,
            "PAM service not on the helper's allow-list",
        );
    }
    if !valid_name(&auth.user) || client_address.is_some_and(|a| !valid_name(a)) {
        audit("bad request");
        return error(ErrorKind::BadRequest, "invalid user name or client address");
    }

    let attempt = match state.throttle.begin(&auth.user, client_address, Instant::now()) {
        Ok(attempt) => attempt,
        Err(throttled) => {
            state.stats.bump(|c| &mut c.throttled);
            audit(&format!(
                "throttled ({}, {}s)",
                throttled.scope, throttled.retry_after_secs
            ));
            let retry_after_secs = throttled.retry_after_secs;
            return error(
                ErrorKind::Throttled { retry_after_secs },
                "too many recent failures",
            );
        }
    };

    let _in_flight = state.stats.in_flight();
    let deadline = Instant::now() + state.options.pam_timeout;
    let mut keys = vec![format!("user {}", auth.user)];
    keys.extend(client_address.map(|a| format!("address {}", client_unit_key(a))));
    let Ok(turn) = tokio::time::timeout_at(deadline.into(), state.pam_turns.turn(keys)).await else {
        audit("unavailable (no PAM thread free in time)");
        return error(ErrorKind::Unavailable, "too many authentications in progress");
    };
    // The turn moves into the thread: a PAM call that outlives our deadline
    // still holds it, so stuck PAM calls cannot pile up unbounded threads.
    let transaction = tokio::task::spawn_blocking(move || {
        let outcome = pam::authenticate(&service, auth, new_password);
        drop(turn);
        outcome
    });
    let outcome = match tokio::time::timeout_at(deadline.into(), transaction).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => PamOutcome::Error(format!("PAM thread failed: {e}")),
        Err(_) => {
            state.stats.bump(|c| &mut c.failures);
            audit("unavailable (PAM timed out)");
            return error(ErrorKind::Unavailable, "authentication timed out");
        }
    };
    match outcome {
        PamOutcome::Success => {
            state.stats.bump(|c| &mut c.successes);
            attempt.succeeded(Instant::now());
            audit(success);
            granted
        }
        // The login part succeeded: no failure to throttle.
        PamOutcome::NewPasswordRefused(reason) => {
            attempt.succeeded(Instant::now());
            audit(&format!("new password refused ({reason:?})"));
            error(ErrorKind::NewPasswordRefused, &reason)
        }
        PamOutcome::Refused(reason) => {
            state.stats.bump(|c| &mut c.failures);
            attempt.failed(Instant::now());
            audit(&format!("refused ({reason})"));
            error(ErrorKind::AuthenticationFailed, "authentication failed")
        }
        PamOutcome::Error(reason) => {
            state.stats.bump(|c| &mut c.failures);
            audit(&format!("error ({reason})"));
            error(
                ErrorKind::Unavailable,
                "PAM could not decide; see the helper's log",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ssh_mode_tasks_are_for_anyone_who_connects() {
        let auth = AuthRequest {
            user: "alice".into(),
            password: Password::new("old".into()),
            service: None,
            client_address: None,
        };
        let change = Request::ChangePassword(auth.clone(), Password::new("new".into()));
        assert_eq!(who_may_ask(&Request::Authenticate(auth)).0, Who::DaemonOrRoot);
        assert_eq!(who_may_ask(&change).0, Who::DaemonOrRoot);
        assert_eq!(who_may_ask(&Request::Status).0, Who::Admin);
        let task = x2gobroker_protocol::SshTaskRequest {
            task: Default::default(),
            ssh_client: None,
        };
        assert_eq!(who_may_ask(&Request::RunSshTask(task)).0, Who::AnyConnected);
    }
}
