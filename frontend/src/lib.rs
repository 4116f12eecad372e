//! The unprivileged X2Go Session Broker front end: configuration, session
//! profiles, ACLs, authentication mechanisms, cookies, server selection and
//! the HTTP(S) daemon. Binaries are thin wrappers around [`daemon::main`].
// deny, not forbid: listen_fds must take the descriptors systemd passed.
#![deny(unsafe_code)]

pub mod access;
pub mod acl;
pub mod agent;
pub mod audit;
pub mod authmech;
pub mod autologin;
pub mod backend;
pub mod config;
pub mod control;
pub mod cookies;
pub mod daemon;
pub mod daemon_stats;
pub mod hostnames;
pub mod http_server;
pub mod ini;
pub mod jsonout;
pub mod listen_fds;
pub mod logging;
pub mod manpages;
pub mod nameservice;
pub mod profiles;
pub mod reload;
pub mod sdnotify;
pub mod select;
pub mod ssh;
pub mod state;
pub mod web;
