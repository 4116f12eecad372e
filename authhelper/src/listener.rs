//! The listening socket: handed over by systemd (taken with
//! `x2gobroker_sys::listen_fds::take` before any thread starts) or bound
//! here with the requested owner, group and mode.

use crate::cli::Options;
use nix::sys::stat::{umask, Mode};
use nix::unistd::{chown, Group, User};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use x2gobroker_sys::listen_fds::{self, Passed};

pub struct Listener {
    pub socket: UnixListener,
    /// Set when we bound the socket ourselves: removed again on shutdown.
    pub bound_path: Option<PathBuf>,
    pub description: String,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.bound_path {
            let _ = fs::remove_file(path);
        }
    }
}

/// The socket systemd passed (exactly one Unix stream listening socket),
/// else one bound here with `--socket-owner`, `--socket-group` and
/// `--socket-mode`.
pub fn open(passed: Option<Vec<Passed>>, bind: &Options) -> Result<Listener, String> {
    let Some(mut passed) = passed else {
        return bind_socket(bind);
    };
    let bad = |what: &str| format!("the socket passed by systemd {what}");
    if passed.len() != 1 {
        let names: Vec<_> = passed.iter().filter_map(|p| p.name.clone()).collect();
        return Err(format!(
            "systemd passed {} sockets ({}); exactly one is supported",
            passed.len(),
            names.join(":")
        ));
    }
    let fd = passed.remove(0).fd;
    listen_fds::check_stream_listener(&fd).map_err(|e| bad(&e))?;
    if !listen_fds::is_unix_socket(&fd) {
        return Err(bad("is not a Unix socket"));
    }
    Ok(Listener {
        socket: UnixListener::from(fd),
        bound_path: None,
        description: "socket passed by systemd".into(),
    })
}

fn bind_socket(bind: &Options) -> Result<Listener, String> {
    let path = &bind.socket;
    let err = |what: String| format!("socket {}: {what}", path.display());
    let owner = User::from_name(&bind.socket_owner)
        .ok()
        .flatten()
        .ok_or_else(|| err(format!("unknown socket owner {:?}", bind.socket_owner)))?;
    let group = Group::from_name(&bind.socket_group)
        .ok()
        .flatten()
        .ok_or_else(|| err(format!("unknown socket group {:?}", bind.socket_group)))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => return Err(err("needs an absolute path with a parent directory".into())),
    };
    x2gobroker_sys::files::prepare_parent(parent).map_err(&err)?;

    // A restrictive umask closes the window between bind() and chmod().
    let old_umask = umask(Mode::from_bits_truncate(0o177));
    let bound = x2gobroker_sys::socket::bind_replacing_stale(path);
    umask(old_umask);
    let socket = bound.map_err(err)?;
    // From here on the file is ours and removed again if set-up fails.
    let listener = Listener {
        socket,
        bound_path: Some(path.to_path_buf()),
        description: format!("socket {}", path.display()),
    };
    chown(path, Some(owner.uid), Some(group.gid)).map_err(|e| err(format!("cannot change owner: {e}")))?;
    fs::set_permissions(path, fs::Permissions::from_mode(bind.socket_mode))
        .map_err(|e| err(format!("cannot change mode: {e}")))?;
    Ok(listener)
}
