//! The front door under attack (issue 10), with the real daemon, the real
//! root helper and real PAM users:
//! * 1,100 idle and half-sent connections at the unit's old descriptor
//!   limit (1,024): a PAM login still succeeds, the attackers' connections
//!   are closed;
//! * 140 parallel wrong-password requests with rotating user names and
//!   source addresses: a returning user's login still succeeds;
//! * a storm of failing requests with 65,000-character and CR/LF values:
//!   a bounded number of log lines, with the count of what was left out,
//!   and no forged line;
//! * an unprivileged local user holding control-socket connections: root's
//!   `x2gobroker-ctl status` still answers;
//! * the metrics endpoint, scraped with curl, counts what was done.
//!
//! Each test fails on the daemon before this change: checked by running
//! this file against binaries built from commit 259fd73 (front end and
//! protocol checked out, same helper): no answer to the login (out of
//! descriptors), 401 during the storm, no count of suppressed lines (every
//! failure logged), root's status reset while the 8 slots are held, no
//! metrics endpoint.

use socket2::{Domain, Socket, Type};
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use x2gobroker_systemtests::helper::{
    run_to_exit, target_profile_dir, wait_until, RunningHelper, TestDir, ALICE, BOB, DAVE, DEADLINE,
};
use x2gobroker_systemtests::support::{free_port, require_root, PROFILES};

/// The daemon, started directly (stderr into a file) on 127.0.0.1.
struct Broker {
    child: Child,
    port: u16,
    dir: TestDir,
    control: PathBuf,
}

impl Broker {
    /// `global` is added to `[global]`; `nofile` runs the daemon under
    /// that descriptor limit (prlimit), as a unit without LimitNOFILE= does.
    fn start(tag: &str, helper_socket: &Path, global: &str, nofile: Option<u32>) -> Broker {
        let dir = TestDir::new(tag);
        let config = dir.path("x2gobroker.conf");
        fs::write(
            &config,
            format!(
                "[global]\ncookie-directory = {}\nkey-removal-directory = {}\n{global}",
                dir.path("cookies").display(),
                dir.path("key-removals").display()
            ),
        )
        .expect("write config");
        let profiles = dir.path("sessionprofiles.conf");
        fs::write(&profiles, PROFILES).expect("write profiles");
        let control = dir.path("control.sock");
        let port = free_port();
        let log = fs::File::create(dir.path("daemon.log")).expect("log");
        let daemon = target_profile_dir().join("x2gobroker-daemon");
        let mut command = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(&daemon);
                c
            }
            None => Command::new(&daemon),
        };
        let child = command
            .arg("-C")
            .arg(&config)
            .args(["-b", &format!("127.0.0.1:{port}"), "--control-socket"])
            .arg(&control)
            .env("X2GOBROKER_AUTHSERVICE_SOCKET", helper_socket)
            .env("X2GOBROKER_SESSIONPROFILES", &profiles)
            .env_remove("X2GOBROKER_SYSLOG_SOCKET")
            .env_remove("X2GOBROKER_DEBUG")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        let mut broker = Broker {
            child,
            port,
            dir,
            control,
        };
        wait_until("the daemon to listen", || {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("daemon exited ({status}):\n{}", broker.log());
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        broker
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection to the daemon from `source` (any 127.0.0.0/8 address).
fn connect_from(source: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    socket.connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into(),
        Duration::from_secs(5),
    )?;
    Ok(socket.into())
}

/// One POST with `Connection: close` from `source`; the raw answer, or
/// an empty string when none came within `wait`.
fn post_from(source: Ipv4Addr, port: u16, path: &str, body: &str, wait: Duration) -> String {
    let Ok(mut stream) = connect_from(source, port) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(wait));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn login_from(source: Ipv4Addr, port: u16, user: &str, password: &str) -> String {
    post_from(
        source,
        port,
        "/plain/",
        &format!("user={user}&password={password}&task=listsessions"),
        DEADLINE,
    )
}

/// Whether the daemon closed `stream` (EOF or reset; answers are read).
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let _ = stream.set_nonblocking(true);
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// This process needs more descriptors than the attacked daemon.
fn raise_own_descriptor_limit(wanted: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard).expect("setrlimit");
    }
}

