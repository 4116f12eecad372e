//! `setpass`: a user changes their own password. The root helper does it
//! through PAM: it checks the current password like a login (throttled,
//! audited), then runs `pam_chauthtok` as the user's own `passwd` would, so
//! the system's password rules apply and PAM's reason for refusing a new
//! password reaches the user. The original lists the task but never
//! implemented it.

use crate::core::audit::{self, AuthOutcome};
use crate::core::authmech::PAM_TIMEOUT;
use std::path::Path;
use x2gobroker_protocol::client::nonblocking::Client;
use x2gobroker_protocol::client::ClientError;
use x2gobroker_protocol::{AuthRequest, ErrorKind, Password, Request, Response};

/// Longest reason shown to a client (PAM messages are a line or two).
const REASON_MAX: usize = 240;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetpassOutcome {
    Changed,
    /// The current password was right; the new one was refused (why, for
    /// the user: one printable line).
    NewPasswordRefused(String),
    /// Wrong current password, unknown user, throttled: answered like a
    /// refused login.
    Denied,
    /// The helper could not be asked or PAM could not decide.
    Unavailable,
}

/// What a password change needs besides the passwords.
pub struct SetpassRequest<'a> {
    pub helper_socket: &'a Path,
    pub user: &'a str,
    pub client_address: Option<String>,
}

/// Asks the helper to change `user`'s password from `current` to `new`.
pub async fn change_password(req: &SetpassRequest<'_>, current: Password, new: Password) -> SetpassOutcome {
    if req.user.is_empty() || current.is_empty() {
        return SetpassOutcome::Denied;
    }
    if new.is_empty() {
        return SetpassOutcome::NewPasswordRefused("No new password was given.".into());
    }
    // Through the same fair, bounded gate as logins: setpass checks the
    // current password with PAM too.
    let outcome = crate::core::auth_gate::through_gate(
        req.client_address.as_deref(),
        ask_helper(req, current, new),
        // Only a checked current password makes the client a known good one.
        |outcome| {
            !matches!(
                outcome,
                SetpassOutcome::Changed | SetpassOutcome::NewPasswordRefused(_)
            )
        },
    )
    .await;
    let decision = match &outcome {
        SetpassOutcome::Changed => AuthOutcome::Granted,
        SetpassOutcome::NewPasswordRefused(_) | SetpassOutcome::Denied => AuthOutcome::Refused,
        SetpassOutcome::Unavailable => AuthOutcome::Unavailable,
    };
    audit::auth_decision("pam-setpass", req.user, req.client_address.as_deref(), decision);
    outcome
}

async fn ask_helper(req: &SetpassRequest<'_>, current: Password, new: Password) -> SetpassOutcome {
    let mut client = match Client::connect(req.helper_socket, PAM_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => {
            log::error!(
                "setpass: cannot reach the auth helper at {}: {e}",
                req.helper_socket.display()
            );
            return SetpassOutcome::Unavailable;
        }
    };
    let request = Request::ChangePassword(
        AuthRequest {
            user: req.user.to_owned(),
            password: current,
            service: None,
            client_address: req.client_address.clone(),
        },
        new,
    );
    match client.call(&request).await {
        Ok(Response::PasswordChanged) => SetpassOutcome::Changed,
        Ok(other) => {
            log::error!("setpass: unexpected answer from the auth helper: {other:?}");
            SetpassOutcome::Unavailable
        }
        Err(ClientError::Refused(r)) if r.kind == ErrorKind::NewPasswordRefused => {
            SetpassOutcome::NewPasswordRefused(one_line(&r.message))
        }
        Err(ClientError::Refused(r))
            if matches!(
                r.kind,
                ErrorKind::AuthenticationFailed | ErrorKind::Throttled { .. }
            ) =>
        {
            log::info!("setpass for user {} refused: {r}", audit::shown(req.user));
            SetpassOutcome::Denied
        }
        Err(e) => {
            log::error!("setpass for user {}: {e}", audit::shown(req.user));
            SetpassOutcome::Unavailable
        }
    }
}

/// PAM's messages (one a line; pam_unix repeats its reason for each of its
/// tries) as one printable line of bounded length: it goes into line-based
/// answers.
pub fn one_line(text: &str) -> String {
    let mut messages: Vec<String> = Vec::new();
    for message in text.lines() {
        let words: Vec<&str> = message
            .split(|c: char| c.is_whitespace() || c.is_control())
            .collect();
        let message = words
            .into_iter()
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !message.is_empty() && !messages.contains(&message) {
            messages.push(message);
        }
    }
    messages.join(" ").chars().take(REASON_MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_bounded_line() {
        assert_eq!(
            one_line("BAD PASSWORD: it is\tWAY too short\r\n\u{1b}[31m\nBAD PASSWORD: it is WAY too short"),
            "BAD PASSWORD: it is WAY too short [31m"
        );
        assert_eq!(one_line(&"x".repeat(5000)).len(), REASON_MAX);
    }
}
