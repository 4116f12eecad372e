//! SSH mode (`x2gobroker-ssh`) end to end, as root with real users: the
//! helper takes the caller from the kernel, applies the `--user` / `-C` /
//! `--login` policy, runs the task in a worker dropped to the daemon user,
//! and the output is the original's. Paired runs against the original's SSH
//! mode (run as its setuid wrapper runs it: as x2gobroker with the caller's
//! LOGNAME) check the output; where ours deliberately differs, both
//! outcomes are recorded. BROKER_UNDER_TEST=original or =ours runs only
//! that side of the paired scenarios (default: both, compared).

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use x2gobroker_systemtests::helper::{proc_status_hex, wait_until, ALICE, BOB, CAROL};
use x2gobroker_systemtests::ssh::{
    children_of, daemon_account, gid_of, run_original, run_program_as, run_with_deadline, ssh_binary,
    HttpDaemon, Outcome, SshBroker, Sshd, COOKIES, DAEMON_USER, DIR,
};
use x2gobroker_systemtests::support::PROFILES;

/// Password (PAM through the helper) for HTTP; SSH mode needs none.
fn config() -> String {
    format!("[global]\ncookie-directory = {COOKIES}\nmy-cookie-file = {DIR}/no-authid\n[broker_inifile]\nenable = true\n")
}

fn broker(tag: &str) -> SshBroker {
    SshBroker::start(tag, &config(), PROFILES)
}

fn assert_refused(out: &Outcome, needle: &str) {
    assert_ne!(out.code, 0, "must fail: {out:?}");
    assert!(
        out.stdout.is_empty(),
        "a refusal prints nothing on stdout: {out:?}"
    );
    assert!(out.stderr.contains(needle), "stderr must say {needle:?}: {out:?}");
}

// ---- identity and policy ----------------------------------------------------

#[test]
fn listsessions_gives_exactly_what_the_http_api_gives() {
    let fx = broker("vs-http");
    let http = HttpDaemon::start(fx.dir(), &fx.config, &fx.profiles, &fx.helper.socket);
    for (user, password, expected) in [
        (ALICE.0, ALICE.1, vec!["alice-desktop", "staff-terminal"]),
        (BOB.0, BOB.1, vec!["bob-only", "staff-terminal"]),
    ] {
        let ssh = fx.run(Some(user), &["--task", "listsessions"], &[]);
        assert_eq!(ssh.code, 0, "{ssh:?}");
        let body = http.plain(&[("user", user), ("password", password), ("task", "listsessions")]);
        let http_out = Outcome {
            code: 0,
            stdout: body + "\n",
            stderr: String::new(),
        };
        assert_eq!(ssh.profile_ids(), expected, "{ssh:?}");
        assert!(ssh.cookie().is_some(), "a dynamic cookie is issued: {ssh:?}");
        assert_eq!(
            ssh.stdout_without_cookies(),
            http_out.stdout_without_cookies(),
            "SSH mode = HTTP /plain/ plus print()'s newline\nHTTP daemon log:\n{}",
            http.log_text()
        );
    }
}

#[test]
fn ordinary_users_cannot_act_for_others_whatever_their_environment_says() {
    let fx = broker("user-switch");
    let forged: &[&[(&str, &str)]] = &[
        &[],
        &[("LOGNAME", DAEMON_USER), ("USER", DAEMON_USER)],
        &[("LOGNAME", "root"), ("USER", "root"), ("SUDO_USER", DAEMON_USER)],
    ];
    for env in forged {
        let out = fx.run(Some(ALICE.0), &["--task", "listsessions", "--user", BOB.0], env);
        assert_refused(&out, "may not act on behalf of \"xbt-bob\"");
        let out = fx.run(Some(ALICE.0), &["--task", "listsessions", "--user=xbt-bob"], env);
        assert_refused(&out, "may not act on behalf");
    }
    let log = fx.helper.log();
    assert!(
        log.lines()
            .any(|l| l.contains("AUDIT ssh-task caller=\"xbt-alice\"")
                && l.contains("peer_uid=")
                && l.contains("refused (")),
        "refusals are audited:\n{log}"
    );
    // Naming oneself is fine, and the environment does not change who one is.
    let out = fx.run(
        Some(ALICE.0),
        &["--task", "listsessions", "--user", ALICE.0],
        &[("LOGNAME", DAEMON_USER)],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.profile_ids(), ["alice-desktop", "staff-terminal"]);
    let out = fx.run(
        Some(ALICE.0),
        &["--task", "listsessions"],
        &[("LOGNAME", BOB.0), ("USER", BOB.0)],
    );
    assert_eq!(out.profile_ids(), ["alice-desktop", "staff-terminal"], "{out:?}");
}

#[test]
fn the_magic_user_and_root_may_switch() {
    let fx = broker("magic");
    for caller in [Some(DAEMON_USER), None] {
        let out = fx.run(caller, &["--task", "listsessions", "--user", BOB.0], &[]);
        assert_eq!(out.code, 0, "{caller:?}: {out:?}");
        assert_eq!(out.profile_ids(), ["bob-only", "staff-terminal"], "{caller:?}");
        assert!(out.stdout.contains("\nuser=xbt-bob\n"), "{out:?}");
    }
    assert!(fx.helper.log().contains("user=\"xbt-bob\" task=\"listsessions\""));
}

