//! Which client connections the daemon holds: at most `max-connections`,
//! at most `max-connections-per-client` from one address. When a limit is
//! reached, the oldest connection without a request in flight (idle, or
//! still sending its header) is closed to make room; only when every held
//! connection is busy is the new one refused. So idle or half-sent
//! connections can neither exhaust descriptors nor lock out a client that
//! sends a whole request.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::Notify;

/// One held connection, shared by its task and the registry.
pub struct Connection {
    in_flight: AtomicUsize,
    last_active: Mutex<Instant>,
    evicted: AtomicBool,
    /// Woken when the registry closes this connection to make room.
    pub evict: Notify,
}

impl Connection {
    fn new() -> Connection {
        Connection {
            in_flight: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    fn touch(&self) {
        *lock(&self.last_active) = Instant::now();
    }

    pub fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// When the connection last started or finished a request (or was accepted).
    pub fn last_active(&self) -> Instant {
        *lock(&self.last_active)
    }

    /// Marks a request in flight until the guard drops.
    pub fn request(self: &Arc<Self>) -> RequestInFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        RequestInFlight(self.clone())
    }
}

pub struct RequestInFlight(Arc<Connection>);

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Held {
    ip: IpAddr,
    connection: Arc<Connection>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// By admission order: the first idle entry is the oldest.
    held: BTreeMap<u64, Held>,
    /// Held and not evicted, per address and overall.
    per_ip: HashMap<IpAddr, usize>,
    live: usize,
}

impl State {
    fn forget(&mut self, ip: IpAddr) {
        self.live = self.live.saturating_sub(1);
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Closes the oldest idle connection (of `ip` only, if given).
    fn evict_oldest_idle(&mut self, ip: Option<IpAddr>) -> bool {
        let victim = self.held.values().find(|h| {
            ip.is_none_or(|ip| h.ip == ip)
                && !h.connection.evicted.load(Ordering::Acquire)
                && !h.connection.is_busy()
        });
        let Some(victim) = victim else {
            return false;
        };
        let (victim_ip, connection) = (victim.ip, victim.connection.clone());
        connection.evicted.store(true, Ordering::Release);
        connection.evict.notify_one();
        self.forget(victim_ip);
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every connection of this address is busy.
    PerClient,
    /// Every connection is busy.
    Overall,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PerClient => "per_client",
            Refusal::Overall => "overall",
        }
    }
}

pub struct Admission {
    state: Mutex<State>,
}

/// The connection limits a new connection is admitted under (those in
/// force when it arrives: a reload may change them).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max: usize,
    pub per_client: usize,
}

/// A held connection's place; dropping it frees the place.
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    pub connection: Arc<Connection>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = lock(&self.admission.state);
        if let Some(held) = state.held.remove(&self.id) {
            if !held.connection.evicted.load(Ordering::Acquire) {
                state.forget(held.ip);
            }
        }
    }
}

/// What admitting one connection did.
pub struct Admitted {
    pub ticket: Ticket,
    /// Idle connections closed to make room.
    pub evicted: usize,
}

impl Admission {
    pub fn new() -> Arc<Admission> {
        Arc::new(Admission {
            state: Mutex::new(State::default()),
        })
    }

    pub fn open(&self) -> usize {
        lock(&self.state).live
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr, limits: Limits) -> Result<Admitted, Refusal> {
        let mut state = lock(&self.state);
        let mut evicted = 0;
        if state.per_ip.get(&ip).copied().unwrap_or(0) >= limits.per_client.max(1) {
            if !state.evict_oldest_idle(Some(ip)) {
                return Err(Refusal::PerClient);
            }
            evicted += 1;
        }
        if state.live >= limits.max.max(1) {
            if !state.evict_oldest_idle(None) {
                return Err(Refusal::Overall);
            }
            evicted += 1;
        }
        let id = state.next_id;
        state.next_id += 1;
        let connection = Arc::new(Connection::new());
        state.held.insert(
            id,
            Held {
                ip,
                connection: connection.clone(),
            },
        );
        *state.per_ip.entry(ip).or_insert(0) += 1;
        state.live += 1;
        Ok(Admitted {
            ticket: Ticket {
                admission: self.clone(),
                id,
                connection,
            },
            evicted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn idle_connections_make_room_busy_ones_do_not() {
        let admission = Admission::new();
        let limits = Limits {
            max: 3,
            per_client: 2,
        };
        let a1 = admission.admit(ip(1), limits).unwrap().ticket;
        let busy = a1.connection.request();
        let a2 = admission.admit(ip(1), limits).unwrap().ticket;
        // Third from the same address: its oldest idle one (a2) goes.
        let a3 = admission.admit(ip(1), limits).unwrap();
        assert_eq!(a3.evicted, 1);
        assert!(a2.connection.evicted.load(Ordering::Acquire));
        assert!(!a1.connection.evicted.load(Ordering::Acquire), "busy one kept");
        let _a3_busy = a3.ticket.connection.request();
        // Both of this address's connections busy: refused.
        assert_eq!(admission.admit(ip(1), limits).err(), Some(Refusal::PerClient));
        let b1 = admission.admit(ip(2), limits).unwrap().ticket;
        // Full overall: b1 is the only idle one.
        let b2 = admission.admit(ip(3), limits).unwrap();
        assert_eq!(b2.evicted, 1);
        assert!(b1.connection.evicted.load(Ordering::Acquire));
        let _b2_busy = b2.ticket.connection.request();
        assert_eq!(admission.admit(ip(4), limits).err(), Some(Refusal::Overall));
        drop(busy);
        drop(a1);
        assert_eq!(admission.open(), 2);
        drop((a2, b1));
        assert_eq!(admission.open(), 2, "evicted ones were already off the count");
        assert!(admission.admit(ip(4), limits).is_ok());
    }
}