#[test]
fn idle_and_half_sent_connections_neither_exhaust_descriptors_nor_block_a_pam_login() {
    require_root("real PAM through the root helper");
    raise_own_descriptor_limit(8192);
    let helper = RunningHelper::start("xfd-idle", &[]);
    let broker = Broker::start(
        "xfd-idle",
        &helper.socket,
        "keepalive-timeout = 3\nheader-read-timeout = 3\nbody-read-timeout = 3\n",
        Some(1024),
    );
    // From 50 addresses: idle, a header cut short, a body cut short.
    let mut held = Vec::new();
    for i in 0..1100u32 {
        let source = Ipv4Addr::new(127, 0, 3, (i % 50 + 1) as u8);
        let Ok(mut stream) = connect_from(source, broker.port) else {
            continue;
        };
        let _ = match i % 3 {
            1 => stream.write_all(b"POST /plain/ HTTP/1.1\r\nHost: x\r\nContent-Le"),
            2 => stream.write_all(b"POST /plain/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nuser=x"),
            _ => Ok(()),
        };
        held.push(stream);
    }
    let answer = login_from(Ipv4Addr::LOCALHOST, broker.port, ALICE.0, ALICE.1);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("Access granted"),
        "{answer:?}\nlog:\n{}",
        broker.log()
    );
    let log = broker.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(
        log.contains("RLIMIT_NOFILE 1024"),
        "no start-up line on the limit:\n{log}"
    );
    // Every attacking connection is closed: made room for others, or idle
    // (or half-sent) past its time.
    wait_until("the daemon to close every attacking connection", || {
        held.retain_mut(|s| !closed_by_peer(s));
        held.is_empty()
    });
    // A connection that stays idle is closed after the keep-alive time.
    let mut idle = connect_from(Ipv4Addr::new(127, 0, 3, 99), broker.port).expect("connect");
    wait_until("an idle connection to be closed", || closed_by_peer(&mut idle));
    // Still serving.
    let answer = login_from(Ipv4Addr::LOCALHOST, broker.port, ALICE.0, ALICE.1);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[test]
