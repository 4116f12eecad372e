//! The daemon's bound on PAM calls to the auth helper: at most `slots`
//! calls in flight, at most `per_client` of them for one client address;
//! the rest wait in one queue per address and are served round robin
//! between addresses, so one address's storm cannot hold every slot nor
//! push others' logins to the back. Addresses whose last attempt failed
//! wait behind addresses without recent failures (still served whenever no
//! such address waits). A waiting call that is abandoned (request deadline,
//! client gone) leaves the queue, or gives back a slot already handed to it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long an address counts as failing after a refused attempt.
const FAILING_FOR: Duration = Duration::from_secs(600);
/// Addresses remembered as failing; the oldest is forgotten beyond this.
const FAILING_MAX: usize = 4096;

struct Waiter {
    id: u64,
    granted: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    in_flight: usize,
    per_client: HashMap<String, usize>,
    queues: HashMap<String, VecDeque<Waiter>>,
    /// Addresses with waiters, in round-robin order.
    turn: VecDeque<String>,
    failing: HashMap<String, Instant>,
    next_id: u64,
}

pub struct AuthGate {
    state: Mutex<State>,
    slots: usize,
    per_client: usize,
}

/// A slot; dropping it hands the slot to the next waiter.
pub struct Slot {
    gate: Arc<AuthGate>,
    client: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.release(&self.client);
    }
}

static GATE: OnceLock<Arc<AuthGate>> = OnceLock::new();

/// Sets the process-wide gate (the daemon, at start-up); later calls and
/// programs that never call it get the default bounds.
pub fn configure(slots: usize, per_client: usize) {
    let _ = GATE.set(AuthGate::new(slots, per_client));
}

pub fn gate() -> Arc<AuthGate> {
    GATE.get_or_init(|| AuthGate::new(8, 2)).clone()
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    fn is_failing(&self, client: &str) -> bool {
        self.failing
            .get(client)
            .is_some_and(|t| t.elapsed() < FAILING_FOR)
    }

    /// Hands free slots to waiters: round robin over addresses with room,
    /// addresses without recent failures first.
    fn dispatch(&mut self, slots: usize, per_client: usize) {
        while self.in_flight < slots {
            let eligible = |s: &State, i: usize, clean_only: bool| {
                let client = &s.turn[i];
                s.per_client.get(client).copied().unwrap_or(0) < per_client
                    && !(clean_only && s.is_failing(client))
            };
            let pick = (0..self.turn.len())
                .find(|&i| eligible(self, i, true))
                .or_else(|| (0..self.turn.len()).find(|&i| eligible(self, i, false)));
            let Some(i) = pick else {
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
                if waiter.granted.send(()).is_ok() {
                    self.in_flight += 1;
                    *self.per_client.entry(client).or_insert(0) += 1;
                }
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
    granted: oneshot::Receiver<()>,
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
        if self.granted.try_recv().is_ok() {
            self.gate.release(&self.client);
        } else {
            lock(&self.gate.state).remove_waiter(&self.client, self.id);
        }
    }
}

impl AuthGate {
    pub fn new(slots: usize, per_client: usize) -> Arc<AuthGate> {
        Arc::new(AuthGate {
            state: Mutex::new(State::default()),
            slots: slots.max(1),
            per_client: per_client.max(1),
        })
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
            state.dispatch(self.slots, self.per_client);
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
        if granted.is_err() {
            // Cannot happen while the waiter is queued; serve rather than hang.
            log::error!("auth gate: a waiter lost its place; calling the helper unbounded");
            let mut state = lock(&self.state);
            state.in_flight += 1;
            *state.per_client.entry(client.to_owned()).or_insert(0) += 1;
        }
        Slot {
            gate: self.clone(),
            client: client.to_owned(),
        }
    }

    fn release(&self, client: &str) {
        let mut state = lock(&self.state);
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some(n) = state.per_client.get_mut(client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.per_client.remove(client);
            }
        }
        state.dispatch(self.slots, self.per_client);
    }

    /// Records the outcome of an address's attempt: a failure moves it
    /// behind addresses without failures; a success clears that.
    pub fn record(&self, client: &str, failed: bool) {
        let mut state = lock(&self.state);
        if !failed {
            state.failing.remove(client);
            return;
        }
        if state.failing.len() >= FAILING_MAX && !state.failing.contains_key(client) {
            state.failing.retain(|_, t| t.elapsed() < FAILING_FOR);
            if state.failing.len() >= FAILING_MAX {
                if let Some(oldest) = state
                    .failing
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(c, _)| c.clone())
                {
                    state.failing.remove(&oldest);
                }
            }
        }
        state.failing.insert(client.to_owned(), Instant::now());
    }

    pub fn in_flight(&self) -> usize {
        lock(&self.state).in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_round_robin_and_failing_addresses_last() {
        let gate = AuthGate::new(2, 1);
        let a1 = gate.acquire("a").await;
        // Per address 1: a's second call waits although a slot is free.
        let a2 = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire("a").await }
        });
        let b1 = gate.acquire("b").await;
        assert_eq!(gate.in_flight(), 2);
        // c failed before; d did not: d is served first.
        gate.record("c", true);
        let c = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire("c").await }
        });
        tokio::task::yield_now().await;
        let d = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire("d").await }
        });
        tokio::task::yield_now().await;
        drop(b1);
        let d = d.await.unwrap();
        assert!(!c.is_finished());
        drop(a1);
        // a's waiter (queued first) and c compete for one slot: round robin
        // with failing addresses last gives it to a.
        let a2 = a2.await.unwrap();
        assert!(!c.is_finished());
        drop(d);
        let c = c.await.unwrap();
        drop((a2, c));
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
}
