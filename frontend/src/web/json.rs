//! The `json` output (Python X2Go, pyhoca-cli): one JSON object, keys
//! sorted, indented by four spaces.

use super::{Reply, TEXT_JSON};
use crate::core::jsonout::{self, Object};
use crate::core::setpass::SetpassOutcome;
use crate::core::tasks::{ProfileList, TaskContext};

pub async fn respond(ctx: &TaskContext<'_>) -> Reply {
    let mut task = ctx.fields.task.as_str();
    if task == "listsessions" {
        task = "listprofiles";
    }
    let mut payload = Object::new(0);
    payload.str("task", task);
    payload.str("auth-status", "Access granted");
    if let Some(cookie) = &ctx.access.next_cookie {
        payload.str("next-authid", cookie);
    }
    let user = ctx.fields.user.as_str();
    match task {
        "testcon" => return Reply::ok(TEXT_JSON, String::new()),
        "listprofiles" => {
            let profiles = match ctx.visible_profiles_with_sessions().await {
                Err(e) => return Reply::error(e.http_status()),
                Ok(list) => list,
            };
            payload.raw("profiles", profiles_object(&profiles, user));
        }
        "selectsession" => {
            let mut selected = Object::new(1);
            if !ctx.fields.profile_id.is_empty() {
                match ctx.select().await {
                    Err(e) => return Reply::error(e.http_status()),
                    Ok(sel) => {
                        selected.str("server", &sel.server);
                        selected.str("port", &sel.port.to_string());
                        if let Some(key) = &sel.private_key {
                            selected.str("key", key);
                        }
                        if sel.pubkey_accepted {
                            selected.str("authentication_pubkey", "ACCEPTED");
                        }
                        if let Some(info) = &sel.session_info {
                            selected.str("session_info", info);
                        }
                    }
                }
            }
            payload.raw("selected_session", selected.finish());
        }
        "setpass" => match ctx.setpass().await {
            SetpassOutcome::Changed => payload.str("password-changed", "OK"),
            SetpassOutcome::NewPasswordRefused(reason) => {
                payload.str("password-changed", "FAILED");
                payload.str("reason", &reason);
            }
            SetpassOutcome::Denied => return Reply::error(401),
            SetpassOutcome::Unavailable => return Reply::error(500),
        },
        _ => {}
    }
    Reply::ok(TEXT_JSON, payload.finish())
}

/// The `profiles` object of `listprofiles`: profile ID → profile.
pub fn profiles_object(profiles: &ProfileList<'_>, user: &str) -> String {
    let mut text = String::new();
    let mut first = true;
    let mut add = |text: &mut String, id: &str, render: &dyn Fn(&mut String)| {
        text.push_str(if first { "{\n" } else { ",\n" });
        first = false;
        jsonout::indent(text, 2);
        jsonout::string(text, id);
        text.push_str(": ");
        render(text);
    };
    match profiles {
        ProfileList::Inifile(list) => {
            text.reserve(list.len() * 1200);
            for p in list {
                add(&mut text, &p.id, &|t: &mut String| p.render_json(t, user));
            }
        }
        ProfileList::Zeroconf(p, id) => add(&mut text, id, &|t: &mut String| p.render_json(t, user)),
    }
    if first {
        text.push_str("{}");
    } else {
        text.push('\n');
        jsonout::indent(&mut text, 1);
        text.push('}');
    }
    text
}
