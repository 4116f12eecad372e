//! The unprivileged X2Go Session Broker front end: configuration, session
//! profiles, ACLs, authentication mechanisms, cookies, server selection and
//! the HTTP(S) daemon. Binaries are thin wrappers around [`daemon::main`].
#![forbid(unsafe_code)]

pub mod access;
pub mod acl;
pub mod agent;
pub mod authmech;
pub mod autologin;
pub mod backend;
pub mod config;
pub mod cookies;
pub mod daemon;
pub mod hostnames;
pub mod ini;
pub mod jsonout;
pub mod nameservice;
pub mod profiles;
pub mod reload;
pub mod select;
pub mod ssh;
pub mod state;
pub mod web;
