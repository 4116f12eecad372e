//! System tests of `x2gobroker-authhelper`: real PAM, real test users, real
//! sockets and processes. Each test starts its own helper instance.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use x2gobroker_protocol::client::ClientError;
use x2gobroker_protocol::frame::blocking::{read_message, write_message};
use x2gobroker_protocol::{ErrorKind, Request, Response, MAX_FRAME_LEN, PROTOCOL_VERSION};
use x2gobroker_systemtests::helper::*;

const AUTHPROBE: &str = env!("CARGO_BIN_EXE_authprobe");

fn refused_kind(result: Result<Response, ClientError>) -> ErrorKind {
    match result {
        Err(ClientError::Refused(reply)) => reply.kind,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn assert_authenticated(result: Result<Response, ClientError>) {
    match result {
        Ok(Response::Authenticated) => {}
        other => panic!("expected success, got {other:?}"),
    }
}

/// Runs the probe as `user` (its uid and primary gid; std drops root's
/// supplementary groups), password on stdin.
fn probe_as(user: &str, socket: &std::path::Path, args: &[&str], stdin: &str) -> (i32, String) {
    let (uid, gid) = user_ids(user);
    let mut child = Command::new(AUTHPROBE)
        .arg(socket)
        .args(args)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start authprobe");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{stdin}\n").as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("authprobe");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

// ---- PAM outcomes ----------------------------------------------------------

#[test]
fn correct_password_is_accepted_and_audited_without_the_password() {
    let helper = RunningHelper::start("ok", &[]);
    assert_authenticated(helper.authenticate(ALICE.0, ALICE.1, Some("192.0.2.1")));
    let status = helper.status();
    assert_eq!(status.counters.successes, 1);
    assert_eq!(status.counters.failures, 0);
    let log = helper.log();
    assert!(
        log.contains("AUDIT auth user=\"xbt-alice\" client=\"192.0.2.1\"") && log.contains("outcome=success"),
        "{log}"
    );
    assert!(log.contains("peer_uid=0"), "{log}");
    assert!(!log.contains(ALICE.1), "password in the log:\n{log}");
}

fn assert_refused_by_pam(tag: &str, user: &str, password: &str) {
    let helper = RunningHelper::start(tag, &[]);
    assert_eq!(
        refused_kind(helper.authenticate(user, password, None)),
        ErrorKind::AuthenticationFailed
    );
    let status = helper.status();
    assert_eq!((status.counters.successes, status.counters.failures), (0, 1));
    let log = helper.log();
    assert!(
        log.contains(&format!("user={user:?}")) && log.contains("outcome=refused"),
        "{log}"
    );
    assert!(!log.contains(password), "password in the log:\n{log}");
}

#[test]
fn wrong_password_is_refused() {
    assert_refused_by_pam("wrongpw", ALICE.0, "not-alices-password");
}

#[test]
fn unknown_user_is_refused() {
    assert_refused_by_pam("unknown", "xbt-nobody-here", "whatever-pw");
}

#[test]
fn locked_account_is_refused() {
    assert_refused_by_pam("locked", LOCKED.0, LOCKED.1);
}

#[test]
fn expired_account_is_refused() {
    assert_refused_by_pam("expired", EXPIRED.0, EXPIRED.1);
}

#[test]
fn pam_service_outside_the_allow_list_is_refused() {
    let helper = RunningHelper::start("service", &[]);
    let mut request = auth_request(ALICE.0, ALICE.1, None);
    if let Request::Authenticate(auth) = &mut request {
        auth.service = Some("login".into());
    }
    assert_eq!(
        refused_kind(helper.client().call(&request)),
        ErrorKind::DeniedByPolicy
    );
}

// ---- peer-credential policy ------------------------------------------------

#[test]
fn unprivileged_caller_is_refused_by_policy_and_audited() {
    let helper = RunningHelper::start("unpriv", &[]);
    let (code, out) = probe_as(DAVE.0, &helper.socket, &["auth", ALICE.0], ALICE.1);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("refused DeniedByPolicy"), "{out}");
    assert_eq!(helper.status().counters.policy_denials, 1);
    let (dave_uid, _) = user_ids(DAVE.0);
    let log = helper.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("peer_uid={dave_uid}")) && l.contains("denied by policy")),
        "{log}"
    );
}

