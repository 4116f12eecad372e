//! Operations of x2gobroker-daemon (docs/OPERATIONS.md, "What the programs
//! must do"): sockets taken from systemd (started through
//! systemd-socket-activate as the units arrange them), sd_notify READY=1 and
//! STOPPING=1, graceful shutdown on SIGTERM, the audit trail on syslog, and
//! `x2gobroker-ctl status` over the daemon's control socket.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;
use x2gobroker_protocol::frame::blocking::{read_message, write_message};
use x2gobroker_protocol::{Request, Response, PROTOCOL_VERSION};
use x2gobroker_systemtests::helper::{
    helper_binary, run_to_exit, target_profile_dir, wait_until, RunningHelper, TestDir, ALICE, BOB, DAVE,
    DEADLINE,
};
use x2gobroker_systemtests::support::free_port;

const PROFILES: &str = "\
[alice-desktop]
name = Alice Desktop
host = srv1 (127.0.0.1:2222)
command = XFCE
acl-users-allow = xbt-alice
";

fn program(name: &str) -> PathBuf {
    let path = target_profile_dir().join(name);
    assert!(
        path.is_file(),
        "{} missing: cargo build -p x2gobroker-frontend",
        path.display()
    );
    path
}

/// The helper as x2gobroker-authhelper.socket arranges it: systemd (here
/// systemd-socket-activate) binds the Unix socket and passes it with the
/// name `authservice`.
fn socket_activated_helper(tag: &str, extra: &[&str]) -> RunningHelper {
    let dir = TestDir::new(tag);
    let handed = dir.path("helper.sock");
    let mut command = Command::new("systemd-socket-activate");
    command
        .arg("-l")
        .arg(&handed)
        .arg("--fdname=authservice")
        .arg(helper_binary())
        .arg("--foreground")
        .arg("--socket")
        .arg(dir.path("not-used.sock"))
        .args(extra);
    RunningHelper::spawn(command, dir, handed)
}

struct Daemon {
    child: Child,
    port: u16,
    dir: TestDir,
    notify: UnixDatagram,
    syslog: UnixDatagram,
    control: PathBuf,
    config: PathBuf,
    /// Every syslog datagram seen so far.
    syslog_lines: Vec<String>,
}

impl Daemon {
    /// Starts the daemon as x2gobroker-daemon.socket arranges it: a TCP
    /// socket passed with the name `http`, NOTIFY_SOCKET set. Returns once
    /// READY=1 arrived.
    fn start(tag: &str, helper_socket: &Path) -> Daemon {
        Self::start_with(TestDir::new(tag), helper_socket, &[], &[])
    }

