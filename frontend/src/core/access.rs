//! The access check of every request: password (through the backend's
//! auth mech), pre-shared cookie, dynamic cookies, address and age checks.

use crate::core::audit::shown;
use crate::core::authmech::{authenticate, AuthContext, AuthMech};
use crate::core::backend::Backend;
use crate::core::broker::Broker;
use crate::core::cookies::{now, CookieRecord, CookieStore};

/// The outcome: granted or not, and the cookie to hand out next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub granted: bool,
    pub next_cookie: Option<String>,
}

impl Access {
    fn denied() -> Access {
        Access {
            granted: false,
            next_cookie: None,
        }
    }
}

pub struct Credentials<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub client_ip: &'a str,
    /// `authid` as sent; empty when none was sent.
    pub cookie: &'a str,
}

pub async fn check_access(broker: &Broker, backend: Backend, cred: &Credentials<'_>) -> Access {
    let g = &broker.global;
    let (mut require_password, mut require_cookie) = (g.require_password, g.require_cookie);
    if !g.check_credentials {
        log::warn!("deprecated parameter 'check-credentials' used in x2gobroker.conf (use 'require-password' and 'require-cookie' instead)");
        require_password = false;
        require_cookie = false;
    }
    if !require_password && !require_cookie {
        return Access {
            granted: true,
            next_cookie: None,
        };
    }
    if cred.user == "check-credentials" && cred.password == "FALSE" {
        return Access::denied();
    }
    if cred.cookie.is_empty() && require_cookie {
        log::debug!("cookie required but none given");
        return Access::denied();
    }
    let static_match = broker.static_cookie.as_deref() == Some(cred.cookie);
    if !require_password {
        // Cookie only: the pre-shared cookie is what the client keeps using.
        audit_cookie(cred, static_match);
        return Access {
            granted: static_match,
            next_cookie: broker.static_cookie.clone(),
        };
    }
    let store = CookieStore::new(&g.cookie_directory);
    if let Err(e) = store.ensure_dir() {
        log::warn!(
            "could not create cookie-directory {}: {e}; failing to authenticate",
            g.cookie_directory.display()
        );
        return Access::denied();
    }
    if static_match || cred.cookie.is_empty() {
        // Password authentication (with require-cookie, after the
        // pre-shared cookie matched: both are required).
        let mech_name = Backend::auth_mech_name(broker.backend_config(backend), g);
        let ctx = AuthContext {
            authservice_socket: &broker.env.authservice_socket,
            https_get: &broker.https_get,
            client_address: Some(cred.client_ip.to_owned()).filter(|s| !s.is_empty()),
        };
        let ok = match AuthMech::from_name(&mech_name) {
            Some(mech) => authenticate(mech, cred.user, cred.password, &ctx).await,
            None => false,
        };
        if !ok {
            crate::core::log_limit::log("authentication failed", module_path!(), log::Level::Warn, || {
                format!(
                    "authentication failed for user {} at ip {}",
                    shown(cred.user),
                    cred.client_ip
                )
            });
            return Access::denied();
        }
        // Info, not the original's warning: a granted login is routine
        // (its audit line records it too).
        log::info!(
            "authentication succeeded for user {} at ip {}",
            shown(cred.user),
            cred.client_ip
        );
        let record = CookieRecord {
            client_ip: cred.client_ip.to_owned(),
            issued: now(),
        };
        let next_cookie = if cred.user.is_empty() {
            Some(crate::core::cookies::new_cookie())
        } else {
            match store.issue(cred.user, &record) {
                Ok(c) => Some(c),
                Err(e) => {
                    log::error!("cannot store a cookie for user {}: {e}", shown(cred.user));
                    return Access::denied();
                }
            }
        };
        if !cred.cookie.is_empty() {
            store.remove(cred.user, cred.cookie);
        }
        return Access {
            granted: true,
            next_cookie,
        };
    }
    // A dynamic cookie from an earlier password authentication.
    let Some(record) = store.read(cred.user, cred.cookie) else {
        audit_cookie(cred, false);
        log::debug!(
            "user {} from {} presented a cookie which is not recognized",
            shown(cred.user),
            cred.client_ip
        );
        return Access::denied();
    };
    if g.verify_ip && record.client_ip != cred.client_ip {
        // Refused, but the rightful owner's cookie stays valid.
        audit_cookie(cred, false);
        log::debug!(
            "IPs differ (new: {} old: {}) - rejecting user {}",
            cred.client_ip,
            record.client_ip,
            shown(cred.user)
        );
        return Access::denied();
    }
    store.remove(cred.user, cred.cookie);
    if now() - record.issued > g.auth_timeout as f64 {
        audit_cookie(cred, false);
        log::debug!("too much time elapsed since the original authentication - rejecting user");
        return Access::denied();
    }
    let next = if g.use_static_cookie {
        cred.cookie.to_owned()
    } else {
        crate::core::cookies::new_cookie()
    };
    let kept = CookieRecord {
        client_ip: cred.client_ip.to_owned(),
        issued: record.issued,
    };
    if let Err(e) = store.write(cred.user, &next, &kept) {
        log::error!("cannot store a cookie for user {}: {e}", shown(cred.user));
        audit_cookie(cred, false);
        return Access::denied();
    }
    audit_cookie(cred, true);
    Access {
        granted: true,
        next_cookie: Some(next),
    }
}

/// Audits a decision made on a cookie alone (never the cookie's value).
fn audit_cookie(cred: &Credentials<'_>, granted: bool) {
    use crate::core::audit::AuthOutcome;
    let outcome = if granted {
        AuthOutcome::Granted
    } else {
        AuthOutcome::Refused
    };
    crate::core::audit::auth_decision("cookie", cred.user, Some(cred.client_ip), outcome);
}

/// UCCS basic authentication: Some(user name to serve) or None (401).
/// Without a password requirement everyone is `anonymous`; a cookie
/// requirement cannot be met over UCCS; `user@domain` is retried as `user`.
pub async fn check_basic_auth(
    broker: &Broker,
    credentials: Option<(&str, &str)>,
    client_ip: &str,
) -> Option<String> {
    let g = &broker.global;
    if !g.check_credentials || (!g.require_password && !g.require_cookie) {
        return Some("anonymous".into());
    }
    if g.require_cookie {
        return None;
    }
    let (user, password) = credentials?;
    if user == "check-credentials" && password == "FALSE" {
        return None;
    }
    let mech_name = match broker.raw_base_auth_mech.as_deref() {
        Some(m) if !m.is_empty() => m.to_lowercase(),
        _ => g.default_auth_mech.to_lowercase(),
    };
    let mech = AuthMech::from_name(&mech_name)?;
    let ctx = AuthContext {
        authservice_socket: &broker.env.authservice_socket,
        https_get: &broker.https_get,
        client_address: Some(client_ip.to_owned()).filter(|s| !s.is_empty()),
    };
    if authenticate(mech, user, password, &ctx).await {
        return Some(user.to_owned());
    }
    if let Some((short, _)) = user.split_once('@') {
        if authenticate(mech, short, password, &ctx).await {
            return Some(short.to_owned());
        }
    }
    None
}
