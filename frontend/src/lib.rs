//! The unprivileged X2Go Session Broker front end. Layers, each a folder,
//! with dependencies pointing one way (docs/ARCHITECTURE.md):
//!
//! * [`core`]: configuration, profiles and ACLs, authentication and
//!   cookies, agents, selection and the broker tasks — no transport;
//! * [`cli`]: the original's command line, manual pages, completions;
//! * [`web`] (HTTP) and [`ssh`] (SSH mode): the two front doors, which use
//!   `core` and never each other;
//! * [`daemon`]: start-up, sockets, TLS, control socket, logging, reload;
//! * `bin/`: thin entry points.
// deny, not forbid: daemon::listen_fds must take the descriptors systemd passed.
#![deny(unsafe_code)]

pub mod cli;
pub mod core;
pub mod daemon;
pub mod ssh;
pub mod web;
