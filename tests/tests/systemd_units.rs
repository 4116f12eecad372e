//! The systemd units, sysusers.d and tmpfiles.d files under systemd/:
//! `systemd-analyze verify` accepts them without a single diagnostic,
//! `systemd-analyze security` rates them within budget, the accounts and
//! directories come out as intended, and the socket permissions let exactly
//! the intended identities reach the helper. Runs as root (tests need it for
//! chown and identity switches).

use nix::unistd::{chown, Group, User};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

const DAEMON_SERVICE: &str = "x2gobroker-daemon.service";
const HELPER_SERVICE: &str = "x2gobroker-authhelper.service";
const UNITS: [&str; 4] = [
    "x2gobroker-daemon.socket",
    DAEMON_SERVICE,
    "x2gobroker-authhelper.socket",
    HELPER_SERVICE,
];
/// Exposure budgets (systemd-analyze security, 0 = best, 10 = worst).
const DAEMON_BUDGET: f64 = 2.0;
const HELPER_BUDGET: f64 = 4.0;
/// Where the original's packages put their units (Debian).
const ORIGINAL_UNIT_DIR: &str = "/lib/systemd/system";
const ORIGINAL_SERVICES: [&str; 2] = ["x2gobroker-daemon.service", "x2gobroker-authservice.service"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn unit_path(name: &str) -> PathBuf {
    repo().join("systemd").join(name)
}

/// A private directory, removed again on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("xbt-units-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The values of `key=` in a unit or config text, in order (no section
/// handling needed: our keys are unique per file).
fn values(unit_text: &str, key: &str) -> Vec<String> {
    unit_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

fn single_value(unit_text: &str, key: &str) -> String {
    let all = values(unit_text, key);
    assert_eq!(all.len(), 1, "expected exactly one {key}= but found {all:?}");
    all[0].clone()
}

fn read_unit(name: &str) -> String {
    fs::read_to_string(unit_path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// A throw-away root for `systemd-analyze verify --root`: our units, the
/// host's targets and slices they refer to, and an executable stub at every
/// Exec*= path (the real programs need not be installed to check units).
fn verify_root(units: &[(&str, String)]) -> TempDir {
    let root = TempDir::new("verify");
    let unit_dir = root.path().join("usr/lib/systemd/system");
    fs::create_dir_all(&unit_dir).expect("unit dir");
    let host_units = fs::read_dir(ORIGINAL_UNIT_DIR).expect("host unit directory");
    for entry in host_units.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".target") || name.ends_with(".slice") {
            // fs::copy follows symlinks (e.g. default.target).
            let _ = fs::copy(entry.path(), unit_dir.join(&name));
        }
    }
    for (name, content) in units {
        fs::write(unit_dir.join(name), content).expect("write unit");
        let commands = [
            "ExecStartPre",
            "ExecStart",
            "ExecStartPost",
            "ExecReload",
            "ExecStop",
        ]
        .iter()
        .flat_map(|key| values(content, key));
        for exec in commands {
            let program = exec.trim_start_matches(['-', '@', ':', '+', '!']);
            let program = program.split_whitespace().next().expect("ExecStart program");
            let stub = root.path().join(program.trim_start_matches('/'));
            fs::create_dir_all(stub.parent().expect("stub parent")).expect("stub dir");
            fs::write(&stub, "#!/bin/sh\nexit 0\n").expect("stub");
            fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).expect("stub mode");
        }
    }
    root
}

/// `systemd-analyze verify`: exit status and every line it printed.
fn verify(units: &[(&str, String)]) -> (bool, String) {
    let root = verify_root(units);
    let mut cmd = Command::new("systemd-analyze");
    // --man=no: our man pages are generated by the programs at install time
    // and are not on this machine; --generators=no: the host's generators
    // have nothing to do with these units.
    cmd.arg("verify")
        .arg("--man=no")
        .arg("--generators=no")
        .arg(format!("--root={}", root.path().display()));
    for (name, _) in units {
        cmd.arg(name);
    }
    let output = run(&mut cmd);
    (output.status.success(), text(&output))
}

fn our_units() -> Vec<(&'static str, String)> {
    UNITS.iter().map(|name| (*name, read_unit(name))).collect()
}

#[test]
fn systemd_analyze_verify_accepts_every_unit_without_diagnostics() {
    let (ok, diagnostics) = verify(&our_units());
    assert!(ok, "systemd-analyze verify failed:\n{diagnostics}");
    assert!(
        diagnostics.trim().is_empty(),
        "systemd-analyze verify printed diagnostics (warnings count as failures):\n{diagnostics}"
    );
}

/// The check above must be able to fail: a bad value and an unknown key are
/// only warnings for systemd (exit status 0), so they must show up as output.
#[test]
fn verify_check_notices_a_broken_unit() {
    let mut units = our_units();
    let helper = units
        .iter_mut()
        .find(|(n, _)| *n == HELPER_SERVICE)
        .expect("helper unit");
    helper.1 = helper
        .1
        .replace("ProtectHome=yes", "ProtectHome=maybe\nFrobnicate=yes");
    let (_, diagnostics) = verify(&units);
    assert!(
        diagnostics.contains("ProtectHome") || diagnostics.contains("protect home"),
        "{diagnostics}"
    );
    assert!(diagnostics.contains("Frobnicate"), "{diagnostics}");
}

/// The `Overall exposure level for NAME: X.Y` of `systemd-analyze security`.
fn exposure(unit_file: &Path) -> f64 {
    let output = run(Command::new("systemd-analyze")
        .arg("security")
        .arg("--offline=true")
        .arg("--no-pager")
        .arg(unit_file));
    let out = text(&output);
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no exposure level for {}:\n{out}", unit_file.display()));
    let after = line.rsplit_once(": ").map(|(_, v)| v).unwrap_or_default();
    let number = after.split_whitespace().next().unwrap_or_default();
    number
        .parse()
        .unwrap_or_else(|_| panic!("cannot parse the exposure level in {line:?}"))
}

#[test]
fn daemon_exposure_is_within_budget() {
    let level = exposure(&unit_path(DAEMON_SERVICE));
    println!("exposure {DAEMON_SERVICE}: {level:.1} (budget {DAEMON_BUDGET:.1})");
    assert!(
        level <= DAEMON_BUDGET,
        "{DAEMON_SERVICE} exposure {level} > {DAEMON_BUDGET}"
    );
}

#[test]
fn helper_exposure_is_within_budget() {
    let level = exposure(&unit_path(HELPER_SERVICE));
    println!("exposure {HELPER_SERVICE}: {level:.1} (budget {HELPER_BUDGET:.1})");
    assert!(
        level <= HELPER_BUDGET,
        "{HELPER_SERVICE} exposure {level} > {HELPER_BUDGET}"
    );
}

/// The original's units, measured the same way, for docs/OPERATIONS.md; each
/// of ours must do better than the original's best.
#[test]
fn original_units_are_measured_the_same_way() {
    let originals: Vec<PathBuf> = ORIGINAL_SERVICES
        .iter()
        .map(|n| Path::new(ORIGINAL_UNIT_DIR).join(n))
        .filter(|p| p.is_file())
        .collect();
    if originals.is_empty() {
        println!("the original broker's units are not installed; nothing to compare");
        return;
    }
    let mut best_original = f64::MAX;
    for unit in &originals {
        let level = exposure(unit);
        println!("exposure original {}: {level:.1}", unit.display());
        best_original = best_original.min(level);
    }
    for ours in [DAEMON_SERVICE, HELPER_SERVICE] {
        let level = exposure(&unit_path(ours));
        assert!(
            level < best_original,
            "{ours} ({level}) is not better than the original ({best_original})"
        );
    }
}

/// `Capability::CAP_…` names in the helper's KEPT list (its source is the
/// authority on what it keeps; the unit must allow exactly that).
fn helper_kept_capabilities() -> BTreeSet<String> {
    let source = fs::read_to_string(repo().join("authhelper/src/privileges.rs")).expect("privileges.rs");
    let start = source.find("pub const KEPT").expect("KEPT in privileges.rs");
    let end = start + source[start..].find("];").expect("end of KEPT");
    let pattern = regex::Regex::new(r"Capability::(CAP_[A-Z_]+)").expect("regex");
    pattern
        .captures_iter(&source[start..end])
        .map(|c| c[1].to_string())
        .collect()
}

#[test]
fn helper_capability_bounding_set_is_exactly_what_the_helper_keeps() {
    let unit = read_unit(HELPER_SERVICE);
    let bounding: BTreeSet<String> = single_value(&unit, "CapabilityBoundingSet")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let kept = helper_kept_capabilities();
    assert!(!kept.is_empty(), "no capabilities found in KEPT");
    // More in the bounding set would make the helper's start-up drop fail
    // (that needs CAP_SETPCAP); fewer would break PAM or the privilege drop.
    assert_eq!(bounding, kept);
    assert_eq!(single_value(&unit, "AmbientCapabilities"), "");
    assert_eq!(single_value(&unit, "NoNewPrivileges"), "yes");
}

#[test]
fn daemon_service_has_no_capabilities_and_runs_as_the_daemon_user() {
    let unit = read_unit(DAEMON_SERVICE);
    assert_eq!(single_value(&unit, "CapabilityBoundingSet"), "");
    assert_eq!(single_value(&unit, "AmbientCapabilities"), "");
    assert_eq!(single_value(&unit, "User"), "x2gobroker");
    assert_eq!(single_value(&unit, "Type"), "notify");
    let socket = read_unit("x2gobroker-daemon.socket");
    assert_eq!(single_value(&socket, "ListenStream"), "127.0.0.1:8080");
    assert_eq!(single_value(&socket, "FileDescriptorName"), "http");
}

#[test]
fn helper_socket_path_is_the_original_default_and_the_helper_default() {
    let socket = read_unit("x2gobroker-authhelper.socket");
    let path = single_value(&socket, "ListenStream");
    assert_eq!(path, "/run/x2gobroker/x2gobroker-authservice.socket");
    // Defined once, for the helper, SSH mode and x2gobroker-ctl.
    assert_eq!(x2gobroker_protocol::paths::DEFAULT_AUTHSERVICE_SOCKET, path);
    let defaults = repo().join("etc/broker/defaults.conf");
    let defaults = fs::read_to_string(defaults).expect("defaults.conf");
    assert!(defaults.contains(&format!("#X2GOBROKER_AUTHSERVICE_SOCKET={path}")));
}

/// Runs `python3 -c <connect>` as `user` with exactly these groups; true
/// when it could connect to `socket`, false when the kernel said EACCES
/// (anything else is a broken test set-up and panics).
fn can_connect_as(user: &str, group: &str, supplementary: &[&str], socket: &Path) -> bool {
    let groups = if supplementary.is_empty() {
        "--clear-groups".to_string()
    } else {
        format!("--groups={}", supplementary.join(","))
    };
    let output = run(Command::new("setpriv")
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={group}"))
        .arg(groups)
        .arg("--")
        .arg("/usr/bin/python3")
        .arg("-c")
        .arg("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])")
        .arg(socket));
    if output.status.success() {
        return true;
    }
    let out = text(&output);
    assert!(
        out.contains("PermissionError"),
        "connecting as {user} failed oddly:\n{out}"
    );
    false
}

/// The accounts this needs come from scripts/setup-test-env.sh (which
/// scripts/test.sh runs first; running it here would race other tests).
fn require_test_accounts() {
    for user in ["x2gobroker", "xbt-dave", "nobody"] {
        assert!(
            User::from_name(user).ok().flatten().is_some(),
            "user {user} missing: run scripts/setup-test-env.sh first"
        );
    }
    assert!(
        Group::from_name("x2gobroker-users").ok().flatten().is_some(),
        "group x2gobroker-users missing: run scripts/setup-test-env.sh first"
    );
}

/// The helper socket as the unit creates it (SocketUser/Group/Mode, parsed
/// from the unit): the daemon service's identity (User, Group,
/// SupplementaryGroups, parsed from its unit) and x2gobroker-users members
/// get in, other users do not.
#[test]
fn helper_socket_admits_the_daemon_and_ssh_users_only() {
    require_test_accounts();
    let socket_unit = read_unit("x2gobroker-authhelper.socket");
    let owner = single_value(&socket_unit, "SocketUser");
    let group = single_value(&socket_unit, "SocketGroup");
    let mode = u32::from_str_radix(&single_value(&socket_unit, "SocketMode"), 8).expect("octal mode");
    assert_eq!(mode & 0o007, 0, "the helper socket must not be open to everyone");

    let dir = TempDir::new("sock");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("dir mode");
    let path = dir.path().join("authservice.socket");
    let _listener = UnixListener::bind(&path).expect("bind");
    let uid = User::from_name(&owner).ok().flatten().expect("socket owner").uid;
    let gid = Group::from_name(&group).ok().flatten().expect("socket group").gid;
    chown(&path, Some(uid), Some(gid)).expect("chown socket");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod socket");

    let daemon = read_unit(DAEMON_SERVICE);
    let daemon_user = single_value(&daemon, "User");
    let daemon_group = single_value(&daemon, "Group");
    let daemon_supplementary = single_value(&daemon, "SupplementaryGroups");
    let supplementary: Vec<&str> = daemon_supplementary.split_whitespace().collect();
    assert!(
        can_connect_as(&daemon_user, &daemon_group, &supplementary, &path),
        "the daemon service's identity cannot open the helper socket"
    );
    // Without the supplementary group the daemon user is locked out: the
    // membership is what grants access, not the user or its primary group.
    assert!(!can_connect_as(&daemon_user, &daemon_group, &[], &path));
    // An SSH-mode user: a member of the socket group.
    assert!(can_connect_as("xbt-dave", "xbt-dave", &[group.as_str()], &path));
    // Anyone else.
    assert!(!can_connect_as("xbt-dave", "xbt-dave", &[], &path));
    assert!(!can_connect_as("nobody", "nogroup", &[], &path));
    // The group that may read the authid file must not be the socket group.
    assert_ne!(group, daemon_group);
}

fn passwd_field(root: &Path, file: &str, name: &str, field: usize) -> String {
    let content = fs::read_to_string(root.join("etc").join(file)).expect("account database");
    content
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(field).map(|s| s.to_string()))
        .unwrap_or_else(|| panic!("{name} not in {file}:\n{content}"))
}

