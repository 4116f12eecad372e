//! Sockets handed over by systemd (sd_listen_fds protocol): `LISTEN_PID`
//! names this process, `LISTEN_FDS` counts descriptors from 3,
//! `LISTEN_FDNAMES` names them.
//!
//! [`take`] removes these variables from the environment (so nothing we
//! start inherits them). Changing the environment of a process that runs
//! other threads is unsound, so both programs call it first thing, before
//! their syslog thread or tokio runtime exists.

use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, SockaddrStorage};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// First descriptor systemd passes (SD_LISTEN_FDS_START).
const SD_LISTEN_FDS_START: i32 = 3;
/// More would be a misconfiguration; bounds the descriptor walk.
const MAX_LISTEN_FDS: i32 = 64;

/// One passed descriptor (close-on-exec) and its `FileDescriptorName=`.
#[derive(Debug)]
pub struct Passed {
    pub fd: OwnedFd,
    pub name: Option<String>,
}

/// Takes the descriptors systemd passed to this process and clears the
/// variables. `Ok(None)`: nothing was passed to this process. Call before
/// any other thread starts (see the module documentation).
pub fn take() -> Result<Option<Vec<Passed>>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        // Meant for another process (e.g. our parent); not ours to take.
        return Ok(None);
    }
    let count: i32 = fds
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS is not a number: {fds:?}"))?;
    if !(0..=MAX_LISTEN_FDS).contains(&count) {
        return Err(format!("LISTEN_FDS={count} is out of range"));
    }
    let names: Vec<String> = match names {
        Some(n) if !n.is_empty() => n.split(':').map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let mut passed = Vec::new();
    for index in 0..count {
        let raw = SD_LISTEN_FDS_START + index;
        // A LISTEN_FDS larger than what was really passed must not make us
        // own a descriptor that is not open.
        nix::fcntl::fcntl(raw, nix::fcntl::FcntlArg::F_GETFD)
            .map_err(|e| format!("LISTEN_FDS names descriptor {raw}, which is not open: {e}"))?;
        // SAFETY: LISTEN_PID names this process, so by the sd_listen_fds
        // protocol descriptors 3..3+LISTEN_FDS were opened for us and
        // nothing else in this process owns them (and this one is open, as
        // checked just above); each is taken exactly once (the variables are
        // cleared above, so this cannot run twice).
        #[allow(unsafe_code)]
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| format!("cannot set close-on-exec on passed descriptor {raw}: {e}"))?;
        let name = names.get(index as usize).cloned();
        passed.push(Passed { fd, name });
    }
    Ok(Some(passed))
}

/// The descriptor is a listening stream socket (`ListenStream=`).
pub fn check_stream_listener(fd: &OwnedFd) -> Result<(), String> {
    let ty = getsockopt(&fd.as_fd(), sockopt::SockType).map_err(|e| format!("is not a socket: {e}"))?;
    if ty != SockType::Stream {
        return Err("is not a stream socket (use ListenStream=)".into());
    }
    if !getsockopt(&fd.as_fd(), sockopt::AcceptConn).unwrap_or(false) {
        return Err("is not listening".into());
    }
    Ok(())
}

/// The descriptor is a socket with a Unix (path or abstract) address.
pub fn is_unix_socket(fd: &OwnedFd) -> bool {
    getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .map(|addr| addr.as_unix_addr().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_told_apart_from_other_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let fd = OwnedFd::from(listener);
        assert_eq!(check_stream_listener(&fd), Ok(()));
        assert!(is_unix_socket(&fd));
        let tcp = OwnedFd::from(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        assert_eq!(check_stream_listener(&tcp), Ok(()));
        assert!(!is_unix_socket(&tcp));
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(check_stream_listener(&OwnedFd::from(a)).is_err(), "not listening");
        let file = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        assert!(check_stream_listener(&file).is_err(), "not a socket");
    }
}
