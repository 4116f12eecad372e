//! End to end: a real pyhoca-cli lists a test user's session profiles
//! through our x2gobroker-daemon, which authenticates the user with PAM
//! through a real x2gobroker-authhelper.

use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};
use x2gobroker_systemtests::helper::{RunningHelper, TestDir, ALICE};
use x2gobroker_systemtests::ssh::HttpDaemon;
use x2gobroker_systemtests::support::PROFILES;

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
    let config = dir.path("x2gobroker.conf");
    let cookies = dir.path("cookies");
    fs::write(
        &config,
        format!("[global]\ncookie-directory = {}\n", cookies.display()),
    )
    .expect("write config");
    let profiles = dir.path("sessionprofiles.conf");
    fs::write(&profiles, PROFILES).expect("write profiles");
    let daemon = HttpDaemon::start(&dir.0, &config, &profiles, &helper.socket);

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
