//! SSH mode: `x2gobroker-ssh` (and `x2gobroker -M SSH`).
//!
//! The command line runs as the logged-in user and holds no privilege: it
//! sends its arguments to the root helper ([`client`]). The helper takes the
//! caller's identity from the kernel, applies the `--user` policy and starts
//! [`worker`] as the daemon user with the verified identity on descriptor 3;
//! the worker runs the task through the same engine as HTTP `/plain/` and
//! prints the original's SSH-mode output ([`output`]).

pub mod args;
pub mod client;
pub mod login_map;
pub mod output;
pub mod worker;

/// Overrides the helper socket the command line connects to.
pub const SOCKET_ENV: &str = "X2GOBROKER_SSH_SOCKET";
/// The helper's socket: SSH-mode tasks share it with authentication; the
/// helper decides every request from the caller's kernel-verified uid.
pub const DEFAULT_SOCKET: &str = "/run/x2gobroker/x2gobroker-authservice.socket";
/// First argument that selects worker mode (set only by the helper).
pub const WORKER_FLAG: &str = "--ssh-worker";
/// Descriptor on which the worker receives its job.
pub const JOB_FD: i32 = 3;
