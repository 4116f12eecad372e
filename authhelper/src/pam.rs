//! One PAM transaction per request: `pam_authenticate`, then `pam_acct_mgmt`
//! (so locked, expired and must-change-password accounts are refused), then
//! for `setpass` `pam_chauthtok` as the user's own `passwd` runs it.
//! Runs on a blocking thread; never logs or returns the password.

use pam_client::{ConversationHandler, ErrorCode, Flag};
use std::ffi::{CStr, CString};
use x2gobroker_protocol::{AuthRequest, Password};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PamOutcome {
    Success,
    /// PAM said no; the reason goes to the audit trail only.
    Refused(String),
    /// PAM could not decide (broken stack, module error).
    Error(String),
    /// The current password was right; PAM refused the new one (its reason).
    NewPasswordRefused(String),
}

/// Answers PAM's prompts: the user name for echoing prompts, the password
/// for hidden ones; while changing (`new_password` set), the current one
/// first, then the new one. PAM's error messages are kept as the reason.
/// Dropping it wipes the passwords (`Password` zeroizes).
struct Conversation {
    user: String,
    password: Password,
    new_password: Option<Password>,
    asked_current: bool,
    errors: Vec<String>,
}

impl ConversationHandler for Conversation {
    fn prompt_echo_on(&mut self, _prompt: &CStr) -> Result<CString, ErrorCode> {
        CString::new(self.user.as_str()).map_err(|_| ErrorCode::CONV_ERR)
    }

    // The CString is copied by pam-client into PAM's own buffer (which PAM
    // wipes); pam-client then drops our CString, which std clears only
    // partially. That short-lived heap copy is a known limit of the binding.
    fn prompt_echo_off(&mut self, _prompt: &CStr) -> Result<CString, ErrorCode> {
        let secret = self.new_password.as_ref().filter(|_| self.asked_current);
        self.asked_current |= self.new_password.is_some();
        CString::new(secret.unwrap_or(&self.password).expose()).map_err(|_| ErrorCode::CONV_ERR)
    }

    fn text_info(&mut self, msg: &CStr) {
        log::debug!("PAM info for {:?}: {}", self.user, msg.to_string_lossy());
    }

    fn error_msg(&mut self, msg: &CStr) {
        log::debug!("PAM error message for {:?}: {}", self.user, msg.to_string_lossy());
        self.errors.push(msg.to_string_lossy().into_owned());
    }
}

/// `service` is the allow-listed one the request named (or the default);
/// `new_password` is set for `setpass`.
pub fn authenticate(service: &str, request: AuthRequest, new_password: Option<Password>) -> PamOutcome {
    let AuthRequest {
        user,
        password,
        client_address,
        ..
    } = request;
    let conversation = Conversation {
        user: user.clone(),
        password,
        new_password: None,
        asked_current: false,
        errors: Vec::new(),
    };
    let mut context = match pam_client::Context::new(service, Some(&user), conversation) {
        Ok(c) => c,
        Err(e) => return PamOutcome::Error(format!("pam_start({service}): {e}")),
    };
    if let Some(address) = client_address.as_deref() {
        if let Err(e) = context.set_rhost(Some(address)) {
            return PamOutcome::Error(format!("setting PAM_RHOST: {e}"));
        }
    }
    let flags = Flag::DISALLOW_NULL_AUTHTOK | Flag::SILENT;
    let outcome = match context.authenticate(flags) {
        Err(e) => refusal("authentication", e.code()),
        Ok(()) => match context.acct_mgmt(flags) {
            Err(e) => refusal("account", e.code()),
            Ok(()) if new_password.is_none() => PamOutcome::Success,
            // Not silent: PAM's reasons for refusing a new password are for the user.
            Ok(()) => {
                context.conversation_mut().new_password = new_password;
                match context.chauthtok(Flag::CHANGE_EXPIRED_AUTHTOK) {
                    Ok(()) => PamOutcome::Success,
                    Err(e) => match context.conversation().errors.join("\n") {
                        reason if reason.is_empty() => PamOutcome::NewPasswordRefused(e.to_string()),
                        reason => PamOutcome::NewPasswordRefused(reason),
                    },
                }
            }
        },
    };
    // Ends the transaction and drops the conversation, wiping the password.
    drop(context);
    outcome
}

fn refusal(stage: &str, code: ErrorCode) -> PamOutcome {
    let reason = match code {
        ErrorCode::AUTH_ERR => "wrong credentials",
        ErrorCode::USER_UNKNOWN => "unknown user",
        ErrorCode::ACCT_EXPIRED => "account expired",
        ErrorCode::NEW_AUTHTOK_REQD => "password expired (must be changed)",
        ErrorCode::PERM_DENIED => "permission denied",
        ErrorCode::MAXTRIES => "too many tries",
        ErrorCode::CRED_INSUFFICIENT => "insufficient credentials",
        ErrorCode::AUTHINFO_UNAVAIL => {
            return PamOutcome::Error(format!("{stage}: authentication information unavailable"))
        }
        ErrorCode::SYSTEM_ERR | ErrorCode::BUF_ERR | ErrorCode::SERVICE_ERR | ErrorCode::ABORT => {
            return PamOutcome::Error(format!("{stage}: PAM error {code:?}"))
        }
        other => return PamOutcome::Refused(format!("{stage}: {other:?}")),
    };
    PamOutcome::Refused(format!("{stage}: {reason}"))
}
