//! The original's SSH-mode output (its `client/plain.py`), produced with the
//! same engine as HTTP `/plain/`: access check, profile listing with ACLs,
//! server selection.

use crate::core::access::{check_access, Credentials};
use crate::core::backend::Backend;
use crate::core::broker::Broker;
use crate::core::tasks::{Fields, ProfileList, TaskContext};
use std::net::IpAddr;

/// One SSH-mode task, identity already verified.
pub struct Task<'a> {
    pub backend: Backend,
    pub broker_user: &'a str,
    pub login: &'a str,
    pub client: IpAddr,
    pub cookie: &'a str,
    pub task: &'a str,
    pub profile_id: &'a str,
}

/// The task could not be carried out (the original fails with a traceback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError(pub String);

/// SSH already authenticated the caller, so the password check of the
/// access check always succeeds (the original swaps in an authenticate
/// function that returns true); cookies are still checked and issued.
pub fn trust_ssh_authentication(broker: &mut Broker) {
    broker.inifile.auth_mech = "none".into();
    broker.zeroconf.auth_mech = "none".into();
}

/// What the original prints, without the final newline that its `print()`
/// adds; empty when it prints nothing (access denied, disabled backend).
pub async fn render(broker: &Broker, task: &Task<'_>) -> Result<String, TaskError> {
    if !broker.backend_config(task.backend).enable {
        log::error!(
            "broker backend ,,{}'' is disabled on this system",
            task.backend.name()
        );
        return Ok(String::new());
    }
    let client_ip = task.client.to_string();
    log::info!("client address is {client_ip}");
    let access = check_access(
        broker,
        task.backend,
        &Credentials {
            user: task.broker_user,
            password: "SSH",
            client_ip: &client_ip,
            cookie: task.cookie,
            next_cookie_shown: crate::core::access::shows_next_cookie(task.task),
        },
    )
    .await
    .map_err(|e| TaskError(format!("{}; try again later", e.0)))?;
    if !access.granted {
        log::error!("cookie authentication failed");
        return Ok(String::new());
    }
    let mut out = String::new();
    if let Some(cookie) = &access.next_cookie {
        out.push_str("AUTHID:");
        out.push_str(cookie);
        out.push('\n');
    }
    out.push_str("Access granted\n");
    let fields = Fields {
        user: task.broker_user.to_owned(),
        login: task.login.to_owned(),
        password: String::new(),
        authid: task.cookie.to_owned(),
        pubkey: String::new(),
        task: task.task.to_owned(),
        profile_id: task.profile_id.to_owned(),
    };
    let ctx = TaskContext {
        broker,
        backend: task.backend,
        fields: &fields,
        client: task.client,
        access,
    };
    match task.task {
        // The original returns the connection test's answer alone.
        "testcon" => return Ok("OK".into()),
        "listsessions" => {
            let list = ctx
                .visible_profiles()
                .map_err(|_| TaskError("cannot list the session profiles; see the log".into()))?;
            match list {
                ProfileList::Inifile(list) => {
                    if !list.is_empty() {
                        out.push_str("START_USER_SESSIONS\n\n");
                        for p in list {
                            p.render_plain(&mut out, task.broker_user, task.login);
                        }
                        out.push_str("END_USER_SESSIONS\n");
                    }
                }
                ProfileList::Zeroconf(p, id) => {
                    out.push_str("START_USER_SESSIONS\n\n");
                    p.render_plain_as(&mut out, &id, task.broker_user, task.login);
                    out.push_str("END_USER_SESSIONS\n");
                }
            }
        }
        "selectsession" if !task.profile_id.is_empty() => {
            let selected = ctx
                .select()
                .await
                .map_err(|_| TaskError("cannot select a server; see the log".into()))?;
            out.push_str(&format!("SERVER:{}:{}\n", selected.server, selected.port));
            if let Some(key) = &selected.private_key {
                out.push_str(key);
            }
            if let Some(info) = &selected.session_info {
                out.push_str(&format!("SESSION_INFO:{info}\n"));
            }
        }
        _ => {}
    }
    Ok(out)
}
