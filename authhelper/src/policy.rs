//! Who may ask what, decided from kernel-verified credentials only.

use nix::unistd::User;
use x2gobroker_sys::peer::PeerCredentials;

#[derive(Debug, Clone)]
pub struct Policy {
    daemon_uid: u32,
    admin_gid: u32,
}

impl Policy {
    /// Resolves the names once so that a typo is a start-up error.
    pub fn new(daemon_user: &str, admin_group: &str) -> Result<Self, String> {
        let daemon = User::from_name(daemon_user)
            .ok()
            .flatten()
            .ok_or_else(|| format!("unknown daemon user {daemon_user:?}"))?;
        let admin_gid = x2gobroker_sys::admin::group_id(admin_group)
            .ok_or_else(|| format!("unknown admin group {admin_group:?}"))?;
        Ok(Policy {
            daemon_uid: daemon.uid.as_raw(),
            admin_gid,
        })
    }

    /// Whether `peer` is one of `who`.
    pub fn admits(&self, who: Who, peer: &PeerCredentials) -> bool {
        match who {
            // The socket's mode decides who can connect at all.
            Who::AnyConnected => true,
            Who::DaemonOrRoot => peer.uid == 0 || peer.uid == self.daemon_uid,
            // The daemon's control socket applies the same rule.
            Who::Admin => x2gobroker_sys::admin::is_admin(peer.uid, peer.gid, Some(self.admin_gid)),
        }
    }
}

/// Who may ask for a request (see the table in `server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Anyone who can open the socket; the handler decides further from
    /// the kernel-verified uid (SSH-mode tasks: ARCHITECTURE.md P2).
    AnyConnected,
    /// Root and the broker daemon (PAM).
    DaemonOrRoot,
    /// Root and the admin group: primary group from the kernel,
    /// supplementary membership looked up live in the group database.
    Admin,
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
        assert!(p.admits(Who::DaemonOrRoot, &peer(0, 0)));
        assert!(p.admits(Who::Admin, &peer(0, 0)));
        assert!(!p.admits(Who::DaemonOrRoot, &peer(65534, 65534)));
        assert!(!p.admits(Who::Admin, &peer(65534, 65534)));
        assert!(p.admits(Who::AnyConnected, &peer(65534, 65534)));
        assert!(
            p.admits(Who::Admin, &peer(65534, 0)),
            "primary group from the kernel counts"
        );
    }

    #[test]
    fn unknown_names_are_startup_errors() {
        assert!(Policy::new("no-such-user-xbt", "root").is_err());
        assert!(Policy::new("root", "no-such-group-xbt").is_err());
    }
}