    /// As [`Daemon::start`], in `dir`, with more environment variables and
    /// arguments.
    fn start_with(
        dir: TestDir,
        helper_socket: &Path,
        extra_env: &[(&str, PathBuf)],
        extra_args: &[&str],
    ) -> Daemon {
        let config = dir.path("x2gobroker.conf");
        fs::write(
            &config,
            format!("[global]\ncookie-directory = {}\n", dir.path("cookies").display()),
        )
        .expect("write config");
        let profiles = dir.path("sessionprofiles.conf");
        fs::write(&profiles, PROFILES).expect("write profiles");
        let notify_path = dir.path("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
        // As systemd's: any uid may notify (the daemon may drop privileges).
        fs::set_permissions(&notify_path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .expect("chmod notify socket");
        notify.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let syslog_path = dir.path("syslog.sock");
        let syslog = UnixDatagram::bind(&syslog_path).expect("syslog socket");
        let control = dir.path("control.sock");
        let port = free_port();
        let log = fs::File::create(dir.path("daemon.log")).expect("log");
        let env = |k: &str, v: &Path| format!("--setenv={k}={}", v.display());
        let child = Command::new("systemd-socket-activate")
            .args(extra_env.iter().map(|(k, v)| env(k, v)))
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--fdname=http")
            .arg(env("X2GOBROKER_AUTHSERVICE_SOCKET", helper_socket))
            .arg(env("X2GOBROKER_SESSIONPROFILES", &profiles))
            .arg(env("X2GOBROKER_CONTROL_SOCKET", &control))
            .arg(env("NOTIFY_SOCKET", &notify_path))
            .arg(program("x2gobroker-daemon"))
            .arg("-C")
            .arg(&config)
            // Must not be used: the socket comes from systemd.
            .args(["-b", "127.0.0.1:1"])
            .arg("--syslog-socket")
            .arg(&syslog_path)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start systemd-socket-activate");
        let mut daemon = Daemon {
            child,
            port,
            dir,
            notify,
            syslog,
            control,
            config,
            syslog_lines: Vec::new(),
        };
        // systemd-socket-activate (like a socket unit with Accept=no)
        // starts the program on the first connection.
        let trigger = wait_for_connect(port);
        let first = daemon.next_notification();
        drop(trigger);
        assert!(
            first.lines().any(|l| l == "READY=1"),
            "{first:?}; log:\n{}",
            daemon.log()
        );
        assert!(
            first.contains("STATUS=serving; configuration generation 1"),
            "{first:?}"
        );
        daemon
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path("daemon.log")).unwrap_or_default()
    }

    /// The next sd_notify datagram (waits up to the deadline).
    fn next_notification(&mut self) -> String {
        let mut buf = [0u8; 4096];
        match self.notify.recv(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => {
                let status = self.child.try_wait();
                panic!(
                    "no sd_notify message ({e}); daemon {status:?}; log:\n{}",
                    self.log()
                )
            }
        }
    }

    /// Reads syslog datagrams until one satisfies `want`; returns it.
    fn syslog_line(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.syslog_lines.iter().find(|l| want(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + DEADLINE;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no syslog line {what}; seen:\n{}",
                self.syslog_lines.join("\n")
            );
            self.syslog.set_read_timeout(Some(left)).expect("timeout");
            if let Ok(n) = self.syslog.recv(&mut buf) {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.syslog_lines.push(line.clone());
                if want(&line) {
                    return line;
                }
            }
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).expect("kill");
    }

    fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        wait_until("the daemon to exit", || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status.expect("status")
    }

    fn ctl(&self, helper_socket: &Path, as_user: Option<&str>) -> Output {
        let mut command = match as_user {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={user}"))
                    .arg(format!("--regid={user}"))
                    .args(["--init-groups", "--"]);
                c.arg(program("x2gobroker-ctl"));
                c
            }
            None => Command::new(program("x2gobroker-ctl")),
        };
        command
            .args(["status", "--json", "--control-socket"])
            .arg(&self.control)
            .arg("--authservice-socket")
            .arg(helper_socket);
        run_to_exit(command)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects once systemd-socket-activate listens.
fn wait_for_connect(port: u16) -> TcpStream {
    let mut stream = None;
    wait_until("the activation socket to listen", || {
        stream = TcpStream::connect(("127.0.0.1", port)).ok();
        stream.is_some()
    });
    stream.expect("stream")
}

/// One HTTP/1.1 POST with `Connection: close`; returns the raw answer.
fn post(port: u16, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the daemon");
    stream.set_read_timeout(Some(DEADLINE * 2)).expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

fn listsessions(port: u16, user: &str, password: &str) -> String {
    post(
        port,
        "/plain/",
        &format!("user={user}&password={password}&task=listsessions"),
    )
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "x2gobroker-ctl output is not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn socket_activated_daemon_and_helper_serve_a_pam_login_and_notify_systemd() {
    let helper = socket_activated_helper("ops-activate", &[]);
    let mut daemon = Daemon::start("ops-activate", &helper.socket);
    let answer = listsessions(daemon.port, ALICE.0, ALICE.1);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\nlog:\n{}",
        daemon.log()
    );
    assert!(answer.contains("Access granted"), "{answer}");
    assert!(answer.contains("[alice-desktop]"), "{answer}");
    // It serves the passed socket, not its -b address.
    let port = daemon.port;
    daemon.syslog_line("listening on the passed socket", |l| {
        l.contains(&format!("listening on http://127.0.0.1:{port}"))
    });
    assert!(
        !daemon
            .syslog_lines
            .iter()
            .any(|l| l.contains("127.0.0.1:1\n") || l.ends_with("127.0.0.1:1")),
        "bound -b although a socket was passed"
    );

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.next_notification(), "STOPPING=1");
    assert!(daemon.wait_for_exit().success(), "log:\n{}", daemon.log());
    assert!(!daemon.control.exists(), "the control socket was left behind");
}

/// A fake helper that holds the PAM answer until the test releases it: the
/// daemon's request is then deterministically in flight.
struct HeldHelper {
    socket: PathBuf,
    in_flight: std::sync::mpsc::Receiver<()>,
    release: std::sync::mpsc::Sender<()>,
    _dir: TestDir,
}

impl HeldHelper {
    fn start() -> HeldHelper {
        let dir = TestDir::new("ops-held");
        let socket = dir.path("held.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let (in_flight_tx, in_flight) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            if !matches!(read_message::<Request, _>(&mut stream), Ok(Request::Hello { .. })) {
                return;
            }
            let hello = Response::Hello {
                version: PROTOCOL_VERSION,
                server_version: "held".into(),
            };
            if write_message(&mut stream, &hello).is_err() {
                return;
            }
            if !matches!(
                read_message::<Request, _>(&mut stream),
                Ok(Request::Authenticate(_))
            ) {
                return;
            }
            let _ = in_flight_tx.send(());
            let _ = release_rx.recv_timeout(DEADLINE * 2);
            let _ = write_message(&mut stream, &Response::Authenticated);
        });
        HeldHelper {
            socket,
            in_flight,
            release,
            _dir: dir,
        }
    }
}

