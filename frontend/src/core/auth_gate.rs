//! The daemon's bound on PAM calls to the auth helper: at most `slots`
//! calls in flight, at most `per_client` of them for one client address;
//! the rest wait in one queue per address and are served round robin
//! between addresses, so one address's storm cannot hold every slot nor
//! push others' logins to the back. Addresses are served in three classes:
//! those whose last attempt succeeded (within a day) first, then unknown
//! ones, then those whose last attempt failed; a quarter of the slots (at
//! least one) is kept for the first class, so a returning client's login
//! does not wait behind a storm of wrong passwords from other addresses,
//! however many addresses the storm uses. A waiting call that is abandoned
//! (request deadline, client gone) leaves the queue, or gives back a slot
//! already handed to it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long an address counts as failing after a refused attempt.
const FAILING_FOR: Duration = Duration::from_secs(600);
/// How long an address counts as known good after a granted attempt.
const TRUSTED_FOR: Duration = Duration::from_secs(24 * 3600);
/// Addresses remembered; the oldest is forgotten beyond this.
const HISTORY_MAX: usize = 8192;

/// Serving order of an address's calls (lower first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Trusted,
    Unknown,
    Failing,
}

struct Waiter {
    id: u64,
    granted: oneshot::Sender<bool>,
}

#[derive(Default)]
struct State {
    in_flight: usize,
    per_client: HashMap<String, usize>,
    queues: HashMap<String, VecDeque<Waiter>>,
    /// Addresses with waiters, in round-robin order.
    turn: VecDeque<String>,
    /// Slots held by addresses not in the trusted class.
    untrusted_in_flight: usize,
    /// Per address: when its last attempt ended and whether it failed.
    history: HashMap<String, (Instant, bool)>,
    next_id: u64,
}

pub struct AuthGate {
    state: Mutex<State>,
    /// Bounds; a reload may change them (calls in flight keep their slots).
    slots: AtomicUsize,
    per_client: AtomicUsize,
}

/// A slot; dropping it hands the slot to the next waiter.
pub struct Slot {
    gate: Arc<AuthGate>,
    client: String,
    trusted: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.release(&self.client, self.trusted);
    }
}

static GATE: OnceLock<Arc<AuthGate>> = OnceLock::new();

/// A helper call in the metrics (crate::core::stats), in flight until
/// dropped — also when the request is abandoned mid-call.
struct HelperCall;

impl HelperCall {
    fn start() -> HelperCall {
        let helper = &crate::core::stats::STATS.helper;
        helper.calls.fetch_add(1, Ordering::Relaxed);
        helper.in_flight.fetch_add(1, Ordering::Relaxed);
        HelperCall
    }
}