#[test]
fn daemon_user_is_served() {
    let helper = RunningHelper::start("daemonuser", &[]);
    let (code, out) = probe_as(
        "x2gobroker",
        &helper.socket,
        &["auth", ALICE.0, "192.0.2.7"],
        ALICE.1,
    );
    assert_eq!((code, out.trim()), (0, "authenticated"));
}

// ---- malformed input -------------------------------------------------------

fn hello(stream: &mut UnixStream) {
    write_message(
        stream,
        &Request::Hello {
            version: PROTOCOL_VERSION,
        },
    )
    .expect("hello");
    match read_message::<Response, _>(stream) {
        Ok(Response::Hello { .. }) => {}
        other => panic!("handshake: {other:?}"),
    }
}

#[test]
fn malformed_input_gets_an_error_or_a_disconnect_and_service_continues() {
    let helper = RunningHelper::start("malformed", &["--read-timeout", "0.5"]);
    let connect = || UnixStream::connect(&helper.socket).expect("connect");
    let still_serves = || assert_authenticated(helper.authenticate(ALICE.0, ALICE.1, None));

    // Oversized frame: a prefix announcing more than the limit.
    let mut s = connect();
    s.write_all(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes()).unwrap();
    s.write_all(&[0u8; 64]).unwrap();
    let seen = expect_error_or_disconnect(s);
    assert!(seen.contains("bad request") || seen == "disconnected", "{seen}");
    still_serves();

    // Oversized frame after the handshake.
    let mut s = connect();
    hello(&mut s);
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    expect_error_or_disconnect(s);
    still_serves();

    // Truncated frame: 100 bytes announced, 10 sent, then end of stream.
    let mut s = connect();
    s.write_all(&100u32.to_be_bytes()).unwrap();
    s.write_all(&[1u8; 10]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    expect_error_or_disconnect(s);
    still_serves();

    // Truncated frame left hanging: the read deadline ends it.
    let mut s = connect();
    s.write_all(&100u32.to_be_bytes()).unwrap();
    s.write_all(&[1u8; 10]).unwrap();
    expect_error_or_disconnect(s);
    still_serves();

    // Random bytes (deterministic xorshift), with and without a plausible prefix.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    for round in 0..8 {
        let mut s = connect();
        if round % 2 == 0 {
            s.write_all(&48u32.to_be_bytes()).unwrap();
            s.write_all(&random(48)).unwrap();
        } else {
            hello(&mut s);
            s.write_all(&random(200)).unwrap();
        }
        expect_error_or_disconnect(s);
    }
    still_serves();

    // Wrong protocol version.
    let mut s = connect();
    write_message(
        &mut s,
        &Request::Hello {
            version: PROTOCOL_VERSION + 41,
        },
    )
    .unwrap();
    match read_message::<Response, _>(&mut s) {
        Ok(Response::Error(e)) => {
            assert_eq!(
                e.kind,
                ErrorKind::VersionMismatch {
                    supported: PROTOCOL_VERSION
                }
            )
        }
        other => panic!("wrong version: {other:?}"),
    }
    expect_error_or_disconnect(s);
    still_serves();

    // A request before the handshake.
    let mut s = connect();
    write_message(&mut s, &Request::Status).unwrap();
    let seen = expect_error_or_disconnect(s);
    assert!(seen.contains("bad request"), "{seen}");

    // A client that connects and sends nothing is dropped by the deadline
    // (expect_error_or_disconnect fails if our own, much longer, timeout hits).
    let silent = connect();
    let silent_after_hello = {
        let mut s = connect();
        hello(&mut s);
        s
    };
    expect_error_or_disconnect(silent);
    expect_error_or_disconnect(silent_after_hello);
    still_serves();
}

