//! The `plain` output (X2Go Client): line-based text.

use super::{Reply, TEXT_PLAIN};
use crate::core::setpass::SetpassOutcome;
use crate::core::tasks::{ProfileList, TaskContext};

pub async fn respond(ctx: &TaskContext<'_>) -> Reply {
    let mut out = String::new();
    if let Some(cookie) = &ctx.access.next_cookie {
        out.push_str("AUTHID:");
        out.push_str(cookie);
        out.push('\n');
    }
    out.push_str("Access granted\n");
    let user = ctx.fields.user.as_str();
    match ctx.fields.task.as_str() {
        "testcon" => return Reply::ok(TEXT_PLAIN, "OK".into()),
        "listsessions" => match ctx.visible_profiles_with_sessions().await {
            Err(e) => return Reply::error(e.http_status()),
            Ok(list) => profile_listing(&mut out, &list, user),
        },
        "selectsession" if !ctx.fields.profile_id.is_empty() => match ctx.select().await {
            Err(e) => return Reply::error(e.http_status()),
            Ok(sel) => {
                out.push_str(&format!("SERVER:{}:{}\n", sel.server, sel.port));
                if let Some(key) = &sel.private_key {
                    out.push_str(key);
                }
                if let Some(info) = &sel.session_info {
                    out.push_str(&format!("SESSION_INFO:{info}\n"));
                }
            }
        },
        // X2Go Client reads the word after "PASSWORD CHANGED: " (OK or not).
        "setpass" => match ctx.setpass().await {
            SetpassOutcome::Changed => out.push_str("PASSWORD CHANGED: OK\n"),
            SetpassOutcome::NewPasswordRefused(reason) => {
                out.push_str(&format!("PASSWORD CHANGED: FAILED\nREASON: {reason}\n"))
            }
            SetpassOutcome::Denied => return Reply::error(401),
            SetpassOutcome::Unavailable => return Reply::error(500),
        },
        _ => {}
    }
    Reply::ok(TEXT_PLAIN, out)
}

/// The `listsessions` lines for the listed profiles (after `Access granted`).
pub fn profile_listing(out: &mut String, profiles: &ProfileList<'_>, user: &str) {
    match profiles {
        ProfileList::Inifile(list) => {
            if !list.is_empty() {
                out.reserve(list.len() * 700);
                out.push_str("START_USER_SESSIONS\n\n");
                for p in list {
                    p.render_plain(out, user, "");
                }
                out.push_str("END_USER_SESSIONS\n");
            }
        }
        ProfileList::Zeroconf(p, id) => {
            out.push_str("START_USER_SESSIONS\n\n");
            p.render_plain_as(out, id, user, "");
            out.push_str("END_USER_SESSIONS\n");
        }
    }
}
