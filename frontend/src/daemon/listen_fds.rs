//! Listening sockets handed over by systemd (sd_listen_fds protocol):
//! `LISTEN_PID` names this process, `LISTEN_FDS` counts descriptors from 3,
//! `LISTEN_FDNAMES` names them. The daemon serves every TCP socket named
//! `http` (or all of them when systemd gave no names).
#![allow(unsafe_code)]

use nix::sys::socket::{getsockopt, sockopt, SockType};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// First descriptor systemd passes (SD_LISTEN_FDS_START).
const SD_LISTEN_FDS_START: i32 = 3;
/// More would be a misconfiguration; bounds the descriptor walk.
const MAX_LISTEN_FDS: i32 = 64;

/// The name of the sockets the daemon serves (`FileDescriptorName=http`).
pub const HTTP_FD_NAME: &str = "http";

/// Reads and clears LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES (so nothing we
/// start inherits them). `Ok(None)`: no sockets were passed to this process.
pub fn take_http_listeners() -> Result<Option<Vec<std::net::TcpListener>>, String> {
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
    let mut listeners = Vec::new();
    for index in 0..count {
        let raw = SD_LISTEN_FDS_START + index;
        // SAFETY: LISTEN_PID names this process, so by the sd_listen_fds
        // protocol descriptors 3..3+LISTEN_FDS were opened for us and
        // nothing else in this process owns them; each is taken exactly once
        // (the variables are cleared above, so this cannot run twice).
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| format!("cannot set close-on-exec on passed descriptor {raw}: {e}"))?;
        let name = names.get(index as usize).map(String::as_str);
        if names.is_empty() || name == Some(HTTP_FD_NAME) {
            check_tcp_listener(&fd).map_err(|e| format!("passed descriptor {raw} ({name:?}): {e}"))?;
            let listener = std::net::TcpListener::from(fd);
            // Only an inet address converts; a Unix socket fails here.
            listener
                .local_addr()
                .map_err(|e| format!("passed descriptor {raw} ({name:?}) is not a TCP socket: {e}"))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| format!("passed descriptor {raw}: {e}"))?;
            listeners.push(listener);
        } else {
            log::warn!("ignoring passed descriptor {raw} named {name:?} (serving only '{HTTP_FD_NAME}')");
        }
    }
    if listeners.is_empty() {
        return Err(format!(
            "systemd passed {count} descriptors but none named '{HTTP_FD_NAME}'"
        ));
    }
    Ok(Some(listeners))
}

fn check_tcp_listener(fd: &OwnedFd) -> Result<(), String> {
    let ty = getsockopt(&fd.as_fd(), sockopt::SockType).map_err(|e| format!("not a socket: {e}"))?;
    if ty != SockType::Stream {
        return Err("not a stream socket (use ListenStream=)".into());
    }
    if !getsockopt(&fd.as_fd(), sockopt::AcceptConn).unwrap_or(false) {
        return Err("not listening".into());
    }
    Ok(())
}
