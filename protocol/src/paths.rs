//! Names every part must agree on: socket paths, environment variables and
//! the worker flag. Defined here once; the helper, the daemon, the SSH-mode
//! command line and `x2gobroker-ctl` all use these.

/// The helper's socket (the original's authservice socket): PAM requests,
/// SSH-mode tasks and the helper's status share it.
pub const DEFAULT_AUTHSERVICE_SOCKET: &str = "/run/x2gobroker/x2gobroker-authservice.socket";
/// Overrides [`DEFAULT_AUTHSERVICE_SOCKET`] for the helper, the daemon and
/// `x2gobroker-ctl` (the original's variable).
pub const AUTHSERVICE_SOCKET_ENV: &str = "X2GOBROKER_AUTHSERVICE_SOCKET";
/// Overrides the helper socket the SSH-mode command line connects to.
pub const SSH_SOCKET_ENV: &str = "X2GOBROKER_SSH_SOCKET";
/// First argument of `x2gobroker-ssh` that selects worker mode; only the
/// helper starts it so.
pub const WORKER_FLAG: &str = "--ssh-worker";
/// The daemon's control socket for `x2gobroker-ctl`; the directory is the
/// daemon unit's `RuntimeDirectory=`.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/x2gobroker-daemon/control.socket";
/// Overrides [`DEFAULT_CONTROL_SOCKET`].
pub const CONTROL_SOCKET_ENV: &str = "X2GOBROKER_CONTROL_SOCKET";
/// The broker's unprivileged account (the original's variable).
pub const DAEMON_USER_ENV: &str = "X2GOBROKER_DAEMON_USER";
/// Its group.
pub const DAEMON_GROUP_ENV: &str = "X2GOBROKER_DAEMON_GROUP";
