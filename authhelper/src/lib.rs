//! The root auth helper of the X2Go Session Broker.
//!
//! It is the only privileged part of the broker: it authenticates users with
//! PAM on behalf of the unprivileged daemon, runs SSH-mode broker tasks in
//! children dropped to the daemon user, and answers admin status queries
//! (from `x2gobroker-ctl status`), over one Unix stream socket whose peers it identifies with SO_PEERCRED.
//! One module per concern; `server` wires them together. A start-up
//! failure is one clear line (a `String`), exit status 1.
#![deny(unsafe_code)]

pub mod audit;
pub mod cli;
pub mod listener;
pub mod pam;
pub mod policy;
pub mod privileges;
pub mod server;
pub mod ssh_policy;
pub mod ssh_task;
pub mod stats;
pub mod throttle;
pub mod worker_launch;