impl Drop for HelperCall {
    fn drop(&mut self) {
        let helper = &crate::core::stats::STATS.helper;
        helper.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `call` (one helper call for a password check) through the
/// process-wide gate, for the client at `address` (an IPv4 address or an
/// IPv6 /64); `failed` tells whether its outcome counts as a failure.
pub async fn through_gate<T>(
    address: Option<&str>,
    call: impl std::future::Future<Output = T>,
    failed: impl FnOnce(&T) -> bool,
) -> T {
    let client = x2gobroker_sys::client_net::client_unit_key(address.unwrap_or("-"));
    let gate = gate();
    let _slot = gate.acquire(&client).await;
    let _in_flight = HelperCall::start();
    let outcome = call.await;
    gate.record(&client, failed(&outcome));
    outcome
}

/// Sets the process-wide gate's bounds (the daemon, at start-up and on a
/// reload); programs that never call it get the default bounds.
pub fn configure(slots: usize, per_client: usize) {
    if GATE.set(AuthGate::new(slots, per_client)).is_err() {
        gate().set_bounds(slots, per_client);
    }
}

pub fn gate() -> Arc<AuthGate> {
    GATE.get_or_init(|| AuthGate::new(8, 2)).clone()
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Slots kept for addresses whose last attempt succeeded.
fn reserved(slots: usize) -> usize {
    (slots / 4).max(1).min(slots.saturating_sub(1))
}

impl State {
    fn class(&self, client: &str) -> Class {
        match self.history.get(client) {
            Some((at, false)) if at.elapsed() < TRUSTED_FOR => Class::Trusted,
            Some((at, true)) if at.elapsed() < FAILING_FOR => Class::Failing,
            _ => Class::Unknown,
        }
    }

    /// Hands free slots to waiters: the best class first, round robin
    /// between the addresses of a class that have room.
    fn dispatch(&mut self, slots: usize, per_client: usize) {
        let untrusted_max = slots - reserved(slots);
        while self.in_flight < slots {
            let mut pick: Option<(Class, usize)> = None;
            for (i, client) in self.turn.iter().enumerate() {
                if self.per_client.get(client).copied().unwrap_or(0) >= per_client {
                    continue;
                }
                let class = self.class(client);
                if class != Class::Trusted && self.untrusted_in_flight >= untrusted_max {
                    continue;
                }
                if pick.is_none_or(|(best, _)| class < best) {
                    pick = Some((class, i));
                }
            }
            let Some((class, i)) = pick else {
                return;
            };
            let Some(client) = self.turn.remove(i) else {
                return;
            };
            let Some(queue) = self.queues.get_mut(&client) else {
                continue;
            };
            let waiter = queue.pop_front();
            let empty = queue.is_empty();
            if empty {
                self.queues.remove(&client);
            } else {
                self.turn.push_back(client.clone());
            }
            // A waiter whose receiver is gone gave up: the slot stays free.
            if let Some(waiter) = waiter {
                let trusted = class == Class::Trusted;
                if waiter.granted.send(trusted).is_ok() {
                    self.take(&client, trusted);
                }
            }
        }
    }

    fn take(&mut self, client: &str, trusted: bool) {
        self.in_flight += 1;
        if !trusted {
            self.untrusted_in_flight += 1;
        }
        *self.per_client.entry(client.to_owned()).or_insert(0) += 1;
    }

    fn give_back(&mut self, client: &str, trusted: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if !trusted {
            self.untrusted_in_flight = self.untrusted_in_flight.saturating_sub(1);
        }
        if let Some(n) = self.per_client.get_mut(client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_client.remove(client);
            }
        }
    }

    fn remove_waiter(&mut self, client: &str, id: u64) {
        if let Some(queue) = self.queues.get_mut(client) {
            queue.retain(|w| w.id != id);
            if queue.is_empty() {
                self.queues.remove(client);
                self.turn.retain(|c| c != client);
            }
        }
    }
}

/// Takes the waiter out of the queue when the wait is abandoned, or gives
/// back the slot that was granted just before.
struct Waiting {
    gate: Arc<AuthGate>,
    client: String,
    id: u64,
    granted: oneshot::Receiver<bool>,
    done: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        crate::core::stats::STATS
            .helper
            .queued
            .fetch_sub(1, Ordering::Relaxed);
        // Decided under the lock: `dispatch` grants only while holding it,
        // so no grant can arrive between the check and the removal (one
        // would leak its slot for good).
        let mut state = lock(&self.gate.state);
        state.remove_waiter(&self.client, self.id);
        if let Ok(trusted) = self.granted.try_recv() {
            state.give_back(&self.client, trusted);
            self.gate.dispatch(&mut state);
        }
    }
}

impl AuthGate {
    pub fn new(slots: usize, per_client: usize) -> Arc<AuthGate> {
        Arc::new(AuthGate {
            state: Mutex::new(State::default()),
            slots: AtomicUsize::new(slots.max(1)),
            per_client: AtomicUsize::new(per_client.max(1)),
        })
    }

    /// New bounds (a reload); waiters that now have room go ahead.
    pub fn set_bounds(&self, slots: usize, per_client: usize) {
        let mut state = lock(&self.state);
        self.slots.store(slots.max(1), Ordering::Relaxed);
        self.per_client.store(per_client.max(1), Ordering::Relaxed);
        self.dispatch(&mut state);
    }

    fn dispatch(&self, state: &mut State) {
        state.dispatch(
            self.slots.load(Ordering::Relaxed),
            self.per_client.load(Ordering::Relaxed),
        );
    }

