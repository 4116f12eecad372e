//! The daemon's counters for `x2gobroker-ctl status`: requests, auth
//! decisions, configuration generation and the last reload error. One
//! process-wide instance ([`STATS`]); all updates are lock-free except the
//! reload error text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

pub struct DaemonStats {
    started: OnceLock<Instant>,
    requests: AtomicU64,
    in_flight: AtomicU64,
    auth_successes: AtomicU64,
    auth_failures: AtomicU64,
    auth_throttled: AtomicU64,
    config_generation: AtomicU64,
    last_reload_error: Mutex<Option<String>>,
}

pub static STATS: DaemonStats = DaemonStats {
    started: OnceLock::new(),
    requests: AtomicU64::new(0),
    in_flight: AtomicU64::new(0),
    auth_successes: AtomicU64::new(0),
    auth_failures: AtomicU64::new(0),
    auth_throttled: AtomicU64::new(0),
    config_generation: AtomicU64::new(0),
    last_reload_error: Mutex::new(None),
};

/// Counts one request from its start until it is dropped (so a request that
/// is abandoned half-way still leaves the in-flight count).
pub struct RequestGuard(());

impl Drop for RequestGuard {
    fn drop(&mut self) {
        STATS.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DaemonStats {
    pub fn mark_started(&self) {
        let _ = self.started.set(Instant::now());
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.get().map(|s| s.elapsed().as_secs()).unwrap_or(0)
    }

    pub fn request_started(&self) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestGuard(())
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn count_auth(&self, outcome: crate::core::audit::AuthOutcome) {
        use crate::core::audit::AuthOutcome;
        let counter = match outcome {
            AuthOutcome::Granted => &self.auth_successes,
            AuthOutcome::Throttled => &self.auth_throttled,
            AuthOutcome::Refused | AuthOutcome::Unavailable => &self.auth_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A configuration was loaded (at start or by a reload).
    pub fn config_loaded(&self) {
        self.config_generation.fetch_add(1, Ordering::Relaxed);
    }

    /// A reload failed; the text is kept until the next failure.
    pub fn reload_failed(&self, error: String) {
        match self.last_reload_error.lock() {
            Ok(mut e) => *e = Some(error),
            Err(poisoned) => *poisoned.into_inner() = Some(error),
        }
    }

    pub fn snapshot(&self) -> x2gobroker_protocol::control::DaemonStatus {
        let last_reload_error = match self.last_reload_error.lock() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        x2gobroker_protocol::control::DaemonStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_secs: self.uptime_secs(),
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: self.in_flight(),
            auth_successes: self.auth_successes.load(Ordering::Relaxed),
            auth_failures: self.auth_failures.load(Ordering::Relaxed),
            auth_throttled: self.auth_throttled.load(Ordering::Relaxed),
            config_generation: self.config_generation.load(Ordering::Relaxed),
            last_reload_error,
            ..Default::default()
        }
    }
}
