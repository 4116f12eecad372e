//! Agent query mode SSH against a real X2Go server farm (tests/farm/farm.sh):
//! three servers with sshd, x2goserver and x2gobroker-agent on 127.0.0.11-13,
//! one PostgreSQL session DB. The broker named by BROKER_UNDER_TEST runs as
//! its daemon user and reaches the agents over SSH with RejectPolicy.
//!
//! `BROKER_UNDER_TEST=original cargo test -p x2gobroker-systemtests --test farm` (as root).
//! With `ours` (the default) the same scenarios run against our daemon.
//! FARM_KEEP=1 leaves the
//! farm running afterwards (it is stopped only if this run started it).

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use x2gobroker_systemtests::compliance::broker::{self, BrokerKind, BrokerSetup, RunAs, Running, TempDir};
use x2gobroker_systemtests::compliance::http::{self, form_encode, Outgoing};
use x2gobroker_systemtests::compliance::scenario::Listen;
use x2gobroker_systemtests::farm::{poll, Farm, FarmGuard, Status};
use x2gobroker_systemtests::xvfb::Xvfb;

const AGENT: &str = "/usr/lib/x2go/x2gobroker-agent";
/// The original removes an auto-login key 20 s after handing it out
/// (base_broker.py select_session: delete_authorized_key(delay_deletion=20)).
const KEY_REMOVAL_DEADLINE: Duration = Duration::from_secs(60);
/// Requests per load-balancing check: the original picks its agent host at random.
const REPEAT: usize = 3;

type Scenario = fn(BrokerKind, &FarmGuard) -> Result<(), String>;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("resume_suspended_session_on_server_2", resume_suspended),
    ("take_over_running_session", take_over_running),
    ("least_busy_server", least_busy),
    ("server_with_sshd_down_is_skipped", sshd_down_skipped),
    ("unknown_host_key_is_refused", unknown_host_key_refused),
    (
        "autologin_key_deployed_on_chosen_server_then_removed",
        autologin_key,
    ),
    ("hostile_values_never_reach_a_remote_shell", hostile_values),
    ("ssh_mode_resumes_through_remote_agents", ssh_mode_resume),
    (
        "pyhoca_cli_starts_a_real_session_then_it_is_resumed",
        pyhoca_session,
    ),
    (
        "autologin_key_removed_after_a_broker_restart",
        autologin_key_restart,
    ),
    ("profile_without_name_lists_its_session", nameless_profile),
    (
        "ssh_mode_key_removed_without_a_daemon",
        ssh_mode_autologin_removal,
    ),
    ("autologin_key_also_on_the_ssh_proxy_host", autologin_proxy),
    ("load_checker_reports_real_agent_loads", loadchecker_real_agents),
    (
        "load_factors_steer_selection_missing_data_falls_back",
        load_factor_selection,
    ),
    ("broker_uses_the_other_kinds_load_checker", loadchecker_cross),
    (
        "tools_pubkeyauthorizer_then_testagent_on_a_server",
        tools_on_a_server,
    ),
];

