//! The real X2Go Client (Debian's `x2goclient`, Qt) under Xvfb against our
//! broker: over HTTP without a password and with a PAM login typed into
//! its dialog, and over SSH running our `x2gobroker-ssh` behind a real sshd.
//! What the client shows is checked with a screenshot (ImageMagick
//! `import`) and OCR (tesseract), and with its `--debug` output; the
//! screenshots, OCR texts and client logs stay under
//! `target/x2goclient-artefacts/`. Every wait polls with a deadline.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use x2gobroker_systemtests::helper::{target_profile_dir, user_ids, RunningHelper, TestDir, ALICE, BOB};
use x2gobroker_systemtests::ssh::{run_with_deadline, ssh_binary, HttpDaemon, SshBroker, Sshd, COOKIES, DIR};
use x2gobroker_systemtests::support::{require_root, PROFILES};
use x2gobroker_systemtests::xvfb::Xvfb;

/// Longest wait for the client to show something (Qt start-up and OCR on
/// two shared cores).
const CLIENT_DEADLINE: Duration = Duration::from_secs(45);

/// An Xvfb display of its own, with the X tools the tests use on it.
struct Display {
    xvfb: Xvfb,
}

impl Display {
    fn start() -> Display {
        let xvfb = Xvfb::start("1280x1024x24").unwrap_or_else(|e| panic!("{e}"));
        Display { xvfb }
    }

    fn name(&self) -> &str {
        &self.xvfb.display
    }

    /// Runs an X tool against this display; its stdout.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let mut command = Command::new(program);
        command.args(args).env("DISPLAY", self.name());
        let out = run_with_deadline(command);
        assert_eq!(out.code, 0, "{program} {args:?}: {}", out.stderr);
        out.stdout
    }

    /// A screenshot of the whole screen into `png`, and its OCR text.
    fn screenshot_text(&self, png: &Path) -> String {
        let png = png.to_str().expect("utf-8 path");
        self.run("import", &["-window", "root", png]);
        let mut command = Command::new("tesseract");
        command.args([png, "stdout"]);
        let out = run_with_deadline(command);
        assert_eq!(out.code, 0, "tesseract: {}", out.stderr);
        out.stdout
    }

    /// The X window whose title is exactly `title`, if there is one.
    fn window(&self, title: &str) -> Option<String> {
        let mut command = Command::new("xdotool");
        command
            .args(["search", "--name", &format!("^{title}$")])
            .env("DISPLAY", self.name());
        let out = run_with_deadline(command);
        out.stdout.lines().next().map(str::to_owned)
    }
}

/// One X2Go Client, run as `user` with `--debug` in its own process group
/// (stopped by its PID's group when dropped), its output in `log`.
struct Client {
    child: Child,
    log: PathBuf,
    name: String,
    artefacts: PathBuf,
}

