//! Failure throttling, fair to everyone behind one address and to users
//! attacked from elsewhere (docs/OPERATIONS.md "Login throttling").
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

use x2gobroker_sys::client_net::client_unit_key;

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

#[derive(Debug, Clone, Copy)]
struct Entry {
    score: f64,
    at: Instant,
    in_flight: u32,
    good_until: Option<Instant>,
}

/// Why an attempt may not run now (`scope`: which key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    pub scope: &'static str,
    pub retry_after_secs: u32,
}

pub struct Throttle {
    limits: Limits,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// An attempt in flight: it counts against its keys until dropped, then as
/// decided (`succeeded`, `failed`); undecided (PAM error, timeout) as nothing.
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    keys: Vec<Key>,
    outcome: Option<(bool, Instant)>,
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

    fn threshold_and_scope(&self, key: &Key) -> (u32, &'static str) {
        match key {
            Key::Pair(..) => (self.limits.per_pair, "user at this address"),
            Key::User(_) => (self.limits.per_user, "user, all addresses"),
            Key::Address(_) => (self.limits.per_address, "address, all users"),
        }
    }

    /// The single entry point: may `user` try from `address` now? If so,
    /// the attempt counts from now on.
    pub fn begin(&self, user: &str, address: Option<&str>, now: Instant) -> Result<Attempt<'_>, Throttled> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let exempt = address
            .and_then(|a| a.parse::<IpAddr>().ok())
            // ::ffff:a.b.c.d (dual-stack listeners) is the IPv4 address.
            .is_some_and(|ip| {
                self.limits
                    .exempt
                    .iter()
                    .any(|net| net.contains(&ip.to_canonical()))
            });
        let mut keys = vec![Key::User(user.to_string())];
        if let (Some(address), false) = (address, exempt) {
            // One client is an IPv4 address or an IPv6 /64.
            let address = client_unit_key(address);
            let pair = Key::Pair(user.to_string(), address.clone());
            let good_until = entries.get(&pair).and_then(|e| e.good_until);
            keys = match good_until.is_some_and(|until| until > now) {
                true => vec![pair],
                false => vec![pair, keys.remove(0), Key::Address(address)],
            };
        }
        for key in &keys {
            let Some(entry) = entries.get(key) else { continue };
            let (threshold, scope) = self.threshold_and_scope(key);
            let release = (f64::from(threshold) - 1.0).max(0.5);
            let (score, in_flight) = (self.decayed(entry, now), f64::from(entry.in_flight));
            if score + in_flight > release + 1e-9 {
                // Until the score has decayed to what the attempts in flight
                // leave free, or about PAM's failure delay.
                let wait = match release - in_flight {
                    free if free > 0.0 => self.limits.half_life.as_secs_f64() * (score / free).log2(),
                    _ => 2.0,
                };
                let retry_after_secs = wait.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
                return Err(Throttled {
                    scope,
                    retry_after_secs,
                });
            }
        }
        if entries.len() >= MAX_KEYS {
            let idle = |e: &Entry| e.in_flight == 0 && e.good_until.is_none_or(|u| u <= now);
            entries.retain(|_, e| !idle(e) || self.decayed(e, now) >= 0.01);
            // Still full: forget the older half rather than grow.
            let mut ages: Vec<Instant> = entries.values().map(|e| e.at).collect();
            ages.sort();
            let cutoff = ages
                .get(ages.len() / 2)
                .copied()
                .filter(|_| ages.len() >= MAX_KEYS);
            entries.retain(|_, e| e.in_flight > 0 || cutoff.is_none_or(|c| e.at > c));
        }
        for key in &keys {
            let fresh = Entry {
                score: 0.0,
                at: now,
                in_flight: 0,
                good_until: None,
            };
            entries.entry(key.clone()).or_insert(fresh).in_flight += 1;
        }
        Ok(Attempt {
            throttle: self,
            keys,
            outcome: None,
        })
    }
}

impl Attempt<'_> {
    /// A success clears its pair and makes it known good; the user's and
    /// the address's other failures still count.
    pub fn succeeded(mut self, now: Instant) {
        self.outcome = Some((false, now));
    }

    pub fn failed(mut self, now: Instant) {
        self.outcome = Some((true, now));
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let throttle = self.throttle;
        let mut entries = throttle.entries.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            let Some(entry) = entries.get_mut(key) else {
                continue;
            };
            entry.in_flight = entry.in_flight.saturating_sub(1);
            match self.outcome {
                Some((true, now)) => (entry.score, entry.at) = (throttle.decayed(entry, now) + 1.0, now),
                Some((false, now)) if matches!(key, Key::Pair(..)) => {
                    (entry.score, entry.at) = (0.0, now);
                    entry.good_until = Some(now + throttle.limits.remember_success);
                }
                _ => {}
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
    fn an_ipv6_client_is_its_64_whatever_address_it_rotates_to() {
        let t = throttle(&[]);
        let now = Instant::now();
        for i in 0..3 {
            fail(&t, "alice", &format!("2001:db8:5:6::{i:x}"), now);
        }
        let refused = t
            .begin("alice", Some("2001:db8:5:6:ffff::1"), now)
            .err()
            .expect("same /64");
        assert_eq!(refused.scope, "user at this address");
        for i in 0..8 {
            fail(
                &t,
                &format!("user{i}"),
                &format!("2001:db8:7:8::{:x}", 0x100 + i),
                now,
            );
        }
        let refused = t
            .begin("carol", Some("2001:db8:7:8::abcd"), now)
            .err()
            .expect("spraying from one /64");
        assert_eq!(refused.scope, "address, all users");
        assert!(
            t.begin("carol", Some("2001:db8:7:9::1"), now).is_ok(),
            "the next /64 is another client"
        );
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
        // The same IPv4 address as a dual-stack listener reports it.
        for _ in 0..5 {
            fail(&t, "erin", "::ffff:192.168.1.1", now);
        }
        assert!(
            t.begin("erin", Some("::ffff:192.168.1.1"), now).is_ok(),
            "exempt: only the user key (5 < 6), not the pair's 5"
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

    #[test]
    fn memory_is_bounded_and_recent_failures_survive() {
        let t = throttle(&[]);
        let start = Instant::now();
        for i in 0..MAX_KEYS {
            let at = start + Duration::from_secs(if i < MAX_KEYS / 2 { 0 } else { 1 });
            t.begin(&format!("u{i}"), None, at).unwrap().failed(at);
        }
        let later = start + Duration::from_secs(2);
        for _ in 0..6 {
            t.begin("recent", None, later).unwrap().failed(later);
        }
        let kept = t.entries.lock().unwrap().len();
        assert!(kept <= MAX_KEYS / 2 + 1, "{kept}");
        assert!(
            t.begin("recent", None, later).is_err(),
            "the newest failures are kept"
        );
    }
}
