//! Every message that crosses a helper socket.

use crate::secret::Password;
use serde::{Deserialize, Serialize};

/// Client → helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// First message on every connection.
    Hello { version: u16 },
    /// PAM authentication; served for root and the daemon user only.
    Authenticate(AuthRequest),
    /// Counters and uptime; served for root and the admin group only.
    Status,
    /// An SSH-mode broker task; the caller's identity comes from the kernel.
    RunSshTask(SshTaskRequest),
    /// `setpass`: PAM authentication with the current password, then
    /// `pam_chauthtok` to the new one; served for root and the daemon user
    /// only, throttled and audited like `Authenticate`. The `AuthRequest`
    /// holds the current password; then comes the new one.
    ChangePassword(AuthRequest, Password),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub user: String,
    pub password: Password,
    /// PAM service; `None` means the helper's default. Must be on the
    /// helper's allow-list.
    pub service: Option<String>,
    /// The remote client's address as seen by the front end (PAM_RHOST,
    /// throttling key).
    pub client_address: Option<String>,
}

/// An SSH-mode task as the command line parsed it, plus the SSH_CLIENT the
/// command line was started with. Typed: the helper reads `task.user` and
/// `task.config_file` for its policy and scans no command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshTaskRequest {
    pub task: SshTask,
    /// Believed for root only; others' address comes from their sshd.
    pub ssh_client: Option<String>,
}

/// The original's SSH-mode options that reach the broker (`--task`,
/// `--user`, ...). What the command line answers itself (usage, `--event`,
/// HTTP-only options) never gets here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshTask {
    /// `--task`.
    pub task: String,
    /// `--user`: root and the magic user may name anyone, others themselves.
    pub user: Option<String>,
    /// `--login`.
    pub login: Option<String>,
    /// `--auth-cookie` (`--authid`, `--next-authid`).
    pub auth_cookie: Option<String>,
    /// `--profile-id` (`--sid`).
    pub profile_id: Option<String>,
    /// `--backend`.
    pub backend: Option<String>,
    /// `-C` / `--config-file`: root only.
    pub config_file: Option<String>,
    /// `-d` or `-i`.
    pub debug: bool,
    /// `setpass`: the current password (read from standard input, never
    /// from the command line).
    pub password: Option<Password>,
    /// `setpass`: `--newpass` or standard input.
    pub new_password: Option<Password>,
}

/// Helper → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Hello {
        version: u16,
        server_version: String,
    },
    Authenticated,
    Status(StatusReport),
    /// A piece of an SSH-mode task's output; followed by more pieces and
    /// finally `TaskFinished`.
    TaskOutput {
        stream: OutputStream,
        data: Vec<u8>,
    },
    TaskFinished {
        exit_code: i32,
    },
    Error(ErrorReply),
    /// `ChangePassword` succeeded.
    PasswordChanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    /// Human-readable; never contains a password.
    pub message: String,
}

impl ErrorReply {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ErrorReply {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The caller (by its kernel-verified uid/gid) may not ask this.
    DeniedByPolicy,
    /// PAM said no (wrong password, unknown user, locked or expired account).
    AuthenticationFailed,
    /// Too many recent failures for this user or client address.
    Throttled {
        retry_after_secs: u32,
    },
    /// Malformed, oversized or out-of-order request.
    BadRequest,
    /// The helper cannot serve now (overloaded, PAM unavailable, timeout).
    Unavailable,
    /// Handshake with a protocol version the helper does not speak.
    VersionMismatch {
        supported: u16,
    },
    Internal,
    /// The current password was right, but PAM refused the new one; the
    /// message is PAM's reason (its error messages), for the user.
    NewPasswordRefused,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorKind::DeniedByPolicy => f.write_str("denied by policy"),
            ErrorKind::AuthenticationFailed => f.write_str("authentication failed"),
            ErrorKind::Throttled { retry_after_secs } => {
                write!(f, "throttled (retry in {retry_after_secs}s)")
            }
            ErrorKind::BadRequest => f.write_str("bad request"),
            ErrorKind::Unavailable => f.write_str("unavailable"),
            ErrorKind::VersionMismatch { supported } => {
                write!(f, "protocol version mismatch (helper speaks {supported})")
            }
            ErrorKind::Internal => f.write_str("internal error"),
            ErrorKind::NewPasswordRefused => f.write_str("new password refused"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub uptime_secs: u64,
    pub counters: Counters,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    pub throttled: u64,
    pub policy_denials: u64,
    pub in_flight: u64,
}

/// Helper → SSH-mode worker, over a descriptor the worker inherits. The only
/// source of identity the worker accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerJob {
    /// The kernel-verified caller, after `--user` policy.
    pub broker_user: String,
    /// Caller's uid as read with SO_PEERCRED, for audit.
    pub caller_uid: u32,
    /// The task (already policy-checked by the helper).
    pub task: SshTask,
    /// The client as SSH_CLIENT spells it, from the caller's sshd session
    /// (root's as sent; authhelper ssh_task::client_address); the
    /// (unprivileged) worker checks that it starts with an IP address.
    pub ssh_client: Option<String>,
    /// Milliseconds the task may run: the worker stops it then and tells
    /// the caller; the helper kills a worker that outlives it (a backstop).
    pub time_limit_ms: u64,
}

/// Why a worker stopped its task early. It has told the caller already
/// (with [`WorkerStop::reply`]); its exit status tells the helper, for the
/// audit trail (a task itself exits 0 or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerStop {
    TimeLimit,
    TooMuchOutput,
    CallerGone,
}

impl WorkerStop {
    const ALL: [WorkerStop; 3] = [
        WorkerStop::TimeLimit,
        WorkerStop::TooMuchOutput,
        WorkerStop::CallerGone,
    ];

    pub fn exit_code(self) -> u8 {
        124 + self as u8
    }

    pub fn from_exit_code(code: i32) -> Option<WorkerStop> {
        Self::ALL.into_iter().find(|s| i32::from(s.exit_code()) == code)
    }

    pub fn reply(self) -> ErrorReply {
        match self {
            WorkerStop::TimeLimit => ErrorReply::new(
                ErrorKind::Unavailable,
                "the task ran past its time limit and was stopped",
            ),
            WorkerStop::TooMuchOutput => ErrorReply::new(
                ErrorKind::Internal,
                "the task produced too much output and was stopped",
            ),
            WorkerStop::CallerGone => {
                ErrorReply::new(ErrorKind::BadRequest, "the caller went away or sent more")
            }
        }
    }
}
