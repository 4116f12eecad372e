//! Counters for `x2gobroker-ctl status`.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use x2gobroker_protocol::{Counters, StatusReport};

/// Picks one of the counters, e.g. `|c| &mut c.failures`.
pub type Counter = fn(&mut Counters) -> &mut u64;

#[derive(Default)]
pub struct Stats(Mutex<Counters>);

impl Stats {
    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn bump(&self, counter: Counter) {
        *counter(&mut self.counters()) += 1;
    }

    pub fn report(&self, started: Instant) -> StatusReport {
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: started.elapsed().as_secs(),
            counters: *self.counters(),
        }
    }

    /// Counts a PAM request as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.bump(|c| &mut c.in_flight);
        InFlight(self)
    }
}

pub struct InFlight<'a>(&'a Stats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.counters().in_flight -= 1;
    }
}
