//! The listening socket: handed over by systemd (LISTEN_FDS) or bound here
//! with the requested owner, group and mode.

use crate::StartupError;
use nix::sys::socket::{getsockopt, sockopt, SockType};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{chown, getpid, Group, User};
use std::fs;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// First descriptor systemd passes (SD_LISTEN_FDS_START).
const SD_LISTEN_FDS_START: i32 = 3;

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

pub struct BindOptions<'a> {
    pub path: &'a Path,
    pub owner: &'a str,
    pub group: &'a str,
    pub mode: u32,
}

/// Takes the systemd socket if one was passed to this process, else binds.
pub fn open(bind: &BindOptions<'_>) -> Result<Listener, StartupError> {
    match systemd_socket()? {
        Some(socket) => Ok(Listener {
            socket,
            bound_path: None,
            description: "socket passed by systemd".into(),
        }),
        None => bind_socket(bind),
    }
}

/// Reads and clears LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES (so nothing we
/// start inherits them). Exactly one Unix stream listening socket is accepted.
fn systemd_socket() -> Result<Option<UnixListener>, StartupError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    if pid.trim().parse::<i32>().ok() != Some(getpid().as_raw()) {
        // Meant for another process (e.g. our parent); not ours to take.
        return Ok(None);
    }
    let count: i32 = fds
        .trim()
        .parse()
        .map_err(|_| StartupError::new(format!("LISTEN_FDS is not a number: {fds:?}")))?;
    if count != 1 {
        return Err(StartupError::new(format!(
            "systemd passed {count} sockets ({}); exactly one is supported",
            names.unwrap_or_default()
        )));
    }
    // SAFETY: LISTEN_PID names this process, so by the sd_listen_fds
    // protocol descriptor 3 was opened for us and nothing else in this
    // process owns it; we take ownership exactly once (the variables are
    // cleared above, so this cannot run twice with the same result).
    #[allow(unsafe_code)]
    let fd = unsafe { OwnedFd::from_raw_fd(SD_LISTEN_FDS_START) };
    check_is_unix_stream_listener(&fd)?;
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| StartupError::new(format!("cannot set close-on-exec on the systemd socket: {e}")))?;
    Ok(Some(UnixListener::from(fd)))
}

fn check_is_unix_stream_listener(fd: &OwnedFd) -> Result<(), StartupError> {
    let bad = |what: &str| StartupError::new(format!("the socket passed by systemd {what}"));
    let ty = getsockopt(&fd.as_fd(), sockopt::SockType).map_err(|e| bad(&format!("is not a socket: {e}")))?;
    if ty != SockType::Stream {
        return Err(bad("is not a stream socket (use ListenStream=)"));
    }
    if !getsockopt(&fd.as_fd(), sockopt::AcceptConn).unwrap_or(false) {
        return Err(bad("is not listening"));
    }
    let addr: nix::sys::socket::SockaddrStorage =
        nix::sys::socket::getsockname(std::os::fd::AsRawFd::as_raw_fd(fd))
            .map_err(|e| bad(&format!("has no address: {e}")))?;
    if addr.as_unix_addr().is_none() {
        return Err(bad("is not a Unix socket"));
    }
    Ok(())
}

fn bind_socket(bind: &BindOptions<'_>) -> Result<Listener, StartupError> {
    let path = bind.path;
    let err = |what: String| StartupError::new(format!("socket {}: {what}", path.display()));
    let owner = User::from_name(bind.owner)
        .ok()
        .flatten()
        .ok_or_else(|| err(format!("unknown socket owner {:?}", bind.owner)))?;
    let group = Group::from_name(bind.group)
        .ok()
        .flatten()
        .ok_or_else(|| err(format!("unknown socket group {:?}", bind.group)))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => return Err(err("needs an absolute path with a parent directory".into())),
    };
    prepare_parent(parent).map_err(&err)?;
    remove_stale(path).map_err(&err)?;

    // A restrictive umask closes the window between bind() and chmod().
    let old_umask = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old_umask);
    let socket = bound.map_err(|e| err(format!("cannot bind: {e}")))?;
    // From here on the file is ours and removed again if set-up fails.
    let listener = Listener {
        socket,
        bound_path: Some(path.to_path_buf()),
        description: format!("socket {}", path.display()),
    };
    chown(path, Some(owner.uid), Some(group.gid)).map_err(|e| err(format!("cannot change owner: {e}")))?;
    fs::set_permissions(path, fs::Permissions::from_mode(bind.mode))
        .map_err(|e| err(format!("cannot change mode: {e}")))?;
    Ok(listener)
}

/// Creates the parent directory (root-owned, 0755) or checks that an
/// existing one cannot be tampered with by others.
fn prepare_parent(parent: &Path) -> Result<(), String> {
    match fs::symlink_metadata(parent) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|e| format!("cannot create directory {}: {e}", parent.display()))?;
            Ok(())
        }
        Err(e) => Err(format!("cannot inspect {}: {e}", parent.display())),
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(format!("{} is not a directory", parent.display()));
            }
            let mode = meta.mode();
            let sticky = mode & 0o1000 != 0;
            if meta.uid() != 0 {
                return Err(format!("{} is not owned by root", parent.display()));
            }
            if mode & 0o022 != 0 && !sticky {
                return Err(format!("{} is writable by others than root", parent.display()));
            }
            Ok(())
        }
    }
}

use std::os::unix::fs::DirBuilderExt;

/// Removes a socket left by a crashed helper; refuses to remove anything that
/// is not a socket, or a socket some process still answers on.
fn remove_stale(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot inspect: {e}")),
        Ok(meta) if !meta.file_type().is_socket() => {
            Err("exists and is not a socket; not removing it".into())
        }
        Ok(_) => {
            if UnixStream::connect(path).is_ok() {
                return Err("another process is already listening on it".into());
            }
            fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket: {e}"))
        }
    }
}