/// Scenarios of our tools alone (ignored in the run against the original).
const OURS_ONLY: &[&str] = &["tools_pubkeyauthorizer_then_testagent_on_a_server"];

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let kind = match BrokerKind::from_env() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let trials = SCENARIOS
        .iter()
        .map(|&(name, scenario)| {
            Trial::test(name, move || run(kind, scenario))
                .with_kind(kind.name())
                .with_ignored_flag(kind == BrokerKind::Original && OURS_ONLY.contains(&name))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(farm) = Farm::started() {
        if let Err(e) = farm.down_if_started() {
            eprintln!("farm: {e}");
            return ExitCode::FAILURE;
        }
    }
    conclusion.exit_code()
}

fn run(kind: BrokerKind, scenario: Scenario) -> Result<(), Failed> {
    let farm = Farm::up().map_err(|e| format!("farm not available: {e}"))?;
    let guard = farm.exclusive()?;
    scenario(kind, &guard).map_err(Failed::from)
}

// ------------------------------------------------------------------ broker

/// The broker under test with agent query mode SSH on the farm.
struct FarmBroker {
    addr: SocketAddr,
    running: Running,
    /// The PAM auth service, when the broker authenticates with PAM.
    _auth: Option<Running>,
    _dir: TempDir,
}

const CONFIG: &str = "[global]
require-password = false
default-auth-mech = none
default-agent-query-mode = SSH
default-agent-hostkey-policy = RejectPolicy
default-portscan-x2goservers = true
cookie-directory = %DIR%/cookies
my-cookie-file = %DIR%/authid
key-removal-directory = %REMOVALS%
";

impl FarmBroker {
    /// `profiles` may use `%HOSTS%` (all farm servers). `ssh_dir` replaces the
    /// broker account's `~/.ssh` (another known_hosts).
    fn start(
        kind: BrokerKind,
        farm: &Farm,
        profiles: &str,
        ssh_dir: Option<&Path>,
    ) -> Result<FarmBroker, String> {
        FarmBroker::start_with(kind, farm, CONFIG, profiles, ssh_dir, false)
    }

    /// As [`FarmBroker::start`] with another configuration; `pam` starts the
    /// broker's PAM auth service too.
    fn start_with(
        kind: BrokerKind,
        farm: &Farm,
        config_text: &str,
        profiles: &str,
        ssh_dir: Option<&Path>,
        pam: bool,
    ) -> Result<FarmBroker, String> {
        let dir = TempDir::new("farm")?;
        let d = dir.path();
        let cookies = d.join("cookies");
        std::fs::create_dir_all(&cookies).map_err(|e| e.to_string())?;
        let user = nix::unistd::User::from_name(&farm.broker_user)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no account {}", farm.broker_user))?;
        nix::unistd::chown(&cookies, Some(user.uid), Some(user.gid)).map_err(|e| e.to_string())?;
        // Pending key removals: the broker account's, private (unless the
        // scenario names its own directory).
        let removals = d.join("removals");
        std::fs::create_dir_all(&removals).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&removals, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        nix::unistd::chown(&removals, Some(user.uid), Some(user.gid)).map_err(|e| e.to_string())?;
        let config_text = config_text.replace("%REMOVALS%", &removals.to_string_lossy());
        let config = d.join("x2gobroker.conf");
        let profiles_path = d.join("sessionprofiles.conf");
        std::fs::write(&config, config_text.replace("%DIR%", &d.to_string_lossy()))
            .map_err(|e| e.to_string())?;
        std::fs::write(&profiles_path, profiles.replace("%HOSTS%", &farm.profile_hosts()))
            .map_err(|e| e.to_string())?;
        let setup = BrokerSetup {
            kind,
            dir: d,
            config: &config,
            profiles: &profiles_path,
            auth_socket: &d.join("auth.sock"),
            listen: Listen::Ipv4,
            env: vec![("X2GOBROKER_AGENT_CMD".into(), AGENT.into())],
            args: Vec::new(),
        };
        let auth = if pam {
            let auth = broker::start_auth_service(kind, d, setup.auth_socket)?;
            // The broker runs as its daemon user and must reach the socket
            // (the original's service makes its directory root's, 0770).
            for (path, mode) in [(d, 0o755), (setup.auth_socket, 0o666)] {
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                    .map_err(|e| e.to_string())?;
            }
            Some(auth)
        } else {
            None
        };
        let port = broker::free_port(Listen::Ipv4)?;
        let run_as = RunAs {
            user: &farm.broker_user,
            ssh_dir,
        };
        let running = broker::start_broker_as(&setup, port, Some(&run_as))?;
        Ok(FarmBroker {
            addr: broker::loopback(Listen::Ipv4, port),
            running,
            _auth: auth,
            _dir: dir,
        })
    }

    /// POST `form` to /plain/: (status, body).
    fn post(&self, form: &[(&str, &str)]) -> Result<(u16, String), String> {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect();
        let req = Outgoing {
            method: "POST",
            path: "/plain/",
            headers: vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
            body: Some(body.join("&")),
        };
        let resp = http::send(self.addr, &req, http::DEFAULT_TIMEOUT)?
            .ok_or_else(|| format!("no answer\n{}", self.running.log_tail()))?;
        Ok((resp.status, resp.body))
    }

    /// `task=selectsession` on /plain/; the body of a 200 answer.
    fn select(&self, user: &str, profile: &str) -> Result<String, String> {
        let (status, body) = self.post(&[("user", user), ("task", "selectsession"), ("sid", profile)])?;
        if status != 200 {
            return Err(format!(
                "selectsession: HTTP {status}\n{body}\n{}",
                self.running.log_tail()
            ));
        }
        Ok(body)
    }
}

/// The `SERVER:` line of a plain selectsession answer.
fn server_line(body: &str) -> Option<&str> {
    body.lines().find_map(|l| l.strip_prefix("SERVER:"))
}

fn session_info(body: &str) -> Option<&str> {
    body.lines().find_map(|l| l.strip_prefix("SESSION_INFO:"))
}

fn expect_server(body: &str, farm: &Farm, index: usize) -> Result<(), String> {
    let s = farm.server(index);
    let want = format!("{}:{}", s.addr, s.port);
    if !body.starts_with("Access granted\n") || server_line(body) != Some(want.as_str()) {
        return Err(format!("want SERVER:{want} ({}), got:\n{body}", s.name));
    }
    Ok(())
}

/// One profile with auto-login over all farm servers.
const AUTO: &str = "[auto]
name = Farm auto-login
command = XFCE
host = %HOSTS%
broker-session-autologin = true
";

const PROFILES: &str = "[farm]
name = Farm
command = XFCE
host = %HOSTS%
";

// --------------------------------------------------------------- scenarios

/// A suspended session of the user on server 2 is resumed there.
fn resume_suspended(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    farm.add_session(1, "xbt-bob", Status::Suspended)?;
    let sid = farm.add_session(2, "xbt-alice", Status::Suspended)?;
    farm.add_session(3, "xbt-carol", Status::Running)?;
    let b = FarmBroker::start(kind, farm, PROFILES, None)?;
    let body = b.select("xbt-alice", "farm")?;
    expect_server(&body, farm, 2)?;
    let info = session_info(&body).ok_or_else(|| format!("no SESSION_INFO:\n{body}"))?;
    let f: Vec<&str> = info.split('|').collect();
    if f.len() < 12 || f[1] != sid || f[3] != farm.server(2).name || f[4] != "S" || f[11] != "xbt-alice" {
        return Err(format!(
            "SESSION_INFO is not alice's suspended session {sid} on server 2:\n{body}"
        ));
    }
    Ok(())
}

/// A running session is taken over: suspended through the agent, then
/// handed out with status S.
fn take_over_running(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    let sid = farm.add_session(3, "xbt-alice", Status::Running)?;
    let b = FarmBroker::start(kind, farm, PROFILES, None)?;
    let body = b.select("xbt-alice", "farm")?;
    expect_server(&body, farm, 3)?;
    let info = session_info(&body).ok_or_else(|| format!("no SESSION_INFO:\n{body}"))?;
    if !info.contains(&format!("|{sid}|")) || !info.contains("|S|") {
        return Err(format!("want session {sid} with status S, got:\n{body}"));
    }
    // The session DB says suspended now (x2gochangestatus via the agent's suspendsession).
    let sessions = farm.sessions(1, "xbt-alice")?;
    if !sessions
        .iter()
        .any(|s| s.contains(&format!("|{sid}|")) && s.contains("|S|"))
    {
        return Err(format!("session {sid} is not suspended in the DB: {sessions:?}"));
    }
    Ok(())
}

/// Sessions of others spread 2 / 0 / 1: a user without a session goes to server 2.
fn spread_sessions(farm: &Farm) -> Result<(), String> {
    farm.add_session(1, "xbt-bob", Status::Running)?;
    farm.add_session(1, "xbt-carol", Status::Suspended)?;
    farm.add_session(3, "xbt-dave", Status::Running)?;
    Ok(())
}

fn least_busy(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    spread_sessions(farm)?;
    let b = FarmBroker::start(kind, farm, PROFILES, None)?;
    for _ in 0..REPEAT {
        let body = b.select("xbt-alice", "farm")?;
        expect_server(&body, farm, 2)?;
        if let Some(info) = session_info(&body) {
            return Err(format!("unexpected SESSION_INFO {info}"));
        }
    }
    Ok(())
}

/// With server 2's sshd down the next least busy server (3) is chosen.
fn sshd_down_skipped(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    spread_sessions(farm)?;
    farm.stop_sshd(2)?;
    let b = FarmBroker::start(kind, farm, PROFILES, None)?;
    for _ in 0..REPEAT {
        let body = b.select("xbt-alice", "farm")?;
        expect_server(&body, farm, 3)?;
    }
    Ok(())
}

/// Without server 2's host key in known_hosts (RejectPolicy) its agent is not
/// used: no session found there through it, no auto-login key deployed; the
/// same request with the full known_hosts does find the session.
fn unknown_host_key_refused(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    const ONLY2: &str = "[only2]
name = Only server 2
command = XFCE
host = %ONLY2%

[only2auto]
name = Only server 2, auto-login
command = XFCE
host = %ONLY2%
broker-session-autologin = true
";
    let s2 = farm.server(2);
    let profiles = ONLY2.replace("%ONLY2%", &format!("{} ({}:{})", s2.name, s2.addr, s2.port));
    let sid = farm.add_session(2, "xbt-alice", Status::Suspended)?;
    let accepted_before = accepted_broker_logins(farm, 2);

    let b = FarmBroker::start(kind, farm, &profiles, Some(farm.ssh_dir_without(&s2.name)))?;
    let body = b.select("xbt-alice", "only2")?;
    expect_server(&body, farm, 2)?;
    if let Some(info) = session_info(&body) {
        return Err(format!(
            "the agent behind an unknown host key was used: SESSION_INFO {info}"
        ));
    }
    // Ours names the host and the policy in its log.
    if kind == BrokerKind::Ours {
        let log = b.running.log_tail();
        if !log.contains(&format!("refusing agent host {}", s2.name)) || !log.contains("RejectPolicy") {
            return Err(format!("no clear log line about the unknown host key:\n{log}"));
        }
    }
    let body = b.select("xbt-alice", "only2auto")?;
    expect_server(&body, farm, 2)?;
    if body.contains("PRIVATE KEY") || !farm.authorized_keys(2, "xbt-alice").trim().is_empty() {
        return Err(format!(
            "auto-login through an agent behind an unknown host key:\n{body}\nauthorized_keys: {}",
            farm.authorized_keys(2, "xbt-alice")
        ));
    }
    let accepted = accepted_broker_logins(farm, 2);
    if accepted != accepted_before {
        return Err(format!(
            "server 2 accepted {} broker logins although its host key is unknown",
            accepted - accepted_before
        ));
    }
    drop(b);

    // Control: the same with the real known_hosts finds the session.
    let b = FarmBroker::start(kind, farm, &profiles, None)?;
    let body = b.select("xbt-alice", "only2")?;
    if !session_info(&body).is_some_and(|i| i.contains(&format!("|{sid}|"))) {
        return Err(format!(
            "control with the full known_hosts did not find {sid}:\n{body}"
        ));
    }
    Ok(())
}

fn accepted_broker_logins(farm: &Farm, index: usize) -> usize {
    let needle = format!("Accepted publickey for {} ", farm.broker_user);
    farm.sshd_log(index)
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

/// Auto-login: the answer carries a private key, its public key is in the
/// chosen server's `%h/.x2go/authorized_keys` (and no other's), and the key
/// is removed again after the original's delay.
fn autologin_key(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    spread_sessions(farm)?;
    let b = FarmBroker::start(kind, farm, AUTO, None)?;
    let body = b.select("xbt-alice", "auto")?;
    let handed_out = Instant::now();
    expect_server(&body, farm, 2)?;
    let begin = body
        .find("-----BEGIN RSA PRIVATE KEY-----")
        .ok_or_else(|| format!("no private key in the answer:\n{body}"))?;
    let end_marker = "-----END RSA PRIVATE KEY-----";
    let end = body.find(end_marker).ok_or("private key not terminated")? + end_marker.len();
    let public = public_key_of(&body[begin..end])?;

    let on2 = farm.authorized_keys(2, "xbt-alice");
    let line = on2
        .lines()
        .find(|l| l.contains(&public))
        .ok_or_else(|| format!("public key not in server 2's authorized_keys:\n{on2}"))?;
    // Ours leaves out no-pty: X2Go Client checks its login through a pty
    // (ARCHITECTURE.md, D: auto-login key options).
    let options = match kind {
        BrokerKind::Ours => "no-X11-forwarding,no-user-rc",
        _ => "no-X11-forwarding,no-pty,no-user-rc",
    };
    if !line.starts_with(&format!("{options} ssh-rsa ")) || !line.ends_with(" xbt-alice@127.0.0.1") {
        return Err(format!("unexpected authorized_keys line: {line}"));
    }
    for other in [1, 3] {
        if farm.authorized_keys(other, "xbt-alice").contains(&public) {
            return Err(format!("key also deployed on server {other}"));
        }
    }
    poll("removal of the auto-login key", KEY_REMOVAL_DEADLINE, || {
        (!farm.authorized_keys(2, "xbt-alice").contains(&public)).then_some(())
    })
    .map_err(|e| format!("{e}\n{}", b.running.log_tail()))?;
    eprintln!(
        "farm: auto-login key removed {:.1?} after the answer",
        handed_out.elapsed()
    );
    Ok(())
}

/// Base64 part of the public key of a PEM private key (`ssh-keygen -y`).
fn public_key_of(pem: &str) -> Result<String, String> {
    let dir = TempDir::new("farm-key")?;
    let path = dir.path().join("key");
    std::fs::write(&path, format!("{pem}\n")).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    let out = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&path)
        .output()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    if !out.status.success() {
        return Err(format!("ssh-keygen -y: {}", String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| "ssh-keygen -y printed no key".into())
}

/// A user name and a client public key that would run a command in the
/// remote shell if they reached it unquoted. The original puts both into
/// its `sh -c '...'` command line as they are (the key in double quotes),
/// so on the farm it runs the command: the scenario shows that, and ours
/// must never (ARCHITECTURE.md D: agent commands).
fn hostile_values(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    const PROFILES_AUTO: &str = "[farm]
name = Farm
command = XFCE
host = %HOSTS%
broker-session-autologin = true
";
    let marker = Path::new("/tmp/xbt-farm-pwned");
    let _ = std::fs::remove_file(marker);
    let b = FarmBroker::start(kind, farm, PROFILES_AUTO, None)?;
    let hostile_user = "xbt$(touch${IFS}/tmp/xbt-farm-pwned)";
    let hostile_key = "ssh-rsa AAAAB3NzaC1yc2E$(touch${IFS}/tmp/xbt-farm-pwned) x@y";
    let mut answers = Vec::new();
    for form in [
        vec![("user", hostile_user), ("task", "selectsession"), ("sid", "farm")],
        vec![("user", hostile_user), ("task", "listsessions")],
        vec![
            ("user", "xbt-alice"),
            ("task", "selectsession"),
            ("sid", "farm"),
            ("pubkey", hostile_key),
        ],
    ] {
        answers.push(b.post(&form)?);
    }
    let ran = marker.exists();
    let _ = std::fs::remove_file(marker);
    match kind {
        BrokerKind::Original if !ran => Err(format!(
            "the original did not run the injected command (the scenario would prove nothing): {answers:?}"
        )),
        BrokerKind::Ours if ran => Err(format!(
            "a hostile value reached a remote shell unquoted: {answers:?}\n{}",
            b.running.log_tail()
        )),
        BrokerKind::Ours => {
            let log = b.running.log_tail();
            if !log.contains("refusing to send") {
                return Err(format!("no log line about the refused values:\n{log}"));
            }
            // The hostile key was not deployed anywhere.
            for i in 1..=3 {
                if farm.authorized_keys(i, "xbt-alice").contains("touch") {
                    return Err(format!("server {i} got the hostile key"));
                }
            }
            Ok(())
        }
        BrokerKind::Original => Ok(()),
    }
}

/// SSH mode (`x2gobroker-ssh`, through our root helper and a worker that
/// runs as the daemon user) asks the farm's agents too. Ours only: the
/// original's SSH mode needs a sudo set-up of its own.
fn ssh_mode_resume(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    if kind == BrokerKind::Original {
        eprintln!("farm: ssh_mode_resumes_through_remote_agents runs against ours only");
        return Ok(());
    }
    let sid = farm.add_session(2, "xbt-alice", Status::Suspended)?;
    let removals = private_removals(farm)?;
    // CONFIG's %DIR% is the helper's test directory (its cookies/ is the daemon user's).
    let broker = x2gobroker_systemtests::ssh::SshBroker::start(
        "farm",
        &CONFIG.replace("%REMOVALS%", &removals.path().to_string_lossy()),
        &PROFILES.replace("%HOSTS%", &farm.profile_hosts()),
    );
    let out = broker.run(
        Some("xbt-alice"),
        &["--task", "selectsession", "--sid", "farm"],
        &[],
    );
    let want = format!("SERVER:{}:{}", farm.server(2).addr, farm.server(2).port);
    if !out.stdout.contains(&want) || !out.stdout.contains(&format!("|{sid}|")) {
        return Err(format!(
            "want {want} and session {sid}, got: {out:?}\nhelper log:\n{}",
            broker.helper.log()
        ));
    }
    Ok(())
}

/// A key-removal directory of the broker account's, mode 0700.
fn private_removals(farm: &Farm) -> Result<TempDir, String> {
    let dir = TempDir::new("farm-removals")?;
    let user = nix::unistd::User::from_name(&farm.broker_user)
        .map_err(|e| e.to_string())?
        .ok_or("no broker account")?;
    nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).map_err(|e| e.to_string())?;
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    Ok(dir)
}

/// SSH mode with auto-login and no daemon running: the worker deploys the
/// key and leaves its removal to a runner of its own, which removes it
/// after the delay (ours only, like the other SSH-mode scenario).
fn ssh_mode_autologin_removal(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    if kind == BrokerKind::Original {
        eprintln!("farm: ssh_mode_key_removed_without_a_daemon runs against ours only");
        return Ok(());
    }
    spread_sessions(farm)?;
    let removals = private_removals(farm)?;
    let broker = x2gobroker_systemtests::ssh::SshBroker::start(
        "farm-auto",
        &CONFIG.replace("%REMOVALS%", &removals.path().to_string_lossy()),
        &AUTO.replace("%HOSTS%", &farm.profile_hosts()),
    );
    let out = broker.run(
        Some("xbt-alice"),
        &["--task", "selectsession", "--sid", "auto"],
        &[],
    );
    if !out.stdout.contains("-----BEGIN RSA PRIVATE KEY-----") {
        return Err(format!(
            "no key handed out: {out:?}\nhelper log:\n{}",
            broker.helper.log()
        ));
    }
    let keys = farm.authorized_keys(2, "xbt-alice");
    let line = keys
        .lines()
        .find(|l| l.ends_with(" xbt-alice@127.0.0.1"))
        .ok_or_else(|| format!("no auto-login key on server 2:\n{keys}"))?
        .to_owned();
    poll("removal by the worker's runner", KEY_REMOVAL_DEADLINE, || {
        (!farm.authorized_keys(2, "xbt-alice").contains(&line)).then_some(())
    })
}

const PYHOCA_CONFIG: &str = "[global]
require-password = true
default-auth-mech = pam
default-agent-query-mode = SSH
default-agent-hostkey-policy = RejectPolicy
default-portscan-x2goservers = true
cookie-directory = %DIR%/cookies
my-cookie-file = %DIR%/authid
";

/// The proof with a real client: pyhoca-cli logs in through the broker
/// (PAM), is sent to the least busy farm server and starts a real X2Go
/// session there (x2goagent; Xvfb is the local display); the server's own
/// x2golistsessions shows it. Once it is suspended, the next selectsession
/// through the broker resumes it on the same server.
/// (pyhoca-cli itself cannot resume through a broker: python-x2go fails on
/// the profile's `status` key, so the second selectsession is made over
/// HTTP.)
fn pyhoca_session(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    const USER: (&str, &str) = ("xbt-erin", "Erin-pw-5");
    let profiles = "[desk]
name = Desk
command = sleep 600
host = %HOSTS%
";
    let b = FarmBroker::start_with(kind, farm, PYHOCA_CONFIG, profiles, None, true)?;
    let x = Xvfb::start("1024x768x24")?;
    let home = TempDir::new("pyhoca-home")?;
    // Test users' leftovers of an earlier run would count as sessions.
    let _ = Command::new("pkill").args(["-u", USER.0]).status();
    let output = home.path().join("pyhoca.log");
    let log_file = std::fs::File::create(&output).map_err(|e| e.to_string())?;
    let log_file2 = log_file.try_clone().map_err(|e| e.to_string())?;
    let mut pyhoca = Command::new("/usr/bin/python3")
        .arg("/usr/bin/pyhoca-cli")
        .arg("--broker-url")
        .arg(format!("http://{}@{}/json/", USER.0, b.addr))
        .args(["--broker-password", USER.1, "-P", "desk", "--password", USER.1])
        .arg("--add-to-known-hosts")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("DISPLAY", &x.display)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(log_file)
        .stderr(log_file2)
        .spawn()
        .map_err(|e| format!("pyhoca-cli: {e}"))?;
    let client_log = || std::fs::read_to_string(&output).unwrap_or_default();
    // pyhoca-cli says when its session runs (and Ctrl+C would suspend it).
    let started = poll("pyhoca-cli's session", Duration::from_secs(90), || {
        client_log().contains("Press CTRL+C to suspend").then_some(())
    });
    let running = started.and_then(|()| {
        let sessions = farm.sessions(1, USER.0)?;
        sessions
            .into_iter()
            .find(|l| l.contains("|R|"))
            .ok_or_else(|| "no running session in the session DB".to_owned())
    });
    let running = match running {
        Ok(line) => line,
        Err(e) => {
            let _ = pyhoca.kill();
            let _ = pyhoca.wait();
            return Err(format!(
                "{e}\npyhoca-cli:\n{}\nbroker:\n{}",
                client_log(),
                b.running.log_tail()
            ));
        }
    };
    let fields: Vec<&str> = running.split('|').collect();
    let server = farm
        .server_by_name(fields.get(3).copied().unwrap_or_default())
        .ok_or_else(|| format!("session on an unknown server: {running}"))?
        .clone();
    let session = running.split('|').nth(1).unwrap_or_default().to_owned();
    let farm_exec = |args: &[&str]| {
        Command::new("bash")
            .arg(&farm.script)
            .args(["exec", &server.index.to_string(), "runuser", "-u", USER.0, "--"])
            .args(args)
            .output()
    };
    // Ctrl+C, as at a terminal: SIGINT to the client's process group (its
    // nxproxy too); the server's x2goagent then suspends the session.
    let pgid = nix::unistd::Pid::from_raw(i32::try_from(pyhoca.id()).map_err(|e| e.to_string())?);
    nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGINT).map_err(|e| e.to_string())?;
    let suspended = poll("the session suspended", Duration::from_secs(60), || {
        farm.sessions(server.index, USER.0)
            .ok()?
            .into_iter()
            .find(|l| l.contains(&format!("|{session}|")) && l.contains("|S|"))
    })
    .map_err(|e| format!("{e}\npyhoca-cli:\n{}", client_log()));
    let _ = pyhoca.kill();
    let _ = pyhoca.wait();
    suspended?;
    let (status, body) = b.post(&[
        ("user", USER.0),
        ("password", USER.1),
        ("task", "selectsession"),
        ("sid", "desk"),
    ])?;
    let terminated = farm_exec(&["x2goterminate-session", &session]);
    let want = format!("SERVER:{}:{}", server.addr, server.port);
    let resumed = session_info(&body).is_some_and(|i| i.contains(&format!("|{session}|")));
    if status != 200 || !body.contains(&want) || !resumed {
        return Err(format!(
            "the suspended session {session} was not resumed on {}: HTTP {status}\n{body}",
            server.name
        ));
    }
    terminated.map_err(|e| format!("x2goterminate-session: {e}"))?;
    let _ = Command::new("pkill").args(["-u", USER.0]).status();
    Ok(())
}

/// The broker that deployed an auto-login key stops before removing it; a
/// new broker with the same configuration removes it. The original keeps
/// pending removals in a timer thread only, so its key stays behind: the
/// scenario shows that (ARCHITECTURE.md D: agent failures).
fn autologin_key_restart(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    let removals = private_removals(farm)?;
    let config = CONFIG.replace("%REMOVALS%", &removals.path().to_string_lossy());
    spread_sessions(farm)?;
    let first = FarmBroker::start_with(kind, farm, &config, AUTO, None, false)?;
    let body = first.select("xbt-alice", "auto")?;
    expect_server(&body, farm, 2)?;
    let before = farm.authorized_keys(2, "xbt-alice");
    let line = before
        .lines()
        .find(|l| l.ends_with(" xbt-alice@127.0.0.1"))
        .ok_or_else(|| format!("no auto-login key on server 2:\n{before}"))?
        .to_owned();
    drop(first); // killed well before the key's 20 s are up
    let second = FarmBroker::start_with(kind, farm, &config, AUTO, None, false)?;
    // The original would remove it 20 s after the answer if it could.
    let deadline = match kind {
        BrokerKind::Ours => KEY_REMOVAL_DEADLINE,
        BrokerKind::Original => Duration::from_secs(35),
    };
    let removed = poll("removal by the restarted broker", deadline, || {
        (!farm.authorized_keys(2, "xbt-alice").contains(&line)).then_some(())
    });
    match (kind, removed) {
        (BrokerKind::Ours, Err(e)) => Err(format!("{e}\n{}", second.running.log_tail())),
        (BrokerKind::Original, Ok(())) => {
            Err("the original removed the key after a restart: the scenario proves nothing".into())
        }
        _ => Ok(()),
    }
}

/// A profile without `name` while the user has a session on it: the
/// original fails the whole listing (HTTP 500: it logs `profile['name']`);
/// ours lists the profile with the session's status and host.
fn nameless_profile(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    const NAMELESS: &str = "[noname]
command = XFCE
host = %HOSTS%
";
    farm.add_session(2, "xbt-alice", Status::Suspended)?;
    let b = FarmBroker::start(kind, farm, NAMELESS, None)?;
    let (status, body) = b.post(&[("user", "xbt-alice"), ("task", "listsessions")])?;
    match kind {
        BrokerKind::Original if status != 500 => Err(format!(
            "the original answered {status} (expected its 500):\n{body}"
        )),
        BrokerKind::Ours
            if status != 200
                || !body.contains("[noname]\n")
                || !body.contains("\nstatus=S\n")
                || !body.contains(&format!("\nhost={}\n", farm.server(2).name)) =>
        {
            Err(format!(
                "want the profile with status S on server 2, got {status}:\n{body}"
            ))
        }
        _ => Ok(()),
    }
}

/// A profile with an SSH proxy host: the auto-login key goes to the proxy
/// (its `sshproxyport`) as well as to the chosen server.
fn autologin_proxy(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    let proxy = farm.server(3);
    let profiles = format!(
        "[auto]
name = Farm auto-login via proxy
command = XFCE
host = %HOSTS%
broker-session-autologin = true
sshproxyhost = {}
sshproxyport = {}
",
        proxy.name, proxy.port
    );
    spread_sessions(farm)?;
    let b = FarmBroker::start(kind, farm, &profiles, None)?;
    let body = b.select("xbt-alice", "auto")?;
    expect_server(&body, farm, 2)?;
    for index in [2, 3] {
        let keys = farm.authorized_keys(index, "xbt-alice");
        if !keys.lines().any(|l| l.ends_with(" xbt-alice@127.0.0.1")) {
            return Err(format!(
                "no auto-login key on server {index}:\n{keys}\n{}",
                b.running.log_tail()
            ));
        }
    }
    Ok(())
}

// ------------------------------------------------------------ load checker

/// [`CONFIG`], polling every 2 s (load-checker-intervals).
fn lc_config() -> String {
    format!("{CONFIG}load-checker-intervals = 2\n")
}

const LC_PROFILES: &str = "[farm]
name = Farm
command = XFCE
host = %HOSTS%
broker-use-load-checker = true
";

impl FarmBroker {
    /// The load checker of `kind` on the socket this broker asks
    /// (`DIR/loadchecker.socket`, a link into a directory of the broker
    /// account, which the load checker runs as).
    fn start_loadchecker(&self, kind: BrokerKind, farm: &Farm) -> Result<Running, String> {
        let d = self._dir.path();
        let lc_dir = d.join(format!("lc-{}", kind.name()));
        std::fs::create_dir_all(&lc_dir).map_err(|e| e.to_string())?;
        let user = nix::unistd::User::from_name(&farm.broker_user)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no account {}", farm.broker_user))?;
        nix::unistd::chown(&lc_dir, Some(user.uid), Some(user.gid)).map_err(|e| e.to_string())?;
        let socket = lc_dir.join("loadchecker.socket");
        let link = d.join("loadchecker.socket");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&socket, &link).map_err(|e| e.to_string())?;
        broker::start_loadchecker(
            kind,
            d,
            &socket,
            &d.join("x2gobroker.conf"),
            &d.join("sessionprofiles.conf"),
            &[("X2GOBROKER_AGENT_CMD".into(), AGENT.into())],
            &RunAs {
                user: &farm.broker_user,
                ssh_dir: None,
            },
        )
    }
}

