//! The daemon's counters for `x2gobroker-ctl status` and the metrics
//! endpoint: requests (by task and status, with latency histograms), auth
//! decisions, connections and the front end's limits, the helper, agent
//! calls, configuration generation and the last reload error. One
//! process-wide instance ([`STATS`]); [`DaemonStats::metrics_text`] renders
//! them all as OpenMetrics text, which both outputs show.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct DaemonStats {
    started: OnceLock<Instant>,
    requests: AtomicU64,
    in_flight: AtomicU64,
    auth_successes: AtomicU64,
    auth_failures: AtomicU64,
    auth_throttled: AtomicU64,
    config_generation: AtomicU64,
    last_reload_error: Mutex<Option<String>>,
    /// Per task label: answers by status and the latency histogram.
    tasks: Mutex<BTreeMap<&'static str, TaskStats>>,
    /// Per agent task: calls, failures, latency.
    agents: Mutex<BTreeMap<String, AgentStats>>,
    pub connections: ConnectionStats,
    pub helper: HelperStats,
}

/// Connections of the front door (crate::daemon::admission).
pub struct ConnectionStats {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    /// Refused because every connection of the address was busy.
    pub refused_per_client: AtomicU64,
    /// Refused because every connection was busy.
    pub refused_overall: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub evicted_idle: AtomicU64,
    /// Closed after keepalive-timeout without a request.
    pub closed_idle: AtomicU64,
    /// Bodies not read within body-read-timeout.
    pub body_timeouts: AtomicU64,
    /// Requests not answered within request-timeout.
    pub request_timeouts: AtomicU64,
}

/// PAM calls through the auth helper (crate::core::auth_gate).
pub struct HelperStats {
    /// 1 after the helper answered, 0 after it could not be reached.
    pub up: AtomicU64,
    pub in_flight: AtomicU64,
    /// Waiting for a slot.
    pub queued: AtomicU64,
    pub calls: AtomicU64,
    pub unreachable: AtomicU64,
}

/// Upper bounds (seconds) of the latency histograms.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default, Clone)]
struct Histogram {
    /// Cumulative counts are computed when rendered; these are per bucket,
    /// the last one for everything above the largest bound.
    counts: [u64; BUCKETS.len() + 1],
    sum_micros: u64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum_micros = self.sum_micros.saturating_add(elapsed.as_micros() as u64);
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i];
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_micros as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct TaskStats {
    by_status: BTreeMap<u16, u64>,
    latency: Histogram,
}

#[derive(Default)]
struct AgentStats {
    failures: u64,
    latency: Histogram,
}