#[test]
fn connections_beyond_the_limit_are_refused_and_slots_come_back() {
    let helper = RunningHelper::start("maxconn", &["--max-connections", "2"]);
    // The start-up probe's connection may still hold a slot for a moment.
    let client_when_a_slot_is_free = || {
        let mut client = None;
        wait_until("a free connection slot", || {
            client = x2gobroker_protocol::client::blocking::Client::connect(&helper.socket, DEADLINE).ok();
            client.is_some()
        });
        client
    };
    let first = client_when_a_slot_is_free();
    let second = client_when_a_slot_is_free();
    assert!(first.is_some() && second.is_some());
    let third = UnixStream::connect(&helper.socket).expect("connect");
    let seen = expect_error_or_disconnect(third);
    assert!(
        seen.contains("too many connections") || seen == "disconnected",
        "{seen}"
    );
    drop((first, second));
    // The helper notices the closed connections asynchronously: poll.
    wait_until("a free connection slot", || {
        x2gobroker_protocol::client::blocking::Client::connect(&helper.socket, DEADLINE)
            .and_then(|mut c| c.call(&auth_request(ALICE.0, ALICE.1, None)))
            .is_ok()
    });
}

// SSH-mode tasks: tests/tests/ssh_mode.rs.

// ---- concurrency and throttling --------------------------------------------

#[test]
fn failing_logins_do_not_delay_another_users_login() {
    // Throttling off in effect: all 8 failures must really reach PAM.
    let helper = Arc::new(RunningHelper::start("hol", &["--throttle-threshold", "1000"]));
    let finished = Arc::new(AtomicUsize::new(0));
    let failures: Vec<_> = (0..8)
        .map(|i| {
            let (helper, finished) = (helper.clone(), finished.clone());
            std::thread::spawn(move || {
                let kind =
                    refused_kind(helper.authenticate(BOB.0, &format!("wrong-{i}"), Some("192.0.2.50")));
                (kind, finished.fetch_add(1, Ordering::SeqCst))
            })
        })
        .collect();
    wait_until("8 failing logins in flight", || {
        helper.status().counters.in_flight == 8
    });
    assert_authenticated(helper.authenticate(ALICE.0, ALICE.1, Some("192.0.2.51")));
    let alice_finished = finished.fetch_add(1, Ordering::SeqCst);
    let mut first_failure = usize::MAX;
    for t in failures {
        let (kind, order) = t.join().expect("failure thread");
        assert_eq!(kind, ErrorKind::AuthenticationFailed);
        first_failure = first_failure.min(order);
    }
    assert!(
        alice_finished < first_failure,
        "alice finished as #{alice_finished}, the first failure as #{first_failure}"
    );
}

