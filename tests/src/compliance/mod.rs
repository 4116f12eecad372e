//! Compliance suite in the style of sudo-rs: each scenario file runs against the
//! original x2gobroker (BROKER_UNDER_TEST=original), which proves it right, and
//! against ours (BROKER_UNDER_TEST=ours, the default), which is held to it.
//! Deliberate differences (ARCHITECTURE.md differences) carry a reason and per-broker expectations.

#![forbid(unsafe_code)]

pub mod broker;
pub mod expect;
pub mod http;
pub mod runner;
pub mod scenario;
pub mod tls;
pub mod vars;

use std::path::{Path, PathBuf};

/// Directory holding the scenario files.
pub fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("compliance/scenarios")
}

/// Directory holding deliberately wrong scenarios: the harness must report each
/// as a failed check (proof that scenarios can fail).
pub fn selftest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("compliance/selftest")
}
