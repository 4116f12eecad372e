//! Support for the SSH-mode system tests: a helper serving SSH-mode tasks
//! with a configuration in its own temp dir, `x2gobroker-ssh` runs as real
//! users (runuser, empty environment), the original's SSH mode run the way
//! its setuid wrapper runs it, our HTTP daemon for comparisons, and a
//! throw-away sshd on a loopback port.

use crate::helper::{target_profile_dir, wait_until, RunningHelper, TestDir};
pub use crate::support::free_port;
use nix::unistd::{chown, Group, User};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SSH_BIN: &str = "x2gobroker-ssh";
pub const DAEMON_USER: &str = "x2gobroker";
const SYSTEM_PYTHON: &str = "/usr/bin/python3";
const ORIGINAL_BROKER: &str = "/usr/bin/x2gobroker";
/// Placeholder in configuration texts for the fixture's cookie directory.
pub const COOKIES: &str = "%COOKIES%";
/// Placeholder for the fixture's directory.
pub const DIR: &str = "%DIR%";
/// Longest a command under test may run.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// `x2gobroker-ssh` from the workspace build, checked to be newer than the
/// SSH-mode sources (cargo does not rebuild it for this test package).
pub fn ssh_binary() -> PathBuf {
    let binary = target_profile_dir().join(SSH_BIN);
    let built = fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}; cargo build -p x2gobroker-frontend", binary.display()));
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../frontend/src/ssh");
    for entry in fs::read_dir(&sources).into_iter().flatten().flatten() {
        if entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > built)
        {
            panic!(
                "{} is older than {}; rebuild it (cargo build -p x2gobroker-frontend)",
                binary.display(),
                entry.path().display()
            );
        }
    }
    binary
}

/// A helper that serves SSH-mode tasks with `config` and `profiles` (both
/// may use [`COOKIES`] and [`DIR`]), its cookie directory owned by the
/// daemon user.
pub struct SshBroker {
    pub helper: RunningHelper,
    pub config: PathBuf,
    pub profiles: PathBuf,
    pub cookies: PathBuf,
}

impl SshBroker {
    pub fn start(tag: &str, config: &str, profiles: &str) -> SshBroker {
        SshBroker::start_with(tag, config, profiles, &[])
    }

    /// As [`SshBroker::start`], with further helper options.
    pub fn start_with(tag: &str, config: &str, profiles: &str, helper_args: &[&str]) -> SshBroker {
        let dir = TestDir::new(&format!("ssh-{tag}"));
        let (config_path, profiles_path, cookies) = write_broker_files(&dir, config, profiles);
        let socket = dir.path("helper.sock");
        let mut command = Command::new(crate::helper::helper_binary());
        command
            .arg("--socket")
            .arg(&socket)
            .args(["--socket-mode", "0666", "--foreground"])
            .args(helper_args);
        if !helper_args.contains(&"--ssh-worker-program") {
            command.arg("--ssh-worker-program").arg(ssh_binary());
        }
        command
            // Workers ask this helper too (setpass).
            .env("X2GOBROKER_AUTHSERVICE_SOCKET", &socket)
            .env("X2GOBROKER_CONFIG", &config_path)
            .env("X2GOBROKER_SESSIONPROFILES", &profiles_path);
        let helper = RunningHelper::spawn(command, dir, socket);
        SshBroker {
            helper,
            config: config_path,
            profiles: profiles_path,
            cookies,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.helper.dir.0
    }

    /// Runs `x2gobroker-ssh ARGS` as `user` (None: root) with an empty
    /// environment plus the socket variable and `env`.
    pub fn run(&self, user: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Outcome {
        let mut full_env = vec![(
            "X2GOBROKER_SSH_SOCKET",
            self.helper.socket.to_str().expect("utf-8 path"),
        )];
        full_env.extend_from_slice(env);
        run_program_as(user, &ssh_binary(), args, &full_env)
    }
}

/// Children of `parent` (from /proc), with their command lines.
pub fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the parenthesised command name: state, ppid, ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, cmdline));
        }
    }
    found
}

