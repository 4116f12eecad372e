//! The caller's identity, as the kernel reports it (SO_PEERCRED). Nothing a
//! client sends can change it.

use std::fmt;
use tokio::net::UnixStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    pub uid: u32,
    pub gid: u32,
    /// Absent only if the peer is in another PID namespace.
    pub pid: Option<i32>,
}

impl PeerCredentials {
    pub fn of(stream: &UnixStream) -> std::io::Result<Self> {
        let cred = stream.peer_cred()?;
        Ok(PeerCredentials {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
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