impl Client {
    fn start(name: &str, display: &Display, dir: &TestDir, user: &str, args: &[&str]) -> Client {
        let home = dir.path(&format!("home-{name}"));
        fs::create_dir_all(&home).expect("client home");
        let (uid, gid) = user_ids(user);
        nix::unistd::chown(&home, Some(uid.into()), Some(gid.into())).expect("chown home");
        let log = dir.path(&format!("{name}.log"));
        let out = fs::File::create(&log).expect("client log");
        let child = Command::new("runuser")
            .args(["-u", user, "--", "env", "-i", "PATH=/usr/bin:/bin"])
            .arg(format!("HOME={}", home.display()))
            .arg(format!("USER={user}"))
            .arg(format!("LOGNAME={user}"))
            .arg(format!("DISPLAY={}", display.name()))
            .args(["x2goclient", "--debug", "--no-menu"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("x2goclient must be installed (scripts/setup-test-env.sh)");
        let artefacts = target_profile_dir()
            .parent()
            .expect("target dir")
            .join("x2goclient-artefacts");
        fs::create_dir_all(&artefacts).expect("artefact dir");
        Client {
            child,
            log,
            name: name.to_owned(),
            artefacts,
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the screen until its OCR text contains every one of `wanted`
    /// (and the client's log `log_marker`); keeps the last screenshot, its
    /// text and the client's log as artefacts; returns the text.
    fn wait_for_screen(&self, display: &Display, step: &str, log_marker: &str, wanted: &[&str]) -> String {
        let png = self.artefacts.join(format!("{}-{step}.png", self.name));
        let deadline = Instant::now() + CLIENT_DEADLINE;
        loop {
            let logged = self.log_text().contains(log_marker);
            let text = if logged {
                display.screenshot_text(&png)
            } else {
                String::new()
            };
            // OCR reads "Only" as "only" now and then: compare without case.
            let seen = logged
                && wanted
                    .iter()
                    .all(|w| text.to_lowercase().contains(&w.to_lowercase()));
            if seen || Instant::now() > deadline {
                fs::write(self.artefacts.join(format!("{}-{step}.txt", self.name)), &text)
                    .expect("ocr artefact");
                fs::write(self.artefacts.join(format!("{}.log", self.name)), self.log_text())
                    .expect("log artefact");
                assert!(
                    seen,
                    "{}: {step}: no {log_marker:?} in the client's log or not all of {wanted:?} on the screen \
                     within {CLIENT_DEADLINE:?}; OCR text:\n{text}\nclient log: {}",
                    self.name,
                    self.artefacts.join(format!("{}.log", self.name)).display()
                );
                return text;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        let _ = fs::write(self.artefacts.join(format!("{}.log", self.name)), self.log_text());
    }
}

/// Our HTTP daemon with `config` and the shared profiles, and a helper.
fn http_broker(tag: &str, config: &str) -> (RunningHelper, TestDir, HttpDaemon) {
    let helper = RunningHelper::start(&format!("xc-{tag}"), &[]);
    let dir = TestDir::new(&format!("xc-{tag}-daemon"));
    let config_path = dir.path("x2gobroker.conf");
    let cookies = dir.path("cookies");
    fs::write(
        &config_path,
        config.replace(COOKIES, cookies.to_str().expect("utf-8")),
    )
    .expect("config");
    let profiles = dir.path("sessionprofiles.conf");
    fs::write(&profiles, PROFILES).expect("profiles");
    let daemon = HttpDaemon::start(&dir.0, &config_path, &profiles, &helper.socket);
    (helper, dir, daemon)
}

/// The `sending request` lines of the client's debug output.
fn requests(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("sending request:")).collect()
}

#[test]
fn http_broker_without_password_shows_the_users_profiles() {
    require_root("runs x2goclient as a test user");
    let (_helper, dir, daemon) = http_broker(
        "noauth",
        &format!("[global]\nrequire-password = false\ncookie-directory = {COOKIES}\n"),
    );
    let display = Display::start();
    // Without a login dialog the user comes from the URL (x2goclient --help).
    let url = format!("--broker-url=http://{}@127.0.0.1:{}/plain/", ALICE.0, daemon.port);
    let client = Client::start("http-noauth", &display, &dir, ALICE.0, &[&url, "--broker-noauth"]);
    expect_alices_profiles(&client, &display);
    assert!(
        daemon.log_text().contains("client address is 127.0.0.1"),
        "{}",
        daemon.log_text()
    );
}

/// The client shows xbt-alice's profiles (not Bob's) after asking the
/// broker for her listsessions; its log.
fn expect_alices_profiles(client: &Client, display: &Display) -> String {
    let text = client.wait_for_screen(
        display,
        "profiles",
        "Reading 2 sessions from config file",
        &["Alice Desktop", "Staff Terminal"],
    );
    assert!(!text.to_lowercase().contains("bob only"), "{text}");
    let log = client.log_text();
    assert!(
        requests(&log)
            .iter()
            .any(|l| l.contains("task=listsessions&user=xbt-alice&")),
        "{log}"
    );
    log
}

#[test]
fn http_broker_with_a_pam_login_typed_into_the_dialog() {
    require_root("PAM and runs x2goclient as a test user");
    let (_helper, dir, daemon) = http_broker("pam", &format!("[global]\ncookie-directory = {COOKIES}\n"));
    let display = Display::start();
    let url = format!("--broker-url=http://127.0.0.1:{}/plain/", daemon.port);
    let client = Client::start("http-pam", &display, &dir, ALICE.0, &[&url]);
    client.wait_for_screen(
        &display,
        "login-dialog",
        "Started X2Go Client",
        &["Authentication"],
    );
    assert!(
        requests(&client.log_text()).is_empty(),
        "nothing sent before the login"
    );
    // The dialog is part of the main window; with the window focused the
    // login field has the keyboard focus.
    let window = display.window("X2Go Client").expect("the client's main window");
    display.run("xdotool", &["windowfocus", "--sync", &window]);
    display.run("xdotool", &["type", "--delay", "30", ALICE.0]);
    display.run("xdotool", &["key", "Tab"]);
    display.run("xdotool", &["type", "--delay", "30", ALICE.1]);
    display.run("xdotool", &["key", "Return"]);
    let log = expect_alices_profiles(&client, &display);
    assert!(!log.contains(ALICE.1), "the client logs no password");
    // The broker's audit line: PAM said yes for the user the client sent.
    let audit = "auth method=pam user=\"xbt-alice\" client=\"127.0.0.1\" outcome=granted";
    assert!(daemon.log_text().contains(audit), "{}", daemon.log_text());
}

#[test]
fn ssh_broker_runs_our_x2gobroker_ssh_behind_a_real_sshd() {
    require_root("sshd and runs x2goclient as a test user");
    let config = format!("[global]\ncookie-directory = {COOKIES}\nmy-cookie-file = {DIR}/no-authid\n");
    let broker = SshBroker::start("xc-ssh", &config, PROFILES);
    let sshd = Sshd::start(
        broker.dir(),
        BOB.0,
        &[(
            "X2GOBROKER_SSH_SOCKET",
            broker.helper.socket.to_str().expect("utf-8"),
        )],
    );
    // libssh reads known_hosts from the passwd home: pre-fill it (Bob's
    // home; no other test here connects as Bob) and give Bob the key.
    let (uid, gid) = user_ids(BOB.0);
    let ssh_dir = PathBuf::from("/home").join(BOB.0).join(".ssh");
    fs::create_dir_all(&ssh_dir).expect("~/.ssh");
    let known_hosts = ssh_dir.join("known_hosts");
    fs::copy(&sshd.known_hosts, &known_hosts).expect("known_hosts");
    let key = broker.dir().join("bob-key");
    fs::copy(&sshd.client_key, &key).expect("key");
    for path in [&ssh_dir, &known_hosts, &key] {
        nix::unistd::chown(path, Some(uid.into()), Some(gid.into())).expect("chown");
    }
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod key");

    let display = Display::start();
    let url = format!(
        "--broker-url=ssh://{}@127.0.0.1:{}{}",
        BOB.0,
        sshd.port,
        ssh_binary().display()
    );
    let key_arg = format!("--broker-ssh-key={}", key.display());
    let client = Client::start("ssh", &display, &broker.helper.dir, BOB.0, &[&url, &key_arg]);
    let text = client.wait_for_screen(
        &display,
        "profiles",
        "Reading 2 sessions from config file",
        &["Staff Terminal", "Bob Only"],
    );
    assert!(!text.to_lowercase().contains("alice desktop"), "{text}");
    // sshd let Bob in with his key, and the helper ran the task for him.
    let sshd_log = sshd.log_text();
    assert!(
        sshd_log.contains(&format!("Accepted publickey for {} from 127.0.0.1", BOB.0)),
        "{sshd_log}"
    );
    // The helper's audit line: the client's task (it always passes
    // `--user`), for the caller the kernel named.
    let helper_log = broker.helper.log();
    assert!(
        helper_log.lines().any(|l| l.contains("AUDIT ssh-task")
            && l.contains(&format!("user=\"{}\"", BOB.0))
            && l.contains("task=\"listsessions\"")),
        "{helper_log}"
    );
}

/// Ends `user`'s X2Go sessions on this host (the auto-login test starts
/// one through the local x2goserver).
fn terminate_sessions(user: &str) {
    let mut list = Command::new("runuser");
    list.args(["-u", user, "--", "x2golistsessions"]);
    for line in run_with_deadline(list).stdout.lines() {
        if let Some(session) = line.split('|').nth(1) {
            let mut terminate = Command::new("runuser");
            terminate.args(["-u", user, "--", "x2goterminate-session", session]);
            run_with_deadline(terminate);
        }
    }
}

#[test]
fn auto_login_key_logs_the_client_into_a_real_sshd() {
    require_root("sshd, x2goserver and runs x2goclient as a test user");
    let dir = TestDir::new("xc-autologin");
    // The session server: a real sshd on loopback whose authorized_keys
    // file is where the (fake, LOCAL-mode) agent deploys the key line.
    let sshd = Sshd::start(dir.root(), ALICE.0, &[]);
    let authorized = dir.root().join("sshd").join("authorized_keys");
    let agent = dir.path("agent");
    fs::write(
        &agent,
        format!(
            "#!/bin/sh\n# Fake x2gobroker-agent: <user> <task> [args]; deploys keys for sshd.\n\
             echo \"$*\" >> {dir}/agent-calls.log\n\
             [ \"$2\" = addauthkey ] && printf '%s\\n' \"$3\" >> {keys}\necho OK\n",
            dir = dir.root().display(),
            keys = authorized.display()
        ),
    )
    .expect("agent");
    fs::set_permissions(&agent, fs::Permissions::from_mode(0o755)).expect("chmod agent");
    let helper = RunningHelper::start("xc-autologin-helper", &[]);
    let config = dir.path("x2gobroker.conf");
    fs::write(
        &config,
        format!(
            "[global]\nrequire-password = false\ncookie-directory = {}/cookies\n\
             default-agent-query-mode = LOCAL\ndefault-portscan-x2goservers = false\n",
            dir.root().display()
        ),
    )
    .expect("config");
    let profiles = dir.path("sessionprofiles.conf");
    fs::write(
        &profiles,
        format!(
            "[auto]\nname = Auto Session\nhost = srv (127.0.0.1:{})\ncommand = TERMINAL\n\
             broker-session-autologin = true\n",
            sshd.port
        ),
    )
    .expect("profiles");
    let daemon = HttpDaemon::start_with_env(
        dir.root(),
        &config,
        &profiles,
        &helper.socket,
        &[("X2GOBROKER_AGENT_CMD", agent.to_str().expect("utf-8"))],
    );
    // libssh checks the host key in the passwd home's known_hosts.
    let (uid, gid) = user_ids(ALICE.0);
    let ssh_dir = PathBuf::from("/home").join(ALICE.0).join(".ssh");
    fs::create_dir_all(&ssh_dir).expect("~/.ssh");
    let known_hosts = ssh_dir.join("known_hosts");
    fs::copy(&sshd.known_hosts, &known_hosts).expect("known_hosts");
    for path in [&ssh_dir, &known_hosts] {
        nix::unistd::chown(path, Some(uid.into()), Some(gid.into())).expect("chown");
    }

    let display = Display::start();
    let url = format!("--broker-url=http://{}@127.0.0.1:{}/plain/", ALICE.0, daemon.port);
    let client = Client::start(
        "autologin",
        &display,
        &dir,
        ALICE.0,
        &[&url, "--broker-noauth", "--session=Auto Session"],
    );
    // The client logs in with the handed-out RSA key, passes its login
    // check (a pty: the key line must not carry no-pty), and the server's
    // x2gostartagent answers it over that connection.
    client.wait_for_screen(&display, "session", "Agent output:", &["Auto Session"]);
    drop(client);
    terminate_sessions(ALICE.0);
    let log =
        fs::read_to_string(target_profile_dir().join("../x2goclient-artefacts/autologin.log")).expect("log");
    assert!(log.contains("Login Check - OK"), "see the artefact autologin.log");
    assert!(!log.contains("ssh_channel_request_pty failed"));
    let calls = fs::read_to_string(dir.path("agent-calls.log")).expect("agent calls");
    assert!(
        calls.contains("xbt-alice addauthkey no-X11-forwarding,no-user-rc ssh-rsa "),
        "{calls}"
    );
    let sshd_log = sshd.log_text();
    assert!(
        sshd_log.contains(&format!("Accepted publickey for {} from 127.0.0.1", ALICE.0))
            && sshd_log.contains("ssh2: RSA SHA256:"),
        "{sshd_log}"
    );
}