/// sysusers.d and tmpfiles.d applied to an empty root: the accounts, the
/// membership that opens the helper socket, and the directory modes.
#[test]
fn sysusers_and_tmpfiles_create_accounts_and_private_directories() {
    let root = TempDir::new("sysroot");
    fs::create_dir_all(root.path().join("etc/x2go/broker")).expect("etc");
    let sysusers = repo().join("systemd/sysusers.d/x2gobroker.conf");
    let output = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(&sysusers));
    assert!(output.status.success(), "systemd-sysusers: {}", text(&output));

    let r = root.path();
    assert_eq!(passwd_field(r, "passwd", "x2gobroker", 5), "/var/lib/x2gobroker");
    assert!(passwd_field(r, "passwd", "x2gobroker", 6).ends_with("nologin"));
    let uid: u32 = passwd_field(r, "passwd", "x2gobroker", 2).parse().expect("uid");
    let gid: u32 = passwd_field(r, "group", "x2gobroker", 2).parse().expect("gid");
    assert_eq!(
        passwd_field(r, "passwd", "x2gobroker", 3),
        gid.to_string(),
        "primary group"
    );
    let members = passwd_field(r, "group", "x2gobroker-users", 3);
    assert!(
        members.split(',').any(|m| m == "x2gobroker"),
        "members: {members}"
    );

    // An authid file with too open permissions gets corrected.
    let authid = r.join("etc/x2go/broker/x2gobroker.authid");
    fs::write(&authid, "00000000-0000-4000-8000-000000000000\n").expect("authid");
    fs::set_permissions(&authid, fs::Permissions::from_mode(0o644)).expect("authid mode");

    let tmpfiles = repo().join("systemd/tmpfiles.d/x2gobroker.conf");
    let output = run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(&tmpfiles));
    assert!(output.status.success(), "systemd-tmpfiles: {}", text(&output));

    let check = |path: &str, mode: u32, want_uid: u32, want_gid: u32| {
        let meta = fs::metadata(r.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.mode() & 0o7777, mode, "mode of {path}");
        assert_eq!((meta.uid(), meta.gid()), (want_uid, want_gid), "owner of {path}");
    };
    check("var/lib/x2gobroker", 0o700, uid, gid);
    check("var/lib/x2gobroker/cookies", 0o700, uid, gid);
    check("run/x2gobroker", 0o755, 0, 0);
    check("etc/x2go/broker/x2gobroker.authid", 0o640, 0, gid);
}