#[test]
fn a_request_in_flight_at_sigterm_completes_and_new_connections_are_refused() {
    let held = HeldHelper::start();
    let mut daemon = Daemon::start("ops-drain", &held.socket);
    let port = daemon.port;
    let client = std::thread::spawn(move || listsessions(port, ALICE.0, "held-password"));
    held.in_flight
        .recv_timeout(DEADLINE)
        .expect("the daemon's PAM request did not reach the helper");

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.next_notification(), "STOPPING=1");
    wait_until("new connections to be refused", || {
        matches!(
            TcpStream::connect(("127.0.0.1", port)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    });
    assert!(
        daemon.child.try_wait().expect("try_wait").is_none(),
        "the daemon exited with a request in flight"
    );

    held.release.send(()).expect("release");
    let answer = client.join().expect("client thread");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\nlog:\n{}",
        daemon.log()
    );
    assert!(answer.contains("Access granted"), "{answer}");
    assert!(daemon.wait_for_exit().success(), "log:\n{}", daemon.log());
}

#[test]
fn auth_decisions_are_audited_on_syslog_without_passwords() {
    // One failure is enough to throttle the next attempt.
    let helper = socket_activated_helper("ops-audit", &["--throttle-threshold", "1"]);
    let mut daemon = Daemon::start("ops-audit", &helper.socket);

    assert!(listsessions(daemon.port, ALICE.0, ALICE.1).starts_with("HTTP/1.1 200"));
    let granted = daemon.syslog_line("granted for xbt-alice", |l| {
        l.contains("outcome=granted") && l.contains("user=\"xbt-alice\"")
    });
    // Facility daemon (3), severity info (6): <30>.
    assert!(granted.starts_with("<30>"), "{granted}");
    assert!(
        granted.contains("client=\"127.0.0.1\"") && granted.contains("method=pam"),
        "{granted}"
    );

    assert!(listsessions(daemon.port, BOB.0, "Wrong-pw-1").starts_with("HTTP/1.1 401"));
    daemon.syslog_line("refused for xbt-bob", |l| {
        l.contains("outcome=refused") && l.contains("user=\"xbt-bob\"")
    });
    assert!(listsessions(daemon.port, BOB.0, "Wrong-pw-2").starts_with("HTTP/1.1 401"));
    daemon.syslog_line("throttled for xbt-bob", |l| {
        l.contains("outcome=throttled") && l.contains("user=\"xbt-bob\"")
    });

    for secret in [ALICE.1, "Wrong-pw-1", "Wrong-pw-2"] {
        assert!(
            !daemon.syslog_lines.iter().any(|l| l.contains(secret)),
            "a password reached syslog"
        );
        assert!(!daemon.log().contains(secret), "a password reached stderr");
    }
}