/// Writes the configuration and profiles into `dir`; returns their paths
/// and the cookie directory (owned by the daemon user, 0700).
pub fn write_broker_files(dir: &TestDir, config: &str, profiles: &str) -> (PathBuf, PathBuf, PathBuf) {
    let cookies = dir.path("cookies");
    fs::create_dir_all(&cookies).expect("cookie dir");
    let daemon = User::from_name(DAEMON_USER).ok().flatten().expect("daemon user");
    chown(&cookies, Some(daemon.uid), Some(daemon.gid)).expect("chown cookies");
    fs::set_permissions(&cookies, fs::Permissions::from_mode(0o700)).expect("chmod cookies");
    let fill = |text: &str| {
        text.replace(COOKIES, cookies.to_str().expect("utf-8"))
            .replace(DIR, dir.0.to_str().expect("utf-8"))
    };
    let config_path = dir.path("x2gobroker.conf");
    let profiles_path = dir.path("sessionprofiles.conf");
    fs::write(&config_path, fill(config)).expect("write config");
    fs::write(&profiles_path, fill(profiles)).expect("write profiles");
    for p in [&config_path, &profiles_path] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    (config_path, profiles_path, cookies)
}

/// A finished command.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn from_output(out: Output) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        Outcome {
            code: out
                .status
                .code()
                .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The output with cookie values replaced by `<cookie>`.
    pub fn stdout_without_cookies(&self) -> String {
        self.stdout
            .lines()
            .map(|l| match l.strip_prefix("AUTHID:") {
                Some(_) => "AUTHID:<cookie>".to_string(),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + if self.stdout.ends_with('\n') { "\n" } else { "" }
    }

    /// The `AUTHID:` value, if any.
    pub fn cookie(&self) -> Option<String> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("AUTHID:"))
            .map(str::to_string)
    }

    /// Profile IDs (`[id]` lines) in output order.
    pub fn profile_ids(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix('[').and_then(|l| l.strip_suffix(']')))
            .map(str::to_string)
            .collect()
    }
}

/// Runs `program ARGS` as `user` (None: root) with exactly `env` (plus a
/// fixed PATH), stdin from /dev/null, within a deadline.
pub fn run_program_as(user: Option<&str>, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut command = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", "env", "-i"]);
            c
        }
        None => {
            let mut c = Command::new("env");
            c.arg("-i");
            c
        }
    };
    command.arg("PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        command.arg(format!("{k}={v}"));
    }
    command.arg(program).args(args);
    run_with_deadline(command)
}

