//! Failure throttling, fair to everyone behind one address and to users
//! attacked from elsewhere (docs/OPERATIONS.md "Throttling").
//!
//! Three kinds of key, each with its own threshold: the (user, address)
//! pair (low), the user across all addresses (distributed guessing) and the
//! address across all users (spraying). A key's score grows by one per
//! failure and halves every `half_life`; an attempt is let through while
//! score plus attempts in flight stays at most `threshold - 1`, so a
//! parallel burst cannot outrun PAM's failure delay. Throttled attempts add
//! nothing. A pair that succeeded recently is judged by its own key only:
//! storms against a user or from an address do not lock out the known
//! good. Exempt networks use only the per-user key.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bound on remembered keys; idle, decayed entries are pruned first.
const MAX_KEYS: usize = 65536;

#[derive(Debug, Clone)]
pub struct Limits {
    pub per_pair: u32,
    pub per_user: u32,
    pub per_address: u32,
    pub half_life: Duration,
    /// How long a success exempts its pair from the user and address keys.
    pub remember_success: Duration,
    pub exempt: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pair(String, String),
    User(String),
    Address(String),
}

impl Key {
    fn scope(&self) -> &'static str {
        match self {
            Key::Pair(..) => "user at this address",
            Key::User(_) => "user, all addresses",
            Key::Address(_) => "address, all users",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    score: f64,
    at: Instant,
    in_flight: u32,
    good_until: Option<Instant>,
}

/// Why an attempt may not run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    pub scope: &'static str,
    pub retry_after_secs: u32,
}

pub struct Throttle {
    limits: Limits,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// An attempt in flight: it counts against its keys until it is decided.
/// Dropped undecided (PAM error, timeout), it counts for nothing.
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    keys: Vec<Key>,
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Throttle {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn decayed(&self, entry: &Entry, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(entry.at).as_secs_f64();
        entry.score * 0.5f64.powf(elapsed / self.limits.half_life.as_secs_f64())
    }

    fn threshold(&self, key: &Key) -> f64 {
        f64::from(match key {
            Key::Pair(..) => self.limits.per_pair,
            Key::User(_) => self.limits.per_user,
            Key::Address(_) => self.limits.per_address,
        })
    }

    /// The single entry point: may `user` try from `address` now? If so,
    /// the attempt counts from now on; decide it with [`Attempt::succeeded`]
    /// or [`Attempt::failed`].
    pub fn begin(&self, user: &str, address: Option<&str>, now: Instant) -> Result<Attempt<'_>, Throttled> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let exempt = address
            .and_then(|a| a.parse::<IpAddr>().ok())
            .is_some_and(|ip| self.limits.exempt.iter().any(|net| net.contains(&ip)));
        let mut keys = vec![Key::User(user.to_string())];
        if let (Some(address), false) = (address, exempt) {
            let pair = Key::Pair(user.to_string(), address.to_string());
            let known_good = entries
                .get(&pair)
                .and_then(|e| e.good_until)
                .is_some_and(|until| until > now);
            keys = if known_good {
                vec![pair]
            } else {
                vec![pair, keys.remove(0), Key::Address(address.to_string())]
            };
        }
        for key in &keys {
            let Some(entry) = entries.get(key) else { continue };
            let release = (self.threshold(key) - 1.0).max(0.5);
            let load = self.decayed(entry, now) + f64::from(entry.in_flight);
            if load > release + 1e-9 {
                // Until the score has decayed below what the attempts in
                // flight leave free (or about PAM's failure delay).
                let free = release - f64::from(entry.in_flight);
                let wait = if free > 0.0 {
                    self.limits.half_life.as_secs_f64() * (self.decayed(entry, now) / free).log2()
                } else {
                    2.0
                };
                return Err(Throttled {
                    scope: key.scope(),
                    retry_after_secs: wait.ceil().clamp(1.0, f64::from(u32::MAX)) as u32,
                });
            }
        }
        self.make_room(&mut entries, now);
        for key in &keys {
            let entry = entries.entry(key.clone()).or_insert(Entry {
                score: 0.0,
                at: now,
                in_flight: 0,
                good_until: None,
            });
            entry.in_flight += 1;
        }
        Ok(Attempt { throttle: self, keys })
    }

    fn make_room(&self, entries: &mut HashMap<Key, Entry>, now: Instant) {
        if entries.len() < MAX_KEYS {
            return;
        }
        let forgotten = |e: &Entry| {
            e.in_flight == 0 && self.decayed(e, now) < 0.01 && e.good_until.is_none_or(|u| u <= now)
        };
        entries.retain(|_, e| !forgotten(e));
        if entries.len() >= MAX_KEYS {
            // Still full: forget the oldest idle half rather than grow.
            let mut ages: Vec<Instant> = entries.values().map(|e| e.at).collect();
            ages.sort();
            let cutoff = ages[ages.len() / 2];
            entries.retain(|_, e| e.in_flight > 0 || e.at > cutoff);
        }
    }

    fn finish(&self, keys: &[Key], failed: bool, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            let score = entries.get(key).map_or(0.0, |e| self.decayed(e, now));
            let Some(entry) = entries.get_mut(key) else {
                continue;
            };
            entry.in_flight = entry.in_flight.saturating_sub(1);
            if failed {
                (entry.score, entry.at) = (score + 1.0, now);
            } else if let Key::Pair(..) = key {
                (entry.score, entry.at) = (0.0, now);
                entry.good_until = Some(now + self.limits.remember_success);
            }
        }
    }
}

