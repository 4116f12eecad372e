//! The network peer of the SSH session a process runs in, from sources the
//! process cannot forge: its ancestry in /proc (parent links are kept by
//! the kernel) up to the first root-owned sshd process — the session's
//! privileged monitor, which holds the client's TCP connection — and that
//! connection's remote end in the monitor's /proc/PID/net/tcp{,6}. The
//! caller's own SSH_CLIENT is never read. Reading a root sshd's
//! descriptors needs CAP_SYS_PTRACE (sshd makes itself non-dumpable).

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Ancestors looked at before giving up (a loop or an absurd depth).
const MAX_DEPTH: usize = 64;

/// Programs that are sshd's session monitor (OpenSSH before and after the
/// sshd-session split).
const SSHD_PROGRAMS: [&str; 2] = ["sshd", "sshd-session"];

/// The session's client as SSH_CLIENT spells it ("ADDRESS PORT LOCALPORT"),
/// or `None` when `pid` does not run under a root-owned sshd.
///
/// `pid` comes from SO_PEERCRED, recorded when the caller connected: it is
/// only taken as the caller while its real and effective uid are `uid` and
/// it is the same process (start time) after the walk, so a pid the caller
/// let go and that the kernel gave to another process (say, a fresh root
/// sshd for a connection the caller opened) names nobody.
pub fn ssh_client_of(pid: i32, uid: u32) -> Option<String> {
    let caller = identity(pid)?;
    if caller.1 != uid || caller.2 != uid {
        return None;
    }
    let found = walk_to_sshd(pid)?;
    (identity(pid)? == caller).then_some(found)
}

fn walk_to_sshd(pid: i32) -> Option<String> {
    let mut current = pid;
    for _ in 0..MAX_DEPTH {
        let (parent, uid) = parent_and_uid(current)?;
        if uid == 0 && is_sshd(current) {
            return connection_of(current);
        }
        if parent <= 1 {
            return None;
        }
        current = parent;
    }
    None
}

/// (start time in clock ticks, real uid, effective uid) of `pid`.
fn identity(pid: i32) -> Option<(u64, u32, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the name: state is the 3rd field, starttime the 22nd.
    let start = stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut uids = status
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .skip(1);
    let real = uids.next()?.parse().ok()?;
    let effective = uids.next()?.parse().ok()?;
    Some((start, real, effective))
}

/// Parent pid (from /proc/PID/stat, after the parenthesised name, which
/// may contain anything) and real uid (from /proc/PID/status).
fn parent_and_uid(pid: i32) -> Option<(i32, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let parent = after_name.split_whitespace().nth(1)?.parse().ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid_line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let uid = uid_line.split_whitespace().nth(1)?.parse().ok()?;
    Some((parent, uid))
}

fn is_sshd(pid: i32) -> bool {
    fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        // After a package upgrade the running binary reads "sshd (deleted)".
        .is_some_and(|name| SSHD_PROGRAMS.contains(&name.trim_end_matches(" (deleted)")))
}

/// The remote end of the established TCP connection among `pid`'s
/// descriptors.
fn connection_of(pid: i32) -> Option<String> {
    let inodes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    // Exactly one: a PAM or NSS module in the monitor may hold connections
    // of its own (LDAP, Kerberos), and guessing could hand an ACL their
    // server's address.
    let mut peers = ["tcp", "tcp6"].iter().flat_map(|table| {
        let text = fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        text.lines()
            .skip(1)
            .filter_map(|line| established_peer(line, &inodes))
            .collect::<Vec<_>>()
    });
    let first = peers.next()?;
    peers.next().is_none().then_some(first)
}

/// "sl local rem st ... inode": the peer of an ESTABLISHED (01) entry whose
/// inode is one of `inodes`, as "ADDRESS PORT LOCALPORT".
fn established_peer(line: &str, inodes: &[String]) -> Option<String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 10 || fields[3] != "01" || !inodes.iter().any(|i| i == fields[9]) {
        return None;
    }
    let (_, local_port) = hex_endpoint(fields[1])?;
    let (address, port) = hex_endpoint(fields[2])?;
    Some(format!("{} {port} {local_port}", shown(address)))
}

/// An IPv4-mapped IPv6 peer is shown as IPv4, as sshd does.
fn shown(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// "0100007F:1F90": the kernel prints each 32-bit word of the address in
/// host byte order, the port as a plain hex number.
fn hex_endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in address.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let address = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some((address, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines_are_read() {
        let v4 = "   1: 0100007F:A6DF 0500007F:CD71 01 00000000:00000000 02:0000 00000000 0 0 1605067 2";
        let native = u32::from_ne_bytes([127, 0, 0, 1]);
        let peer = u32::from_ne_bytes([127, 0, 0, 5]);
        let line = v4
            .replace("0100007F", &format!("{native:08X}"))
            .replace("0500007F", &format!("{peer:08X}"));
        let inodes = ["1605067".to_string()];
        assert_eq!(
            established_peer(&line, &inodes).as_deref(),
            Some("127.0.0.5 52593 42719")
        );
        assert_eq!(established_peer(&line, &["1".to_string()]), None, "other inode");
        assert_eq!(
            established_peer(&line.replace(" 01 ", " 0A "), &inodes),
            None,
            "listening"
        );
    }

    #[test]
    fn mapped_ipv6_is_shown_as_ipv4() {
        let words = [
            0u32,
            0,
            u32::from_ne_bytes([0, 0, 0xff, 0xff]),
            u32::from_ne_bytes([192, 0, 2, 7]),
        ];
        let text: String = words.iter().map(|w| format!("{w:08X}")).collect();
        let (address, port) = hex_endpoint(&format!("{text}:0016")).unwrap();
        assert_eq!((shown(address).to_string(), port), ("192.0.2.7".to_string(), 22));
    }
}
