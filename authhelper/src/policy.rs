//! Who may ask what, decided from kernel-verified credentials only.

use crate::peer::PeerCredentials;
use crate::StartupError;
use nix::unistd::{Group, User};

#[derive(Debug, Clone)]
pub struct Policy {
    daemon_uid: u32,
    admin_gid: u32,
}

impl Policy {
    /// Resolves the names once so that a typo is a start-up error.
    pub fn new(daemon_user: &str, admin_group: &str) -> Result<Self, StartupError> {
        let daemon = User::from_name(daemon_user)
            .ok()
            .flatten()
            .ok_or_else(|| StartupError::new(format!("unknown daemon user {daemon_user:?}")))?;
        let admin = Group::from_name(admin_group)
            .ok()
            .flatten()
            .ok_or_else(|| StartupError::new(format!("unknown admin group {admin_group:?}")))?;
        Ok(Policy {
            daemon_uid: daemon.uid.as_raw(),
            admin_gid: admin.gid.as_raw(),
        })
    }

    /// PAM requests: root and the broker daemon only.
    pub fn may_authenticate(&self, peer: &PeerCredentials) -> bool {
        peer.uid == 0 || peer.uid == self.daemon_uid
    }

    /// Status: root, and members of the admin group (the daemon's control
    /// socket applies the same rule).
    pub fn may_query_status(&self, peer: &PeerCredentials) -> bool {
        x2gobroker_sys::admin::is_admin(peer.uid, peer.gid, Some(self.admin_gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> PeerCredentials {
        PeerCredentials { uid, gid, pid: None }
    }

    #[test]
    fn root_may_do_everything_and_strangers_nothing() {
        let p = Policy::new("root", "root").unwrap();
        assert!(p.may_authenticate(&peer(0, 0)));
        assert!(p.may_query_status(&peer(0, 0)));
        assert!(!p.may_authenticate(&peer(65534, 65534)));
        assert!(!p.may_query_status(&peer(65534, 65534)));
        assert!(
            p.may_query_status(&peer(65534, 0)),
            "primary group from the kernel counts"
        );
    }

    #[test]
    fn unknown_names_are_startup_errors() {
        assert!(Policy::new("no-such-user-xbt", "root").is_err());
        assert!(Policy::new("root", "no-such-group-xbt").is_err());
    }
}
