//! A Unix socket peer's identity, as the kernel reports it (SO_PEERCRED).
//! Nothing a client sends can change it. The helper, the daemon's control
//! socket and the SSH-mode worker (checking that the helper made its job
//! socket) all read it here.

use nix::sys::socket::{getsockopt, sockopt};
use std::fmt;
use std::os::fd::AsFd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    pub uid: u32,
    pub gid: u32,
    /// Absent only if the peer is in another PID namespace.
    pub pid: Option<i32>,
}

impl PeerCredentials {
    pub fn of(socket: &impl AsFd) -> std::io::Result<Self> {
        let cred = getsockopt(socket, sockopt::PeerCredentials)?;
        Ok(PeerCredentials {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: Some(cred.pid()),
        })
    }
}

impl fmt::Display for PeerCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer_uid={} peer_gid={}", self.uid, self.gid)?;
        match self.pid {
            Some(pid) => write!(f, " peer_pid={pid}"),
            None => f.write_str(" peer_pid=?"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socketpair_names_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let peer = PeerCredentials::of(&a).unwrap();
        assert_eq!(peer.uid, nix::unistd::getuid().as_raw());
        assert_eq!(peer.gid, nix::unistd::getgid().as_raw());
        assert_eq!(peer.pid, Some(std::process::id() as i32));
        assert!(peer.to_string().starts_with(&format!("peer_uid={} ", peer.uid)));
    }
}