#[test]
fn ctl_status_for_root_only_with_generation_and_reload_error() {
    let helper = RunningHelper::start("ops-ctl", &[]);
    let mut daemon = Daemon::start("ops-ctl", &helper.socket);

    let out = daemon.ctl(&helper.socket, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let status = json(&out);
    assert_eq!(status["daemon"]["config_generation"], 1, "{status}");
    assert!(status["daemon"]["last_reload_error"].is_null(), "{status}");
    assert!(status["daemon"]["version"].is_string(), "{status}");
    assert!(status["authhelper"]["version"].is_string(), "{status}");
    assert!(status["authhelper"]["uptime_secs"].is_u64(), "{status}");

    // An ordinary user is refused by both (peer credentials).
    let out = daemon.ctl(&helper.socket, Some(DAVE.0));
    assert!(!out.status.success());
    let refused = json(&out);
    let daemon_error = refused["daemon"]["error"].as_str().unwrap_or_default().to_owned();
    assert!(daemon_error.contains("denied"), "{refused}");
    assert!(refused["daemon"]["config_generation"].is_null(), "{refused}");
    assert!(refused["authhelper"]["error"].is_string(), "{refused}");

    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until("the configuration generation to reach 2", || {
        json(&daemon.ctl(&helper.socket, None))["daemon"]["config_generation"] == 2
    });

    fs::write(&daemon.config, "[global\nthis is not INI\n").expect("break the config");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    let mut last = serde_json::Value::Null;
    wait_until("the reload error to be reported", || {
        last = json(&daemon.ctl(&helper.socket, None));
        last["daemon"]["last_reload_error"].is_string()
    });
    assert_eq!(last["daemon"]["config_generation"], 2, "{last}");
    // systemd hears of both reloads (systemctl status shows the last STATUS=).
    assert_eq!(
        daemon.next_notification(),
        "STATUS=serving; configuration generation 2"
    );
    let failed = daemon.next_notification();
    assert!(
        failed.starts_with("STATUS=serving; last reload failed: "),
        "{failed}"
    );
    let error = last["daemon"]["last_reload_error"].as_str().unwrap_or_default();
    assert!(error.contains("x2gobroker.conf"), "{last}");

    // Plain text for people.
    let mut command = Command::new(program("x2gobroker-ctl"));
    command
        .args(["status", "--control-socket"])
        .arg(&daemon.control)
        .arg("--authservice-socket")
        .arg(&helper.socket);
    let text = String::from_utf8_lossy(&run_to_exit(command).stdout).into_owned();
    assert!(text.contains("configuration generation: 2"), "{text}");
    assert!(text.contains("last reload error: "), "{text}");
}

#[test]
fn every_program_generates_its_man_page_and_completions() {
    for (name, section) in [
        ("x2gobroker", "1"),
        ("x2gobroker-daemon", "1"),
        ("x2gobroker-ctl", "8"),
    ] {
        let dir = TestDir::new("ops-docs");
        let out = run_to_exit({
            let mut c = Command::new(program(name));
            c.arg("--generate-man")
                .arg(&dir.0)
                .arg("--generate-completions")
                .arg(&dir.0);
            c.env_clear();
            c
        });
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let page = fs::read_to_string(dir.path(&format!("{name}.{section}"))).expect("man page");
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        for file in [format!("{name}.bash"), format!("_{name}"), format!("{name}.fish")] {
            assert!(dir.path(&file).is_file(), "{name}: {file} missing");
        }
        let help = run_to_exit({
            let mut c = Command::new(program(name));
            c.arg("--help");
            c
        });
        assert!(
            !String::from_utf8_lossy(&help.stdout).contains("generate-man"),
            "{name}: flag not hidden"
        );
    }
}

/// The helper's own audit trail (authpriv) for a failure and a throttled
/// attempt; tests/tests/authhelper.rs covers a success.
#[test]
fn helper_audits_failures_and_throttled_attempts_on_syslog() {
    let dir = TestDir::new("ops-helper-audit");
    let log_socket = dir.path("log.sock");
    let syslog = UnixDatagram::bind(&log_socket).expect("bind fake syslog");
    syslog.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let helper_socket = dir.path("helper.sock");
    let mut command = Command::new(helper_binary());
    command
        .arg("--socket")
        .arg(&helper_socket)
        .args(["--throttle-threshold", "1", "--syslog-socket"])
        .arg(&log_socket);
    let helper = RunningHelper::spawn(command, dir, helper_socket);
    assert!(helper
        .authenticate(BOB.0, "Wrong-pw-3", Some("203.0.113.7"))
        .is_err());
    assert!(helper
        .authenticate(BOB.0, "Wrong-pw-4", Some("203.0.113.7"))
        .is_err());
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 8192];
    wait_until("the refused and throttled audit lines", || {
        let n = syslog.recv(&mut buf).expect("syslog datagram");
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        let audited = |outcome: &str| {
            lines.iter().any(|l| {
                l.contains("AUDIT auth")
                    && l.contains("user=\"xbt-bob\"")
                    && l.contains("client=\"203.0.113.7\"")
                    && l.contains(&format!("outcome={outcome}"))
            })
        };
        audited("refused") && audited("throttled")
    });
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("Wrong-pw-3") && !l.contains("Wrong-pw-4")),
        "a password reached syslog"
    );
}

