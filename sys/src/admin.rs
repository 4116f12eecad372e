//! Who is an administrator: root, or a member of the admin group (`adm` by
//! default) — by the kernel-reported primary group of a peer, the user's
//! primary group, or supplementary membership, looked up live.

use nix::unistd::{Gid, Group, Uid, User};

/// `uid`/`gid` as the kernel reports them (SO_PEERCRED); `admin_gid`
/// `None` (no such group) admits root only.
pub fn is_admin(uid: u32, gid: u32, admin_gid: Option<u32>) -> bool {
    if uid == 0 {
        return true;
    }
    let Some(admin_gid) = admin_gid else {
        return false;
    };
    if gid == admin_gid {
        return true;
    }
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    if user.gid.as_raw() == admin_gid {
        return true;
    }
    match Group::from_gid(Gid::from_raw(admin_gid)) {
        Ok(Some(group)) => group.mem.contains(&user.name),
        _ => false,
    }
}

/// The gid of a group name, if it exists.
pub fn group_id(name: &str) -> Option<u32> {
    Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_admin_group_only() {
        assert!(is_admin(0, 0, None));
        assert!(is_admin(0, 0, Some(4)));
        assert!(!is_admin(65534, 65534, None));
        assert!(!is_admin(65534, 65534, Some(0)));
        assert!(
            is_admin(65534, 0, Some(0)),
            "primary group from the kernel counts"
        );
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-xbt"), None);
    }
}
