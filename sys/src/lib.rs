//! System code that the root helper and the unprivileged daemon share, so
//! that each piece exists once:
//!
//! * [`listen_fds`]: sockets handed over by systemd (sd_listen_fds);
//! * [`socket`]: binding a Unix socket over a stale one;
//! * [`admin`]: who is an administrator (root or the admin group);
//! * [`peer`]: a socket peer's kernel-reported identity (SO_PEERCRED);
//! * [`privileges`]: dropping from root to an account for good;
//! * [`logging`]: syslog or stderr, and the audit lines' target;
//! * [`keyed_slots`]: bounded slots per key (fair limits);
//! * [`sshd_peer`]: the client of the SSH session a process runs in;
//! * [`cli_values`]: shared command-line value parsers;
//! * [`client_net`]: what counts as one client (an IPv4 address, an IPv6 /64);
//! * [`files`]: root-owned files and directories nobody else can change;
//! * [`docs`]: `--generate-man` / `--generate-completions` from a clap
//!   definition (the installer's program contract).
#![deny(unsafe_code)]

pub mod admin;
pub mod cli_values;
pub mod client_net;
pub mod docs;
pub mod files;
pub mod keyed_slots;
pub mod listen_fds;
pub mod logging;
pub mod peer;
pub mod privileges;
pub mod socket;
pub mod sshd_peer;