#[test]
fn serves_https_on_a_passed_socket() {
    let helper = socket_activated_helper("ops-tls", &[]);
    let dir = TestDir::new("ops-tls");
    let (cert, key) = (dir.path("broker.crt"), dir.path("broker.key"));
    let made = run_to_exit({
        let mut c = Command::new("openssl");
        c.args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-days",
            "1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
        c
    });
    assert!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let daemon = Daemon::start_with(
        dir,
        &helper.socket,
        &[
            ("X2GOBROKER_SSL_CERTFILE", cert.clone()),
            ("X2GOBROKER_SSL_KEYFILE", key),
        ],
        &[],
    );
    let out = run_to_exit({
        let mut c = Command::new("curl");
        c.args(["-s", "-m", "60", "-w", "\n%{http_code}", "--cacert"])
            .arg(&cert)
            .arg("--resolve")
            .arg(format!("localhost:{}:127.0.0.1", daemon.port))
            .args([
                "-d",
                &format!("user={}", ALICE.0),
                "-d",
                &format!("password={}", ALICE.1),
            ])
            .args(["-d", "task=listsessions"])
            .arg(format!("https://localhost:{}/plain/", daemon.port));
        c
    });
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        answer.ends_with("\n200") && answer.contains("Access granted"),
        "{answer}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP on the TLS socket gets no broker answer. The daemon may
    // close the connection before the request is fully written (a broken
    // pipe is then the answer), so errors while talking count as "none".
    let mut stream = TcpStream::connect(("127.0.0.1", daemon.port)).expect("connect to the daemon");
    stream.set_read_timeout(Some(DEADLINE * 2)).expect("timeout");
    let _ = write!(
        stream,
        "POST /plain/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 17\r\nConnection: close\r\n\r\ntask=listsessions"
    );
    let mut plain = Vec::new();
    let _ = stream.read_to_end(&mut plain);
    let plain = String::from_utf8_lossy(&plain);
    assert!(!plain.contains("Access granted"), "{plain}");
}

#[test]
fn drop_privileges_switches_to_the_daemon_user_after_taking_the_sockets() {
    let helper = socket_activated_helper("ops-drop", &[]);
    let daemon = Daemon::start_with(
        TestDir::new("ops-drop"),
        &helper.socket,
        &[],
        &["--drop-privileges"],
    );
    let status = fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).expect("status");
    let (uid, gid) = x2gobroker_systemtests::helper::user_ids("x2gobroker");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert!(field("Uid").iter().all(|u| *u == uid.to_string()), "{status}");
    assert!(field("Gid").iter().all(|g| *g == gid.to_string()), "{status}");
    assert!(field("Groups").is_empty(), "{status}");
    // Dropped before any runtime thread started: no_new_privs (a per-thread
    // attribute) on every thread, and no capabilities left.
    let pid = daemon.child.id();
    let tasks: Vec<String> = fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_owned()))
        .collect();
    assert!(tasks.len() > 1, "expected runtime threads: {tasks:?}");
    for tid in tasks {
        let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).expect("task status");
        let value = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(value("NoNewPrivs"), "1", "thread {tid}: {status}");
        assert_eq!(value("CapEff"), "0000000000000000", "thread {tid}: {status}");
    }
    // Still serving, from the socket taken as root.
    let answer = post(daemon.port, "/plain/", "task=listsessions");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[test]
