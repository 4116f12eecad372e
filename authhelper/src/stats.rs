//! Counters for `x2gobroker-ctl status`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;
use x2gobroker_protocol::{Counters, StatusReport};

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub successes: AtomicU64,
    pub failures: AtomicU64,
    pub throttled: AtomicU64,
    pub policy_denials: AtomicU64,
    pub in_flight: AtomicU64,
}

impl Stats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn report(&self, started: Instant) -> StatusReport {
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: started.elapsed().as_secs(),
            counters: Counters {
                requests: self.requests.load(Relaxed),
                successes: self.successes.load(Relaxed),
                failures: self.failures.load(Relaxed),
                throttled: self.throttled.load(Relaxed),
                policy_denials: self.policy_denials.load(Relaxed),
                in_flight: self.in_flight.load(Relaxed),
            },
        }
    }

    /// Counts a PAM request as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self)
    }
}

pub struct InFlight<'a>(&'a Stats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}