// ---------------------------------------------------------------------------
// The units in a running systemd.
//
// The test machine's PID 1 is not systemd, so each live test boots one: a
// systemd as PID 1 of its own PID, mount, network, UTS, IPC and cgroup
// namespaces, on an overlay of this machine's root whose writes go to a
// tmpfs, with a fresh /proc, /sys, cgroup2 (rooted in a cgroup of its own),
// /dev, /run and /tmp. Inside it, the original broker's packages are removed
// with dpkg (the documented migration), scripts/install.sh installs the
// workspace's real programs as a live install would, and systemd starts a
// target that wants both sockets. Nothing is written to this machine's disk,
// and killing that PID 1 ends everything. Units that touch the host kernel
// (sysctl, udev, modules, clock, binfmt) are masked.

/// Boots of the live system, one at a time (each takes a few seconds).
static LIVE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

const BOOT_SCRIPT: &str = r#"set -euo pipefail
B=$XBT_BASE
mount -t tmpfs -o mode=0755 tmpfs "$B"
mkdir -p "$B/upper" "$B/work" "$B/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$B/upper,workdir=$B/work" "$B/root"
R=$B/root
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=0755 tmpfs "$R/dev"
for n in null zero full random urandom tty; do touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
# The checkout and its programs may live under a path the fresh mounts above
# hide (e.g. a CI clone in /tmp): make them visible at the same paths.
for d in "$XBT_REPO" "$XBT_BIN"; do mkdir -p "$R$d"; mount --bind "$d" "$R$d"; done
chroot "$R" dpkg --remove --no-triggers x2gobroker-ssh x2gobroker-daemon x2gobroker-authservice x2gobroker \
  > "$R/root/xbt-dpkg.log" 2>&1