fn daemonize_writes_the_pid_file_and_logs_into_the_log_directory() {
    let dir = TestDir::new("ops-daemonize");
    let config = dir.path("x2gobroker.conf");
    fs::write(&config, "[global]\n").expect("config");
    let profiles = dir.path("profiles.conf");
    fs::write(&profiles, PROFILES).expect("profiles");
    let (pidfile, logdir) = (dir.path("run/daemon.pid"), dir.path("logs"));
    let port = free_port();
    let out = run_to_exit({
        let mut c = Command::new(program("x2gobroker-daemon"));
        c.arg("-D")
            .arg("-P")
            .arg(&pidfile)
            .arg("-L")
            .arg(&logdir)
            .arg("-C")
            .arg(&config)
            .args(["-b", &format!("127.0.0.1:{port}"), "--control-socket"])
            .arg(dir.path("control.sock"))
            .env("X2GOBROKER_SESSIONPROFILES", &profiles)
            .env("X2GOBROKER_SYSLOG_SOCKET", dir.path("no-syslog.sock"));
        c
    });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid: i32 = fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    wait_until("the background daemon to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let answer = post(port, "/plain/", "task=listsessions");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).expect("kill");
    wait_until("the background daemon to stop", || {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| s.contains("State:\tZ"))
            .unwrap_or(true)
    });
    assert!(!pidfile.exists(), "the PID file was left behind");
    // No syslog there: its lines went to the stderr file in the log directory.
    let stderr = fs::read_to_string(logdir.join("x2gobroker-daemon.stderr")).expect("stderr log");
    assert!(
        stderr.contains(&format!("listening on http://127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(logdir.join("x2gobroker-daemon.stdout").is_file());
}

/// Of several passed sockets only those named `http` are served; others
/// are closed (systemd keeps its own copy), not answered with HTTP.
#[test]
fn only_sockets_named_http_are_served() {
    let dir = TestDir::new("ops-names");
    let config = dir.path("x2gobroker.conf");
    fs::write(&config, "[global]\n").expect("config");
    let profiles = dir.path("profiles.conf");
    fs::write(&profiles, PROFILES).expect("profiles");
    let notify_path = dir.path("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let (http, other) = (free_port(), free_port());
    let log = fs::File::create(dir.path("daemon.log")).expect("log");
    let mut child = Command::new("systemd-socket-activate")
        .arg(format!(
            "--setenv=X2GOBROKER_SESSIONPROFILES={}",
            profiles.display()
        ))
        .arg(format!(
            "--setenv=X2GOBROKER_CONTROL_SOCKET={}",
            dir.path("control.sock").display()
        ))
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
        .args([
            "-l",
            &format!("127.0.0.1:{other}"),
            "-l",
            &format!("127.0.0.1:{http}"),
        ])
        .arg("--fdname=metrics:http")
        .arg(program("x2gobroker-daemon"))
        .arg("-C")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("start systemd-socket-activate");
    let trigger = wait_for_connect(http);
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf);
    let daemon_log = fs::read_to_string(dir.path("daemon.log")).unwrap_or_default();
    let message = n.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    assert!(
        message.as_deref().is_ok_and(|m| m.starts_with("READY=1\n")),
        "{message:?}: {daemon_log}"
    );
    drop(trigger);
    let answer = post(http, "/plain/", "task=listsessions");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        matches!(
            TcpStream::connect(("127.0.0.1", other)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        ),
        "the socket named metrics is still open"
    );
    let daemon_log = fs::read_to_string(dir.path("daemon.log")).unwrap_or_default();
    assert!(
        daemon_log.contains("ignoring passed descriptor 3 named Some(\"metrics\")"),
        "{daemon_log}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Under systemd, stderr is the journal (JOURNAL_STREAM names it): lines
/// carry their priority as a `<N>` prefix instead of the program name.
#[test]
fn stderr_lines_carry_journal_priorities_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let dir = TestDir::new("ops-journal");
    let config = dir.path("x2gobroker.conf");
    fs::write(&config, "[global]\n").expect("config");
    let profiles = dir.path("profiles.conf");
    fs::write(&profiles, PROFILES).expect("profiles");
    let log_path = dir.path("journal.log");
    let log = fs::File::create(&log_path).expect("log");
    let meta = log.metadata().expect("stat");
    let port = free_port();
    let mut child = Command::new(program("x2gobroker-daemon"))
        .arg("-C")
        .arg(&config)
        .args(["-b", &format!("127.0.0.1:{port}"), "--control-socket"])
        .arg(dir.path("control.sock"))
        .env("X2GOBROKER_SESSIONPROFILES", &profiles)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env_remove("X2GOBROKER_SYSLOG_SOCKET")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("start the daemon");
    let expected = format!("<6>listening on http://127.0.0.1:{port}");
    let mut text = String::new();
    wait_until("the listening line", || {
        text = fs::read_to_string(&log_path).unwrap_or_default();
        text.contains(&expected)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(!text.contains("x2gobroker-daemon - INFO"), "{text}");
}
