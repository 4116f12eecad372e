//! The binaries as processes: --check-config, start-up errors, reload on
//! file change and SIGHUP (a broken edit keeps the last good
//! configuration), HTTPS, SSH mode placeholder. Requests are made with curl.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use x2gobroker_systemtests::support::{make_cert, require_root, wait_until};

const DAEMON: &str = env!("CARGO_BIN_EXE_x2gobroker-daemon");
const BROKER: &str = env!("CARGO_BIN_EXE_x2gobroker");

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

fn command(bin: &str, dir: &Path, profiles: &Path) -> Command {
    let mut c = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("X2GOBROKER_") || k == "DAEMON_BIND_ADDRESS" {
            c.env_remove(k);
        }
    }
    c.env("X2GOBROKER_SESSIONPROFILES", profiles)
        .env("X2GOBROKER_AUTHSERVICE_SOCKET", dir.join("none.sock"))
        // Keep each test's control socket out of the system's /run.
        .env("X2GOBROKER_CONTROL_SOCKET", dir.join("control.sock"));
    c
}

struct Daemon {
    child: Child,
    log: PathBuf,
    url: String,
}

impl Daemon {
    fn start(mut cmd: Command, dir: &Path, config: &Path) -> Daemon {
        let log = dir.join("daemon.log");
        let out = fs::File::create(&log).unwrap();
        cmd.arg("-C").arg(config).args(["-b", "127.0.0.1:0"]);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            log,
            url: String::new(),
        };
        wait_until("the daemon to listen", || {
            if let Ok(Some(s)) = d.child.try_wait() {
                panic!("daemon exited ({s}): {}", d.log_text());
            }
            d.url = d
                .log_text()
                .lines()
                .find_map(|l| l.split("listening on ").nth(1))
                .map(|u| u.trim().to_owned())
                .unwrap_or_default();
            !d.url.is_empty()
        });
        d
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// (HTTP status, body) of a POST.
    fn post(&self, path: &str, body: &str) -> (String, String) {
        let out = Command::new("curl")
            .args(["-sk", "-w", "\n%{http_code}", "--data-binary", body])
            .arg(format!("{}{path}", self.url))
            .output()
            .expect("curl must be installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
        (status.to_owned(), body.to_owned())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

const OPEN: &str = "[global]\nrequire-password = false\n";

#[test]
fn check_config_reports_problems() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = write(d, "good.conf", OPEN);
    let profiles = write(d, "p.conf", "[a]\nname = A\n");
    let out = run(command(BROKER, d, &profiles)
        .arg("--check-config")
        .arg("-C")
        .arg(&good));
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 session profiles"));

    let bad_ini = write(
        d,
        "bad.conf",
        "[global]\nrequire-password = false\ngarbage line\n",
    );
    let out = run(command(BROKER, d, &profiles)
        .arg("--check-config")
        .arg("-C")
        .arg(&bad_ini));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}, line 3", bad_ini.display())), "{err}");

    let bad_bool = write(d, "badbool.conf", "[global]\nverify-ip = perhaps\n");
    let out = run(command(BROKER, d, &profiles)
        .arg("--check-config")
        .arg("-C")
        .arg(&bad_bool));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify-ip"));

    let bad_profile = write(
        d,
        "bp.conf",
        "[a]\nwidth = wide\n[b]\nacl-clients-allow = 10.0.0.300\n",
    );
    let out = run(command(BROKER, d, &bad_profile)
        .arg("--check-config")
        .arg("-C")
        .arg(&good));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("width = wide") && err.contains("10.0.0.300"),
        "{err}"
    );

