//! Capabilities kept after start-up. Everything else leaves the effective,
//! permitted, inheritable and ambient sets and the bounding set, so neither
//! this process nor anything it ever executes can regain it. The uid stays 0
//! (PAM modules such as pam_unix read root-owned 0640 files like /etc/shadow
//! through plain owner permissions, which needs no capability).

use caps::{CapSet, Capability, CapsHashSet};

/// The capabilities kept; the comments say why each is needed.
pub const KEPT: [Capability; 5] = [
    // libpam and pam_unix write login audit records (AUDIT_USER_AUTH,
    // AUDIT_USER_ACCT) to the kernel audit log; without it they are lost.
    Capability::CAP_AUDIT_WRITE,
    // SSH-mode workers are dropped to the daemon user: setgroups() and
    // setgid() need CAP_SETGID ...
    Capability::CAP_SETGID,
    // ... and setuid() needs CAP_SETUID.
    Capability::CAP_SETUID,
    // Once a worker runs as the daemon user, our uid no longer matches its
    // uid, so stopping a runaway worker at its deadline needs CAP_KILL.
    Capability::CAP_KILL,
    // An SSH-mode caller's client address is read from its sshd session's
    // socket (x2gobroker_sys::sshd_peer); sshd is not dumpable, so reading
    // its descriptors needs this (and makes callers visible under
    // ProtectProc=invisible).
    Capability::CAP_SYS_PTRACE,
];

/// Reduces this process to [`KEPT`], without CAP_SYS_PTRACE unless
/// `sshd_lookup`. Call after the socket is bound and chowned (that needed
/// CAP_CHOWN/CAP_FOWNER) and before serving anyone.
pub fn drop_to_kept(sshd_lookup: bool) -> Result<(), String> {
    let kept: CapsHashSet = KEPT
        .into_iter()
        .filter(|&cap| sshd_lookup || cap != Capability::CAP_SYS_PTRACE)
        .collect();
    // setpass: pam_unix gives its new /etc/shadow to group shadow; as a member
    // (no power over shadow files that uid 0 lacks) we need no CAP_CHOWN.
    // Without that group, none: no group inherited from our starter survives.
    let shadow = nix::unistd::Group::from_name("shadow").ok().flatten();
    let groups: Vec<_> = shadow.into_iter().map(|g| g.gid).collect();
    nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    let err = |what: &str, e: caps::errors::CapsError| format!("dropping capabilities ({what}): {e}");
    // The bounding set first: shrinking it needs CAP_SETPCAP, which goes below.
    for cap in caps::all() {
        if kept.contains(&cap) {
            continue;
        }
        // Capabilities this kernel does not know are not in the set anyway.
        if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            match caps::drop(None, CapSet::Bounding, cap) {
                // Our unit gives no CAP_SETPCAP: then it stays bounding only (not permitted, see below).
                Err(e) if cap == Capability::CAP_SYS_PTRACE => eprintln!(
                    "x2gobroker-authhelper: CAP_SYS_PTRACE stays in the bounding set ({e}); see the unit drop-in"
                ),
                r => r.map_err(|e| err("bounding set", e))?,
            }
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| err("ambient set", e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| err("inheritable set", e))?;
    caps::set(None, CapSet::Effective, &kept).map_err(|e| err("effective set", e))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(|e| err("permitted set", e))?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| err("reading back", e))?;
    if permitted != kept {
        return Err(format!(
            "capabilities not as expected after dropping: {permitted:?}"
        ));
    }
    Ok(())
}