    /// Waits for a slot for a call from `client` (its address, or "-").
    pub async fn acquire(self: &Arc<Self>, client: &str) -> Slot {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut state = lock(&self.state);
            let id = state.next_id;
            state.next_id += 1;
            if !state.queues.contains_key(client) {
                state.turn.push_back(client.to_owned());
            }
            state
                .queues
                .entry(client.to_owned())
                .or_default()
                .push_back(Waiter { id, granted: tx });
            self.dispatch(&mut state);
            id
        };
        crate::core::stats::STATS
            .helper
            .queued
            .fetch_add(1, Ordering::Relaxed);
        let mut waiting = Waiting {
            gate: self.clone(),
            client: client.to_owned(),
            id,
            granted: rx,
            done: false,
        };
        // The sender lives in the queue until it is used, so this ends only
        // with a grant (or never, if the caller gives up: then Drop cleans up).
        let granted = (&mut waiting.granted).await;
        waiting.done = true;
        crate::core::stats::STATS
            .helper
            .queued
            .fetch_sub(1, Ordering::Relaxed);
        let trusted = match granted {
            Ok(trusted) => trusted,
            Err(_) => {
                // Cannot happen while the waiter is queued; serve rather than hang.
                log::error!("auth gate: a waiter lost its place; calling the helper unbounded");
                lock(&self.state).take(client, false);
                false
            }
        };
        Slot {
            gate: self.clone(),
            client: client.to_owned(),
            trusted,
        }
    }

    fn release(&self, client: &str, trusted: bool) {
        let mut state = lock(&self.state);
        state.give_back(client, trusted);
        self.dispatch(&mut state);
    }

    /// Records the outcome of an address's attempt (its class for the
    /// next ones).
    pub fn record(&self, client: &str, failed: bool) {
        let mut state = lock(&self.state);
        if state.history.len() >= HISTORY_MAX && !state.history.contains_key(client) {
            let keep = |&(at, failed): &(Instant, bool)| {
                at.elapsed() < if failed { FAILING_FOR } else { TRUSTED_FOR }
            };
            state.history.retain(|_, entry| keep(entry));
            if state.history.len() >= HISTORY_MAX {
                let oldest = state
                    .history
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(c, _)| c.clone());
                if let Some(oldest) = oldest {
                    state.history.remove(&oldest);
                }
            }
        }
        state.history.insert(client.to_owned(), (Instant::now(), failed));
    }

    pub fn in_flight(&self) -> usize {
        lock(&self.state).in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_round_robin_and_classes() {
        let gate = AuthGate::new(3, 1);
        // With 3 slots, one is kept for addresses that succeeded before.
        gate.record("good", false);
        gate.record("bad", true);
        let a1 = gate.acquire("a").await;
        // Per address 1: a's second call waits although slots are free.
        let a2 = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire("a").await }
        });
        let b1 = gate.acquire("b").await;
        assert_eq!(gate.in_flight(), 2);
        // The third slot is the reserved one: "c" (unknown) must wait ...
        let c = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire("c").await }
        });
        let bad = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire("bad").await }
        });
        tokio::task::yield_now().await;
        assert_eq!(gate.in_flight(), 2);
        // ... a returning client gets it at once.
        let good = gate.acquire("good").await;
        assert_eq!(gate.in_flight(), 3);
        drop(b1);
        // Waiting: a (its address at its limit while a1 runs), c (unknown),
        // bad (failing): c.
        let c = c.await.unwrap();
        assert!(!a2.is_finished() && !bad.is_finished());
        drop(a1);
        // a (unknown) before bad (failing).
        let a2 = a2.await.unwrap();
        assert!(!bad.is_finished());
        drop(a2);
        let bad = bad.await.unwrap();
        drop((c, bad, good));
        assert_eq!(gate.in_flight(), 0);
    }

    #[tokio::test]
    async fn an_abandoned_wait_leaves_no_trace() {
        let gate = AuthGate::new(1, 1);
        let held = gate.acquire("a").await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), gate.acquire("b")).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(gate.in_flight(), 0);
        let _again = gate.acquire("c").await;
        assert_eq!(gate.in_flight(), 1);
    }

    #[tokio::test]
    async fn raised_bounds_let_waiters_go_ahead() {
        let gate = AuthGate::new(1, 1);
        let _held = gate.acquire("a").await;
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire("b").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one slot, held");
        // Three slots: one kept for returning addresses, two for the rest.
        gate.set_bounds(3, 1);
        let _second = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("granted once there is room")
            .expect("the waiter");
        assert_eq!(gate.in_flight(), 2);
    }

    #[tokio::test]
    async fn a_call_through_the_gate_records_its_clients_outcome() {
        let answer = through_gate(Some("2001:db8:77::1"), async { 42 }, |_| true).await;
        assert_eq!(answer, 42);
        let gate = gate();
        let state = lock(&gate.state);
        // Kept per client: the IPv6 /64, not the address.
        assert_eq!(state.class("2001:db8:77::/64"), Class::Failing);
    }
}
