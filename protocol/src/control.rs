//! The daemon's local control socket (admin diagnostics for
//! `x2gobroker-ctl`): one request, one response, framed like the helper
//! protocol ([`crate::frame`]). Not reachable over HTTP.

use serde::{Deserialize, Serialize};

pub use crate::paths::{CONTROL_SOCKET_ENV, DEFAULT_CONTROL_SOCKET};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResponse {
    Status(DaemonStatus),
    /// The caller may not ask (not root, not in the admin group), or the
    /// request was malformed.
    Denied(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    /// HTTP requests since start, and those being answered now.
    pub requests: u64,
    pub in_flight: u64,
    pub auth_successes: u64,
    pub auth_failures: u64,
    pub auth_throttled: u64,
    /// 1 after start, +1 for every successful reload.
    pub config_generation: u64,
    /// The error of the last failed reload, if any reload ever failed.
    pub last_reload_error: Option<String>,
    /// Where cookies and key removals are kept (`[global] state-store`).
    pub state_store: String,
    /// "ok", or why the store does not work now.
    pub state_store_health: String,
    /// Key removals waiting in the store (claimed ones included); None
    /// when the store could not say.
    pub pending_key_removals: Option<u64>,
    /// Every counter as OpenMetrics text: what the metrics endpoint serves.
    pub metrics: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode};

    #[test]
    fn requests_and_responses_round_trip() {
        let frame = encode(&ControlRequest::Status).unwrap();
        assert_eq!(decode::<ControlRequest>(&frame).unwrap(), ControlRequest::Status);
        let status = ControlResponse::Status(DaemonStatus {
            version: "0.1.0".into(),
            pid: 42,
            uptime_secs: 7,
            requests: 3,
            in_flight: 1,
            auth_successes: 2,
            auth_failures: 1,
            auth_throttled: 0,
            config_generation: 4,
            last_reload_error: Some("x2gobroker.conf: line 3: bad".into()),
            state_store: "redis redis://127.0.0.1:6379/0".into(),
            state_store_health: "ok".into(),
            pending_key_removals: Some(2),
            metrics: "x2gobroker_uptime_seconds 7\n# EOF\n".into(),
        });
        let frame = encode(&status).unwrap();
        assert_eq!(decode::<ControlResponse>(&frame).unwrap(), status);
        let denied = ControlResponse::Denied("no".into());
        assert_eq!(
            decode::<ControlResponse>(&encode(&denied).unwrap()).unwrap(),
            denied
        );
    }

    #[test]
    fn a_truncated_or_foreign_frame_is_refused() {
        let frame = encode(&ControlResponse::Denied("no".into())).unwrap();
        assert!(decode::<ControlResponse>(&frame[..frame.len() - 1]).is_err());
        assert!(decode::<ControlRequest>(&frame).is_err());
    }
}