/// The three thresholds (docs/OPERATIONS.md "Throttling"): per (user,
/// address), per user across addresses, per address across users; a pair
/// that logged in lately is judged by its own key only.
#[test]
fn throttling_engages_per_pair_then_per_user_and_per_address() {
    let helper = RunningHelper::start(
        "throttle",
        &[
            "--throttle-threshold",
            "2",
            "--throttle-user-threshold",
            "3",
            "--throttle-address-threshold",
            "3",
            "--throttle-half-life",
            "600",
        ],
    );
    let (a1, a2, a3, a4) = (
        Some("198.51.100.1"),
        Some("198.51.100.2"),
        Some("198.51.100.3"),
        Some("198.51.100.4"),
    );
    let wrong = |user: &str, address| {
        assert_eq!(
            refused_kind(helper.authenticate(user, "wrong", address)),
            ErrorKind::AuthenticationFailed
        );
    };
    let throttled = |user: (&str, &str), address| {
        let kind = refused_kind(helper.authenticate(user.0, user.1, address));
        assert!(
            matches!(kind, ErrorKind::Throttled { retry_after_secs } if retry_after_secs > 0),
            "{kind:?}"
        );
    };
    wrong(CAROL.0, a1);
    wrong(CAROL.0, a1);
    // The pair: even the right password is not tried ...
    throttled(CAROL, a1);
    // ... but she may log in elsewhere, and others at that address.
    assert_authenticated(helper.authenticate(CAROL.0, CAROL.1, a2));
    assert_authenticated(helper.authenticate(FRANK.0, FRANK.1, a1));
    // Spraying: a third failure at a1 (another user) throttles the address
    // for users who have not logged in from it lately.
    wrong(DAVE.0, a1);
    throttled(ERIN, a1);
    assert_authenticated(helper.authenticate(FRANK.0, FRANK.1, a1));
    // Distributed guessing: a third failure for carol throttles her at new
    // addresses, not at the one she logged in from.
    wrong(CAROL.0, a3);
    throttled(CAROL, a4);
    assert_authenticated(helper.authenticate(CAROL.0, CAROL.1, a2));
    let c = helper.status().counters;
    assert_eq!((c.failures, c.throttled, c.successes), (4, 3, 4));
    let log = helper.log();
    for scope in [
        "user at this address",
        "address, all users",
        "user, all addresses",
    ] {
        assert!(
            log.contains(&format!("outcome=throttled ({scope}, ")),
            "{scope}: {log}"
        );
    }
}

// ---- socket activation, privileges, status, start-up errors ----------------

#[test]
fn serves_on_a_socket_handed_over_by_systemd() {
    let dir = TestDir::new("activate");
    let handed = dir.path("activated.sock");
    let own = dir.path("not-used.sock");
    let mut command = Command::new("systemd-socket-activate");
    command
        .arg("-l")
        .arg(&handed)
        .arg(helper_binary())
        .arg("--foreground")
        .arg("--socket")
        .arg(&own);
    let mut helper = RunningHelper::spawn(command, dir, handed.clone());
    assert_authenticated(helper.authenticate(ALICE.0, ALICE.1, None));
    assert!(!own.exists(), "the helper bound its own socket");
    assert!(
        helper.log().contains("socket passed by systemd"),
        "{}",
        helper.log()
    );
    assert!(helper.terminate().success());
    assert!(
        handed.exists(),
        "a socket we did not create must not be removed by us"
    );
}

#[test]
fn bound_socket_has_requested_owner_and_mode_and_is_removed_on_exit() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let dir = TestDir::new("bind");
    let socket = dir.path("sub/dir/helper.sock");
    let mut command = Command::new(helper_binary());
    // The default group: the socket unit's, so SSH-mode users get in
    // without systemd too.
    command
        .arg("--socket")
        .arg(&socket)
        .args(["--foreground", "--socket-mode", "0660"]);
    let mut helper = RunningHelper::spawn(command, dir, socket.clone());
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o7777, 0o660);
    let group = nix::unistd::Group::from_name("x2gobroker-users")
        .unwrap()
        .expect("group x2gobroker-users (scripts/setup-test-env.sh)");
    assert_eq!((meta.uid(), meta.gid()), (0, group.gid.as_raw()));
    let parent = std::fs::metadata(socket.parent().unwrap()).unwrap();
    assert_eq!(parent.mode() & 0o7777, 0o755);
    assert!(helper.terminate().success());
    assert!(!socket.exists());
}

