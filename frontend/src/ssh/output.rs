//! The original's SSH-mode output (its `client/plain.py`), produced with the
//! same engine as HTTP `/plain/`: access check, profile listing with ACLs,
//! server selection.

use crate::core::backend::Backend;
use crate::core::broker::Broker;
use crate::core::scripts;
use crate::core::setpass::{self, SetpassOutcome, SetpassRequest};
use crate::core::tasks::{
    check_access_with_scripts, AccessUndecided, Fields, ProfileList, TaskContext, TaskFailed,
};
use std::net::IpAddr;
use x2gobroker_protocol::Password;

/// One SSH-mode task, identity already verified.
pub struct Task<'a> {
    pub backend: Backend,
    pub broker_user: &'a str,
    pub login: &'a str,
    pub client: IpAddr,
    pub cookie: &'a str,
    pub task: &'a str,
    pub profile_id: &'a str,
    /// setpass: the current and the new password (from the caller's
    /// standard input or `--newpass`).
    pub passwords: Option<(&'a Password, &'a Password)>,
    /// Whether the broker user is the caller's own account (setpass
    /// changes no other user's password, not even for root or the magic
    /// user).
    pub own_account: bool,
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
    let mut fields = Fields {
        user: task.broker_user.to_owned(),
        login: task.login.to_owned(),
        password: String::new(),
        authid: task.cookie.to_owned(),
        pubkey: String::new(),
        task: task.task.to_owned(),
        profile_id: task.profile_id.to_owned(),
        new_password: Password::default(),
    };
    let access = check_access_with_scripts(broker, task.backend, &mut fields, task.client, "SSH")
        .await
        .map_err(|e| match e {
            AccessUndecided::Script(scripts::Refused(why)) => {
                TaskError(format!("refused by a session script ({why})"))
            }
            AccessUndecided::Store(e) => TaskError(format!("{}; try again later", e.0)),
        })?;
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
    let ctx = TaskContext {
        broker,
        backend: task.backend,
        fields: &fields,
        client: task.client,
        access,
    };
    // What the scripts left of the request from here on.
    let (user, login) = (fields.user.as_str(), fields.login.as_str());
    match fields.task.as_str() {
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
                            p.render_plain(&mut out, user, login);
                        }
                        out.push_str("END_USER_SESSIONS\n");
                    }
                }
                ProfileList::Zeroconf(p, id) => {
                    out.push_str("START_USER_SESSIONS\n\n");
                    p.render_plain_as(&mut out, &id, user, login);
                    out.push_str("END_USER_SESSIONS\n");
                }
            }
        }
        "selectsession" if !fields.profile_id.is_empty() => {
            let selected = ctx.select().await.map_err(|e| match e {
                TaskFailed::StoreUnavailable => TaskError(
                    "cannot select a server: the state store is unavailable; try again later".into(),
                ),
                TaskFailed::Failed => TaskError("cannot select a server; see the log".into()),
            })?;
            out.push_str(&format!("SERVER:{}:{}\n", selected.server, selected.port));
            if let Some(key) = &selected.private_key {
                out.push_str(key);
            }
            if let Some(info) = &selected.session_info {
                out.push_str(&format!("SESSION_INFO:{info}\n"));
            }
        }
        // For the helper-verified caller, whatever a script made of the user.
        "setpass" => {
            let Some((current, new)) = task.passwords.filter(|_| task.own_account) else {
                return Err(TaskError(
                    "setpass changes only the caller's own password (not with --user for another user)"
                        .into(),
                ));
            };
            let request = SetpassRequest {
                helper_socket: &broker.env.authservice_socket,
                user: task.broker_user,
                client_address: Some(client_ip),
            };
            match setpass::change_password(&request, current.clone(), new.clone()).await {
                SetpassOutcome::Changed => out.push_str("PASSWORD CHANGED: OK\n"),
                SetpassOutcome::NewPasswordRefused(reason) => {
                    out.push_str(&format!("PASSWORD CHANGED: FAILED\nREASON: {reason}\n"))
                }
                SetpassOutcome::Denied => {
                    return Err(TaskError("setpass: the current password was not accepted".into()))
                }
                SetpassOutcome::Unavailable => {
                    return Err(TaskError(
                        "setpass: the password could not be changed; see the log".into(),
                    ))
                }
            }
        }
        _ => {}
    }
    Ok(out)
}