/// Runs a command to completion, killing it at the deadline.
pub fn run_with_deadline(mut command: Command) -> Outcome {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    // Drain both pipes on threads so a chatty child cannot block.
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome::from_output(Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

/// The original's SSH mode as its setuid wrapper runs it: as the daemon
/// user, with LOGNAME naming the caller (the wrapper keeps the caller's
/// environment, so LOGNAME is whatever the caller set).
pub fn run_original(
    logname: &str,
    config: &Path,
    profiles: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Outcome {
    let mut full_env = vec![
        ("LOGNAME", logname),
        ("X2GOBROKER_CONFIG", config.to_str().expect("utf-8")),
        ("X2GOBROKER_SESSIONPROFILES", profiles.to_str().expect("utf-8")),
        ("HOME", "/var/lib/x2gobroker"),
    ];
    full_env.extend_from_slice(env);
    let mut all_args = vec![ORIGINAL_BROKER];
    all_args.extend_from_slice(args);
    run_program_as(Some(DAEMON_USER), Path::new(SYSTEM_PYTHON), &all_args, &full_env)
}

/// Our HTTP daemon on a free loopback port, authenticating with PAM
/// through `helper_socket`.
pub struct HttpDaemon {
    child: Child,
    log: PathBuf,
    pub port: u16,
}

impl HttpDaemon {
    pub fn start(dir: &Path, config: &Path, profiles: &Path, helper_socket: &Path) -> HttpDaemon {
        HttpDaemon::start_with_env(dir, config, profiles, helper_socket, &[])
    }

    /// As [`HttpDaemon::start`], with further environment variables (e.g.
    /// `X2GOBROKER_AGENT_CMD`).
    pub fn start_with_env(
        dir: &Path,
        config: &Path,
        profiles: &Path,
        helper_socket: &Path,
        env: &[(&str, &str)],
    ) -> HttpDaemon {
        let binary = target_profile_dir().join("x2gobroker-daemon");
        let log = dir.join("daemon.log");
        let out = fs::File::create(&log).expect("daemon log");
        let child = Command::new(binary)
            .envs(env.iter().copied())
            .arg("-C")
            .arg(config)
            .args(["-b", "127.0.0.1:0"])
            .env("X2GOBROKER_AUTHSERVICE_SOCKET", helper_socket)
            .env("X2GOBROKER_SESSIONPROFILES", profiles)
            .env_remove("X2GOBROKER_DEBUG")
            .env_remove("X2GOBROKER_CONFIG")
            .env_remove("X2GOBROKER_DEFAULT_BACKEND")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start x2gobroker-daemon");
        let mut daemon = HttpDaemon { child, log, port: 0 };
        wait_until("the HTTP daemon to listen", || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("daemon exited ({status}):\n{}", daemon.log_text());
            }
            daemon.port = daemon
                .log_text()
                .lines()
                .find_map(|l| l.split("listening on http://127.0.0.1:").nth(1))
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(0);
            daemon.port != 0
        });
        daemon
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POSTs `form` to /plain/; returns the body (curl fails the test on
    /// transport errors).
    pub fn plain(&self, form: &[(&str, &str)]) -> String {
        let mut command = Command::new("curl");
        command.args(["-s", "-S", "--max-time", "30"]);
        for (k, v) in form {
            command.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        command.arg(format!("http://127.0.0.1:{}/plain/", self.port));
        let out = run_with_deadline(command);
        assert_eq!(out.code, 0, "curl: {}", out.stderr);
        out.stdout
    }
}

impl Drop for HttpDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throw-away sshd on a free loopback port: its own host key, one
/// authorized user key for `user`, no PAM, key authentication only.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    log: PathBuf,
}

impl Sshd {
    pub fn start(dir: &Path, user: &str, environment: &[(&str, &str)]) -> Sshd {
        let keygen = |path: &Path| {
            let mut c = Command::new("ssh-keygen");
            c.args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path);
            let out = run_with_deadline(c);
            assert_eq!(out.code, 0, "ssh-keygen: {}", out.stderr);
        };
        let sshd_dir = dir.join("sshd");
        fs::create_dir_all(&sshd_dir).expect("sshd dir");
        fs::set_permissions(&sshd_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let host_key = sshd_dir.join("host_key");
        let client_key = sshd_dir.join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        // StrictModes would reject the key file below the world-writable
        // /tmp; these keys are throw-away and root-owned.
        let authorized = sshd_dir.join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized).expect("authorized_keys");
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644)).expect("chmod");
        let port = free_port();
        let mut config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PubkeyAuthentication yes\nStrictModes no\nAllowUsers {user}\nPidFile none\n\
             LogLevel VERBOSE\nPermitUserEnvironment no\n",
            host_key.display(),
            authorized.display()
        );
        for (k, v) in environment {
            config.push_str(&format!("SetEnv {k}={v}\n"));
        }
        let config_path = sshd_dir.join("sshd_config");
        fs::write(&config_path, config).expect("sshd_config");
        // sshd needs its privilege separation directory.
        let _ = fs::create_dir_all("/run/sshd");
        let log = sshd_dir.join("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("sshd log"))
            .spawn()
            .expect("start sshd");
        let known_hosts = sshd_dir.join("known_hosts");
        let host_pub = fs::read_to_string(host_key.with_extension("pub")).expect("host key");
        fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}")).expect("known_hosts");
        let mut sshd = Sshd {
            child,
            port,
            client_key,
            known_hosts,
            log,
        };
        wait_until("sshd to listen", || {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                panic!("sshd exited ({status}):\n{}", sshd.log_text());
            }
            std::net::TcpStream::connect(("127.0.0.1", sshd.port)).is_ok()
        });
        sshd
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ssh -p PORT user@127.0.0.1 COMMAND` with the throw-away keys.
    pub fn ssh(&self, user: &str, remote_command: &str) -> Outcome {
        self.ssh_from("127.0.0.1", user, remote_command)
    }

    /// As [`Sshd::ssh`], connecting from `source` (a 127.0.0.0/8 address).
    pub fn ssh_from(&self, source: &str, user: &str, remote_command: &str) -> Outcome {
        let mut c = Command::new("ssh");
        c.args(["-b", source])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-i")
            .arg(&self.client_key)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-F",
                "/dev/null",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg(format!("{user}@127.0.0.1"))
            .arg(remote_command);
        run_with_deadline(c)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Uid and gid of the daemon user and its supplementary groups, sorted.
pub fn daemon_account() -> (u32, u32, Vec<u32>) {
    let user = User::from_name(DAEMON_USER).ok().flatten().expect("daemon user");
    let name = std::ffi::CString::new(DAEMON_USER).expect("name");
    let mut groups: Vec<u32> = nix::unistd::getgrouplist(&name, user.gid)
        .expect("groups")
        .iter()
        .map(|g| g.as_raw())
        .collect();
    groups.sort();
    groups.dedup();
    (user.uid.as_raw(), user.gid.as_raw(), groups)
}

pub fn gid_of(group: &str) -> u32 {
    Group::from_name(group)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("group {group} missing"))
        .gid
        .as_raw()
}
