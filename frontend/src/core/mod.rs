//! The broker itself, independent of how a request arrives: configuration
//! and INI, session profiles and ACLs, authentication mechanisms and
//! cookies, agents and server selection, and the broker tasks that both
//! front doors ([`crate::web`], [`crate::ssh`]) call.

pub mod access;
pub mod acl;
pub mod agent;
pub mod audit;
pub mod auth_gate;
pub mod authmech;
pub mod autologin;
pub mod backend;
pub mod broker;
pub mod config;
pub mod cookies;
pub mod hostnames;
pub mod ini;
pub mod jsonout;
pub mod key_removals;
pub mod loadchecker;
pub mod log_limit;
pub mod login_map;
pub mod nameservice;
pub mod portscan;
pub mod profiles;
pub mod scripts;
pub mod select;
pub mod setpass;
pub mod state;
pub mod stats;
pub mod tasks;
