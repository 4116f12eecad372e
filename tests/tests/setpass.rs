//! `setpass` end to end with real PAM and real users (xsp-*, created by
//! scripts/setup-test-env.sh; each test resets its own user's password
//! first, so reruns work): over HTTP (/plain/, /json/, X2Go Client's exact
//! request) and SSH mode. The root helper checks the current password and
//! runs pam_chauthtok; Debian's common-password (pam_unix `obscure`, minimum
//! length 6) decides about the new one.

use std::process::Command;
use x2gobroker_systemtests::ssh::{
    run_program_as, run_with_deadline, ssh_binary, HttpDaemon, Outcome, SshBroker, COOKIES, DIR,
};
use x2gobroker_systemtests::support::{require_root, PROFILES};

fn config() -> String {
    format!("[global]\ncookie-directory = {COOKIES}\nmy-cookie-file = {DIR}/no-authid\n[broker_inifile]\nenable = true\n")
}

fn reset_password(user: &str, password: &str) {
    let mut command = Command::new("sh");
    command.args(["-c", &format!("echo '{user}:{password}' | chpasswd")]);
    let out = run_with_deadline(command);
    assert_eq!(out.code, 0, "chpasswd: {}", out.stderr);
}

fn shadow_line(user: &str) -> String {
    let shadow = std::fs::read_to_string("/etc/shadow").expect("read /etc/shadow");
    let prefix = format!("{user}:");
    shadow
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("{user} is not in /etc/shadow; run scripts/setup-test-env.sh"))
        .to_owned()
}

