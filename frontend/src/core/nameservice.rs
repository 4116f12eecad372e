//! User and group look-ups through NSS (libnss), done live on every call so
//! that changes to users and groups apply without a restart.

use nix::unistd::{getgrouplist, Group, User};
use std::ffi::CString;

/// The names of the groups `user` belongs to. The primary group counts only
/// when `include_primary` is set or the group lists the user explicitly
/// (the original's `ignore-primary-group-memberships`). Unknown user → none.
pub fn user_groups(user: &str, include_primary: bool) -> Vec<String> {
    let Ok(Some(pw)) = User::from_name(user) else {
        return Vec::new();
    };
    let Ok(cname) = CString::new(user) else {
        return Vec::new();
    };
    let gids = getgrouplist(&cname, pw.gid).unwrap_or_else(|_| vec![pw.gid]);
    let mut names = Vec::with_capacity(gids.len());
    for gid in gids {
        let Ok(Some(group)) = Group::from_gid(gid) else {
            continue;
        };
        if gid == pw.gid && !include_primary && !group.mem.iter().any(|m| m == user) {
            continue;
        }
        if !names.contains(&group.name) {
            names.push(group.name);
        }
    }
    names
}

pub fn has_user(user: &str) -> bool {
    matches!(User::from_name(user), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_groups() {
        assert!(has_user("root"));
        assert!(user_groups("root", true).contains(&"root".to_owned()));
        assert!(!user_groups("root", false).contains(&"root".to_owned()));
        assert!(user_groups("no-such-user-xbt", true).is_empty());
    }

    #[test]
    fn test_users_supplementary_groups() {
        // Users from scripts/setup-test-env.sh.
        if !has_user("xbt-bob") {
            eprintln!("skipping: test users not set up");
            return;
        }
        let g = user_groups("xbt-bob", false);
        assert!(
            g.contains(&"xbt-staff".to_owned()) && g.contains(&"xbt-devs".to_owned()),
            "{g:?}"
        );
        assert!(!g.contains(&"xbt-bob".to_owned()));
        assert!(user_groups("xbt-bob", true).contains(&"xbt-bob".to_owned()));
    }
}