impl Attempt<'_> {
    /// A success clears its pair and makes it known good; the user's and
    /// the address's other failures still count.
    pub fn succeeded(mut self, now: Instant) {
        let keys = std::mem::take(&mut self.keys);
        self.throttle.finish(&keys, false, now);
    }

    pub fn failed(mut self, now: Instant) {
        let keys = std::mem::take(&mut self.keys);
        self.throttle.finish(&keys, true, now);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut entries = self.throttle.entries.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            if let Some(entry) = entries.get_mut(key) {
                entry.in_flight = entry.in_flight.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(exempt: &[&str]) -> Throttle {
        Throttle::new(Limits {
            per_pair: 3,
            per_user: 6,
            per_address: 8,
            half_life: Duration::from_secs(60),
            remember_success: Duration::from_secs(3600),
            exempt: exempt.iter().map(|n| n.parse().unwrap()).collect(),
        })
    }

    fn fail(t: &Throttle, user: &str, address: &str, now: Instant) {
        t.begin(user, Some(address), now).expect("allowed").failed(now);
    }

    #[test]
    fn pair_engages_at_threshold_and_decays() {
        let t = throttle(&[]);
        let now = Instant::now();
        for _ in 0..3 {
            fail(&t, "alice", "10.0.0.1", now);
        }
        let refused = t.begin("alice", Some("10.0.0.1"), now).err().expect("throttled");
        assert_eq!(refused.scope, "user at this address");
        // 3 -> 2 takes log2(3/2) half-lives, about 35 s.
        assert!((30..=40).contains(&refused.retry_after_secs), "{refused:?}");
        let later = now + Duration::from_secs(u64::from(refused.retry_after_secs));
        assert!(t.begin("alice", Some("10.0.0.1"), later).is_ok());
    }

    #[test]
    fn one_address_locks_out_neither_the_user_elsewhere_nor_its_other_users() {
        let t = throttle(&[]);
        let now = Instant::now();
        for _ in 0..3 {
            fail(&t, "alice", "10.0.0.1", now);
        }
        // A throttled storm adds nothing.
        for _ in 0..100 {
            assert!(t.begin("alice", Some("10.0.0.1"), now).is_err());
        }
        assert!(t.begin("alice", Some("10.0.0.2"), now).is_ok(), "alice elsewhere");
        assert!(
            t.begin("bob", Some("10.0.0.1"), now).is_ok(),
            "bob at the same address"
        );
    }

    #[test]
    fn attempts_in_flight_count() {
        let t = throttle(&[]);
        let now = Instant::now();
        let first = t.begin("alice", Some("10.0.0.1"), now).unwrap();
        let _more = [(); 2].map(|_| t.begin("alice", Some("10.0.0.1"), now).unwrap());
        assert!(
            t.begin("alice", Some("10.0.0.1"), now).is_err(),
            "3 in flight: as if 3 failed"
        );
        // An undecided attempt (PAM error) gives its place back.
        drop(first);
        assert!(t.begin("alice", Some("10.0.0.1"), now).is_ok());
    }

    #[test]
    fn distributed_guessing_and_spraying_have_their_own_thresholds() {
        let t = throttle(&[]);
        let now = Instant::now();
        for i in 0..6 {
            fail(&t, "alice", &format!("10.0.1.{i}"), now);
        }
        let refused = t.begin("alice", Some("10.0.2.1"), now).err().expect("user-wide");
        assert_eq!(refused.scope, "user, all addresses");
        for i in 0..8 {
            fail(&t, &format!("user{i}"), "10.0.3.1", now);
        }
        let refused = t
            .begin("carol", Some("10.0.3.1"), now)
            .err()
            .expect("address-wide");
        assert_eq!(refused.scope, "address, all users");
    }

    #[test]
    fn a_known_good_pair_is_judged_by_its_own_key_only() {
        let t = throttle(&[]);
        let now = Instant::now();
        t.begin("bob", Some("10.0.3.1"), now).unwrap().succeeded(now);
        t.begin("alice", Some("10.0.0.9"), now).unwrap().succeeded(now);
        for i in 0..8 {
            fail(&t, &format!("user{i}"), "10.0.3.1", now);
        }
        for i in 0..6 {
            fail(&t, "alice", &format!("10.0.4.{i}"), now);
        }
        assert!(t.begin("carol", Some("10.0.3.1"), now).is_err());
        assert!(
            t.begin("bob", Some("10.0.3.1"), now).is_ok(),
            "bob logged in from there"
        );
        assert!(t.begin("alice", Some("10.0.5.1"), now).is_err());
        assert!(
            t.begin("alice", Some("10.0.0.9"), now).is_ok(),
            "alice's usual address"
        );
        let much_later = now + Duration::from_secs(7200);
        for _ in 0..3 {
            fail(&t, "bob", "10.0.3.1", much_later);
        }
        assert!(
            t.begin("bob", Some("10.0.3.1"), much_later).is_err(),
            "its own key still counts"
        );
    }

    #[test]
    fn exempt_networks_use_the_user_key_only() {
        let t = throttle(&["192.168.0.0/16"]);
        let now = Instant::now();
        for i in 0..5 {
            fail(&t, "alice", "192.168.1.1", now);
            fail(&t, &format!("user{i}"), "192.168.1.1", now);
        }
        assert!(
            t.begin("alice", Some("192.168.1.1"), now).is_ok(),
            "5 < 6 per user"
        );
        assert!(t.begin("dave", Some("192.168.1.1"), now).is_ok());
        fail(&t, "alice", "192.168.1.1", now);
        assert!(
            t.begin("alice", Some("192.168.1.1"), now).is_err(),
            "the user key holds"
        );
    }

    #[test]
    fn without_an_address_the_user_key_applies() {
        let t = throttle(&[]);
        let now = Instant::now();
        for _ in 0..6 {
            t.begin("erin", None, now).unwrap().failed(now);
        }
        assert!(t.begin("erin", None, now).is_err());
    }
}
