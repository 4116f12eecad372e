//! The daemon's share of systemd's sockets: every TCP socket named `http`
//! (or all of them when systemd gave no names). The descriptors themselves
//! are taken by `x2gobroker_sys::listen_fds::take`, first thing in
//! [`crate::daemon::startup::main`], before any thread starts.

use x2gobroker_sys::listen_fds::{check_stream_listener, Passed};

/// The name of the sockets the daemon serves (`FileDescriptorName=http`).
pub const HTTP_FD_NAME: &str = "http";

/// The passed descriptors the daemon serves, non-blocking.
pub fn http_listeners(passed: Vec<Passed>) -> Result<Vec<std::net::TcpListener>, String> {
    let count = passed.len();
    let named = passed.iter().any(|p| p.name.is_some());
    let mut listeners = Vec::new();
    for (index, Passed { fd, name }) in passed.into_iter().enumerate() {
        let raw = 3 + index;
        if named && name.as_deref() != Some(HTTP_FD_NAME) {
            log::warn!("ignoring passed descriptor {raw} named {name:?} (serving only '{HTTP_FD_NAME}')");
            continue;
        }
        check_stream_listener(&fd).map_err(|e| format!("passed descriptor {raw} ({name:?}) {e}"))?;
        let listener = std::net::TcpListener::from(fd);
        // Only an inet address converts; a Unix socket fails here.
        listener
            .local_addr()
            .map_err(|e| format!("passed descriptor {raw} ({name:?}) is not a TCP socket: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("passed descriptor {raw}: {e}"))?;
        listeners.push(listener);
    }
    if listeners.is_empty() {
        return Err(format!(
            "systemd passed {count} descriptors but none named '{HTTP_FD_NAME}'"
        ));
    }
    Ok(listeners)
}