chroot "$R" bash "$XBT_REPO/scripts/install.sh" --bin-dir "$XBT_BIN" > "$R/root/xbt-install.log" 2>&1
M="$R/etc/systemd/system"
for u in systemd-sysctl.service systemd-udevd.service systemd-udev-trigger.service \
  systemd-modules-load.service systemd-timesyncd.service getty@.service serial-getty@.service \
  console-getty.service getty.target systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
  proc-sys-fs-binfmt_misc.mount kmod-static-nodes.service systemd-hwdb-update.service \
  systemd-firstboot.service systemd-random-seed.service systemd-pstore.service \
  systemd-remount-fs.service systemd-journald-audit.socket systemd-udevd-control.socket \
  systemd-udevd-kernel.socket postgresql.service ssh.service cron.service; do
  ln -sf /dev/null "$M/$u"
done
cat > "$M/xbt-live.target" <<'UNIT'
[Unit]
Description=x2gobroker live test
Requires=x2gobroker-authhelper.socket x2gobroker-daemon.socket
After=x2gobroker-authhelper.socket x2gobroker-daemon.socket
UNIT
exec chroot "$R" /usr/bin/env container=xbt-live /lib/systemd/systemd --system \
  --unit=xbt-live.target --log-target=journal --show-status=false
"#;

