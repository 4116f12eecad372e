//! A booted systemd for live tests of the units and the package.
//!
//! The test machine's PID 1 is not systemd, so each live test boots one: a
//! systemd as PID 1 of its own PID, mount, network, UTS, IPC and cgroup
//! namespaces, on an overlay of this machine's root whose writes go to a
//! tmpfs, with a fresh /proc, /sys, cgroup2 (rooted in a cgroup of its own),
//! /dev, /run and /tmp. Before systemd starts, [`Install::Checkout`] removes
//! the original broker's packages with dpkg (the documented migration) and
//! runs scripts/install.sh with the workspace's real programs, as a live
//! install would; [`Install::Nothing`] leaves the system as it is (the
//! package test installs its .deb into the running system). systemd then
//! starts a target that wants both sockets (when their units exist).
//! Nothing is written to this machine's disk, and killing that PID 1 ends
//! everything. Units that touch the host kernel (sysctl, udev, modules,
//! clock, binfmt) are masked.

use crate::support::TestDir;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// What the boot script installs before systemd starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Install {
    /// Remove the original's packages, then scripts/install.sh from this
    /// checkout with the workspace's programs.
    Checkout,
    /// Nothing: the host's packages as they are.
    Nothing,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// stdout and stderr of a finished command, for messages.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

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
# XBT_BINDS: further directories the test shares (colon-separated).
IFS=: read -r -a binds <<< "$XBT_BINDS"
for d in "$XBT_REPO" "$XBT_BIN" "${binds[@]}"; do
  [ -n "$d" ] || continue
  mkdir -p "$R$d"; mount --bind "$d" "$R$d"
done
if [ "$XBT_INSTALL" = checkout ]; then
  chroot "$R" dpkg --remove --no-triggers x2gobroker-loadchecker x2gobroker-ssh x2gobroker-daemon x2gobroker-authservice x2gobroker \
    > "$R/root/xbt-dpkg.log" 2>&1
  chroot "$R" bash "$XBT_REPO/scripts/install.sh" --bin-dir "$XBT_BIN" > "$R/root/xbt-install.log" 2>&1
fi
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
# With the checkout installed, the sockets must come up for the target to
# be reached; otherwise they may not exist (yet).
dep=Wants
if [ "$XBT_INSTALL" = checkout ]; then dep=Requires; fi
cat > "$M/xbt-live.target" <<UNIT
[Unit]
Description=x2gobroker live test
$dep=x2gobroker-authhelper.socket x2gobroker-daemon.socket
After=x2gobroker-authhelper.socket x2gobroker-daemon.socket
UNIT
exec chroot "$R" /usr/bin/env container=xbt-live /lib/systemd/systemd --system \
  --unit=xbt-live.target --log-target=journal --show-status=false
"#;

/// The workspace's target profile directory (e.g. target/debug), found from
/// this test executable (target/debug/deps/<test>-<hash>).
pub fn built_programs_dir() -> PathBuf {
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
pub fn cgroup2_root() -> PathBuf {
    for candidate in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let path = Path::new(candidate);
        if path.join("cgroup.procs").is_file() && path.join("cgroup.subtree_control").is_file() {
            return path.to_path_buf();
        }
    }
    panic!("no cgroup v2 hierarchy mounted under /sys/fs/cgroup");
}

pub struct LiveSystem {
    unshare: std::process::Child,
    systemd_pid: u32,
    cgroup: PathBuf,
    work: TestDir,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl LiveSystem {
    /// A live system with this checkout installed (see [`Install`]).
    pub fn boot() -> LiveSystem {
        Self::boot_with(Install::Checkout, &[])
    }

    /// A live system: `install` before systemd starts; `binds` are
    /// directories of this machine to see at the same paths inside (the
    /// fresh /tmp would hide test directories).
    pub fn boot_with(install: Install, binds: &[&Path]) -> LiveSystem {
        let serial = LIVE_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // work/ns becomes the namespace's tmpfs; the script and its log stay
        // beside it so they are readable from here.
        let work = TestDir::new("live");
        let ns_dir = work.root().join("ns");
        fs::create_dir(&ns_dir).expect("ns dir");
        let script = work.root().join("boot.sh");
        let boot_log = work.root().join("boot.log");
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
            .env(
                "XBT_INSTALL",
                match install {
                    Install::Checkout => "checkout",
                    Install::Nothing => "nothing",
                },
            )
            .env(
                "XBT_BINDS",
                binds
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            )
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
                let log = fs::read_to_string(live.work.root().join("boot.log")).unwrap_or_default();
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
    pub fn exec(&self, args: &[&str]) -> Output {
        self.exec_with_stdin(args, "")
    }

    pub fn exec_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
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
    pub fn exec_as(&self, user: &str, args: &[&str], stdin: &str) -> Output {
        let reuid = format!("--reuid={user}");
        let regid = format!("--regid={user}");
        let mut full = vec!["setpriv", reuid.as_str(), regid.as_str(), "--init-groups", "--"];
        full.extend_from_slice(args);
        self.exec_with_stdin(&full, stdin)
    }

    pub fn stdout(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "{args:?} failed in the live system:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `Key: value` lines of /proc/PID/status of a unit's main process.
    pub fn main_process_status(&self, unit: &str) -> String {
        let pid = self.stdout(&["systemctl", "show", "-P", "MainPID", unit]);
        assert_ne!(pid, "0", "{unit} has no main process");
        self.stdout(&["cat", &format!("/proc/{pid}/status")])
    }

    /// POST a `/plain/` listsessions for `user` with `password` to the
    /// socket-activated daemon inside (curl, 60 s); the body, then a line
    /// with the HTTP status.
    pub fn plain_listsessions(&self, user: &str, password: &str) -> String {
        let out = self.exec(&[
            "curl",
            "-s",
            "-m",
            "60",
            "-w",
            "\n%{http_code}",
            "-d",
            &format!("user={user}"),
            "-d",
            &format!("password={password}"),
            "-d",
            "task=listsessions",
            "http://127.0.0.1:8080/plain/",
        ]);
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn journal(&self, unit: &str) -> String {
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

pub fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{key} missing in /proc status:\n{status}"))
}