/// POSTs `form` to `path`; (HTTP status, body).
fn post(daemon: &HttpDaemon, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args(["-s", "-S", "--max-time", "30", "-w", "\n%{http_code}"]);
    for (k, v) in form {
        command.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    command.arg(format!("http://127.0.0.1:{}{path}", daemon.port));
    let out = run_with_deadline(command);
    assert_eq!(out.code, 0, "curl: {}", out.stderr);
    let (body, status) = out.stdout.rsplit_once('\n').expect("status line");
    (status.trim().parse().expect("status"), body.to_owned())
}

/// A login with `password` over /plain/ succeeds.
fn logs_in(daemon: &HttpDaemon, user: &str, password: &str) -> bool {
    let (status, body) = post(
        daemon,
        "/plain/",
        &[("task", "testcon"), ("user", user), ("password", password)],
    );
    status == 200 && body == "OK"
}

fn setup(tag: &str) -> (SshBroker, HttpDaemon) {
    require_root("setpass changes real users' passwords through PAM");
    let fx = SshBroker::start(tag, &config(), PROFILES);
    let http = HttpDaemon::start(fx.dir(), &fx.config, &fx.profiles, &fx.helper.socket);
    (fx, http)
}

#[test]
fn plain_setpass_changes_the_password_and_refuses_wrong_and_weak_ones() {
    let (user, old, new) = ("xsp-carol", "Carol-sp-1", "Wz7-carol-Qx");
    let (fx, http) = setup("setpass-plain");
    reset_password(user, old);

    // Wrong current password: refused like a failed login; nothing changes.
    let before = shadow_line(user);
    let (status, _) = post(
        &http,
        "/plain/",
        &[
            ("task", "setpass"),
            ("user", user),
            ("password", "wrong-one"),
            ("newpass", new),
        ],
    );
    assert_eq!(status, 401);
    assert_eq!(
        shadow_line(user),
        before,
        "a refused change leaves /etc/shadow alone"
    );

    // A new password pam_unix refuses (shorter than its minimum of 6): its reason is shown.
    let (status, body) = post(
        &http,
        "/plain/",
        &[
            ("task", "setpass"),
            ("user", user),
            ("password", old),
            ("newpass", "ab1"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Access granted\n"), "{body}");
    // pam_unix's own words (English: the helper runs without a locale), once.
    assert!(
        body.ends_with("PASSWORD CHANGED: FAILED\nREASON: You must choose a longer password.\n"),
        "PAM's reason: {body}"
    );
    assert_eq!(
        shadow_line(user),
        before,
        "a refused new password leaves /etc/shadow alone"
    );
    assert!(logs_in(&http, user, old), "the old password still works");

    // The change itself.
    let (status, body) = post(
        &http,
        "/plain/",
        &[
            ("task", "setpass"),
            ("user", user),
            ("password", old),
            ("newpass", new),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Access granted\nPASSWORD CHANGED: OK\n"), "{body}");
    assert_ne!(shadow_line(user), before);
    assert!(
        !logs_in(&http, user, old),
        "the old password is refused after the change"
    );
    assert!(logs_in(&http, user, new), "the new password is accepted");

    let log = fx.helper.log();
    assert!(
        log.contains(&format!("user=\"{user}\"")) && log.contains("outcome=success (password changed)"),
        "audited: {log}"
    );
    assert!(log.contains("outcome=new password refused ("), "{log}");
    for secret in [old, new, "wrong-one"] {
        assert!(!log.contains(secret), "a password in the helper's log");
        assert!(
            !http.log_text().contains(secret),
            "a password in the daemon's log"
        );
    }
}

#[test]
fn json_setpass_and_x2go_clients_own_request() {
    let (user, old, new) = ("xsp-dan", "Dan-sp-2", "Pq4-dan-Lm8");
    let (_fx, http) = setup("setpass-json");
    reset_password(user, old);

    let (status, body) = post(
        &http,
        "/json/",
        &[
            ("task", "setpass"),
            ("user", user),
            ("password", old),
            ("newpass", "dan"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["auth-status"], "Access granted");
    assert_eq!(answer["password-changed"], "FAILED");
    assert!(!answer["reason"].as_str().unwrap_or("").is_empty(), "{body}");

    let (status, body) = post(
        &http,
        "/json/",
        &[
            ("task", "setpass"),
            ("user", user),
            ("password", "wrong"),
            ("newpass", new),
        ],
    );
    assert_eq!(status, 401, "{body}");

    let (status, body) = post(
        &http,
        "/json/",
        &[
            ("task", "setpass"),
            ("user", user),
            ("password", old),
            ("newpass", new),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (answer["task"].as_str(), answer["password-changed"].as_str()),
        (Some("setpass"), Some("OK"))
    );
    assert!(!logs_in(&http, user, old) && logs_in(&http, user, new));

    // X2Go Client (httpbrokerclient.cpp, changePassword) sends exactly
    // task, newpass, user, password, authid (its last AUTHID) and reads the
    // word after "PASSWORD CHANGED: ".
    let (status, body) = post(
        &http,
        "/plain/",
        &[("task", "testcon"), ("user", user), ("password", new)],
    );
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (_, login) = post(
        &http,
        "/plain/",
        &[("task", "listsessions"), ("user", user), ("password", new)],
    );
    let authid = login
        .lines()
        .find_map(|l| l.strip_prefix("AUTHID:"))
        .expect("AUTHID")
        .to_owned();
    let back = "Dan-sp-2-back";
    let (status, body) = post(
        &http,
        "/plain/",
        &[
            ("task", "setpass"),
            ("newpass", back),
            ("user", user),
            ("password", new),
            ("authid", &authid),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let word = body
        .split("PASSWORD CHANGED: ")
        .nth(1)
        .and_then(|r| r.lines().next());
    assert_eq!(word, Some("OK"), "{body}");
    assert!(
        body.contains("Access granted"),
        "X2Go Client's checkAccess needs it: {body}"
    );
    assert!(logs_in(&http, user, back));
}

/// Runs `x2gobroker-ssh ARGS` as `user` with `input` on standard input.
fn ssh_mode(fx: &SshBroker, user: &str, input: &str, args: &str) -> Outcome {
    let script = format!("printf '{input}' | exec {} {args}", ssh_binary().display());
    let socket = fx.helper.socket.to_str().expect("utf-8").to_owned();
    run_program_as(
        Some(user),
        std::path::Path::new("/bin/sh"),
        &["-c", &script],
        &[
            ("X2GOBROKER_SSH_SOCKET", &socket),
            ("SSH_CLIENT", "127.0.0.5 50000 22"),
        ],
    )
}

#[test]
fn ssh_mode_setpass_takes_the_passwords_from_standard_input() {
    let (user, old, new) = ("xsp-erin", "Erin-sp-3", "Hk2-erin-Vb5");
    let (fx, http) = setup("setpass-ssh");
    reset_password(user, old);
    let before = shadow_line(user);

    let out = ssh_mode(&fx, user, &format!("wrong\\n{new}\\n"), "--task setpass");
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("current password was not accepted"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("PASSWORD CHANGED"), "{}", out.stdout);

    let out = ssh_mode(&fx, user, &format!("{old}\\nabc\\n"), "--task setpass");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("Access granted\nPASSWORD CHANGED: FAILED\nREASON: "),
        "{}",
        out.stdout
    );
    assert_eq!(shadow_line(user), before);

    // Only the current password on stdin; the new one as X2Go Client passes it.
    let out = ssh_mode(
        &fx,
        user,
        &format!("{old}\\n"),
        &format!("--user {user} --task setpass --newpass {new}"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("Access granted\nPASSWORD CHANGED: OK\n"),
        "{}",
        out.stdout
    );
    assert!(!logs_in(&http, user, old) && logs_in(&http, user, new));

    // New password on stdin too (what the manual page recommends).
    let out = ssh_mode(&fx, user, &format!("{new}\\n{old}\\n"), "--task setpass");
    assert!(
        out.stdout.contains("PASSWORD CHANGED: OK"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    assert!(logs_in(&http, user, old));

    // Nothing on standard input (X2Go Client's SSH mode sends only --newpass):
    // refused, since an SSH key alone must not change a password.
    let out = ssh_mode(&fx, user, "", &format!("--task setpass --newpass {new}"));
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("current password"), "{}", out.stderr);

    // Root (or the magic user) acting for another user cannot change that user's password.
    let socket = fx.helper.socket.to_str().expect("utf-8").to_owned();
    let script = format!(
        "printf '{old}\\n{new}\\n' | exec {} --user {user} --task setpass",
        ssh_binary().display()
    );
    let out = run_program_as(
        None,
        std::path::Path::new("/bin/sh"),
        &["-c", &script],
        &[("X2GOBROKER_SSH_SOCKET", &socket)],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("only the caller's own password"),
        "{}",
        out.stderr
    );
    assert!(logs_in(&http, user, old), "unchanged");
}

/// Under the shipped units in a booted systemd (an overlay of this system:
/// its /etc/shadow is a copy): /etc is read-only for the helper, so setpass
/// answers FAILED and the shadow file stays as it was; the documented
/// drop-in (`ReadWritePaths=/etc`) makes it work (the helper gets no
/// capability for it: it joined group shadow at start-up).
#[test]
fn setpass_under_the_helpers_unit_needs_the_documented_drop_in() {
    use x2gobroker_systemtests::live::LiveSystem;
    require_root("a booted systemd");
    let (user, old, new) = ("xsp-fay", "Fay-sp-4", "Rt6-fay-Zw3");
    let live = LiveSystem::boot();
    live.stdout(&["sh", "-c", &format!("echo '{user}:{old}' | chpasswd")]);
    let shadow = || live.stdout(&["grep", &format!("^{user}:"), "/etc/shadow"]);
    let before = shadow();
    let setpass = || {
        let out = live.exec(&[
            "curl",
            "-s",
            "-m",
            "60",
            "-w",
            "\n%{http_code}",
            "--data-urlencode",
            "task=setpass",
            "--data-urlencode",
            &format!("user={user}"),
            "--data-urlencode",
            &format!("password={old}"),
            "--data-urlencode",
            &format!("newpass={new}"),
            "http://127.0.0.1:8080/plain/",
        ]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let answer = setpass();
    assert!(
        answer.contains("Access granted\nPASSWORD CHANGED: FAILED\nREASON: "),
        "{answer}"
    );
    assert_eq!(shadow(), before, "read-only /etc: nothing changed");

    let drop_in = "/etc/systemd/system/x2gobroker-authhelper.service.d";
    live.stdout(&["mkdir", "-p", drop_in]);
    live.stdout(&[
        "sh",
        "-c",
        &format!("printf '[Service]\\nReadWritePaths=/etc\\n' > {drop_in}/setpass.conf"),
    ]);
    live.stdout(&["systemctl", "daemon-reload"]);
    live.stdout(&["systemctl", "restart", "x2gobroker-authhelper.service"]);
    let answer = setpass();
    assert!(
        answer.contains("Access granted\nPASSWORD CHANGED: OK\n"),
        "{answer}\n{}",
        live.journal("x2gobroker-authhelper.service")
    );
    assert_ne!(shadow(), before);
    let login = live.plain_listsessions(user, new);
    assert!(
        login.contains("Access granted") && login.ends_with("200"),
        "{login}"
    );
    assert!(
        !live.journal("x2gobroker-authhelper.service").contains(new),
        "a password reached the journal"
    );
}