/// The workspace's target profile directory (e.g. target/debug), found from
/// this test executable (target/debug/deps/<test>-<hash>).
fn built_programs_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .skip(1)
        .find(|dir| {
            ["x2gobroker", "x2gobroker-daemon", "x2gobroker-authhelper"]
                .iter()
                .all(|p| dir.join(p).is_file())
        })
        .map(Path::to_path_buf)
        .unwrap_or_else(|| {
            panic!(
                "the broker programs are not built next to {}; run cargo build --workspace first",
                exe.display()
            )
        })
}

/// The cgroup v2 hierarchy of this machine (hybrid or unified layout).
fn cgroup2_root() -> PathBuf {
    for candidate in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let path = Path::new(candidate);
        if path.join("cgroup.procs").is_file() && path.join("cgroup.subtree_control").is_file() {
            return path.to_path_buf();
        }
    }
    panic!("no cgroup v2 hierarchy mounted under /sys/fs/cgroup");
}

struct LiveSystem {
    unshare: std::process::Child,
    systemd_pid: u32,
    cgroup: PathBuf,
    work: TempDir,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl LiveSystem {
    fn boot() -> LiveSystem {
        let serial = LIVE_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // work/ns becomes the namespace's tmpfs; the script and its log stay
        // beside it so they are readable from here.
        let work = TempDir::new("live");
        let ns_dir = work.path().join("ns");
        fs::create_dir(&ns_dir).expect("ns dir");
        let script = work.path().join("boot.sh");
        let boot_log = work.path().join("boot.log");
        fs::write(&script, BOOT_SCRIPT).expect("boot script");
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let cgroup = cgroup2_root().join(format!("xbt-live-{}-{n}", std::process::id()));
        fs::create_dir(&cgroup).expect("test cgroup");
        // Enter the test cgroup first, so that the new cgroup namespace (and
        // everything the booted systemd creates) lies below it.
        let unshare = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec unshare --cgroup --pid --fork --mount --uts --ipc --net \
                 --propagation private bash {}",
                cgroup.display(),
                script.display()
            ))
            .env("XBT_BASE", &ns_dir)
            .env("XBT_REPO", repo())
            .env("XBT_BIN", built_programs_dir())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(&boot_log).expect("boot log"))
            .spawn()
            .expect("start unshare");
        let mut live = LiveSystem {
            systemd_pid: 0,
            unshare,
            cgroup,
            work,
            _serial: serial,
        };
        live.systemd_pid = live.wait_for_systemd();
        live
    }

    /// The forked child of unshare becomes the boot script, then systemd.
    fn wait_for_systemd(&mut self) -> u32 {
        let children = format!("/proc/{0}/task/{0}/children", self.unshare.id());
        let mut pid = None;
        self.wait_until("systemd to run as PID 1 of the namespace", |live| {
            if let Ok(Some(status)) = live.unshare.try_wait() {
                let log = fs::read_to_string(live.work.path().join("boot.log")).unwrap_or_default();
                panic!("the boot script ended ({status}) before systemd ran:\n{log}");
            }
            let Some(child) = fs::read_to_string(&children)
                .ok()
                .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()))
            else {
                return false;
            };
            pid = Some(child);
            fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c.trim() == "systemd")
        });
        let pid = pid.expect("systemd pid");
        self.systemd_pid = pid;
        self.wait_until("xbt-live.target to be reached", |live| {
            let out = live.exec(&["systemctl", "is-active", "xbt-live.target"]);
            String::from_utf8_lossy(&out.stdout).trim() == "active"
        });
        pid
    }

    fn wait_until(&mut self, what: &str, mut condition: impl FnMut(&mut LiveSystem) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !condition(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Runs a command inside the booted system (its namespaces and root).
    fn exec(&self, args: &[&str]) -> Output {
        self.exec_with_stdin(args, "")
    }

    fn exec_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new("nsenter")
            .arg("-t")
            .arg(self.systemd_pid.to_string())
            .args(["-a", "-r", "-w"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nsenter");
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        child.wait_with_output().expect("nsenter output")
    }

    /// Runs as `user` with its groups from the booted system's databases.
    fn exec_as(&self, user: &str, args: &[&str], stdin: &str) -> Output {
        let reuid = format!("--reuid={user}");
        let regid = format!("--regid={user}");
        let mut full = vec!["setpriv", reuid.as_str(), regid.as_str(), "--init-groups", "--"];
        full.extend_from_slice(args);
        self.exec_with_stdin(&full, stdin)
    }

    fn stdout(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "{args:?} failed in the live system:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `Key: value` lines of /proc/PID/status of a unit's main process.
    fn main_process_status(&self, unit: &str) -> String {
        let pid = self.stdout(&["systemctl", "show", "-P", "MainPID", unit]);
        assert_ne!(pid, "0", "{unit} has no main process");
        self.stdout(&["cat", &format!("/proc/{pid}/status")])
    }

    fn journal(&self, unit: &str) -> String {
        text(&self.exec(&["journalctl", "--no-pager", "-o", "cat", "-u", unit]))
    }
}

impl Drop for LiveSystem {
    fn drop(&mut self) {
        if self.systemd_pid != 0 {
            // PID 1 of the namespace: killing it ends every process in it.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.systemd_pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        // The cgroups systemd made, deepest first; they empty as the killed
        // processes are reaped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.cgroup.exists() && std::time::Instant::now() < deadline {
            remove_cgroup_tree(&self.cgroup);
            if self.cgroup.exists() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{key} missing in /proc status:\n{status}"))
}

/// Capability numbers (linux/capability.h) of the names the helper keeps.
fn capability_mask(names: &BTreeSet<String>) -> u64 {
    const NUMBERS: [(&str, u32); 14] = [
        ("CAP_CHOWN", 0),
        ("CAP_DAC_OVERRIDE", 1),
        ("CAP_DAC_READ_SEARCH", 2),
        ("CAP_FOWNER", 3),
        ("CAP_KILL", 5),
        ("CAP_SETGID", 6),
        ("CAP_SETUID", 7),
        ("CAP_SETPCAP", 8),
        ("CAP_NET_BIND_SERVICE", 10),
        ("CAP_IPC_LOCK", 14),
        ("CAP_SYS_CHROOT", 18),
        ("CAP_SYS_PTRACE", 19),
        ("CAP_SYS_ADMIN", 21),
        ("CAP_AUDIT_WRITE", 29),
    ];
    names
        .iter()
        .map(|name| {
            let (_, bit) = NUMBERS
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("add {name} to the capability table"));
            1u64 << bit
        })
        .sum()
}

const SOCKET: &str = "/run/x2gobroker/x2gobroker-authservice.socket";

#[test]
fn helper_serves_pam_under_its_unit_in_a_booted_systemd() {
    require_test_accounts();
    let live = LiveSystem::boot();
    let authprobe = env!("CARGO_BIN_EXE_authprobe");

    // The live install: accounts, directories and the authid secret.
    let install_log = live.stdout(&["cat", "/root/xbt-install.log"]);
    assert!(
        install_log.contains("created /etc/x2go/broker/x2gobroker.authid"),
        "{install_log}"
    );
    let stat = |path: &str| live.stdout(&["stat", "-c", "%a %U %G", path]);
    assert_eq!(stat("/etc/x2go/broker/x2gobroker.authid"), "640 root x2gobroker");
    assert_eq!(stat("/var/lib/x2gobroker/cookies"), "700 x2gobroker x2gobroker");
    assert_eq!(stat("/run/x2gobroker"), "755 root root");
    assert_eq!(stat(SOCKET), "660 root x2gobroker-users");
    assert_eq!(
        live.stdout(&["systemctl", "is-active", "x2gobroker-authhelper.socket"]),
        "active"
    );

    // The daemon user reaches the helper (socket activation starts it) and
    // PAM works inside the sandbox.
    let auth = |user: &str, password: &str| {
        let out = live.exec_as(
            user,
            &[authprobe, SOCKET, "auth", "xbt-alice", "192.0.2.7"],
            password,
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let ok = auth("x2gobroker", "Alice-pw-1\n");
    assert_eq!(ok, "authenticated", "journal:\n{}", live.journal(HELPER_SERVICE));
    let wrong = auth("x2gobroker", "not-her-password\n");
    assert!(wrong.starts_with("refused AuthenticationFailed"), "{wrong}");
    // Someone outside x2gobroker-users cannot even connect.
    let stranger = auth("xbt-dave", "Alice-pw-1\n");
    assert!(stranger.contains("Permission denied"), "{stranger}");

    // The running helper: root, exactly its capabilities, no_new_privs, seccomp.
    let status = live.main_process_status(HELPER_SERVICE);
    assert!(status_field(&status, "Uid").starts_with("0\t"), "{status}");
    let kept = capability_mask(&helper_kept_capabilities());
    assert_eq!(
        u64::from_str_radix(status_field(&status, "CapEff"), 16).expect("CapEff"),
        kept
    );
    assert_eq!(
        u64::from_str_radix(status_field(&status, "CapBnd"), 16).expect("CapBnd"),
        kept
    );
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    assert_eq!(status_field(&status, "Seccomp"), "2");
    // The sandbox is real: the helper sees no home directories.
    let pid = live.stdout(&["systemctl", "show", "-P", "MainPID", HELPER_SERVICE]);
    let homes = live.exec(&["ls", &format!("/proc/{pid}/root/home")]);
    assert!(
        String::from_utf8_lossy(&homes.stdout).trim().is_empty(),
        "ProtectHome=yes not in effect"
    );
    let journal = live.journal(HELPER_SERVICE);
    assert!(!journal.contains("Alice-pw-1"), "a password reached the journal");
}

#[test]
fn daemon_serves_http_under_its_unit_in_a_booted_systemd() {
    require_test_accounts();
    let live = LiveSystem::boot();
    let out = live.exec(&[
        "curl",
        "-s",
        "-m",
        "60",
        "-w",
        "\n%{http_code}",
        "-d",
        "user=xbt-alice",
        "-d",
        "password=Alice-pw-1",
        "-d",
        "task=listsessions",
        "http://127.0.0.1:8080/plain/",
    ]);
    let body = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        body.ends_with("\n200") && body.contains("Access granted"),
        "answer:\n{body}\njournal:\n{}",
        live.journal(DAEMON_SERVICE)
    );
    assert_eq!(
        live.stdout(&["systemctl", "show", "-P", "SubState", DAEMON_SERVICE]),
        "running"
    );

    let status = live.main_process_status(DAEMON_SERVICE);
    let uid = live.stdout(&["id", "-u", "x2gobroker"]);
    assert!(
        status_field(&status, "Uid").starts_with(&format!("{uid}\t")),
        "{status}"
    );
    assert_eq!(status_field(&status, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&status, "CapBnd"), "0000000000000000");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    let users_gid = live.stdout(&["getent", "group", "x2gobroker-users"]);
    let users_gid = users_gid.split(':').nth(2).expect("gid").to_string();
    assert!(
        status_field(&status, "Groups")
            .split_whitespace()
            .any(|g| g == users_gid),
        "{status}"
    );

    // Reload keeps it serving.
    live.stdout(&["systemctl", "reload", DAEMON_SERVICE]);
    assert_eq!(
        live.stdout(&["systemctl", "show", "-P", "SubState", DAEMON_SERVICE]),
        "running"
    );

    // The control socket in the unit's RuntimeDirectory answers root.
    let ctl = live.stdout(&["/usr/sbin/x2gobroker-ctl", "status", "--json"]);
    assert!(ctl.contains("\"config_generation\":"), "{ctl}");
    assert!(!ctl.contains("\"error\""), "{ctl}");
}