#[test]
fn only_root_chooses_the_configuration() {
    let fx = broker("config-choice");
    let other = fx.dir().join("other.conf");
    fs::write(
        &other,
        "[global]\nrequire-password = false\nrequire-cookie = false\n",
    )
    .expect("write");
    fs::set_permissions(&other, fs::Permissions::from_mode(0o644)).expect("chmod");
    let other = other.to_str().expect("utf-8");
    for args in [
        &["-C", other, "--task", "listsessions"][..],
        &["--config-file", other, "--task", "listsessions"],
        &[&format!("--config-file={other}"), "--task", "listsessions"],
        &["-dC", other, "--task", "listsessions"],
    ] {
        for caller in [ALICE.0, DAEMON_USER] {
            let out = fx.run(Some(caller), args, &[]);
            assert_refused(&out, "may not choose the configuration");
        }
    }
    // Root may: that file needs no password and so issues no cookie.
    let out = fx.run(None, &["-C", other, "--task", "listsessions"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.cookie(), None, "{out:?}");
    assert!(out.stdout.starts_with("Access granted\n"), "{out:?}");
}

#[test]
fn login_must_be_the_broker_user_unless_mapped() {
    let fx = SshBroker::start(
        "login",
        &format!("{}[login-mapping]\nxbt-alice = xbt-carol\n", config()),
        PROFILES,
    );
    let out = fx.run(Some(BOB.0), &["--task", "listsessions", "--login", ALICE.0], &[]);
    assert_refused(&out, "not mapped");
    let out = fx.run(Some(ALICE.0), &["--task", "listsessions", "--login", BOB.0], &[]);
    assert_refused(&out, "not mapped");
    let out = fx.run(
        Some(ALICE.0),
        &["--task", "listsessions", "--login", "xbt-carol"],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let out = fx.run(
        Some(ALICE.0),
        &["--task", "listsessions", "--login", ALICE.0],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
}

#[test]
fn require_cookie_file_readable_only_by_the_daemon_group_proves_the_task_runs_as_the_daemon_user() {
    const COOKIE: &str = "3a1c0b3e-5cfa-4f7e-9d3c-b0b7b1c0ffee";
    let fx = SshBroker::start(
        "cookie-file",
        &format!(
            "[global]\nrequire-password = false\nrequire-cookie = true\ncookie-directory = {COOKIES}\n\
             my-cookie-file = {DIR}/authid\n[broker_inifile]\nenable = true\n"
        ),
        PROFILES,
    );
    let authid = fx.dir().join("authid");
    fs::write(&authid, format!("{COOKIE}\n")).expect("write authid");
    nix::unistd::chown(
        &authid,
        Some(nix::unistd::Uid::from_raw(0)),
        Some(nix::unistd::Gid::from_raw(gid_of("x2gobroker"))),
    )
    .expect("chown authid");
    fs::set_permissions(&authid, fs::Permissions::from_mode(0o640)).expect("chmod authid");
    // The caller cannot read the secret herself ...
    let cat = run_program_as(
        Some(ALICE.0),
        Path::new("/bin/cat"),
        &[authid.to_str().expect("utf-8")],
        &[],
    );
    assert_ne!(
        cat.code, 0,
        "alice must not be able to read the authid file: {cat:?}"
    );
    // ... yet her task compares against it: it runs as the daemon user.
    let right = fx.run(
        Some(ALICE.0),
        &["--task", "listsessions", "--authid", COOKIE],
        &[],
    );
    assert_eq!(right.code, 0, "{right:?}");
    assert!(right.stdout.contains("Access granted\n"), "{right:?}");
    assert_eq!(right.profile_ids(), ["alice-desktop", "staff-terminal"]);
    let wrong = fx.run(
        Some(ALICE.0),
        &[
            "--task",
            "listsessions",
            "--authid",
            "00000000-0000-0000-0000-000000000000",
        ],
        &[],
    );
    assert_eq!(
        wrong.stdout, "",
        "a wrong cookie gets no access (as the original: empty output): {wrong:?}"
    );
    let none = fx.run(Some(ALICE.0), &["--task", "listsessions"], &[]);
    assert_eq!(none.stdout, "", "{none:?}");
}

#[test]
fn the_task_runs_with_the_daemon_users_ids_groups_and_no_capabilities() {
    let fx = broker("creds");
    let out = fx.run(Some(ALICE.0), &["-d", "--task", "testcon"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "OK\n");
    let field = |name: &str| -> String {
        out.stderr
            .lines()
            .find_map(|l| l.split(&format!("worker-credentials {name}: ")).nth(1))
            .unwrap_or_else(|| panic!("{name} not reported:\n{}", out.stderr))
            .trim()
            .to_string()
    };
    let (uid, gid, groups) = daemon_account();
    let ids = |text: String| -> Vec<u32> {
        let mut v: Vec<u32> = text.split_whitespace().map(|n| n.parse().expect("id")).collect();
        v.sort();
        v
    };
    assert_eq!(
        ids(field("Uid")),
        vec![uid; 4],
        "real, effective, saved and fs uid"
    );
    assert_eq!(
        ids(field("Gid")),
        vec![gid; 4],
        "real, effective, saved and fs gid"
    );
    let mut got_groups = ids(field("Groups"));
    got_groups.dedup();
    assert_eq!(got_groups, groups, "exactly the daemon user's groups");
    assert!(!got_groups.contains(&0));
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(u64::from_str_radix(&field(set), 16), Ok(0), "{set} must be empty");
    }
    assert_eq!(field("NoNewPrivs"), "1");
    // The bounding set cannot be emptied without CAP_SETPCAP, which the
    // helper does not keep; it is the helper's own (nothing beyond it), and
    // with no_new_privs and a non-zero uid nothing in it can be gained.
    let bounding = u64::from_str_radix(&field("CapBnd"), 16).expect("CapBnd");
    let helper_bounding = proc_status_hex(fx.helper.pid(), None, "CapBnd");
    assert_eq!(
        bounding & !helper_bounding,
        0,
        "worker bounding set within the helper's"
    );
    // KILL SETGID SETUID SYS_PTRACE AUDIT_WRITE
    const KEPT: u64 = (1 << 5) | (1 << 6) | (1 << 7) | (1 << 19) | (1 << 29);
    assert_eq!(
        bounding & !KEPT,
        0,
        "bounding set {bounding:x} beyond the helper's kept capabilities"
    );
}

/// A task held up (its session profiles file is a FIFO nobody writes) is
/// inspected from /proc while it runs, then stopped at the helper's deadline.
#[test]
fn a_running_task_seen_from_proc_and_stopped_at_its_deadline() {
    let fx = SshBroker::start_with("deadline", &config(), PROFILES, &["--ssh-task-timeout", "3"]);
    fs::remove_file(&fx.profiles).expect("remove profiles");
    nix::unistd::mkfifo(&fx.profiles, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let mut command = std::process::Command::new("runuser");
    command
        .args(["-u", ALICE.0, "--", "env", "-i"])
        .arg(format!("X2GOBROKER_SSH_SOCKET={}", fx.helper.socket.display()))
        .arg(ssh_binary())
        .args(["--task", "listsessions"]);
    let cli = std::thread::spawn(move || run_with_deadline(command));
    let mut worker = None;
    wait_until("the worker to start", || {
        worker = children_of(fx.helper.pid())
            .into_iter()
            .find(|(_, cmdline)| cmdline.contains("--ssh-worker"));
        worker.is_some()
    });
    let (pid, _) = worker.expect("worker");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("worker status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} missing"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (uid, gid, groups) = daemon_account();
    assert_eq!(field("Uid"), vec![uid.to_string(); 4]);
    assert_eq!(field("Gid"), vec![gid.to_string(); 4]);
    let mut got: Vec<u32> = field("Groups").iter().map(|g| g.parse().expect("gid")).collect();
    got.sort();
    got.dedup();
    assert_eq!(got, groups);
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(field(set), vec!["0000000000000000"], "{set}");
    }
    assert_eq!(field("NoNewPrivs"), vec!["1"]);
    let bounding = proc_status_hex(pid, None, "CapBnd");
    assert_eq!(bounding & !proc_status_hex(fx.helper.pid(), None, "CapBnd"), 0);

    let out = cli.join().expect("cli thread");
    assert_refused(&out, "time limit");
    wait_until("the stopped worker to be gone", || {
        !children_of(fx.helper.pid()).iter().any(|(p, _)| *p == pid)
    });
    assert!(
        fx.helper
            .log()
            .contains("failed (the task ran past its time limit"),
        "{}",
        fx.helper.log()
    );
}

#[test]
fn a_task_whose_caller_hangs_up_is_stopped() {
    let fx = broker("hang-up");
    fs::remove_file(&fx.profiles).expect("remove profiles");
    nix::unistd::mkfifo(&fx.profiles, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let mut cli = std::process::Command::new(ssh_binary())
        .args(["--task", "listsessions"])
        .env("X2GOBROKER_SSH_SOCKET", &fx.helper.socket)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the command line");
    let mut worker = None;
    wait_until("the worker to start", || {
        worker = children_of(fx.helper.pid())
            .into_iter()
            .find(|(_, cmdline)| cmdline.contains("--ssh-worker"));
        worker.is_some()
    });
    let (pid, _) = worker.expect("worker");
    cli.kill().expect("kill the command line");
    cli.wait().expect("reap the command line");
    // Long before the default 120 s deadline.
    wait_until("the orphaned worker to be stopped", || {
        !children_of(fx.helper.pid()).iter().any(|(p, _)| *p == pid)
    });
    assert!(
        fx.helper.log().contains("the caller went away"),
        "{}",
        fx.helper.log()
    );
}

#[test]
fn one_caller_cannot_occupy_every_task_slot() {
    let fx = SshBroker::start_with("per-user", &config(), PROFILES, &["--ssh-tasks-per-user", "1"]);
    fs::remove_file(&fx.profiles).expect("remove profiles");
    nix::unistd::mkfifo(&fx.profiles, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let mut first = std::process::Command::new("runuser")
        .args(["-u", ALICE.0, "--", "env", "-i"])
        .arg(format!("X2GOBROKER_SSH_SOCKET={}", fx.helper.socket.display()))
        .arg(ssh_binary())
        .args(["--task", "listsessions"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the first task");
    wait_until("the first worker to start", || {
        children_of(fx.helper.pid())
            .iter()
            .any(|(_, cmdline)| cmdline.contains("--ssh-worker"))
    });
    let second = fx.run(Some(ALICE.0), &["--task", "testcon"], &[]);
    assert_refused(&second, "too many SSH-mode tasks of yours");
    // Let the first task finish: a writer that closes at once gives the
    // worker an empty profiles file.
    drop(
        fs::OpenOptions::new()
            .write(true)
            .open(&fx.profiles)
            .expect("open the FIFO"),
    );
    assert!(first.wait().expect("first task").success());
}

#[test]
fn worker_mode_refuses_to_run_when_not_started_by_the_helper() {
    let fx = broker("worker-direct");
    let cli = ssh_binary();
    let cli = cli.to_str().expect("utf-8");
    // Standard input not a socket (/dev/null), as anybody.
    for caller in [Some(ALICE.0), Some(DAEMON_USER), None] {
        let out = run_program_as(caller, Path::new(cli), &["--ssh-worker"], &[]);
        assert_refused(&out, "worker mode is for x2gobroker-authhelper only");
    }
    // A socketpair of one's own as standard input, even claiming to be the
    // daemon user and even as the daemon user: the peer is not root.
    let with_socketpair = format!(
        "import os, socket; a, b = socket.socketpair(); os.dup2(b.fileno(), 0); \
         os.execv({cli:?}, [{cli:?}, '--ssh-worker'])"
    );
    for (caller, env, reason) in [
        (
            ALICE.0,
            vec![("X2GOBROKER_DAEMON_USER", ALICE.0)],
            "not from the parent helper",
        ),
        (ALICE.0, vec![], "not as the daemon user"),
        (DAEMON_USER, vec![], "not from the parent helper"),
    ] {
        let out = run_program_as(
            Some(caller),
            Path::new("/usr/bin/python3"),
            &["-c", &with_socketpair],
            &env,
        );
        assert_refused(&out, reason);
    }
    // The real path still works.
    assert_eq!(fx.run(Some(ALICE.0), &["--task", "testcon"], &[]).stdout, "OK\n");
}

#[test]
fn a_worker_program_others_could_change_is_not_run() {
    let scratch = x2gobroker_systemtests::helper::TestDir::new("ssh-unsafe-program");
    let program = scratch.path("x2gobroker-ssh");
    fs::copy(ssh_binary(), &program).expect("copy the program");
    fs::set_permissions(&program, fs::Permissions::from_mode(0o777)).expect("chmod");
    let program = program.to_str().expect("utf-8");
    let fx = SshBroker::start_with(
        "unsafe-program",
        &config(),
        PROFILES,
        &["--ssh-worker-program", program],
    );
    let out = fx.run(Some(ALICE.0), &["--task", "testcon"], &[]);
    assert_refused(&out, "worker program");
    assert!(
        fx.helper.log().contains("writable by nobody else"),
        "{}",
        fx.helper.log()
    );
    // Made safe, the same program runs.
    fs::set_permissions(program, fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(fx.run(Some(ALICE.0), &["--task", "testcon"], &[]).stdout, "OK\n");
}

#[test]
fn helper_not_running_is_reported_plainly() {
    let fx = broker("no-helper");
    let missing = fx.dir().join("no-such.sock");
    let out = run_program_as(
        Some(ALICE.0),
        &ssh_binary(),
        &["--task", "listsessions"],
        &[("X2GOBROKER_SSH_SOCKET", missing.to_str().expect("utf-8"))],
    );
    assert_refused(&out, missing.to_str().expect("utf-8"));
    assert!(
        out.stderr.contains("x2gobroker-authhelper"),
        "says what to start: {out:?}"
    );
}

#[test]
fn users_outside_the_socket_group_are_told_why() {
    let fx = broker("socket-group");
    let socket = &fx.helper.socket;
    nix::unistd::chown(
        socket,
        None,
        Some(nix::unistd::Gid::from_raw(gid_of("x2gobroker-users"))),
    )
    .expect("chgrp socket");
    fs::set_permissions(socket, fs::Permissions::from_mode(0o660)).expect("chmod socket");
    let out = fx.run(Some(ALICE.0), &["--task", "testcon"], &[]);
    assert_refused(&out, "x2gobroker-users");
    assert_eq!(fx.run(None, &["--task", "testcon"], &[]).stdout, "OK\n");
}

#[test]
fn bad_ssh_client_and_unknown_backend_are_clear_errors() {
    let fx = broker("bad-input");
    // Only root's SSH_CLIENT reaches the worker (others' is not read).
    let out = fx.run(
        None,
        &["--task", "testcon"],
        &[("SSH_CLIENT", "not-an-address 1 22")],
    );
    assert_refused(&out, "SSH_CLIENT");
    let out = fx.run(
        Some(ALICE.0),
        &["--task", "listsessions", "--backend", "../../tmp/x"],
        &[],
    );
    assert_refused(&out, "unknown backend");
}

/// Attack 8 of issue 10: SSH_CLIENT is the caller's to set. The address
/// ACLs and verify-ip see is the peer of the sshd session the caller runs
/// under (ARCHITECTURE.md D: SSH-mode client address); a forged SSH_CLIENT
/// changes nothing. Fails on the code before: there the cookie was issued
/// for the forged 192.0.2.7 and the 127.0.0.5-only profile was hidden
/// (checked by running it there).
#[test]
fn client_address_comes_from_the_sshd_session_not_from_ssh_client() {
    let profiles = format!(
        "{PROFILES}\n[loopback5]\nname = Loopback 5\nacl-clients-allow = 127.0.0.5\nacl-clients-deny = ALL\nacl-clients-order = allow-deny\n"
    );
    let fx = SshBroker::start("ssh-client", &config(), &profiles);
    let sshd = Sshd::start(
        fx.dir(),
        ALICE.0,
        &[("X2GOBROKER_SSH_SOCKET", fx.helper.socket.to_str().expect("utf-8"))],
    );
    let ssh = ssh_binary().display().to_string();
    let forged = |client: &str, args: &str| format!("SSH_CLIENT='{client} 50000 22' {ssh} {args}");
    let out = sshd.ssh_from("127.0.0.5", ALICE.0, &forged("192.0.2.7", "--task listsessions"));
    assert_eq!(out.code, 0, "{out:?}\nsshd log:\n{}", sshd.log_text());
    assert_eq!(
        out.profile_ids(),
        ["alice-desktop", "loopback5", "staff-terminal"],
        "{out:?}"
    );
    let cookie = out.cookie().unwrap_or_else(|| panic!("{out:?}"));
    let path = fx.cookies.join(format!("{}_{cookie}", ALICE.0));
    let record = fs::read_to_string(&path).expect("cookie file");
    assert!(record.starts_with("127.0.0.5 "), "{record}");
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(&path).expect("cookie file");
    assert_eq!(meta.uid(), daemon_account().0, "written by the daemon user");
    assert_eq!(
        meta.mode() & 0o077,
        0,
        "private to the daemon user: {:o}",
        meta.mode()
    );
    // From another address, claiming the right one: ACL and verify-ip hold.
    let elsewhere = sshd.ssh_from(
        "127.0.0.6",
        ALICE.0,
        &forged("127.0.0.5", &format!("--task listsessions --authid {cookie}")),
    );
    assert_eq!(elsewhere.stdout, "", "{elsewhere:?}");
    let listing = sshd.ssh_from("127.0.0.6", ALICE.0, &forged("127.0.0.5", "--task listsessions"));
    assert_eq!(
        listing.profile_ids(),
        ["alice-desktop", "staff-terminal"],
        "{listing:?}"
    );
    let same = sshd.ssh_from(
        "127.0.0.5",
        ALICE.0,
        &forged("192.0.2.8", &format!("--task listsessions --authid {cookie}")),
    );
    assert!(same.stdout.contains("Access granted"), "{same:?}");
}

/// Alice's listsessions run locally with SSH_CLIENT set to 192.0.2.7: the
/// record of the cookie it got (the client address comes first).
fn cookie_record_with_forged_ssh_client(fx: &SshBroker) -> String {
    let out = fx.run(
        Some(ALICE.0),
        &["--task", "listsessions"],
        &[("SSH_CLIENT", "192.0.2.7 50000 22")],
    );
    let cookie = out.cookie().unwrap_or_else(|| panic!("{out:?}"));
    fs::read_to_string(fx.cookies.join(format!("{}_{cookie}", ALICE.0))).expect("cookie file")
}

/// A local caller under no sshd: by default the original's reading of a
/// missing SSH_CLIENT (127.0.0.1), whatever SSH_CLIENT says; with
/// `--ssh-without-sshd refuse` no task at all. Fails on the code before
/// (the forged address was used; the option did not exist).
#[test]
fn a_local_caller_without_sshd_gets_the_documented_address() {
    let record = cookie_record_with_forged_ssh_client(&broker("ssh-local"));
    // Where the tests themselves run in an SSH session, that session's
    // client is the truth for their children too.
    let session =
        x2gobroker_sys::sshd_peer::ssh_client_of(std::process::id() as i32, nix::unistd::geteuid().as_raw());
    let expected = session
        .as_deref()
        .and_then(|c| c.split(' ').next())
        .unwrap_or("127.0.0.1");
    assert!(record.starts_with(&format!("{expected} ")), "{record}");
    if session.is_some() {
        return;
    }
    let strict = SshBroker::start_with(
        "ssh-local-refuse",
        &config(),
        PROFILES,
        &["--ssh-without-sshd", "refuse"],
    );
    let out = strict.run(
        Some(ALICE.0),
        &["--task", "listsessions"],
        &[("SSH_CLIENT", "192.0.2.7 50000 22")],
    );
    assert_refused(&out, "callers logged in over SSH");
}

/// `--ssh-client-address environment`: the original's rule (the caller's
/// SSH_CLIENT, forgeable), and a helper without CAP_SYS_PTRACE anywhere.
#[test]
fn with_the_originals_rule_the_helper_runs_without_cap_sys_ptrace() {
    let fx = SshBroker::start_with(
        "ssh-env-address",
        &config(),
        PROFILES,
        &["--ssh-client-address", "environment"],
    );
    let record = cookie_record_with_forged_ssh_client(&fx);
    assert!(record.starts_with("192.0.2.7 "), "{record}");
    const CAP_SYS_PTRACE: u64 = 1 << 19;
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        let caps = proc_status_hex(fx.helper.pid(), None, set);
        assert_eq!(caps & CAP_SYS_PTRACE, 0, "{set} {caps:x}");
        assert_ne!(caps & (1 << 7), 0, "{set} {caps:x} still has CAP_SETUID");
    }
    // With `refuse` as well, a caller without SSH_CLIENT is not over SSH.
    let strict = SshBroker::start_with(
        "ssh-env-refuse",
        &config(),
        PROFILES,
        &[
            "--ssh-client-address",
            "environment",
            "--ssh-without-sshd",
            "refuse",
        ],
    );
    let out = strict.run(Some(ALICE.0), &["--task", "listsessions"], &[]);
    assert_refused(&out, "callers logged in over SSH");
    assert!(cookie_record_with_forged_ssh_client(&strict).starts_with("192.0.2.7 "));
    // The default keeps it (for the sshd lookup).
    let default = broker("ssh-sshd-address");
    let caps = proc_status_hex(default.helper.pid(), None, "CapEff");
    assert_ne!(caps & CAP_SYS_PTRACE, 0, "CapEff {caps:x}");
}

#[test]
fn end_to_end_over_a_real_sshd() {
    let fx = broker("sshd");
    let sshd = Sshd::start(
        fx.dir(),
        ALICE.0,
        &[("X2GOBROKER_SSH_SOCKET", fx.helper.socket.to_str().expect("utf-8"))],
    );
    let command = format!("{} --task listsessions", ssh_binary().display());
    let out = sshd.ssh(ALICE.0, &command);
    assert_eq!(out.code, 0, "{out:?}\nsshd log:\n{}", sshd.log_text());
    assert_eq!(out.profile_ids(), ["alice-desktop", "staff-terminal"], "{out:?}");
    assert!(out.stdout.ends_with("END_USER_SESSIONS\n\n"), "{out:?}");
    // The cookie was issued for the address sshd reported in SSH_CLIENT.
    let cookie = out.cookie().expect("cookie");
    let record = fs::read_to_string(fx.cookies.join(format!("{}_{cookie}", ALICE.0))).expect("cookie file");
    assert!(record.starts_with("127.0.0.1 "), "{record}");
    // And over SSH, too, nobody becomes somebody else.
    let out = sshd.ssh(ALICE.0, &format!("LOGNAME=x2gobroker {command} --user xbt-bob"));
    assert_refused(&out, "may not act on behalf");
}

// ---- paired runs against the original ---------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Original,
    Ours,
}

fn sides() -> Vec<Side> {
    match std::env::var("BROKER_UNDER_TEST").as_deref() {
        Ok("original") => vec![Side::Original],
        Ok("ours") => vec![Side::Ours],
        _ => vec![Side::Original, Side::Ours],
    }
}

/// One caller's command on one side: ours as the caller (with `env`), the
/// original as its wrapper runs it (as x2gobroker, LOGNAME from `env` or
/// the caller).
fn run_side(fx: &SshBroker, side: Side, caller: &str, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    match side {
        Side::Ours => fx.run(Some(caller), args, env),
        Side::Original => {
            let logname = env
                .iter()
                .find(|(k, _)| *k == "LOGNAME")
                .map_or(caller, |(_, v)| *v);
            let rest: Vec<(&str, &str)> = env.iter().filter(|(k, _)| *k != "LOGNAME").copied().collect();
            run_original(logname, &fx.config, &fx.profiles, args, &rest)
        }
    }
}

/// Runs on every selected side, checks `check` on each, and when both ran,
/// that stdout (cookie values aside) and exit status are the same.
fn same(fx: &SshBroker, caller: &str, args: &[&str], check: impl Fn(&Outcome)) -> Vec<Outcome> {
    same_env(fx, caller, args, &[], check)
}

/// As [`same`], with extra environment for the caller.
fn same_env(
    fx: &SshBroker,
    caller: &str,
    args: &[&str],
    env: &[(&str, &str)],
    check: impl Fn(&Outcome),
) -> Vec<Outcome> {
    let outs: Vec<(Side, Outcome)> = sides()
        .into_iter()
        .map(|side| (side, run_side(fx, side, caller, args, env)))
        .collect();
    for (side, out) in &outs {
        eprintln!("{side:?} {args:?} {env:?}: {out:?}");
        check(out);
    }
    if let [(_, a), (_, b)] = &outs[..] {
        assert_eq!(a.stdout_without_cookies(), b.stdout_without_cookies(), "{args:?}");
        assert_eq!(a.code, b.code, "{args:?}: exit status");
    }
    outs.into_iter().map(|(_, o)| o).collect()
}

fn selectable_profiles(port: u16) -> String {
    format!("{PROFILES}\n[to-server]\nname = To Server\nhost = srv9 (127.0.0.1:{port})\n")
}

#[test]
fn compliance_tasks_print_what_the_original_prints() {
    let server = TcpListener::bind("127.0.0.1:0").expect("stand-in X2Go server");
    let port = server.local_addr().expect("port").port();
    let fx = SshBroker::start("compliance-tasks", &config(), &selectable_profiles(port));
    same(&fx, ALICE.0, &["--task", "listsessions"], |o| {
        assert_eq!(o.code, 0);
        assert_eq!(o.profile_ids(), ["alice-desktop", "staff-terminal", "to-server"]);
    });
    same(&fx, BOB.0, &["--task", "listsessions"], |o| {
        assert_eq!(o.profile_ids(), ["bob-only", "staff-terminal", "to-server"]);
    });
    same(&fx, ALICE.0, &["--task", "testcon"], |o| {
        assert_eq!(o.stdout, "OK\n")
    });
    same(
        &fx,
        ALICE.0,
        &["--task", "selectsession", "--sid", "to-server"],
        |o| {
            assert!(o.stdout.contains("\nSERVER:"), "{o:?}");
            assert!(o.stdout.contains(&format!(":{port}\n")), "{o:?}");
        },
    );
    same(
        &fx,
        ALICE.0,
        &["--task", "selectsession", "--profile-id", "to-server"],
        |o| {
            assert!(o.stdout.contains(&format!(":{port}\n")), "{o:?}");
        },
    );
    // setpass is not compared: the original lists it but does nothing; ours
    // changes the password (tests/tests/setpass.rs).
    for args in [&["--task", "selectsession"][..], &["--task", "no-such-task"]] {
        same(&fx, ALICE.0, args, |o| {
            assert!(o.stdout.ends_with("Access granted\n\n"), "{o:?}");
            assert!(o.stdout.starts_with("AUTHID:"), "{o:?}");
        });
    }
    same(&fx, ALICE.0, &[], |o| {
        assert_eq!(o.code, 254);
        assert!(o.stdout.starts_with("\nusage: x2gobroker [-h]"), "{o:?}");
        assert!(
            o.stdout.ends_with("No task specified, doing nothing...\n\n"),
            "{o:?}"
        );
    });
    same(&fx, ALICE.0, &["--event", "connect", "--", "some", "info"], |o| {
        assert_eq!((o.code, o.stdout.as_str()), (0, ""));
    });
    same(
        &fx,
        ALICE.0,
        &["--task", "listsessions", "--backend", "zeroconf"],
        |o| {
            assert_eq!((o.code, o.stdout.as_str()), (0, ""), "disabled backend: nothing");
        },
    );
}

/// The `user=` line of profile `id` in a listing.
fn user_line<'a>(out: &'a Outcome, id: &str) -> Option<&'a str> {
    let section = out.stdout.split(&format!("[{id}]\n")).nth(1)?;
    section
        .lines()
        .take_while(|l| !l.is_empty())
        .find(|l| l.starts_with("user="))
}

#[test]
fn compliance_an_empty_user_is_the_login_name() {
    // The original's client/plain.py fills in the login (--login, else the
    // broker user) for an empty `user`; BROKER_USER stays the broker user.
    // Over HTTP it stays empty (compliance scenario profile-empty-user).
    let fx = SshBroker::start(
        "compliance-empty-user",
        &format!(
            "{}[broker_zeroconf]\nenable = true\n[login-mapping]\nxbt-alice = {}\n",
            config(),
            CAROL.0
        ),
        &format!("{PROFILES}\n[no-user]\nuser =\n[fixed-user]\nuser = someone\n"),
    );
    let users = |o: &Outcome| {
        ["no-user", "fixed-user", "staff-terminal"].map(|id| user_line(o, id).unwrap_or("<none>").to_owned())
    };
    same(&fx, ALICE.0, &["--task", "listsessions"], |o| {
        assert_eq!(
            users(o),
            ["user=xbt-alice", "user=someone", "user=xbt-alice"],
            "{o:?}"
        );
    });
    same(
        &fx,
        ALICE.0,
        &["--task", "listsessions", "--login", CAROL.0],
        |o| {
            assert_eq!(
                users(o),
                ["user=xbt-carol", "user=someone", "user=xbt-alice"],
                "{o:?}"
            );
        },
    );
    // The magic user for another (ours: root too; the original believes a
    // LOGNAME of the magic user only).
    let args = ["--task", "listsessions", "--user", ALICE.0, "--login", CAROL.0];
    same(&fx, DAEMON_USER, &args, |o| {
        assert_eq!(
            users(o),
            ["user=xbt-carol", "user=someone", "user=xbt-alice"],
            "{o:?}"
        );
    });
    if sides().contains(&Side::Ours) {
        let o = fx.run(None, &args, &[]);
        assert_eq!(
            users(&o),
            ["user=xbt-carol", "user=someone", "user=xbt-alice"],
            "{o:?}"
        );
    }
    // zeroconf's one profile (a fresh UUID each time) has an empty user.
    for side in sides() {
        let zeroconf = ["--task", "listsessions", "--backend", "zeroconf"];
        for (extra, expected) in [
            (&[][..], "user=xbt-alice"),
            (&["--login", CAROL.0][..], "user=xbt-carol"),
        ] {
            let args = [&zeroconf[..], extra].concat();
            let o = run_side(&fx, side, ALICE.0, &args, &[]);
            let id = o.profile_ids().pop().unwrap_or_else(|| panic!("{side:?}: {o:?}"));
            assert_eq!(user_line(&o, &id), Some(expected), "{side:?}: {o:?}");
        }
    }
}

/// The original takes the client address from the caller's SSH_CLIENT;
/// ours ignores a local caller's (D: SSH-mode client address): it sees
/// 127.0.0.1, as both do without SSH_CLIENT (or, when the tests run in an
/// SSH session, that session's client: never in the TEST-NET used here).
/// Over a real sshd: client_address_comes_from_the_sshd_session_not_from_ssh_client.
#[test]
fn compliance_client_address_acls_use_ssh_client() {
    let profiles = format!(
        "{PROFILES}\n[intranet]\nname = Intranet\nacl-clients-allow = 198.51.100.0/24\nacl-clients-deny = ALL\nacl-clients-order = allow-deny\n"
    );
    let fx = SshBroker::start("compliance-clients", &config(), &profiles);
    let local = ["alice-desktop", "staff-terminal"];
    for side in sides() {
        let env = [("SSH_CLIENT", "198.51.100.3 40000 22")];
        let out = run_side(&fx, side, ALICE.0, &["--task", "listsessions"], &env);
        let expected: &[&str] = match side {
            Side::Original => &["alice-desktop", "intranet", "staff-terminal"],
            Side::Ours => &local,
        };
        assert_eq!(out.profile_ids(), expected, "{side:?}: {out:?}");
        let env = [("SSH_CLIENT", "192.0.2.1 40000 22")];
        let out = run_side(&fx, side, ALICE.0, &["--task", "listsessions"], &env);
        assert_eq!(out.profile_ids(), local, "{side:?}: {out:?}");
    }
    // Without SSH_CLIENT the client is 127.0.0.1.
    same_env(&fx, ALICE.0, &["--task", "listsessions"], &[], |o| {
        assert_eq!(o.profile_ids(), local, "{o:?}");
    });
}

#[test]
fn compliance_dynamic_cookie_chain() {
    let fx = broker("compliance-cookies");
    for side in sides() {
        let run = |args: &[&str]| run_side(&fx, side, ALICE.0, args, &[]);
        let first = run(&["--task", "listsessions"]);
        let c1 = first.cookie().unwrap_or_else(|| panic!("{side:?}: {first:?}"));
        let second = run(&["--task", "listsessions", "--authid", &c1]);
        let c2 = second.cookie().unwrap_or_else(|| panic!("{side:?}: {second:?}"));
        assert_ne!(c1, c2, "{side:?}: a used cookie is replaced");
        assert_eq!(
            second.profile_ids(),
            ["alice-desktop", "staff-terminal"],
            "{side:?}"
        );
        let replay = run(&["--task", "listsessions", "--authid", &c1]);
        assert_eq!(
            (replay.code, replay.stdout.as_str()),
            (0, ""),
            "{side:?}: used cookie refused"
        );
        let third = run(&["--task", "listsessions", "--next-authid", &c2]);
        assert!(third.stdout.contains("Access granted"), "{side:?}: {third:?}");
        // Someone else's cookie is not a key to their account.
        let bobs = run_side(&fx, side, BOB.0, &["--task", "listsessions"], &[]);
        let bob_cookie = bobs.cookie().expect("bob's cookie");
        let stolen = run(&["--task", "listsessions", "--authid", &bob_cookie]);
        assert!(!stolen.stdout.contains("bob-only"), "{side:?}: {stolen:?}");
    }
}

#[test]
fn compliance_static_cookie() {
    const COOKIE: &str = "0b5e0e6e-8a55-4c43-a1bf-5a6f1b9c2d11";
    let fx = SshBroker::start(
        "compliance-static",
        &format!(
            "[global]\nrequire-password = false\nrequire-cookie = true\ncookie-directory = {COOKIES}\n\
             my-cookie = {COOKIE}\nmy-cookie-file = {DIR}/no-authid\n[broker_inifile]\nenable = true\n"
        ),
        PROFILES,
    );
    same(
        &fx,
        ALICE.0,
        &["--task", "listsessions", "--authid", COOKIE],
        |o| {
            assert!(
                o.stdout
                    .starts_with(&format!("AUTHID:{COOKIE}\nAccess granted\n")),
                "{o:?}"
            );
        },
    );
    same(
        &fx,
        ALICE.0,
        &["--task", "listsessions", "--authid", "wrong"],
        |o| {
            assert_eq!((o.code, o.stdout.as_str()), (0, ""));
        },
    );
}

/// Deliberate differences (ARCHITECTURE.md P1, P2, P9, P10 and differences): the outcome
/// of each side is recorded.
#[test]
fn compliance_policy_differences_are_recorded() {
    let server = TcpListener::bind("127.0.0.1:0").expect("stand-in X2Go server");
    let port = server.local_addr().expect("port").port();
    let profiles =
        format!("{PROFILES}\n[bobs-server]\nhost = srv9 (127.0.0.1:{port})\nacl-users-allow = xbt-bob\n");
    let fx = SshBroker::start("compliance-policy", &config(), &profiles);
    let other = fx.dir().join("open.conf");
    fs::write(
        &other,
        "[global]\nrequire-password = false\n[broker_inifile]\nenable = true\n",
    )
    .expect("write");
    fs::set_permissions(&other, fs::Permissions::from_mode(0o644)).expect("chmod");
    let other = other.to_str().expect("utf-8").to_string();
    for side in sides() {
        // --user by an ordinary user: the original ignores it silently and
        // answers for LOGNAME; ours refuses.
        let out = run_side(
            &fx,
            side,
            ALICE.0,
            &["--task", "listsessions", "--user", BOB.0],
            &[],
        );
        match side {
            Side::Original => {
                assert_eq!(out.code, 0);
                assert_eq!(out.profile_ids(), ["alice-desktop", "staff-terminal"], "{out:?}");
            }
            Side::Ours => assert_refused(&out, "may not act on behalf"),
        }
        // LOGNAME=x2gobroker: the original believes it and answers for bob
        // (the flaw this port fixes); ours refuses.
        let out = run_side(
            &fx,
            side,
            ALICE.0,
            &["--task", "listsessions", "--user", BOB.0],
            &[("LOGNAME", DAEMON_USER)],
        );
        match side {
            Side::Original => assert_eq!(
                out.profile_ids(),
                ["bob-only", "bobs-server", "staff-terminal"],
                "{out:?}"
            ),
            Side::Ours => assert_refused(&out, "may not act on behalf"),
        }
        // -C by an ordinary user: the original reads the caller's file.
        let out = run_side(&fx, side, ALICE.0, &["-C", &other, "--task", "listsessions"], &[]);
        match side {
            Side::Original => assert!(out.stdout.starts_with("Access granted\n"), "{out:?}"),
            Side::Ours => assert_refused(&out, "may not choose the configuration"),
        }
        // --login other than the broker user: the original uses it; ours
        // refuses unless mapped.
        let out = run_side(
            &fx,
            side,
            ALICE.0,
            &["--task", "listsessions", "--login", BOB.0],
            &[],
        );
        match side {
            Side::Original => assert!(out.stdout.contains("Access granted"), "{out:?}"),
            Side::Ours => assert_refused(&out, "not mapped"),
        }
        // selectsession of a profile the user may not see (ARCHITECTURE.md differences): the
        // original hands out its server; ours applies the profile's ACLs.
        let out = run_side(
            &fx,
            side,
            ALICE.0,
            &["--task", "selectsession", "--sid", "bobs-server"],
            &[],
        );
        let handed_out = format!("\nSERVER:127.0.0.1:{port}\n");
        match side {
            Side::Original => assert!(out.stdout.contains(&handed_out), "{out:?}"),
            Side::Ours => {
                assert!(out.stdout.contains("Access granted\n"), "{out:?}");
                assert!(!out.stdout.contains(&handed_out), "{out:?}");
            }
        }
        // Bob himself gets it from both.
        let out = run_side(
            &fx,
            side,
            BOB.0,
            &["--task", "selectsession", "--sid", "bobs-server"],
            &[],
        );
        assert!(out.stdout.contains(&handed_out), "{side:?}: {out:?}");
        // An unknown backend: the original exec()s the name and dies with a
        // traceback; ours names the problem. Both fail, neither prints.
        let out = run_side(
            &fx,
            side,
            ALICE.0,
            &["--task", "listsessions", "--backend", "nosuch"],
            &[],
        );
        assert_ne!(out.code, 0, "{side:?}: {out:?}");
        assert_eq!(out.stdout, "", "{side:?}");
        if side == Side::Ours {
            assert!(out.stderr.contains("unknown backend: nosuch"), "{out:?}");
        }
    }
}

#[test]
fn x2gobroker_runs_ssh_mode_by_default_and_with_dash_m_ssh() {
    let fx = broker("x2gobroker-binary");
    let broker_bin = x2gobroker_systemtests::helper::target_profile_dir().join("x2gobroker");
    let socket = fx.helper.socket.to_str().expect("utf-8");
    let env = [("X2GOBROKER_SSH_SOCKET", socket)];
    let reference = fx.run(Some(ALICE.0), &["--task", "listsessions"], &[]);
    assert_eq!(reference.profile_ids(), ["alice-desktop", "staff-terminal"]);
    for args in [
        &["--task", "listsessions"][..],
        &["-M", "SSH", "--task", "listsessions"],
        &["-M", "ssh", "--task", "listsessions"],
    ] {
        let out = run_program_as(Some(ALICE.0), &broker_bin, args, &env);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert_eq!(
            out.stdout_without_cookies(),
            reference.stdout_without_cookies(),
            "{args:?}"
        );
    }
    let out = run_program_as(Some(ALICE.0), &broker_bin, &[], &env);
    assert_eq!(out.code, 254, "{out:?}");
    assert!(
        out.stdout.ends_with("No task specified, doing nothing...\n\n"),
        "{out:?}"
    );
    let out = run_program_as(
        Some(ALICE.0),
        &broker_bin,
        &["--task", "listsessions", "--user", BOB.0],
        &[("X2GOBROKER_SSH_SOCKET", socket), ("LOGNAME", DAEMON_USER)],
    );
    assert_refused(&out, "may not act on behalf");
}
