//! Counted slots per key (a caller's uid, a user name, a client address)
//! under a per-key and a total bound, so that one key cannot take them
//! all. [`KeyedSlots`] answers at once (connections, SSH-mode tasks);
//! [`FairQueue`] lets a request wait for its turn, queued behind its own
//! keys' earlier requests only (PAM transactions).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which bound refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Total,
    Key,
}

pub struct KeyedSlots<K> {
    held: Mutex<(HashMap<K, usize>, usize)>,
}

/// A held slot; given back when dropped.
pub struct Slot<K: Eq + Hash + Clone> {
    slots: Arc<KeyedSlots<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> KeyedSlots<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(KeyedSlots {
            held: Mutex::new((HashMap::new(), 0)),
        })
    }

    /// A slot for `key` if fewer than `total_limit` are held in all and,
    /// when `key_limit` is given, fewer than that for `key`.
    pub fn try_take(
        self: &Arc<Self>,
        key: K,
        key_limit: Option<usize>,
        total_limit: usize,
    ) -> Result<Slot<K>, Full> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.1 >= total_limit {
            return Err(Full::Total);
        }
        let mine = held.0.get(&key).copied().unwrap_or(0);
        if key_limit.is_some_and(|limit| mine >= limit) {
            return Err(Full::Key);
        }
        held.0.insert(key.clone(), mine + 1);
        held.1 += 1;
        Ok(Slot {
            slots: self.clone(),
            key,
        })
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        held.1 = held.1.saturating_sub(1);
        if let Some(n) = held.0.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.0.remove(&self.key);
            }
        }
    }
}

/// `total` slots; each key holds at most `share` of them at once. A request
/// waits first in its keys' own queues (FIFO), then for a free slot, so a
/// storm on one key queues behind itself while other keys get through.
pub struct FairQueue<K> {
    share: usize,
    total: Arc<Semaphore>,
    queues: Mutex<HashMap<K, Arc<Semaphore>>>,
}

/// A request's turn: its keys' shares and one of the slots, given back
/// when dropped.
pub struct Turn<K: Eq + Hash + Clone> {
    permits: Vec<OwnedSemaphorePermit>,
    queue: Arc<FairQueue<K>>,
    keys: Vec<K>,
}

/// Remembered idle queues are pruned beyond this many.
const MAX_IDLE_QUEUES: usize = 4096;

impl<K: Eq + Hash + Clone> FairQueue<K> {
    pub fn new(total: usize, share: usize) -> Arc<Self> {
        Arc::new(FairQueue {
            share: share.clamp(1, total.max(1)),
            total: Arc::new(Semaphore::new(total)),
            queues: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for a turn (callers bound the wait with a deadline).
    pub async fn turn(self: &Arc<Self>, keys: Vec<K>) -> Turn<K> {
        let mut turn = Turn {
            permits: Vec::with_capacity(keys.len() + 1),
            queue: self.clone(),
            keys,
        };
        for key in turn.keys.clone() {
            let queue = {
                let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                if queues.len() >= MAX_IDLE_QUEUES {
                    queues.retain(|_, q| !self.is_idle(q));
                }
                queues
                    .entry(key)
                    .or_insert_with(|| Arc::new(Semaphore::new(self.share)))
                    .clone()
            };
            // The semaphores are never closed.
            if let Ok(permit) = queue.acquire_owned().await {
                turn.permits.push(permit);
            }
        }
        if let Ok(permit) = self.total.clone().acquire_owned().await {
            turn.permits.push(permit);
        }
        turn
    }

    fn is_idle(&self, queue: &Arc<Semaphore>) -> bool {
        Arc::strong_count(queue) == 1 && queue.available_permits() == self.share
    }
}

impl<K: Eq + Hash + Clone> Drop for Turn<K> {
    fn drop(&mut self) {
        self.permits.clear();
        let mut queues = self.queue.queues.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            if queues.get(key).is_some_and(|q| self.queue.is_idle(q)) {
                queues.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slots_bound_totals_and_keys() {
        let slots = KeyedSlots::new();
        let a1 = slots.try_take(1001, Some(2), 3).unwrap();
        let _a2 = slots.try_take(1001, Some(2), 3).unwrap();
        assert_eq!(slots.try_take(1001, Some(2), 3).err(), Some(Full::Key));
        let _m = slots.try_take(104, None, 3).unwrap();
        assert_eq!(slots.try_take(104, None, 3).err(), Some(Full::Total));
        drop(a1);
        let _a3 = slots.try_take(1001, Some(2), 3).unwrap();
    }

    #[tokio::test]
    async fn a_storm_on_one_key_leaves_room_for_others() {
        let queue = FairQueue::new(4, 2);
        let _a1 = queue.turn(vec!["a"]).await;
        let _a2 = queue.turn(vec!["a"]).await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), queue.turn(vec!["a"])).await;
        assert!(waiting.is_err(), "a third turn for the same key waits");
        let _b = tokio::time::timeout(Duration::from_secs(5), queue.turn(vec!["b"]))
            .await
            .expect("another key is served");
        drop(_a1);
        let _a3 = tokio::time::timeout(Duration::from_secs(5), queue.turn(vec!["a"]))
            .await
            .expect("served once the key's turn is given back");
    }

    #[tokio::test]
    async fn idle_queues_are_forgotten() {
        let queue = FairQueue::new(2, 1);
        drop(queue.turn(vec!["x", "y"]).await);
        assert!(queue.queues.lock().unwrap().is_empty());
    }
}
