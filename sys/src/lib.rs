//! System code that the root helper and the unprivileged daemon share, so
//! that each piece exists once:
//!
//! * [`listen_fds`]: sockets handed over by systemd (sd_listen_fds);
//! * [`socket`]: binding a Unix socket over a stale one;
//! * [`admin`]: who is an administrator (root or the admin group);
//! * [`peer`]: a socket peer's kernel-reported identity (SO_PEERCRED);
//! * [`privileges`]: dropping from root to an account for good;
//! * [`logging`]: syslog or stderr, and the audit lines' target;
//! * [`docs`]: `--generate-man` / `--generate-completions` from a clap
//!   definition (the installer's program contract).
#![deny(unsafe_code)]

pub mod admin;
pub mod docs;
pub mod listen_fds;
pub mod logging;
pub mod peer;
pub mod privileges;
pub mod program;
pub mod socket;
