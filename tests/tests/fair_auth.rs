//! Issue 10, attacks 3 and 4, against the real helper, real PAM and the
//! real HTTP daemon: a local user holding helper connections; a storm of
//! wrong passwords for one user from one address; a few wrong passwords
//! locking that user out elsewhere; one user's storm taking all PAM threads. Client addresses are 127.0.0.0/8
//! source addresses (curl --interface).
//!
//! Each was checked to fail on the code before this change: that helper
//! (built from the parent commit, its binary put in place of ours) fails
//! every one of them, at the assertion named in its comment.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use x2gobroker_systemtests::helper::*;
use x2gobroker_systemtests::ssh::{run_with_deadline, write_broker_files, HttpDaemon, COOKIES};

/// Test users of these tests (scripts/setup-test-env.sh).
const ANNA: (&str, &str) = ("xhf-anna", "Anna-pw-1");
const BEN: (&str, &str) = ("xhf-ben", "Ben-pw-2");
/// A local SSH-mode user (member of x2gobroker-users).
const MALLORY: &str = "xhf-mallory";
const AUTHPROBE: &str = env!("CARGO_BIN_EXE_authprobe");

struct Broker {
    helper: RunningHelper,
    daemon: HttpDaemon,
}

fn broker(tag: &str, helper_args: &[&str]) -> Broker {
    let helper = RunningHelper::start(tag, helper_args);
    let config = format!("[global]\ncookie-directory = {COOKIES}\n");
    let (config, profiles, _) = write_broker_files(&helper.dir, &config, "[everyone]\nname = Everyone\n");
    let daemon = HttpDaemon::start(&helper.dir.0, &config, &profiles, &helper.socket);
    Broker { helper, daemon }
}

/// An HTTP login (/plain/ listsessions) from `source`: (status, body).
fn login_from(daemon: &HttpDaemon, source: &str, user: &str, password: &str) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args([
        "-s",
        "-S",
        "--max-time",
        "30",
        "--interface",
        source,
        "-w",
        "\n%{http_code}",
    ]);
    for (k, v) in [("user", user), ("password", password), ("task", "listsessions")] {
        command.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    command.arg(format!("http://127.0.0.1:{}/plain/", daemon.port));
    let out = run_with_deadline(command);
    assert_eq!(out.code, 0, "curl: {}", out.stderr);
    let (body, status) = out.stdout.rsplit_once('\n').unwrap_or_default();
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn assert_granted((status, body): (u16, String), what: &str) {
    assert_eq!(status, 200, "{what}: {body}");
    assert!(body.contains("Access granted"), "{what}: {body}");
}

/// Attack 3. Before: she held all 16 connections ("held 16") and kept
/// them with repeated Hellos.
#[test]
fn a_local_user_holding_helper_connections_does_not_block_http_logins() {
    let b = broker("xhf-held", &["--max-connections", "16"]);
    let (uid, gid) = user_ids(MALLORY);
    let mut holder = Command::new(AUTHPROBE)
        .arg(&b.helper.socket)
        .args(["hold", "32"])
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start authprobe hold");
    let mut input = holder.stdin.take().expect("stdin");
    let mut lines = BufReader::new(holder.stdout.take().expect("stdout")).lines();
    let mut next_line = || lines.next().and_then(Result::ok).unwrap_or_default();
    // Half of the 16 are kept for root and the daemon user.
    assert_eq!(next_line(), "held 8");
    for _ in 0..3 {
        assert_granted(
            login_from(&b.daemon, "127.0.0.1", ANNA.0, ANNA.1),
            "while she holds 8",
        );
    }
    // A repeated Hello is a bad request: her connections are closed.
    writeln!(input, "again").expect("write");
    assert_eq!(next_line(), "open 0");
    drop(input);
    assert!(holder.wait().expect("authprobe").success());
    let log = b.helper.log();
    assert!(
        log.contains(&format!("peer_uid={uid}")) && log.contains("connection limit reached"),
        "{log}"
    );
}

/// Attack 4, first part. Before: Ben's correct login from the storm's
/// address was refused (401), the address being throttled for everyone.
#[test]
fn another_user_logs_in_from_the_address_of_a_storm() {
    let b = broker("xhf-storm", &[]);
    let started = std::time::Instant::now();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for i in 0..8 {
            let (daemon, stop) = (&b.daemon, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let (status, body) = login_from(daemon, "127.0.0.5", ANNA.0, &format!("wrong-{i}"));
                    assert_eq!(status, 401, "{body}");
                }
            });
        }
        wait_until("the storm against anna to be throttled", || {
            b.helper.log().contains("outcome=throttled")
        });
        let ben = login_from(&b.daemon, "127.0.0.5", BEN.0, BEN.1);
        stop.store(true, Ordering::SeqCst);
        assert_granted(ben, "ben during the storm");
    });
    let log = b.helper.log();
    let audited = |user: &str, outcome: &str| {
        log.lines().any(|l| {
            l.contains("AUDIT auth")
                && l.contains(&format!("user=\"{user}\""))
                && l.contains("client=\"127.0.0.5\"")
                && l.contains(outcome)
        })
    };
    assert!(
        audited(ANNA.0, "outcome=throttled (user at this address"),
        "{log}"
    );
    assert!(audited(BEN.0, "outcome=success"), "{log}");
    // In flight already counts: no more than the threshold reached PAM
    // (then one more each time a failure has decayed, after about 19 s).
    let refused = log.lines().filter(|l| l.contains("outcome=refused")).count();
    let decayed = started.elapsed().as_secs() as usize / 19;
    assert!((5..=5 + decayed).contains(&refused), "{refused}: {log}");
}

