//! Authentication mechanisms: `pam` (through the root auth helper), `none`
//! and `https_get` (HTTP basic auth against a web server over TLS).

use crate::core::config::HttpsGetConfig;
use std::path::Path;
use std::sync::atomic::Ordering;
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
    // As the original: both must be non-empty before PAM is asked.
    if user.is_empty() || password.is_empty() {
        return AuthOutcome::Refused;
    }
    // A bounded number of calls in flight, fair between clients
    // (crate::core::auth_gate); waiting counts toward the request deadline.
    let call = pam_call(user, password, ctx);
    crate::core::auth_gate::through_gate(ctx.client_address.as_deref(), call, |outcome| {
        *outcome != AuthOutcome::Granted
    })
    .await
}

async fn pam_call(user: &str, password: &str, ctx: &AuthContext<'_>) -> crate::core::audit::AuthOutcome {
    use crate::core::audit::AuthOutcome;
    use x2gobroker_protocol::client::ClientError;
    use x2gobroker_protocol::ErrorKind;
    let helper = &crate::core::stats::STATS.helper;
    let mut client = match Client::connect(ctx.authservice_socket, PAM_TIMEOUT).await {
        Ok(c) => {
            helper.up.store(1, Ordering::Relaxed);
            c
        }
        Err(e) => {
            helper.up.store(0, Ordering::Relaxed);
            helper.unreachable.fetch_add(1, Ordering::Relaxed);
            crate::core::log_limit::log(
                "pam: helper unreachable",
                module_path!(),
                log::Level::Error,
                || {
                    format!(
                        "pam: cannot reach the auth helper at {}: {e}",
                        ctx.authservice_socket.display()
                    )
                },
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
            crate::core::log_limit::log("pam: refused", module_path!(), log::Level::Info, || {
                format!(
                    "pam: authentication of user {} refused: {e}",
                    crate::core::audit::shown(user)
                )
            });
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

/// As the original: a GET of `path` over TLS (certificate checked against
/// the system's CA certificates, or SSL_CERT_FILE / SSL_CERT_DIR), `Host`
/// set to the configured host, basic auth; only status 200 grants, and
/// redirects are not followed.
async fn https_get(user: &str, password: &str, cfg: &HttpsGetConfig) -> bool {
    let auth = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
    match tokio::time::timeout(HTTPS_GET_TIMEOUT, https_get_status(cfg, &auth)).await {
        Ok(Ok(200)) => true,
        Ok(Ok(code)) => {
            log::info!(
                "https_get: user {} refused with HTTP status {code}",
                crate::core::audit::shown(user)
            );
            false
        }
        Ok(Err(e)) => {
            log::error!("https_get: request failed: {e}");
            false
        }
        Err(_) => {
            log::error!(
                "https_get: no answer from {}:{} within {HTTPS_GET_TIMEOUT:?}",
                cfg.host,
                cfg.port
            );
            false
        }
    }
}

/// The trusted CA certificates, read afresh for every request (as Python's
/// default SSL context is), in a blocking task since it reads files.
pub fn tls_client_config() -> Result<std::sync::Arc<tokio_rustls::rustls::ClientConfig>, String> {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let certs = rustls_native_certs::load_native_certs()
        .map_err(|e| format!("cannot load the CA certificates: {e}"))?;
    let mut roots = RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("no usable CA certificates".into());
    }
    Ok(std::sync::Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// Aborts the task driving a connection, however the request ends
/// (including the timeout dropping it half-way).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/1.1 GET over TLS (hyper and rustls as warp builds them); the
/// status of whatever answer came, `Err` when there was none.
async fn https_get_status(cfg: &HttpsGetConfig, authorization: &str) -> Result<u16, String> {
    use hyper::header::{AUTHORIZATION, HOST, USER_AGENT};
    use tokio_rustls::rustls::pki_types::ServerName;
    let port: u16 = cfg
        .port
        .parse()
        .map_err(|_| format!("invalid port {:?}", cfg.port))?;
    let server_name =
        ServerName::try_from(cfg.host.clone()).map_err(|e| format!("invalid host {:?}: {e}", cfg.host))?;
    let path = if cfg.path.is_empty() {
        "/"
    } else {
        cfg.path.as_str()
    };
    let request = hyper::Request::get(path)
        .header(HOST, cfg.host.as_str())
        .header(USER_AGENT, "X2Go Session Broker")
        .header(AUTHORIZATION, authorization)
        .body(hyper::Body::empty())
        .map_err(|e| format!("invalid request for path {path:?}: {e}"))?;
    let tls = tokio::task::spawn_blocking(tls_client_config)
        .await
        .map_err(|e| format!("worker failed: {e}"))??;
    let tcp = tokio::net::TcpStream::connect((cfg.host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {}:{port}: {e}", cfg.host))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS with {}:{port}: {e}", cfg.host))?;
    let (mut sender, connection) = hyper::client::conn::handshake(stream)
        .await
        .map_err(|e| format!("HTTP with {}:{port}: {e}", cfg.host))?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    std::future::poll_fn(|cx| sender.poll_ready(cx))
        .await
        .map_err(|e| format!("HTTP with {}:{port}: {e}", cfg.host))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP with {}:{port}: {e}", cfg.host))?;
    Ok(response.status().as_u16())
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
