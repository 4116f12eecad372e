//! The HTTP(S) daemon around the [`crate::web`] front door: start-up and
//! daemonizing, listening sockets (own or from systemd), TLS, the control
//! socket for `x2gobroker-ctl`, logging, and configuration reload.

pub mod admission;
pub mod control;
pub mod http_server;
pub mod limits;
pub mod listen_fds;
pub mod loadchecker;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod sdnotify;
pub mod startup;

pub use startup::{main, Cli};
