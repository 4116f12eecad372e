//! The daemon's control socket: admin diagnostics for `x2gobroker-ctl
//! status`, local only (a Unix socket, never HTTP). Who may ask is decided
//! from the peer's kernel-verified credentials (SO_PEERCRED): root, or a
//! member of the admin group (default `adm`). The socket file is 0666 so
//! that admins can connect at all; the peer check is the guard, and it comes
//! first: a caller who may not ask gets its refusal at once and is
//! disconnected, without taking one of the few connection slots (so no
//! local user can hold them and lock root out).

use nix::unistd::{Uid, User};
use std::path::{Path, PathBuf};
use std::time::Duration;
use x2gobroker_protocol::control::{ControlRequest, ControlResponse};
use x2gobroker_protocol::frame::nonblocking::{read_message, write_message};
pub use x2gobroker_protocol::paths::{CONTROL_SOCKET_ENV, DEFAULT_CONTROL_SOCKET};

/// Environment variable naming the admin group.
pub const ADMIN_GROUP_ENV: &str = "X2GOBROKER_ADMIN_GROUP";
pub const DEFAULT_ADMIN_GROUP: &str = "adm";
/// Bound for one exchange, so a silent client cannot hold a task.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on concurrent control connections.
const MAX_CONNECTIONS: usize = 8;

/// The control socket path: option, else environment, else the default.
pub fn socket_path(option: Option<&Path>) -> PathBuf {
    option
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CONTROL_SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET))
}

pub fn admin_group() -> String {
    std::env::var(ADMIN_GROUP_ENV).unwrap_or_else(|_| DEFAULT_ADMIN_GROUP.to_owned())
}

/// Root, or the admin group as primary (kernel) or supplementary (group
/// database) group of the peer; the helper applies the same rule.
pub fn may_query_status(uid: u32, gid: u32, admin_group: &str) -> bool {
    x2gobroker_sys::admin::is_admin(uid, gid, x2gobroker_sys::admin::group_id(admin_group))
}

/// A bound control socket; the file is removed again on drop.
pub struct ControlSocket {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket, replacing a stale one (a socket file nobody answers
/// on). Needs no runtime: the daemon binds before it drops privileges and
/// before its runtime starts.
pub fn bind(path: &Path) -> Result<ControlSocket, String> {
    use std::os::unix::fs::PermissionsExt;
    let err = |what: String| format!("control socket {}: {what}", path.display());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .create(parent)
                .map_err(|e| err(format!("cannot create {}: {e}", parent.display())))?;
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755));
        }
    }
    let listener = x2gobroker_sys::socket::bind_replacing_stale(path).map_err(err)?;
    let socket = ControlSocket {
        listener,
        path: path.to_path_buf(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| err(format!("cannot change mode: {e}")))?;
    Ok(socket)
}

/// Answers control requests until the task is aborted.
pub async fn serve(socket: ControlSocket, admin_group: String, shared: crate::core::broker::Shared) {
    let listener = match socket
        .listener
        .try_clone()
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::UnixListener::from_std)
    {
        Ok(l) => l,
        Err(e) => {
            log::error!("control socket: {e}");
            return;
        }
    };
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                log::error!("control socket: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(peer) = x2gobroker_sys::peer::PeerCredentials::of(&stream) else {
            continue;
        };
        if !may_query_status(peer.uid, peer.gid, &admin_group) {
            refuse(&stream, peer.uid, &admin_group);
            // Dropped: closed now.
            continue;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            // Busy (admins only hold these): drop rather than queue.
            continue;
        };
        let uid = peer.uid;
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, answer(stream, uid, &shared)).await;
        });
    }
}

/// Tells a caller who may not ask why, without reading its request or
/// waiting for it: one non-blocking write of a small frame (it fits in an
/// empty socket buffer), then the connection is closed.
fn refuse(stream: &tokio::net::UnixStream, uid: u32, admin_group: &str) {
    crate::core::log_limit::log(
        "control status outcome=denied",
        crate::core::audit::AUDIT_TARGET,
        log::Level::Warn,
        || format!("control status uid={uid} outcome=denied"),
    );
    let name = User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let response = ControlResponse::Denied(format!(
        "{name} may not query the daemon (root or group {admin_group} only)"
    ));
    if let Ok(frame) = x2gobroker_protocol::frame::encode(&response) {
        let _ = stream.try_write(&frame);
    }
}

async fn answer(mut stream: tokio::net::UnixStream, uid: u32, shared: &crate::core::broker::Shared) {
    let response = match read_message::<ControlRequest, _>(&mut stream).await {
        Ok(ControlRequest::Status) => {
            log::info!(target: crate::core::audit::AUDIT_TARGET, "control status uid={uid} outcome=granted");
            let mut status = crate::core::stats::STATS.snapshot();
            let store = shared.current().state.clone();
            status.state_store = store.describe();
            status.state_store_health = match store.health().await {
                Ok(()) => "ok".into(),
                Err(e) => e.to_string(),
            };
            status.pending_key_removals = store.pending_removals().await.ok().map(|n| n as u64);
            ControlResponse::Status(status)
        }
        Err(e) => ControlResponse::Denied(format!("bad request: {e}")),
    };
    let _ = write_message(&mut stream, &response).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_for_root_and_the_admin_group() {
        assert!(may_query_status(0, 0, "adm"));
        // nobody is in no admin group.
        assert!(!may_query_status(65534, 65534, "adm"));
        if let Ok(Some(adm)) = nix::unistd::Group::from_name("adm") {
            // The primary group as the kernel reports it counts.
            assert!(may_query_status(65534, adm.gid.as_raw(), "adm"));
        }
        // An unknown admin group admits nobody but root.
        assert!(!may_query_status(65534, 65534, "no-such-group-xbt"));
        assert!(may_query_status(0, 0, "no-such-group-xbt"));
    }

    /// Stale-socket handling is x2gobroker_sys::socket's (tested there);
    /// the control socket adds its mode and its removal on drop.
    #[tokio::test]
    async fn socket_mode_and_removal_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/control.sock");
        let bound = bind(&path).expect("bound, parent created");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        assert!(bind(&path).is_err(), "a live socket must not be taken over");
        drop(bound);
        assert!(!path.exists(), "removed on drop");
    }
}