/// Attack 4, second part. Before: five wrong passwords for Anna from one
/// address locked her out at every address (401 from 127.0.0.7).
#[test]
fn wrong_passwords_from_one_address_do_not_lock_the_user_out_elsewhere() {
    let b = broker("xhf-elsewhere", &[]);
    std::thread::scope(|scope| {
        for i in 0..5 {
            let daemon = &b.daemon;
            scope.spawn(move || {
                let (status, body) = login_from(daemon, "127.0.0.6", ANNA.0, &format!("wrong-{i}"));
                assert_eq!(status, 401, "{body}");
            });
        }
    });
    // Not locked out at her own address ...
    assert_granted(
        login_from(&b.daemon, "127.0.0.7", ANNA.0, ANNA.1),
        "anna elsewhere",
    );
    // ... but at that one, right password or not.
    let (status, body) = login_from(&b.daemon, "127.0.0.6", ANNA.0, ANNA.1);
    assert_eq!(status, 401, "{body}");
    let log = b.helper.log();
    assert!(log.contains("outcome=throttled (user at this address"), "{log}");
}

/// One user's (or one address's) storm gets its share of the PAM threads,
/// not all of them: with 4 threads, 2 per key, 8 failing logins for Anna
/// from one address leave room for Ben, who finishes first. Before: the
/// helper had no per-key share (--pam-threads-per-key did not exist; with
/// --pam-threads 4 alone Ben waited for Anna's failures).
#[test]
fn a_storm_gets_its_share_of_pam_threads_not_all() {
    use std::sync::atomic::AtomicUsize;
    let helper = RunningHelper::start(
        "xhf-pamshare",
        &[
            "--pam-threads",
            "4",
            "--pam-threads-per-key",
            "2",
            "--throttle-threshold",
            "1000",
        ],
    );
    let finished = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let storm: Vec<_> = (0..8)
            .map(|i| {
                let (helper, finished) = (&helper, &finished);
                scope.spawn(move || {
                    let result = helper.authenticate(ANNA.0, &format!("wrong-{i}"), Some("192.0.2.60"));
                    assert!(result.is_err(), "{result:?}");
                    finished.fetch_add(1, Ordering::SeqCst)
                })
            })
            .collect();
        wait_until("8 failing logins in flight", || {
            helper.status().counters.in_flight == 8
        });
        let ben = helper.authenticate(BEN.0, BEN.1, Some("192.0.2.61"));
        let ben_finished = finished.fetch_add(1, Ordering::SeqCst);
        assert!(
            matches!(ben, Ok(x2gobroker_protocol::Response::Authenticated)),
            "{ben:?}"
        );
        let first_failure = storm.into_iter().map(|t| t.join().expect("storm thread")).min();
        assert!(
            first_failure.is_some_and(|first| ben_finished < first),
            "ben finished as #{ben_finished}, the first failure as #{first_failure:?}"
        );
    });
}