#[test]
fn capabilities_are_reduced_in_every_thread() {
    const CAP_KILL: u64 = 1 << 5;
    const CAP_SETGID: u64 = 1 << 6;
    const CAP_SETUID: u64 = 1 << 7;
    const CAP_SYS_PTRACE: u64 = 1 << 19;
    const CAP_AUDIT_WRITE: u64 = 1 << 29;
    let expected = CAP_KILL | CAP_SETGID | CAP_SETUID | CAP_SYS_PTRACE | CAP_AUDIT_WRITE;
    let helper = RunningHelper::start("caps", &[]);
    // Make the runtime's worker and PAM threads exist before looking.
    assert_authenticated(helper.authenticate(ALICE.0, ALICE.1, None));
    let pid = helper.pid();
    for (name, want) in [
        ("CapEff", expected),
        ("CapPrm", expected),
        ("CapBnd", expected),
        ("CapInh", 0),
        ("CapAmb", 0),
    ] {
        assert_eq!(proc_status_hex(pid, None, name), want, "{name} of the helper");
    }
    let tasks: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    assert!(tasks.len() > 1, "expected runtime threads, found {tasks:?}");
    for tid in tasks {
        assert_eq!(
            proc_status_hex(pid, Some(tid), "CapEff"),
            expected,
            "CapEff of thread {tid}"
        );
        assert_eq!(
            proc_status_hex(pid, Some(tid), "CapBnd"),
            expected,
            "CapBnd of thread {tid}"
        );
    }
}

/// The helper's status client is `x2gobroker-ctl status --only authhelper`
/// (the helper itself has no client mode: nothing of it needs root).
fn status_command(helper: &RunningHelper, extra: &[&str]) -> Command {
    let ctl = target_profile_dir().join("x2gobroker-ctl");
    assert!(
        ctl.is_file(),
        "{} missing: cargo build -p x2gobroker-frontend",
        ctl.display()
    );
    let mut command = Command::new(ctl);
    command
        .args(["status", "--only", "authhelper", "--authservice-socket"])
        .arg(&helper.socket)
        .args(extra);
    command
}