fn a_rotating_wrong_password_storm_does_not_refuse_a_returning_users_login() {
    require_root("real PAM through the root helper");
    raise_own_descriptor_limit(4096);
    let helper = RunningHelper::start("xfd-storm", &[]);
    let broker = Broker::start("xfd-storm", &helper.socket, "", None);
    let port = broker.port;
    // Alice logged in from her address before (a returning client).
    let answer = login_from(Ipv4Addr::LOCALHOST, port, ALICE.0, ALICE.1);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let storm: Vec<_> = (0..140)
        .map(|_| {
            let (stop, sent, answered) = (stop.clone(), sent.clone(), answered.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    // 1,000 addresses in 127.0.4.0 - 127.0.7.255, a new user name each time.
                    let source = Ipv4Addr::new(127, 0, 4 + (n / 250 % 4) as u8, (n % 250 + 1) as u8);
                    let answer = login_from(source, port, &format!("xfd-ghost-{n}"), "Wrong-pw-9");
                    if !answer.is_empty() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // In full swing: every thread has a request waiting, some were answered.
    wait_until("the storm to be under way", || {
        sent.load(Ordering::Relaxed) >= 140 && answered.load(Ordering::Relaxed) >= 4
    });
    let answer = login_from(Ipv4Addr::LOCALHOST, port, ALICE.0, ALICE.1);
    let during = answered.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let log = broker.log();
    // The storm's requests still waiting end with the daemon.
    drop(broker);
    for thread in storm {
        thread.join().expect("storm thread");
    }
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("Access granted"),
        "{answer:?} ({during} storm requests answered)\nlog:\n{log}"
    );
}

#[test]
fn a_storm_of_failures_writes_a_bounded_log_without_forged_lines() {
    require_root("real PAM through the root helper");
    let helper = RunningHelper::start("xfd-logs", &[]);
    let broker = Broker::start("xfd-logs", &helper.socket, "", None);
    let started = broker.log().lines().count();
    let long_user = "x".repeat(65_000);
    let forged_user = "xfd-evil%0D%0Aforged line outcome=granted%0D%0A";
    let requests = 200;
    for i in 0..requests {
        let (path, body) = match i % 4 {
            // A refused login (an empty password never reaches PAM).
            0 => ("/plain/", format!("user={long_user}&password=&task=listsessions")),
            1 => (
                "/plain/",
                format!("user={forged_user}&password=&task=listsessions"),
            ),
            // Unknown backend with CR/LF in its name.
            2 => ("/plain/xfd%0D%0Aforged%20line/", "task=listsessions".to_owned()),
            _ => (
                "/plain/",
                "user=xfd-nobody&password=wrong&task=listsessions".to_owned(),
            ),
        };
        let answer = post_from(Ipv4Addr::LOCALHOST, broker.port, path, &body, DEADLINE);
        assert!(
            answer.starts_with("HTTP/1.1 401") || answer.starts_with("HTTP/1.1 404"),
            "{answer:?}"
        );
    }
    // The count of what was left out is reported (with the next line of
    // its kind, or after the window).
    wait_until("the count of suppressed lines", || {
        broker.log().contains("similar lines suppressed)")
    });
    let log = broker.log();
    let lines: Vec<&str> = log.lines().skip(started).collect();
    assert!(
        lines.len() < 120,
        "{} log lines for {requests} failing requests:\n{log}",
        lines.len()
    );
    assert!(log.len() < 64 * 1024, "log of {} bytes", log.len());
    for line in &lines {
        assert!(
            !line.starts_with("forged") && !line.starts_with(" outcome=granted"),
            "forged log line: {line:?}"
        );
        assert!(!line.contains(&"x".repeat(100)), "uncapped value: {line:.200}");
    }
}

#[test]
fn an_unprivileged_user_holding_control_connections_does_not_block_roots_status() {
    require_root("a real unprivileged user beside root");
    let helper = RunningHelper::start("xfd-ctl", &[]);
    let broker = Broker::start("xfd-ctl", &helper.socket, "", None);
    // Dave (not in the admin group) opens 20 connections and keeps them.
    let holder = r#"
import socket, sys
held = []
for _ in range(20):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    held.append(s)
print("held", len(held), flush=True)
closed = 0
for s in held:
    s.settimeout(60)
    try:
        while s.recv(4096):
            pass
        closed += 1
    except OSError:
        pass
print("closed", closed, flush=True)
sys.stdin.read()
"#;
    let mut dave = Command::new("setpriv")
        .arg(format!("--reuid={}", DAVE.0))
        .arg(format!("--regid={}", DAVE.0))
        .args(["--init-groups", "--", "/usr/bin/python3", "-c", holder])
        .arg(&broker.control)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the holder as xbt-dave");
    let mut out = dave.stdout.take().expect("stdout");
    let mut seen = String::new();
    let mut read_line = |want: &str| {
        let mut buf = [0u8; 1];
        while !seen.contains(want) {
            match out.read(&mut buf) {
                Ok(1) => seen.push(buf[0] as char),
                _ => panic!("holder ended before {want:?}: {seen:?}"),
            }
        }
    };
    read_line("held 20\n");
    // While Dave holds his connections, root asks.
    let mut ctl = Command::new(target_profile_dir().join("x2gobroker-ctl"));
    ctl.args(["status", "--json", "--control-socket"])
        .arg(&broker.control)
        .arg("--authservice-socket")
        .arg(&helper.socket);
    let status = run_to_exit(ctl);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.status.success(), "{text}\nlog:\n{}", broker.log());
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert!(json["daemon"]["version"].is_string(), "{json}");
    // Dave's connections were refused at once and closed.
    read_line("closed 20\n");
    drop(dave.stdin.take());
    let _ = dave.wait();
    let log = broker.log();
    assert!(log.contains("outcome=denied"), "{log}");
}

#[test]
fn the_metrics_endpoint_counts_requests_auth_and_connections() {
    require_root("real PAM through the root helper");
    let helper = RunningHelper::start("xfd-metrics", &[]);
    let metrics_port = free_port();
    let broker = Broker::start(
        "xfd-metrics",
        &helper.socket,
        &format!("metrics-listen = 127.0.0.1:{metrics_port}\n"),
        None,
    );
    let local = Ipv4Addr::LOCALHOST;
    assert!(login_from(local, broker.port, ALICE.0, ALICE.1).starts_with("HTTP/1.1 200"));
    for wrong in ["Wrong-pw-1", "Wrong-pw-2"] {
        assert!(login_from(local, broker.port, BOB.0, wrong).starts_with("HTTP/1.1 401"));
    }
    // Never on the broker's own port.
    let public = post_from(local, broker.port, "/metrics", "", DEADLINE);
    assert!(public.starts_with("HTTP/1.1 404"), "{public}");

    let scrape = || {
        let mut curl = Command::new("curl");
        curl.args(["-s", "-m", "20", "-D", "-"])
            .arg(format!("http://127.0.0.1:{metrics_port}/metrics"));
        String::from_utf8_lossy(&run_to_exit(curl).stdout).into_owned()
    };
    let text = scrape();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("application/openmetrics-text"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    for sample in [
        "x2gobroker_requests_total{task=\"listsessions\",status=\"200\"} 1\n",
        "x2gobroker_requests_total{task=\"listsessions\",status=\"401\"} 2\n",
        "x2gobroker_request_duration_seconds_count{task=\"listsessions\"} 3\n",
        "x2gobroker_request_duration_seconds_bucket{task=\"listsessions\",le=\"+Inf\"} 3\n",
        "x2gobroker_requests_total{task=\"other\",status=\"404\"} 1\n",
        "x2gobroker_auth_total{outcome=\"granted\"} 1\n",
        "x2gobroker_auth_total{outcome=\"refused\"} 2\n",
        "x2gobroker_helper_up 1\n",
        "x2gobroker_helper_calls_total 3\n",
        "x2gobroker_helper_calls_in_flight 0\n",
        "x2gobroker_connections_refused_total{limit=\"overall\"} 0\n",
    ] {
        assert!(text.contains(sample), "missing {sample:?} in:\n{text}");
    }
    let accepted: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("x2gobroker_connections_accepted_total "))
        .and_then(|v| v.parse().ok())
        .expect("accepted count");
    assert!(accepted >= 4, "{text}");

    // x2gobroker-ctl status shows the same numbers.
    let mut ctl = Command::new(target_profile_dir().join("x2gobroker-ctl"));
    ctl.args(["status", "--control-socket"])
        .arg(&broker.control)
        .args(["--only", "daemon"]);
    let out = run_to_exit(ctl);
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    for sample in [
        "x2gobroker_auth_total{outcome=\"refused\"} 2",
        "x2gobroker_requests_total{task=\"listsessions\",status=\"200\"} 1",
    ] {
        assert!(status.contains(sample), "missing {sample:?} in:\n{status}");
    }
}

#[test]
fn reloaded_limits_apply_to_the_next_connection() {
    require_root("the daemon's start-up checks run as root");
    let metrics_port = free_port();
    let metrics = format!("metrics-listen = 127.0.0.1:{metrics_port}\n");
    let broker = Broker::start(
        "xfd-reload",
        Path::new("/nonexistent/helper.sock"),
        &format!("{metrics}max-connections-per-client = 2\n"),
        None,
    );
    let evicted = || {
        let mut curl = Command::new("curl");
        curl.args(["-s", "-m", "20"])
            .arg(format!("http://127.0.0.1:{metrics_port}/metrics"));
        let text = String::from_utf8_lossy(&run_to_exit(curl).stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("x2gobroker_connections_closed_total{reason=\"evicted_idle\"} "))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no evicted_idle count in:\n{text}"))
    };
    // An answered request proves every earlier connection was admitted
    // (one listener, accepted in order).
    let answered = || post_from(Ipv4Addr::LOCALHOST, broker.port, "/", "", DEADLINE);
    let local = Ipv4Addr::LOCALHOST;
    let mut first = connect_from(local, broker.port).expect("connect");
    let _second = connect_from(local, broker.port).expect("connect");
    // A third connection from the same client makes room: the oldest idle goes.
    assert!(!answered().is_empty());
    let _ = first.set_read_timeout(Some(DEADLINE));
    assert_eq!(
        first.read(&mut [0u8; 1]).ok(),
        Some(0),
        "the oldest idle connection was closed"
    );
    // (The start-up probe's connection may have been evicted too.)
    let evicted_before = evicted();
    assert!(evicted_before >= 1);

    let config = broker.dir.path("x2gobroker.conf");
    let text = fs::read_to_string(&config).expect("config");
    fs::write(
        &config,
        text.replace("max-connections-per-client = 2", "max-connections-per-client = 8"),
    )
    .expect("rewrite config");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(broker.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    wait_until("the reload to be logged", || {
        broker.log().contains("reload: front-end limits: ")
    });
    let _more: Vec<TcpStream> = (0..4)
        .map(|_| connect_from(local, broker.port).expect("connect"))
        .collect();
    assert!(!answered().is_empty());
    assert_eq!(
        evicted(),
        evicted_before,
        "room for 8 per client now: nobody evicted"
    );
}