/// One request to a load checker socket; the answer as sent (the
/// connection stays open, so read until `complete` says so).
fn ask_loadchecker(socket: &Path, request: &str, complete: fn(&str) -> bool) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s =
        std::os::unix::net::UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !complete(&String::from_utf8_lossy(&answer)) {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("reading the answer to {request:?}: {e}"))?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// `HOST:VALUE` lines of a profile answer.
fn profile_loads(answer: &str) -> Vec<(String, String)> {
    answer
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(h, v)| (h.to_owned(), v.to_owned()))
        .collect()
}

/// The factor from server `index`'s own checkload, by the formula of the
/// original (loadchecker.py, agent.py check_load).
fn factor_of(farm: &Farm, index: usize) -> Result<f64, String> {
    let lines = farm.agent(index, "foo", "checkload")?;
    let get = |k: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("checkload of server {index} has no {k}: {lines:?}"))
    };
    let mut mem = get("memAvail")?;
    if mem == 0.0 {
        mem = get("myMemAvail")?;
    }
    Ok((mem / 1000.0) * get("numCPU")? * get("typeCPU")? * 100.0 / get("loadavgXX")?)
}

/// The load checker of `kind` polls the real agents: a factor per server,
/// as the formula gives from each agent's own checkload (within 35 %: load
/// and free memory move between the two readings); per-host answers
/// without a newline; a server whose sshd is down becomes HOST-UNREACHABLE.
fn loadchecker_real_agents(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    let b = FarmBroker::start_with(kind, farm, &lc_config(), LC_PROFILES, None, false)?;
    let lc = b.start_loadchecker(kind, farm)?;
    let socket = b._dir.path().join("loadchecker.socket");
    let ends_with_newline = |a: &str| a.ends_with('\n');
    let loads = poll("factors of all three servers", Duration::from_secs(40), || {
        let answer = ask_loadchecker(&socket, "inifile\rfarm\r\n", ends_with_newline).ok()?;
        let loads = profile_loads(&answer);
        (loads.len() == 3 && loads.iter().all(|(_, v)| v.parse::<i64>().is_ok())).then_some((answer, loads))
    })
    .map_err(|e| format!("{e}\n{}", lc.log_tail()))?;
    let (answer, loads) = loads;
    // The original lists the last host first.
    let order: Vec<&str> = loads.iter().map(|(h, _)| h.as_str()).collect();
    if order != ["xfarm3", "xfarm2", "xfarm1"] {
        return Err(format!("hosts not in the original's order: {answer:?}"));
    }
    for (i, (host, value)) in [(1, "xfarm1"), (2, "xfarm2"), (3, "xfarm3")]
        .iter()
        .map(|(i, h)| (*i, loads.iter().find(|(x, _)| x == h).expect("listed")))
    {
        let got: f64 = value.parse().map_err(|_| format!("{host}: {value}"))?;
        let want = factor_of(farm, i)?;
        if (got - want).abs() > want * 0.35 {
            return Err(format!(
                "{host}: load checker says {got}, the agent's own data gives {want:.0}"
            ));
        }
        let single = ask_loadchecker(&socket, &format!("inifile\rfarm\r{host}\n"), |a| !a.is_empty())?;
        if single.parse::<i64>().is_err() {
            return Err(format!(
                "per-host answer for {host} is not a bare number: {single:?}"
            ));
        }
    }
    let unknown = ask_loadchecker(&socket, "inifile\rnosuchprofile\r\n", ends_with_newline)?;
    if unknown != "\n" {
        return Err(format!("unknown profile: want a lone newline, got {unknown:?}"));
    }
    farm.stop_sshd(2)?;
    poll("server 2 reported unreachable", Duration::from_secs(40), || {
        let answer = ask_loadchecker(&socket, "inifile\rfarm\rxfarm2\n", |a| !a.is_empty()).ok()?;
        (answer == "HOST-UNREACHABLE").then_some(())
    })
    .map_err(|e| format!("{e}\n{}", lc.log_tail()))?;
    Ok(())
}

