//! The access check of every request: password (through the backend's
//! auth mech), pre-shared cookie, dynamic cookies, address and age checks.

use crate::core::audit::shown;
use crate::core::authmech::{authenticate, AuthContext, AuthMech};
use crate::core::backend::Backend;
use crate::core::broker::Broker;
use crate::core::cookies::{now, CookieRecord};
use crate::core::state::{CookieLimits, StateError, Taken};

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
    /// Whether the answer shows the next cookie. `testcon`'s does not (the
    /// original stores one nobody ever sees): then no new cookie is kept.
    pub next_cookie_shown: bool,
}

/// The state store could not be reached: the request cannot be decided now
/// (HTTP 503, SSH mode a message and a non-zero exit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUnavailable(pub String);

/// The task's next cookie is not shown (`testcon`).
pub fn shows_next_cookie(task: &str) -> bool {
    task != "testcon"
}

pub async fn check_access(
    broker: &Broker,
    backend: Backend,
    cred: &Credentials<'_>,
) -> Result<Access, StoreUnavailable> {
    let unavailable = |e: String| {
        let e = StateError::Unavailable(e).to_string();
        log::error!("{e}; the request of user {} is not decided", shown(cred.user));
        crate::core::audit::auth_decision(
            "state-store",
            cred.user,
            Some(cred.client_ip),
            crate::core::audit::AuthOutcome::Unavailable,
        );
        Err(StoreUnavailable(e))
    };
    let g = &broker.global;
    let (mut require_password, mut require_cookie) = (g.require_password, g.require_cookie);
    if !g.check_credentials {
        log::warn!("deprecated parameter 'check-credentials' used in x2gobroker.conf (use 'require-password' and 'require-cookie' instead)");
        require_password = false;
        require_cookie = false;
    }
    if !require_password && !require_cookie {
        return Ok(Access {
            granted: true,
            next_cookie: None,
        });
    }
    if cred.user == "check-credentials" && cred.password == "FALSE" {
        return Ok(Access::denied());
    }
    if cred.cookie.is_empty() && require_cookie {
        log::debug!("cookie required but none given");
        return Ok(Access::denied());
    }
    let static_match = broker.static_cookie.as_deref() == Some(cred.cookie);
    if !require_password {
        // Cookie only: the pre-shared cookie is what the client keeps using.
        audit_cookie(cred, static_match);
        return Ok(Access {
            granted: static_match,
            next_cookie: broker.static_cookie.clone(),
        });
    }
    let store = &broker.state;
    let limits = CookieLimits::of(g);
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
            return Ok(Access::denied());
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
        let next_cookie = if !cred.next_cookie_shown {
            None
        } else if cred.user.is_empty() {
            Some(crate::core::cookies::new_cookie())
        } else {
            match store.issue_cookie(cred.user, &record, limits).await {
                Ok(c) => Some(c),
                Err(StateError::Unavailable(e)) => return unavailable(e),
                Err(StateError::Failed(e)) => {
                    log::error!("cannot store a cookie for user {}: {e}", shown(cred.user));
                    return Ok(Access::denied());
                }
            }
        };
        if !cred.cookie.is_empty() {
            if let Err(StateError::Unavailable(e)) = store.remove_cookie(cred.user, cred.cookie).await {
                return unavailable(e);
            }
        }
        return Ok(Access {
            granted: true,
            next_cookie,
        });
    }
    // A dynamic cookie from an earlier password authentication, taken in
    // one step: of two requests (at any broker) presenting it, one wins.
    let required_address = g.verify_ip.then_some(cred.client_ip);
    let record = match store.take_cookie(cred.user, cred.cookie, required_address).await {
        Ok(Taken::Taken(record)) => record,
        Ok(Taken::Unknown) => {
            audit_cookie(cred, false);
            log::debug!(
                "user {} from {} presented a cookie which is not recognized",
                shown(cred.user),
                cred.client_ip
            );
            return Ok(Access::denied());
        }
        Ok(Taken::OtherAddress(record)) => {
            // Refused, but the rightful owner's cookie stays valid.
            audit_cookie(cred, false);
            log::debug!(
                "IPs differ (new: {} old: {}) - rejecting user {}",
                cred.client_ip,
                record.client_ip,
                shown(cred.user)
            );
            return Ok(Access::denied());
        }
        Err(StateError::Unavailable(e)) => return unavailable(e),
        Err(StateError::Failed(e)) => {
            log::error!("cookie of user {}: {e}", shown(cred.user));
            audit_cookie(cred, false);
            return Ok(Access::denied());
        }
    };
    if now() - record.issued > g.auth_timeout as f64 {
        audit_cookie(cred, false);
        log::debug!("too much time elapsed since the original authentication - rejecting user");
        return Ok(Access::denied());
    }
    // A static cookie is the client's to keep, shown or not; a new one is
    // kept only when the client sees it.
    let next = if g.use_static_cookie {
        Some(cred.cookie.to_owned())
    } else if cred.next_cookie_shown {
        Some(crate::core::cookies::new_cookie())
    } else {
        None
    };
    if let Some(next) = &next {
        let kept = CookieRecord {
            client_ip: cred.client_ip.to_owned(),
            issued: record.issued,
        };
        match store.put_cookie(cred.user, next, &kept, limits).await {
            Ok(()) => {}
            Err(StateError::Unavailable(e)) => return unavailable(e),
            Err(StateError::Failed(e)) => {
                log::error!("cannot store a cookie for user {}: {e}", shown(cred.user));
                audit_cookie(cred, false);
                return Ok(Access::denied());
            }
        }
    }
    audit_cookie(cred, true);
    Ok(Access {
        granted: true,
        next_cookie: next,
    })
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
