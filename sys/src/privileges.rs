//! Dropping from root to an account for good (ARCHITECTURE.md P3): the
//! SSH-mode worker (in the helper's forked child, before exec) and the
//! daemon's `--drop-privileges` use the same steps and checks.

use nix::unistd::{Gid, Uid, User};
use std::ffi::CString;
use std::path::PathBuf;

/// An account to drop to, with its groups resolved before any fork.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Supplementary groups to set (empty: none).
    pub groups: Vec<Gid>,
    pub home: PathBuf,
}

impl Account {
    /// `name` with its primary group and its supplementary groups from the
    /// group database. Refuses uid 0, gid 0 and membership of group 0.
    pub fn resolve(name: &str) -> Result<Account, String> {
        let user = User::from_name(name)
            .map_err(|e| format!("looking up {name:?}: {e}"))?
            .ok_or_else(|| format!("no such user {name:?}"))?;
        if user.uid.is_root() || user.gid.as_raw() == 0 {
            return Err(format!("{name:?} has uid or gid 0; it must not be root"));
        }
        let c_name = CString::new(name).map_err(|_| format!("{name:?} contains NUL"))?;
        let groups = nix::unistd::getgrouplist(&c_name, user.gid)
            .map_err(|e| format!("supplementary groups of {name:?}: {e}"))?;
        if groups.iter().any(|g| g.as_raw() == 0) {
            return Err(format!("{name:?} is a member of group 0; it must not be"));
        }
        Ok(Account {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            groups,
            home: user.dir,
        })
    }
}

/// Sets `groups`, then `gid`, then `uid` (groups and gid need CAP_SETGID,
/// which setuid() takes away; with a uid other than 0 the kernel empties
/// the permitted, effective and ambient capability sets), proves that
/// neither uid 0 nor gid 0 comes back, sets no_new_privs and umask 077.
///
/// Allocates nothing and takes no lock (errors are plain errno values), so
/// it may run in a forked child before exec.
pub fn drop_to(groups: &[Gid], gid: Gid, uid: Uid) -> std::io::Result<()> {
    nix::unistd::setgroups(groups)?;
    nix::unistd::setgid(gid)?;
    nix::unistd::setuid(uid)?;
    let regained =
        nix::unistd::setuid(Uid::from_raw(0)).is_ok() || nix::unistd::setgid(Gid::from_raw(0)).is_ok();
    let ids = (
        nix::unistd::getuid(),
        nix::unistd::geteuid(),
        nix::unistd::getgid(),
        nix::unistd::getegid(),
    );
    if regained || ids != (uid, uid, gid, gid) {
        return Err(nix::errno::Errno::EPERM.into());
    }
    nix::sys::prctl::set_no_new_privs()?;
    // Cookie files and anything else written afterwards are the account's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unknown_accounts_are_refused() {
        assert!(Account::resolve("root").is_err());
        assert!(Account::resolve("no-such-user-xbt").is_err());
    }
}
