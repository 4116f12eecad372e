//! Failure throttling per user and per client address.
//!
//! Each key has a failure score that grows by one per failure and halves
//! every `half_life`. A key is throttled while its score is above
//! `threshold - 1`: right after `threshold` failures, and until one failure's
//! worth has decayed. Then one more attempt is allowed; if it fails too, the
//! key is throttled again, for longer, because the old failures are not yet
//! forgotten. Throttled attempts do not add to the
//! score, so a flood cannot lock a user out indefinitely.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bound on remembered keys; decayed entries are pruned first.
const MAX_KEYS: usize = 65536;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    User(String),
    Address(String),
}

#[derive(Debug, Clone, Copy)]
struct Score {
    value: f64,
    at: Instant,
}

pub struct Throttle {
    threshold: f64,
    half_life: Duration,
    scores: Mutex<HashMap<Key, Score>>,
}

impl Throttle {
    pub fn new(threshold: u32, half_life: Duration) -> Self {
        Throttle {
            threshold: f64::from(threshold.max(1)),
            half_life,
            scores: Mutex::new(HashMap::new()),
        }
    }

    fn decayed(&self, score: Score, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(score.at).as_secs_f64();
        score.value * 0.5f64.powf(elapsed / self.half_life.as_secs_f64())
    }

    /// Level below which one more attempt is allowed.
    fn release_level(&self) -> f64 {
        (self.threshold - 1.0).max(0.5)
    }

    /// `Some(seconds to wait)` if any of the keys is throttled now.
    pub fn check(&self, keys: &[Key], now: Instant) -> Option<u32> {
        let scores = self.scores.lock().unwrap_or_else(|p| p.into_inner());
        let worst = keys
            .iter()
            .filter_map(|k| scores.get(k))
            .map(|s| self.decayed(*s, now))
            .fold(0.0, f64::max);
        // Above the release level means `threshold` failures that have not
        // yet decayed by a whole failure.
        if worst <= self.release_level() + 1e-9 {
            return None;
        }
        let wait = self.half_life.as_secs_f64() * (worst / self.release_level()).log2();
        Some(wait.ceil().clamp(1.0, f64::from(u32::MAX)) as u32)
    }

    pub fn record_failure(&self, keys: &[Key], now: Instant) {
        let mut scores = self.scores.lock().unwrap_or_else(|p| p.into_inner());
        if scores.len() >= MAX_KEYS {
            scores.retain(|_, s| self.decayed(*s, now) >= 0.01);
            if scores.len() >= MAX_KEYS {
                // Still full: forget the oldest half rather than grow.
                let mut ages: Vec<Instant> = scores.values().map(|s| s.at).collect();
                ages.sort();
                let cutoff = ages[ages.len() / 2];
                scores.retain(|_, s| s.at > cutoff);
            }
        }
        for key in keys {
            let value = scores.get(key).map_or(0.0, |s| self.decayed(*s, now)) + 1.0;
            scores.insert(key.clone(), Score { value, at: now });
        }
    }

    /// A successful login clears the user's record (not the address's: one
    /// good password from an address does not excuse its other guesses).
    pub fn record_success(&self, user: &Key) {
        self.scores.lock().unwrap_or_else(|p| p.into_inner()).remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(user: &str, addr: &str) -> Vec<Key> {
        vec![Key::User(user.into()), Key::Address(addr.into())]
    }

    #[test]
    fn engages_at_threshold_and_decays() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let start = Instant::now();
        let k = keys("alice", "10.0.0.1");
        for _ in 0..2 {
            t.record_failure(&k, start);
            assert_eq!(t.check(&k, start), None);
        }
        t.record_failure(&k, start);
        let wait = t.check(&k, start).expect("throttled after 3 failures");
        // 3 -> 2 takes log2(3/2) half-lives, about 35 s.
        assert!((30..=40).contains(&wait), "{wait}");
        assert!(t
            .check(&k, start + Duration::from_secs(u64::from(wait)))
            .is_none());
    }

    #[test]
    fn one_failure_after_release_throttles_again() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let start = Instant::now();
        let k = keys("bob", "10.0.0.2");
        for _ in 0..3 {
            t.record_failure(&k, start);
        }
        let first = t.check(&k, start).unwrap();
        let later = start + Duration::from_secs(u64::from(first));
        t.record_failure(&k, later);
        let second = t.check(&k, later).expect("the old failures still count");
        assert!(second * 2 >= first, "{second} vs {first}");
        // Much later everything has decayed: threshold - 1 failures are free again.
        let much_later = later + Duration::from_secs(3600);
        t.record_failure(&k, much_later);
        t.record_failure(&k, much_later);
        assert_eq!(t.check(&k, much_later), None);
    }

    #[test]
    fn keys_are_independent_and_success_clears_user() {
        let t = Throttle::new(2, Duration::from_secs(60));
        let now = Instant::now();
        t.record_failure(&keys("carol", "10.0.0.3"), now);
        t.record_failure(&keys("carol", "10.0.0.3"), now);
        assert!(t.check(&keys("carol", "10.9.9.9"), now).is_some(), "per user");
        assert!(t.check(&keys("dave", "10.0.0.3"), now).is_some(), "per address");
        assert!(
            t.check(&keys("dave", "10.9.9.9"), now).is_none(),
            "others unaffected"
        );
        t.record_success(&Key::User("carol".into()));
        assert!(t.check(&[Key::User("carol".into())], now).is_none());
    }
}
