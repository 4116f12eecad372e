//! Starting an SSH-mode worker as the daemon user (ARCHITECTURE.md P3): the child
//! sets the daemon user's supplementary groups, its gid, then its uid (which
//! empties the permitted, effective and ambient capability sets; the
//! inheritable set was emptied at start-up), checks that uid 0 and gid 0
//! cannot be regained, and sets no_new_privs, all before exec. The job
//! reaches the worker on its standard input, one end of a socketpair made
//! here, so the worker can check with SO_PEERCRED that root (its parent)
//! made it.

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::{Gid, Uid, User};
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub use x2gobroker_protocol::paths::WORKER_FLAG;

/// The account workers run as, looked up live for every task.
#[derive(Debug, Clone)]
pub struct WorkerAccount {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Supplementary groups from the group database (includes `gid`).
    pub groups: Vec<Gid>,
    pub home: PathBuf,
}

impl WorkerAccount {
    pub fn resolve(name: &str) -> Result<WorkerAccount, String> {
        let user = User::from_name(name)
            .map_err(|e| format!("looking up {name:?}: {e}"))?
            .ok_or_else(|| format!("no such user {name:?}"))?;
        if user.uid.is_root() || user.gid.as_raw() == 0 {
            return Err(format!("{name:?} has uid or gid 0; workers must not run as root"));
        }
        let c_name = CString::new(name).map_err(|_| format!("{name:?} contains NUL"))?;
        let groups = nix::unistd::getgrouplist(&c_name, user.gid)
            .map_err(|e| format!("supplementary groups of {name:?}: {e}"))?;
        if groups.iter().any(|g| g.as_raw() == 0) {
            return Err(format!("{name:?} is a member of group 0; workers must not be"));
        }
        Ok(WorkerAccount {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            groups,
            home: user.dir,
        })
    }
}

/// The worker program: `--ssh-worker-program`, else `x2gobroker-ssh` next
/// to this executable, then in `../bin` (sbin/bin layouts), then /usr/bin.
pub fn default_program() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("x2gobroker-ssh"));
            candidates.push(dir.join("../bin/x2gobroker-ssh"));
        }
    }
    candidates.push(PathBuf::from("/usr/bin/x2gobroker-ssh"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/usr/bin/x2gobroker-ssh"))
}

/// The program must be a root-owned file that nobody else can change,
/// in a directory nobody else can change: it runs with the daemon user's
/// access to cookies and secrets.
pub fn check_program(program: &Path) -> Result<(), String> {
    let program = program
        .canonicalize()
        .map_err(|e| format!("worker program {}: {e}", program.display()))?;
    let meta = std::fs::metadata(&program).map_err(|e| format!("{}: {e}", program.display()))?;
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return Err(format!("{} is not an executable file", program.display()));
    }
    let safe = |m: &std::fs::Metadata| m.uid() == 0 && m.mode() & 0o022 == 0;
    if !safe(&meta) {
        return Err(format!(
            "{} must be owned by root and writable by nobody else",
            program.display()
        ));
    }
    if let Some(dir) = program.parent() {
        let dmeta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !safe(&dmeta) {
            return Err(format!(
                "{} (holding the worker program) must be owned by root and writable by nobody else",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// A started worker and the helper's end of its job socket.
pub struct Worker {
    pub child: tokio::process::Child,
    pub job_socket: std::os::unix::net::UnixStream,
}

/// Starts `program --ssh-worker` as `account` with exactly `env`, the job
/// socket as stdin and stdout/stderr piped.
pub fn spawn(program: &Path, account: &WorkerAccount, env: &[(String, String)]) -> std::io::Result<Worker> {
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let groups = account.groups.clone();
    let (uid, gid) = (account.uid, account.gid);
    // SAFETY: the closure runs in the forked child before exec. It only
    // makes system calls through nix's thin wrappers (setgroups, setgid,
    // setuid, prctl, umask), which neither allocate nor take locks:
    // `groups` was built before the fork and is only borrowed.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || drop_privileges_in_child(&groups, gid, uid));
    }
    // The command (holding our copy of the child's end) is dropped on
    // return, so the worker's end is then open in the worker only.
    let child = command.spawn()?;
    Ok(Worker {
        child,
        job_socket: std::os::unix::net::UnixStream::from(ours),
    })
}

/// In the child, before exec. Order matters: groups and gid need
/// CAP_SETGID, which setuid() takes away.
fn drop_privileges_in_child(groups: &[Gid], gid: Gid, uid: Uid) -> std::io::Result<()> {
    nix::unistd::setgroups(groups)?;
    nix::unistd::setgid(gid)?;
    nix::unistd::setuid(uid)?;
    // With the uid no longer 0 the kernel has emptied the permitted and
    // effective sets; prove that neither uid 0 nor gid 0 comes back.
    // (No allocation here: errors are plain errno values.)
    let regained =
        nix::unistd::setuid(Uid::from_raw(0)).is_ok() || nix::unistd::setgid(Gid::from_raw(0)).is_ok();
    if regained || nix::unistd::getuid() != uid || nix::unistd::geteuid() != uid {
        return Err(nix::errno::Errno::EPERM.into());
    }
    nix::sys::prctl::set_no_new_privs()?;
    // Cookie files and anything else the task writes are the daemon's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xbt-worker-launch-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn worker_program_must_be_safe_from_others() {
        let dir = scratch("program");
        let program = dir.join("x2gobroker-ssh");
        fs::write(&program, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_program(&program).is_err(), "not executable");
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        if nix::unistd::geteuid().is_root() {
            assert_eq!(check_program(&program), Ok(()));
        }
        fs::set_permissions(&program, fs::Permissions::from_mode(0o775)).unwrap();
        assert!(check_program(&program).is_err(), "group-writable");
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_program(&program).is_err(), "directory writable by others");
        assert!(check_program(&dir.join("missing")).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn root_and_unknown_accounts_are_refused() {
        assert!(WorkerAccount::resolve("root").is_err());
        assert!(WorkerAccount::resolve("no-such-user-xbt").is_err());
    }
}
