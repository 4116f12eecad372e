//! Starting an SSH-mode worker as the daemon user (ARCHITECTURE.md P3): the child
//! drops to the daemon user's supplementary groups, gid and uid with
//! `x2gobroker_sys::privileges::drop_to` before exec (the inheritable
//! capability set was emptied at start-up). The job
//! reaches the worker on its standard input, one end of a socketpair made
//! here, so the worker can check with SO_PEERCRED that root (its parent)
//! made it.

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Child;
use x2gobroker_protocol::paths::WORKER_FLAG;
use x2gobroker_sys::privileges::Account;

/// The worker program: `--ssh-worker-program`, else `x2gobroker-ssh` next
/// to this executable, then in `../bin` (sbin/bin layouts), then /usr/bin.
pub fn default_program() -> PathBuf {
    let usr_bin = PathBuf::from("/usr/bin/x2gobroker-ssh");
    let exe = std::env::current_exe().unwrap_or_default();
    let near = exe
        .parent()
        .map(|d| [d.join("x2gobroker-ssh"), d.join("../bin/x2gobroker-ssh")]);
    let mut candidates = near.into_iter().flatten().chain([usr_bin.clone()]);
    candidates.find(|p| p.is_file()).unwrap_or(usr_bin)
}

/// Starts `program --ssh-worker` as `account` with exactly `env`, the job
/// socket as stdin, `caller` (the caller's connection) as stdout and no
/// stderr (the worker relays its own stderr to the caller). Returns the
/// worker and the helper's end of its job socket.
pub fn spawn(
    program: &Path,
    account: &Account,
    env: &[(String, String)],
    caller: OwnedFd,
) -> std::io::Result<(Child, UnixStream)> {
    let (ours, theirs): (OwnedFd, OwnedFd) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let mut command = tokio::process::Command::new(program);
    command
        .arg0("x2gobroker-ssh")
        .arg(WORKER_FLAG)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("HOME", &account.home)
        .env("USER", &account.name)
        .env("LOGNAME", &account.name)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .current_dir("/")
        // std dup2()s it onto descriptor 0, which clears close-on-exec.
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::from(caller))
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let groups = account.groups.clone();
    let (uid, gid) = (account.uid, account.gid);
    // SAFETY: the closure runs in the forked child before exec. `drop_to`
    // only makes system calls through nix's thin wrappers (setgroups,
    // setgid, setuid, prctl, umask), which neither allocate nor take locks:
    // `groups` was built before the fork and is only borrowed.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || x2gobroker_sys::privileges::drop_to(&groups, gid, uid));
    }
    // The command (holding our copy of the child's end) is dropped on
    // return, so the worker's end is then open in the worker only.
    Ok((command.spawn()?, UnixStream::from(ours)))
}