#[test]
fn status_is_served_to_root_and_admins_only() {
    let helper = RunningHelper::start("status", &["--admin-group", "xbt-admins"]);
    assert_authenticated(helper.authenticate(ALICE.0, ALICE.1, None));

    let out = run_to_exit(status_command(&helper, &[]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for field in [
        "version: ",
        "uptime: ",
        "requests: ",
        "1 succeeded, 0 failed, 0 throttled",
    ] {
        assert!(text.contains(field), "{field} missing in\n{text}");
    }
    assert!(
        text.contains("denied by policy") && text.contains("in flight "),
        "{text}"
    );
    assert!(!text.contains("daemon ("), "only the helper was asked: {text}");

    let out = run_to_exit(status_command(&helper, &["--json"]));
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(json["authhelper"]["successes"], 1);
    assert!(
        json["authhelper"]["uptime_secs"].is_u64() && json["authhelper"]["version"].is_string(),
        "{json}"
    );
    assert!(json.get("daemon").is_none(), "{json}");

    // An ordinary user is refused with a clear message and a non-zero exit.
    let (uid, gid) = user_ids(DAVE.0);
    let mut as_dave = status_command(&helper, &[]);
    as_dave.uid(uid).gid(gid);
    let out = run_to_exit(as_dave);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("error: denied by policy"), "{stdout}");
    assert!(!stdout.contains("version: "), "{stdout}");

    // A member of the admin group (supplementary, from the group database) may.
    let (uid, gid) = user_ids(ERIN.0);
    let mut as_erin = status_command(&helper, &[]);
    as_erin.uid(uid).gid(gid);
    let out = run_to_exit(as_erin);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(helper.status().counters.policy_denials, 1);
}

fn assert_start_fails(extra: &[&str], as_user: Option<&str>, message: &str) {
    let dir = TestDir::new("startfail");
    let mut command = Command::new(helper_binary());
    command.arg("--foreground");
    if !extra.contains(&"--socket") {
        command.arg("--socket").arg(dir.path("s.sock"));
    }
    command.args(extra);
    if let Some(user) = as_user {
        let (uid, gid) = user_ids(user);
        command.uid(uid).gid(gid);
    }
    let out = run_to_exit(command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with {extra:?}: {stderr}");
    assert!(stderr.contains(message), "expected {message:?} in {stderr:?}");
}

#[test]
fn start_up_errors_are_clear_and_fail() {
    assert_start_fails(&[], Some(DAVE.0), "must be started as root");
    assert_start_fails(
        &["--daemon-user", "xbt-no-such-user"],
        None,
        "unknown daemon user",
    );
    assert!(!group_exists("xbt-no-such-group"));
    assert_start_fails(
        &["--admin-group", "xbt-no-such-group"],
        None,
        "unknown admin group",
    );
    assert_start_fails(
        &["--socket-group", "xbt-no-such-group"],
        None,
        "unknown socket group",
    );
    assert_start_fails(
        &["--socket", "/proc/version/helper.sock"],
        None,
        "is not a directory",
    );
    assert_start_fails(
        &["--socket", "/proc/sys/x2gobroker-test/helper.sock"],
        None,
        "cannot create directory",
    );
    assert_start_fails(&["--socket", "/etc/passwd"], None, "is not a socket");
    assert_start_fails(&["--throttle-threshold", "0"], None, "throttle-threshold");
}

#[test]
fn the_helper_writes_the_man_page_its_units_name() {
    let dir = TestDir::new("man");
    let mut command = Command::new(helper_binary());
    command.arg("--generate-man").arg(dir.path("out")).env_clear();
    let out = run_to_exit(command);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_to_string(dir.path("out/x2gobroker-authhelper.8")).expect("page");
    assert!(page.contains(".TH x2gobroker-authhelper 8"), "{page}");
    assert!(page.contains("[default: x2gobroker\\-users]"), "{page}");
    assert!(!page.contains("generate\\-man"), "hidden flag stays hidden");
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd");
    for unit in ["x2gobroker-authhelper.service", "x2gobroker-authhelper.socket"] {
        let text = std::fs::read_to_string(units.join(unit)).expect("unit");
        assert!(
            text.contains("Documentation=man:x2gobroker-authhelper(8)"),
            "{unit}"
        );
    }
    let mut help = Command::new(helper_binary());
    help.arg("--help");
    assert!(!String::from_utf8_lossy(&run_to_exit(help).stdout).contains("generate-man"));
}

#[test]
fn a_second_helper_does_not_steal_a_live_socket() {
    let helper = RunningHelper::start("twice", &[]);
    let mut command = Command::new(helper_binary());
    command.arg("--foreground").arg("--socket").arg(&helper.socket);
    let out = run_to_exit(command);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listening"));
    assert_authenticated(helper.authenticate(ALICE.0, ALICE.1, None));
}

#[test]
fn audit_lines_reach_the_syslog_socket_with_facility_authpriv() {
    use std::os::unix::net::UnixDatagram;
    let dir = TestDir::new("syslog");
    let log_socket = dir.path("log.sock");
    let syslog = UnixDatagram::bind(&log_socket).expect("bind fake syslog");
    syslog.set_read_timeout(Some(DEADLINE)).unwrap();
    let helper_socket = dir.path("helper.sock");
    let mut command = Command::new(helper_binary());
    command
        .arg("--socket")
        .arg(&helper_socket)
        .arg("--syslog-socket")
        .arg(&log_socket);
    let helper = RunningHelper::spawn(command, dir, helper_socket);
    assert_authenticated(helper.authenticate(ALICE.0, ALICE.1, Some("203.0.113.5")));
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 8192];
    wait_until("the audit line on the syslog socket", || {
        let n = syslog.recv(&mut buf).expect("syslog datagram");
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        lines.last().is_some_and(|l| l.contains("AUDIT auth"))
    });
    let audit = lines.last().unwrap();
    // authpriv (10) * 8 + info (6) = 86.
    assert!(audit.starts_with("<86>"), "{audit}");
    assert!(
        audit.contains("user=\"xbt-alice\"") && audit.contains("client=\"203.0.113.5\""),
        "{audit}"
    );
    assert!(lines.iter().all(|l| !l.contains(ALICE.1)));
}
