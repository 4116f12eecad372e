//! The unprivileged X2Go Session Broker front end. Layers, each a folder,
//! with dependencies pointing one way (docs/ARCHITECTURE.md):
//!
//! * [`core`]: configuration, profiles and ACLs, authentication and
//!   cookies, agents, selection and the broker tasks — no transport;
//! * [`cli`]: the original's command line, manual pages, completions;
//! * [`web`] (HTTP) and [`ssh`] (SSH mode): the two front doors, which use
//!   `core` and never each other;
//! * [`daemon`]: start-up, sockets, TLS, control socket, logging, reload;
//! * [`tools`]: the original's admin tools (keygen, pubkeyauthorizer,
//!   testagent, testauth) over `core`;
//! * `bin/`: thin entry points.
// The descriptors systemd passes are taken in x2gobroker-sys.
#![forbid(unsafe_code)]

pub mod cli;
pub mod core;
pub mod daemon;
pub mod ssh;
pub mod tools;
pub mod web;
