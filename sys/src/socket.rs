//! Binding a Unix socket where a crashed process may have left its file.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Removes a socket file nobody answers on; refuses to remove anything that
/// is not a socket, or a socket some process still answers on.
pub fn remove_stale(path: &Path) -> Result<(), String> {
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

/// [`remove_stale`], then binds (and listens on) `path`. Owner and mode are
/// the caller's business.
pub fn bind_replacing_stale(path: &Path) -> Result<UnixListener, String> {
    remove_stale(path)?;
    UnixListener::bind(path).map_err(|e| format!("cannot bind: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_or_a_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // A socket file nobody listens on: bound but never listen()ed, so a
        // copy of the descriptor in a child another test forks meanwhile
        // cannot make it answer.
        {
            use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType, UnixAddr};
            let fd = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .unwrap();
            bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &UnixAddr::new(&path).unwrap(),
            )
            .unwrap();
        }
        let live = bind_replacing_stale(&path).expect("stale socket replaced");
        let err = bind_replacing_stale(&path).unwrap_err();
        assert!(err.contains("already listening"), "{err}");
        drop(live);
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        assert!(bind_replacing_stale(&file).unwrap_err().contains("not a socket"));
        assert_eq!(fs::read_to_string(&file).unwrap(), "x");
    }
}
