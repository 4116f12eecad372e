//! Authentication mechanisms: `pam` (through the root auth helper), `none`
//! and `https_get` (HTTP basic auth against a web server over TLS).

use crate::core::config::HttpsGetConfig;
use std::path::Path;
use std::time::Duration;
use x2gobroker_protocol::client::nonblocking::Client;
use x2gobroker_protocol::{AuthRequest, Password, Request, Response};

/// Bound for one https_get round trip.
pub const HTTPS_GET_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for one PAM round trip through the helper.
pub const PAM_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMech {
    Pam,
    None,
    HttpsGet,
}

impl AuthMech {
    /// The fixed table of mechanisms (the original imports any module name).
    pub fn from_name(name: &str) -> Option<AuthMech> {
        match name {
            "pam" => Some(AuthMech::Pam),
            "none" => Some(AuthMech::None),
            "https_get" => Some(AuthMech::HttpsGet),
            _ => None,
        }
    }
}

/// What a mechanism needs besides the credentials.
pub struct AuthContext<'a> {
    pub authservice_socket: &'a Path,
    pub https_get: &'a HttpsGetConfig,
    pub client_address: Option<String>,
}

/// Decides, audits (crate::core::audit) and counts one authentication.
pub async fn authenticate(mech: AuthMech, user: &str, password: &str, ctx: &AuthContext<'_>) -> bool {
    use crate::core::audit::AuthOutcome;
    let (method, outcome) = match mech {
        AuthMech::None => ("none", AuthOutcome::Granted),
        AuthMech::Pam => ("pam", pam(user, password, ctx).await),
        AuthMech::HttpsGet => (
            "https_get",
            if https_get(user, password, ctx.https_get).await {
                AuthOutcome::Granted
            } else {
                AuthOutcome::Refused
            },
        ),
    };
    crate::core::audit::auth_decision(method, user, ctx.client_address.as_deref(), outcome);
    outcome == AuthOutcome::Granted
}

async fn pam(user: &str, password: &str, ctx: &AuthContext<'_>) -> crate::core::audit::AuthOutcome {
    use crate::core::audit::AuthOutcome;
    use x2gobroker_protocol::client::ClientError;
    use x2gobroker_protocol::ErrorKind;
    // As the original: both must be non-empty before PAM is asked.
    if user.is_empty() || password.is_empty() {
        return AuthOutcome::Refused;
    }
    let mut client = match Client::connect(ctx.authservice_socket, PAM_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => {
            log::error!(
                "pam: cannot reach the auth helper at {}: {e}",
                ctx.authservice_socket.display()
            );
            return AuthOutcome::Unavailable;
        }
    };
    let request = Request::Authenticate(AuthRequest {
        user: user.to_owned(),
        password: Password::new(password.to_owned()),
        service: None,
        client_address: ctx.client_address.clone(),
    });
    match client.call(&request).await {
        Ok(Response::Authenticated) => AuthOutcome::Granted,
        Ok(other) => {
            log::error!("pam: unexpected answer from the auth helper: {other:?}");
            AuthOutcome::Unavailable
        }
        Err(e) => {
            log::info!("pam: authentication of user {user} refused: {e}");
            match e {
                ClientError::Refused(r) if matches!(r.kind, ErrorKind::Throttled { .. }) => {
                    AuthOutcome::Throttled
                }
                ClientError::Refused(r) if r.kind == ErrorKind::AuthenticationFailed => AuthOutcome::Refused,
                _ => AuthOutcome::Unavailable,
            }
        }
    }
}

/// Standard base64 with padding, as in an HTTP basic-auth header.
fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

async fn https_get(user: &str, password: &str, cfg: &HttpsGetConfig) -> bool {
    let url = format!("https://{}:{}{}", cfg.host, cfg.port, cfg.path);
    let auth = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
    let host = cfg.host.clone();
    let user_name = user.to_owned();
    // Ok(status) for any HTTP answer, Err(reason) when there was none.
    let result = tokio::task::spawn_blocking(move || {
        let agent = ureq::AgentBuilder::new().timeout(HTTPS_GET_TIMEOUT).build();
        match agent
            .get(&url)
            .set("Host", &host)
            .set("User-Agent", "X2Go Session Broker")
            .set("Authorization", &auth)
            .call()
        {
            Ok(resp) => Ok(resp.status()),
            Err(ureq::Error::Status(code, _)) => Ok(code),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    match result {
        Ok(Ok(200)) => true,
        Ok(Ok(code)) => {
            log::info!("https_get: user {user_name} refused with HTTP status {code}");
            false
        }
        Ok(Err(e)) => {
            log::error!("https_get: request failed: {e}");
            false
        }
        Err(e) => {
            log::error!("https_get: worker failed: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_base64() {
        assert_eq!(AuthMech::from_name("pam"), Some(AuthMech::Pam));
        assert_eq!(AuthMech::from_name("none"), Some(AuthMech::None));
        assert_eq!(AuthMech::from_name("https_get"), Some(AuthMech::HttpsGet));
        assert_eq!(AuthMech::from_name("testsuite"), None);
        assert_eq!(base64(b"user:pw"), "dXNlcjpwdw==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b""), "");
    }

    #[tokio::test]
    async fn pam_without_helper_fails_closed() {
        let cfg = HttpsGetConfig {
            host: "localhost".into(),
            port: "1".into(),
            path: "/".into(),
        };
        let ctx = AuthContext {
            authservice_socket: Path::new("/nonexistent/socket"),
            https_get: &cfg,
            client_address: None,
        };
        assert!(!authenticate(AuthMech::Pam, "u", "p", &ctx).await);
        assert!(!authenticate(AuthMech::Pam, "u", "", &ctx).await);
        assert!(authenticate(AuthMech::None, "", "", &ctx).await);
        // Nothing listens on port 1: refused, not hung.
        assert!(!authenticate(AuthMech::HttpsGet, "u", "p", &ctx).await);
    }
}