/// The task label of a request: the broker tasks by name, everything else
/// in a few fixed groups (client values never become label values).
pub fn task_label(task: &str) -> &'static str {
    const TASKS: [&str; 5] = [
        "listsessions",
        "selectsession",
        "setpass",
        "testcon",
        "listprofiles",
    ];
    match TASKS.iter().find(|t| **t == task) {
        Some(t) => t,
        None if task.is_empty() => "none",
        None => "other",
    }
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
    tasks: Mutex::new(BTreeMap::new()),
    agents: Mutex::new(BTreeMap::new()),
    connections: ConnectionStats {
        open: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        refused_per_client: AtomicU64::new(0),
        refused_overall: AtomicU64::new(0),
        evicted_idle: AtomicU64::new(0),
        closed_idle: AtomicU64::new(0),
        body_timeouts: AtomicU64::new(0),
        request_timeouts: AtomicU64::new(0),
    },
    helper: HelperStats {
        up: AtomicU64::new(1),
        in_flight: AtomicU64::new(0),
        queued: AtomicU64::new(0),
        calls: AtomicU64::new(0),
        unreachable: AtomicU64::new(0),
    },
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

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

    /// One answered request of `task` (see [`task_label`]).
    pub fn request_answered(&self, task: &'static str, status: u16, elapsed: Duration) {
        let mut tasks = lock(&self.tasks);
        let entry = tasks.entry(task).or_default();
        *entry.by_status.entry(status).or_insert(0) += 1;
        entry.latency.observe(elapsed);
    }

    /// One broker agent call (`task` is the agent task, a fixed name).
    pub fn agent_call(&self, task: &str, ok: bool, elapsed: Duration) {
        let mut agents = lock(&self.agents);
        if !agents.contains_key(task) {
            agents.insert(task.to_owned(), AgentStats::default());
        }
        if let Some(entry) = agents.get_mut(task) {
            if !ok {
                entry.failures += 1;
            }
            entry.latency.observe(elapsed);
        }
    }

    /// Everything as OpenMetrics text (ends with `# EOF`).
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# TYPE {name} {kind}\n# HELP {name} {help}");
        };
        family(
            &mut out,
            "x2gobroker_uptime_seconds",
            "gauge",
            "Seconds since start.",
        );
        let _ = writeln!(out, "x2gobroker_uptime_seconds {}", self.uptime_secs());
        family(
            &mut out,
            "x2gobroker_config_generation",
            "gauge",
            "Configurations loaded.",
        );
        let _ = writeln!(
            out,
            "x2gobroker_config_generation {}",
            load(&self.config_generation)
        );
        family(
            &mut out,
            "x2gobroker_requests_in_flight",
            "gauge",
            "HTTP requests being answered.",
        );
        let _ = writeln!(out, "x2gobroker_requests_in_flight {}", self.in_flight());
        {
            let tasks = lock(&self.tasks);
            family(
                &mut out,
                "x2gobroker_requests",
                "counter",
                "HTTP requests answered, by task and status.",
            );
            for (task, stats) in tasks.iter() {
                for (status, n) in &stats.by_status {
                    let _ = writeln!(
                        out,
                        "x2gobroker_requests_total{{task=\"{task}\",status=\"{status}\"}} {n}"
                    );
                }
            }
            family(
                &mut out,
                "x2gobroker_request_duration_seconds",
                "histogram",
                "HTTP request latency by task.",
            );
            for (task, stats) in tasks.iter() {
                stats.latency.render(
                    &mut out,
                    "x2gobroker_request_duration_seconds",
                    &format!("task=\"{task}\""),
                );
            }
        }
        family(
            &mut out,
            "x2gobroker_auth",
            "counter",
            "Authentication decisions by outcome.",
        );
        for (outcome, counter) in [
            ("granted", &self.auth_successes),
            ("refused", &self.auth_failures),
            ("throttled", &self.auth_throttled),
        ] {
            let _ = writeln!(
                out,
                "x2gobroker_auth_total{{outcome=\"{outcome}\"}} {}",
                load(counter)
            );
        }
        let c = &self.connections;
        family(
            &mut out,
            "x2gobroker_connections_open",
            "gauge",
            "Client connections held.",
        );
        let _ = writeln!(out, "x2gobroker_connections_open {}", load(&c.open));
        family(
            &mut out,
            "x2gobroker_connections_accepted",
            "counter",
            "Client connections accepted.",
        );
        let _ = writeln!(out, "x2gobroker_connections_accepted_total {}", load(&c.accepted));
        family(
            &mut out,
            "x2gobroker_connections_refused",
            "counter",
            "Connections refused by a limit.",
        );
        for (limit, counter) in [
            ("per_client", &c.refused_per_client),
            ("overall", &c.refused_overall),
        ] {
            let _ = writeln!(
                out,
                "x2gobroker_connections_refused_total{{limit=\"{limit}\"}} {}",
                load(counter)
            );
        }
        family(
            &mut out,
            "x2gobroker_connections_closed",
            "counter",
            "Connections closed by the front end's limits.",
        );
        for (reason, counter) in [
            ("evicted_idle", &c.evicted_idle),
            ("keepalive_timeout", &c.closed_idle),
            ("body_read_timeout", &c.body_timeouts),
            ("request_timeout", &c.request_timeouts),
        ] {
            let _ = writeln!(
                out,
                "x2gobroker_connections_closed_total{{reason=\"{reason}\"}} {}",
                load(counter)
            );
        }
        let h = &self.helper;
        family(
            &mut out,
            "x2gobroker_helper_up",
            "gauge",
            "1 if the auth helper answered the last call.",
        );
        let _ = writeln!(out, "x2gobroker_helper_up {}", load(&h.up));
        family(
            &mut out,
            "x2gobroker_helper_calls_in_flight",
            "gauge",
            "PAM calls at the helper.",
        );
        let _ = writeln!(out, "x2gobroker_helper_calls_in_flight {}", load(&h.in_flight));
        family(
            &mut out,
            "x2gobroker_helper_calls_queued",
            "gauge",
            "PAM calls waiting for a slot.",
        );
        let _ = writeln!(out, "x2gobroker_helper_calls_queued {}", load(&h.queued));
        family(
            &mut out,
            "x2gobroker_helper_calls",
            "counter",
            "PAM calls sent to the helper.",
        );
        let _ = writeln!(out, "x2gobroker_helper_calls_total {}", load(&h.calls));
        family(
            &mut out,
            "x2gobroker_helper_unreachable",
            "counter",
            "Calls that could not reach the helper.",
        );
        let _ = writeln!(
            out,
            "x2gobroker_helper_unreachable_total {}",
            load(&h.unreachable)
        );
        {
            let agents = lock(&self.agents);
            family(
                &mut out,
                "x2gobroker_agent_call_failures",
                "counter",
                "Broker agent calls that failed.",
            );
            for (task, stats) in agents.iter() {
                let _ = writeln!(
                    out,
                    "x2gobroker_agent_call_failures_total{{task=\"{task}\"}} {}",
                    stats.failures
                );
            }
            family(
                &mut out,
                "x2gobroker_agent_call_duration_seconds",
                "histogram",
                "Broker agent calls and their latency.",
            );
            for (task, stats) in agents.iter() {
                stats.latency.render(
                    &mut out,
                    "x2gobroker_agent_call_duration_seconds",
                    &format!("task=\"{task}\""),
                );
            }
        }
        out.push_str("# EOF\n");
        out
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
            metrics: self.metrics_text(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_fixed() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(70));
        h.observe(Duration::from_secs(100));
        let mut out = String::new();
        h.render(&mut out, "m", "task=\"t\"");
        assert!(out.contains("m_bucket{task=\"t\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("m_bucket{task=\"t\",le=\"0.1\"} 2\n"), "{out}");
        assert!(out.contains("m_bucket{task=\"t\",le=\"30\"} 2\n"), "{out}");
        assert!(out.contains("m_bucket{task=\"t\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("m_count{task=\"t\"} 3\n"), "{out}");
        assert_eq!(task_label("listsessions"), "listsessions");
        assert_eq!(task_label("x\"}"), "other");
        assert_eq!(task_label(""), "none");
        assert!(STATS.metrics_text().ends_with("# EOF\n"));
    }
}