    // An existing my-cookie-file without a cookie is a start-up error.
    let authid = write(d, "authid", "# nothing here\n\n");
    let cfg = write(
        d,
        "ck.conf",
        &format!("[global]\nmy-cookie-file = {}\n", authid.display()),
    );
    let out = run(command(DAEMON, d, &profiles)
        .arg("-C")
        .arg(&cfg)
        .args(["-b", "127.0.0.1:0"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("contains no cookie"));
}

#[test]
fn ssh_mode_and_bad_mode() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = write(dir.path(), "p.conf", "");
    // SSH mode is the default: it needs the helper, which is not running.
    let out = run(command(BROKER, dir.path(), &profiles)
        .env("X2GOBROKER_SSH_SOCKET", dir.path().join("no-helper.sock"))
        .args(["--task", "listsessions"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the X2Go Session Broker's helper"));
    let out = run(command(BROKER, dir.path(), &profiles).args(["-M", "FTP"]));
    assert!(!out.status.success());
}

#[test]
fn reloads_on_change_and_sighup_and_keeps_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write(d, "x2gobroker.conf", OPEN);
    let profiles = write(d, "p.conf", "[first]\n");
    let daemon = Daemon::start(command(DAEMON, d, &profiles), d, &config);
    let list = || daemon.post("/plain/", "user=u&task=listsessions").1;
    assert!(list().contains("[first]"));

    fs::write(&profiles, "[second]\n").unwrap();
    wait_until("the changed profiles to be served", || {
        list().contains("[second]")
    });

    fs::write(&profiles, "[broken\n").unwrap();
    wait_until("the broken edit to be reported", || {
        daemon.log_text().contains("keeping the last good one")
    });
    assert!(list().contains("[second]"));

    // SIGHUP reloads even when nothing changed on disk.
    fs::write(&profiles, "[third]\n").unwrap();
    let pid = nix::unistd::Pid::from_raw(daemon.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_until("the SIGHUP reload", || list().contains("[third]"));
    assert!(daemon.log_text().contains("SIGHUP"));

    // A change to x2gobroker.conf applies too.
    fs::write(
        &config,
        "[global]\nrequire-password = false\nenable-plain-output = false\n",
    )
    .unwrap();
    wait_until("plain output to be disabled", || {
        daemon.post("/plain/", "task=testcon").0 == "404"
    });
}

#[test]
fn https_when_certificate_and_key_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tls = make_cert(d, &[]).expect("openssl must be installed");
    let (cert, key) = (tls.cert, tls.key);
    let config = write(d, "x2gobroker.conf", OPEN);
    let profiles = write(d, "p.conf", "[tls]\n");
    let mut cmd = command(DAEMON, d, &profiles);
    cmd.env("X2GOBROKER_SSL_CERTFILE", &cert)
        .env("X2GOBROKER_SSL_KEYFILE", &key);
    let daemon = Daemon::start(cmd, d, &config);
    assert!(daemon.url.starts_with("https://"), "{}", daemon.url);
    let (status, body) = daemon.post("/plain/", "user=u&task=listsessions");
    assert_eq!(status, "200");
    assert!(body.contains("[tls]"));
    // Plain HTTP on the TLS port gets no broker answer.
    let plain_url = daemon.url.replace("https://", "http://");
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data",
            "task=testcon",
        ])
        .arg(format!("{plain_url}/plain/"))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&out.stdout), "200");
}

#[test]
fn x2gobroker_with_mode_http_serves_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write(d, "x2gobroker.conf", OPEN);
    let profiles = write(d, "p.conf", "[via-x2gobroker]\n");
    let mut cmd = command(BROKER, d, &profiles);
    cmd.args(["-M", "HTTP"]);
    let daemon = Daemon::start(cmd, d, &config);
    assert!(daemon
        .post("/plain/", "user=u&task=listsessions")
        .1
        .contains("[via-x2gobroker]"));
}

#[test]
fn drop_privileges_switches_to_the_daemon_user() {
    require_root("the daemon drops from root to its user");
    let user = nix::unistd::User::from_name("x2gobroker")
        .ok()
        .flatten()
        .expect("the x2gobroker user (scripts/setup-test-env.sh)");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The daemon user must be able to read its configuration.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    let config = write(d, "x2gobroker.conf", OPEN);
    let profiles = write(d, "p.conf", "[dropped]\n");
    let mut cmd = command(DAEMON, d, &profiles);
    cmd.arg("--drop-privileges");
    let daemon = Daemon::start(cmd, d, &config);
    let status = fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_owned();
    let expected = user.uid.as_raw().to_string();
    assert!(uids.split_whitespace().skip(1).all(|u| u == expected), "{uids}");
    let groups = status
        .lines()
        .find(|l| l.starts_with("Groups:"))
        .unwrap()
        .to_owned();
    assert_eq!(groups.trim(), "Groups:");
    assert!(daemon
        .post("/plain/", "user=u&task=listsessions")
        .1
        .contains("[dropped]"));
}
