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

/// Longest client value shown in a log line; the rest is cut (a 65,000
/// character user name must not fill the log).
pub const SHOWN_MAX: usize = 64;

/// A value a client sent, as it may appear in a log line: quoted, with
/// control characters and quotes escaped (no forged lines), and cut at
/// [`SHOWN_MAX`] characters.
pub fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(SHOWN_MAX)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if value.chars().count() > SHOWN_MAX {
        out.push_str(&format!("…({} bytes)", value.len()));
    }
    format!("\"{out}\"")
}

/// Logs and counts one decision. User names and addresses come from
/// clients: they appear through [`shown`].
pub fn auth_decision(method: &str, user: &str, client: Option<&str>, outcome: AuthOutcome) {
    crate::core::stats::STATS.count_auth(outcome);
    let client = client.unwrap_or("-");
    let line = format!(
        "auth method={method} user={} client={} outcome={}",
        shown(user),
        shown(client),
        outcome.as_str()
    );
    // Refusals come in storms: those lines are rate-limited per outcome
    // (with the count of what was left out); every decision is counted.
    let kind = match outcome {
        AuthOutcome::Granted => return log::info!(target: AUDIT_TARGET, "{line}"),
        AuthOutcome::Refused => "auth outcome=refused",
        AuthOutcome::Throttled => "auth outcome=throttled",
        AuthOutcome::Unavailable => "auth outcome=unavailable",
    };
    crate::core::log_limit::log(kind, AUDIT_TARGET, log::Level::Warn, || line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_values_are_escaped_and_bounded() {
        assert_eq!(shown("xbt-alice"), "\"xbt-alice\"");
        assert_eq!(shown("a\nforged line\r\"q\""), "\"a\\nforged line\\r\\\"q\\\"\"");
        let long = "x".repeat(65_000);
        let s = shown(&long);
        assert!(s.len() < 100 && s.ends_with("…(65000 bytes)\""), "{s}");
    }
}
