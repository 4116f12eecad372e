//! End to end: a real pyhoca-cli lists a test user's session profiles
//! through our x2gobroker-daemon, which authenticates the user with PAM
//! through a real x2gobroker-authhelper.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use x2gobroker_systemtests::helper::{target_profile_dir, wait_until, RunningHelper, TestDir, ALICE};

const PROFILES: &str = "\
[alice-desktop]
name = Alice Desktop
host = srv1 (127.0.0.1:2222)
command = XFCE
acl-users-allow = xbt-alice

[staff-terminal]
name = Staff Terminal
acl-groups-allow = xbt-staff

[bob-only]
name = Bob Only
acl-users-allow = xbt-bob
";

struct Daemon {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Daemon {
    /// Starts our daemon on an ephemeral port and reads the port from its log.
    fn start(dir: &TestDir, socket: &Path) -> Daemon {
        let binary = target_profile_dir().join("x2gobroker-daemon");
        assert!(
            binary.is_file(),
            "{} missing: cargo build -p x2gobroker-frontend",
            binary.display()
        );
        let config = dir.path("x2gobroker.conf");
        fs::write(
            &config,
            format!("[global]\ncookie-directory = {}\n", dir.path("cookies").display()),
        )
        .expect("write config");
        let profiles = dir.path("sessionprofiles.conf");
        fs::write(&profiles, PROFILES).expect("write profiles");
        let log = dir.path("daemon.log");
        let out = fs::File::create(&log).expect("daemon log");
        let child = Command::new(binary)
            .args(["-C"])
            .arg(&config)
            .args(["-b", "127.0.0.1:0"])
            .env("X2GOBROKER_AUTHSERVICE_SOCKET", socket)
            .env("X2GOBROKER_SESSIONPROFILES", &profiles)
            .env_remove("X2GOBROKER_DEBUG")
            .env_remove("X2GOBROKER_CONFIG")
            .env_remove("X2GOBROKER_DEFAULT_BACKEND")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start x2gobroker-daemon");
        let mut daemon = Daemon { child, log, port: 0 };
        wait_until("the daemon to listen", || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("daemon exited ({status}):\n{}", daemon.log_text());
            }
            daemon.port = daemon
                .log_text()
                .lines()
                .find_map(|l| l.split("listening on http://127.0.0.1:").nth(1))
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(0);
            daemon.port != 0
        });
        daemon
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs pyhoca-cli --list-profiles; returns (exit success, stdout).
fn pyhoca_list(dir: &TestDir, port: u16, user: &str, password: &str) -> (bool, String) {
    let home = dir.path("home");
    fs::create_dir_all(&home).expect("home");
    let mut child = Command::new("pyhoca-cli")
        .arg("--broker-url")
        .arg(format!("http://{user}@127.0.0.1:{port}/json/"))
        .arg("--broker-password")
        .arg(password)
        .arg("--list-profiles")
        .env("HOME", &home)
        .env("DISPLAY", ":0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("pyhoca-cli must be installed (scripts/setup-test-env.sh)");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read pyhoca-cli output");
    let status = child.wait().expect("wait for pyhoca-cli");
    (status.success(), out)
}

fn profile_ids(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("Profile ID: "))
        .map(|s| s.trim().to_owned())
        .collect()
}

#[test]
fn pyhoca_cli_lists_profiles_with_a_pam_password() {
    let helper = RunningHelper::start("frontend-pyhoca", &[]);
    let dir = TestDir::new("frontend-pyhoca-daemon");
    let daemon = Daemon::start(&dir, &helper.socket);

    let (ok, out) = pyhoca_list(&dir, daemon.port, ALICE.0, ALICE.1);
    assert!(
        ok,
        "pyhoca-cli failed:\n{out}\ndaemon log:\n{}",
        daemon.log_text()
    );
    let mut ids = profile_ids(&out);
    ids.sort();
    assert_eq!(
        ids,
        vec!["alice-desktop", "staff-terminal"],
        "pyhoca-cli output:\n{out}\ndaemon log:\n{}",
        daemon.log_text()
    );
    assert!(out.contains("Alice Desktop"), "{out}");

    // A wrong password lists nothing.
    let (_, out) = pyhoca_list(&dir, daemon.port, ALICE.0, "not-her-password");
    assert!(profile_ids(&out).is_empty(), "{out}");
}