/// A stand-in load checker (a real socket in this test) with chosen
/// factors, since the farm's servers share one machine and report nearly
/// the same load. Answers every request with `answer`.
fn fixed_loadchecker(socket: &Path, answer: &'static str) -> Result<std::thread::JoinHandle<()>, String> {
    use std::io::{BufRead, Write};
    let _ = std::fs::remove_file(socket);
    let listener = std::os::unix::net::UnixListener::bind(socket).map_err(|e| e.to_string())?;
    std::fs::set_permissions(socket, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .map_err(|e| e.to_string())?;
    Ok(std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(&stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_ok() && line.starts_with("inifile\rfarm\r") {
                let _ = (&stream).write_all(answer.as_bytes());
            }
        }
    }))
}

/// Sessions 2 / 0 / 1 (session counts pick server 2). With factors
/// 100000 / 1000 / 100000 the load picks server 3 ((1+1)/100000); with
/// server 3 unreachable, server 1; with server 2 missing from the data,
/// session counts again (server 2).
fn load_factor_selection(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    spread_sessions(farm)?;
    let cases: [(&'static str, usize); 3] = [
        ("xfarm3:100000\nxfarm2:1000\nxfarm1:100000\n", 3),
        ("xfarm3:HOST-UNREACHABLE\nxfarm2:1000\nxfarm1:100000\n", 1),
        ("xfarm3:100000\nxfarm1:100000\n", 2),
    ];
    for (answer, want) in cases {
        let b = FarmBroker::start_with(kind, farm, &lc_config(), LC_PROFILES, None, false)?;
        let _lc = fixed_loadchecker(&b._dir.path().join("loadchecker.socket"), answer)?;
        for _ in 0..REPEAT {
            let body = b.select("xbt-alice", "farm")?;
            expect_server(&body, farm, want)
                .map_err(|e| format!("load checker says {answer:?}: {e}\n{}", b.running.log_tail()))?;
        }
    }
    Ok(())
}

/// The broker of `kind` with the other kind's load checker on the real
/// agents: the broker receives all three factors (its log says so) and
/// picks the least loaded server.
fn loadchecker_cross(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    let other = match kind {
        BrokerKind::Ours => BrokerKind::Original,
        BrokerKind::Original => BrokerKind::Ours,
    };
    spread_sessions(farm)?;
    let b = FarmBroker::start_with(kind, farm, &lc_config(), LC_PROFILES, None, false)?;
    let lc = b.start_loadchecker(other, farm)?;
    let socket = b._dir.path().join("loadchecker.socket");
    poll("factors of all three servers", Duration::from_secs(40), || {
        let answer = ask_loadchecker(&socket, "inifile\rfarm\r\n", |a| a.ends_with('\n')).ok()?;
        let loads = profile_loads(&answer);
        (loads.len() == 3 && loads.iter().all(|(_, v)| v.parse::<i64>().is_ok())).then_some(())
    })
    .map_err(|e| format!("{e}\n{}", lc.log_tail()))?;
    let body = b.select("xbt-alice", "farm")?;
    // Nearly equal factors: (sessions + 1) / factor still favours server 2.
    expect_server(&body, farm, 2)?;
    let log = b.running.log_tail();
    let received = log.lines().any(|l| {
        (l.contains("load metrics for backend=inifile, profile_id=farm")
            || l.contains("loads from the load checker"))
            && ["xfarm1", "xfarm2", "xfarm3"].iter().all(|h| l.contains(h))
    });
    if !received {
        return Err(format!(
            "the broker did not log the three factors it received\n{log}"
        ));
    }
    Ok(())
}

// ------------------------------------------------------------ admin tools

/// Stands in for the broker account in the tools scenario (its own key,
/// so the farm's broker key stays untouched).
const KEY_OWNER: &str = "xts-keyowner";

/// Our daemon publishes the key owner's key at /pubkeys/;
/// x2gobroker-pubkeyauthorizer, run inside server 1, authorises it for the
/// agent with the original's restrictions; x2gobroker-testagent (as the key
/// owner) then runs ping and listsessions there. Server 1's
/// authorized_keys is restored afterwards.
fn tools_on_a_server(kind: BrokerKind, farm: &FarmGuard) -> Result<(), String> {
    let owner_env = [
        ("X2GOBROKER_DAEMON_USER", KEY_OWNER),
        ("X2GOBROKER_DAEMON_GROUP", KEY_OWNER),
    ];
    // The farm's host keys are new with every start: forget earlier ones
    // (testagent -A then adds the current ones).
    if let Ok(Some(owner)) = nix::unistd::User::from_name(KEY_OWNER) {
        let _ = std::fs::remove_file(owner.dir.join(".ssh/known_hosts"));
    }
    let keygen = Command::new(broker::our_program("x2gobroker-keygen"))
        .args(["-f", "-t", "ED25519"])
        .envs(owner_env)
        .output()
        .map_err(|e| e.to_string())?;
    if !keygen.status.success() {
        return Err(format!("keygen: {}", String::from_utf8_lossy(&keygen.stderr)));
    }
    let public = String::from_utf8_lossy(&keygen.stdout).trim().to_owned();
    let key_body = public
        .split_whitespace()
        .nth(1)
        .ok_or("keygen printed no key")?
        .to_owned();
    let dir = TempDir::new("tools")?;
    let d = dir.path();
    let config = d.join("x2gobroker.conf");
    std::fs::write(
        &config,
        CONFIG
            .replace("%DIR%", &d.to_string_lossy())
            .replace("%REMOVALS%", &d.to_string_lossy()),
    )
    .map_err(|e| e.to_string())?;
    let profiles = d.join("sessionprofiles.conf");
    std::fs::write(&profiles, PROFILES.replace("%HOSTS%", &farm.profile_hosts()))
        .map_err(|e| e.to_string())?;
    let setup = BrokerSetup {
        kind,
        dir: d,
        config: &config,
        profiles: &profiles,
        auth_socket: &d.join("auth.sock"),
        listen: Listen::Ipv4,
        env: owner_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        args: Vec::new(),
    };
    let port = broker::free_port(Listen::Ipv4)?;
    let daemon = broker::start_broker(&setup, port)?;
    let keys_file = farm.dir.join("srv1/broker-home/.ssh/authorized_keys");
    let saved = std::fs::read(&keys_file).map_err(|e| format!("{}: {e}", keys_file.display()))?;
    let result = (|| -> Result<(), String> {
        let authorizer = broker::our_program("x2gobroker-pubkeyauthorizer");
        let out = Command::new("bash")
            .arg(&farm.script)
            .args(["exec", "1"])
            .arg(&authorizer)
            .arg("--broker-url")
            .arg(format!("http://127.0.0.1:{port}/pubkeys/"))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "pubkeyauthorizer: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                daemon.log_tail()
            ));
        }
        let keys = std::fs::read_to_string(&keys_file).map_err(|e| e.to_string())?;
        let want = format!(
            "command=\"/usr/lib/x2go/x2gobroker-agent\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty ssh-ed25519 {key_body}"
        );
        if !keys.lines().any(|l| l.starts_with(&want)) {
            return Err(format!(
                "authorized_keys of server 1 lacks the restricted key:\n{keys}"
            ));
        }
        if !keys.starts_with(&String::from_utf8_lossy(&saved).to_string()) {
            return Err(format!("the earlier keys were not kept:\n{keys}"));
        }
        let s = farm.server(1);
        let testagent = |args: &[&str]| -> Result<(bool, String), String> {
            let out = Command::new(broker::our_program("x2gobroker-testagent"))
                .args(["-H", &s.addr, "-p", &s.port.to_string(), "-A", "-C"])
                .arg(&config)
                .args(args)
                .envs(owner_env)
                .env("X2GOBROKER_AGENT_CMD", AGENT)
                .output()
                .map_err(|e| e.to_string())?;
            Ok((
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ))
        };
        let (ok, text) = testagent(&["-t", "ping"])?;
        if !ok || !text.contains("The task 'ping' could be executed successfully on the remote broker agent.")
        {
            return Err(format!("testagent ping:\n{text}"));
        }
        let sid = farm.add_session(1, "xbt-alice", Status::Suspended)?;
        let (ok, text) = testagent(&["-t", "listsessions", "-u", "xbt-alice"])?;
        if !ok || !text.contains(&sid) {
            return Err(format!(
                "testagent listsessions does not show session {sid}:\n{text}"
            ));
        }
        Ok(())
    })();
    std::fs::write(&keys_file, &saved).map_err(|e| format!("restoring {}: {e}", keys_file.display()))?;
    result?;
    // With the key gone again, the same call fails (non-zero exit).
    let s = farm.server(1);
    let out = Command::new(broker::our_program("x2gobroker-testagent"))
        .args(["-H", &s.addr, "-p", &s.port.to_string(), "-A", "-C"])
        .arg(&config)
        .envs(owner_env)
        .env("X2GOBROKER_AGENT_CMD", AGENT)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Err(format!(
            "testagent ping succeeded without the key:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(())
}
