//! The audit trail of the daemon: one line per authentication decision with
//! the mechanism, user, client address and outcome (log target `audit`).
//! Nothing here ever sees a password.

/// Log target of audit lines, so a log reader can pick them out.
pub const AUDIT_TARGET: &str = "audit";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    Granted,
    /// Wrong credentials, unknown user, refused cookie.
    Refused,
    /// The helper refused because of recent failures.
    Throttled,
    /// Could not be decided (helper unreachable, remote server down): refused.
    Unavailable,
}

impl AuthOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthOutcome::Granted => "granted",
            AuthOutcome::Refused => "refused",
            AuthOutcome::Throttled => "throttled",
            AuthOutcome::Unavailable => "unavailable",
        }
    }
}

/// Logs and counts one decision. User names and addresses come from
/// clients: they are quoted with escapes so they cannot forge log lines.
pub fn auth_decision(method: &str, user: &str, client: Option<&str>, outcome: AuthOutcome) {
    crate::core::stats::STATS.count_auth(outcome);
    let client = client.unwrap_or("-");
    let line = format!(
        "auth method={method} user=\"{}\" client=\"{}\" outcome={}",
        user.escape_debug(),
        client.escape_debug(),
        outcome.as_str()
    );
    match outcome {
        AuthOutcome::Granted => log::info!(target: AUDIT_TARGET, "{line}"),
        _ => log::warn!(target: AUDIT_TARGET, "{line}"),
    }
}
