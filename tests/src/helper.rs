//! Support for the auth helper's system tests: each test starts its own
//! `x2gobroker-authhelper` on a socket in its own temporary directory, so
//! tests run in parallel; the instance is killed when the handle drops.

use nix::unistd::{Group, User};
use std::fs;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use x2gobroker_protocol::client::{blocking::Client, ClientError};
use x2gobroker_protocol::{AuthRequest, FrameError, Password, Request, Response, StatusReport};

pub const HELPER_BIN: &str = "x2gobroker-authhelper";
pub use crate::support::{wait_until, TestDir, DEADLINE};

/// Test users from scripts/setup-test-env.sh (fixtures, not secrets).
pub const ALICE: (&str, &str) = ("xbt-alice", "Alice-pw-1");
pub const BOB: (&str, &str) = ("xbt-bob", "Bob-pw-2");
pub const CAROL: (&str, &str) = ("xbt-carol", "Carol-pw-3");
pub const DAVE: (&str, &str) = ("xbt-dave", "Dave-pw-4");
pub const ERIN: (&str, &str) = ("xbt-erin", "Erin-pw-5");
pub const FRANK: (&str, &str) = ("xbt-frank", "Frank-pw-6");
pub const LOCKED: (&str, &str) = ("xbt-locked", "Locked-pw-7");
pub const EXPIRED: (&str, &str) = ("xbt-expired", "Expired-pw-8");

/// The workspace's target profile directory (e.g. target/debug), found from
/// this test executable (target/debug/deps/<test>-<hash>).
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join(HELPER_BIN).is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| {
            panic!(
                "{HELPER_BIN} not found in any parent directory of {}; build the workspace first \
                 (cargo build --workspace --all-targets, as scripts/test.sh does)",
                exe.display()
            )
        })
}

/// The helper binary, checked to be newer than the helper's sources: cargo
/// does not rebuild another package's binary for these tests, and a stale
/// one would test old code.
pub fn helper_binary() -> PathBuf {
    let binary = target_profile_dir().join(HELPER_BIN);
    let built = fs::metadata(&binary)
        .and_then(|m| m.modified())
        .expect("helper binary mtime");
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../authhelper/src");
    if let Ok(entries) = fs::read_dir(&sources) {
        for entry in entries.flatten() {
            let changed = entry.metadata().and_then(|m| m.modified());
            if changed.is_ok_and(|t| t > built) {
                panic!(
                    "{} is older than {}; rebuild it (cargo build -p x2gobroker-authhelper)",
                    binary.display(),
                    entry.path().display()
                );
            }
        }
    }
    binary
}

pub struct RunningHelper {
    child: Child,
    pub socket: PathBuf,
    pub log_path: PathBuf,
    pub dir: TestDir,
}

impl RunningHelper {
    /// Starts a helper bound to `<dir>/helper.sock` (mode 0666, so that the
    /// peer-credential policy, not the file mode, is what refuses strangers),
    /// logging to `<dir>/helper.log`, and waits until it answers a handshake.
    pub fn start(tag: &str, extra_args: &[&str]) -> Self {
        let dir = TestDir::new(tag);
        let socket = dir.path("helper.sock");
        let mut command = Command::new(helper_binary());
        command
            .arg("--socket")
            .arg(&socket)
            .args(["--socket-mode", "0666", "--foreground"])
            .args(extra_args);
        Self::spawn(command, dir, socket)
    }

    /// Starts `command` (which must end up running the helper, e.g. under
    /// systemd-socket-activate) and waits until `socket` answers.
    pub fn spawn(mut command: Command, dir: TestDir, socket: PathBuf) -> Self {
        let log_path = dir.path("helper.log");
        let log = fs::File::create(&log_path).expect("create helper log");
        // The runner's socket variable is dropped unless the caller set it.
        if !command
            .get_envs()
            .any(|(k, _)| k == "X2GOBROKER_AUTHSERVICE_SOCKET")
        {
            command.env_remove("X2GOBROKER_AUTHSERVICE_SOCKET");
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .env_remove("X2GOBROKER_DEBUG");
        let child = command.spawn().expect("start the helper");
        let mut helper = RunningHelper {
            child,
            socket,
            log_path,
            dir,
        };
        wait_until("the helper to answer a handshake", || {
            if let Ok(Some(status)) = helper.child.try_wait() {
                panic!("helper exited during start-up ({status}):\n{}", helper.log());
            }
            Client::connect(&helper.socket, Duration::from_secs(5)).is_ok()
        });
        helper
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket, DEADLINE).expect("connect to the helper")
    }

    pub fn authenticate(
        &self,
        user: &str,
        password: &str,
        client_address: Option<&str>,
    ) -> Result<Response, ClientError> {
        self.client().call(&auth_request(user, password, client_address))
    }

    pub fn status(&self) -> StatusReport {
        match self.client().call(&Request::Status) {
            Ok(Response::Status(report)) => report,
            other => panic!("status: {other:?}"),
        }
    }

    /// Stops the helper (SIGTERM) and waits for it; returns its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let mut status = None;
        wait_until("the helper to exit after SIGTERM", || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status.expect("exit status")
    }
}

impl Drop for RunningHelper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn auth_request(user: &str, password: &str, client_address: Option<&str>) -> Request {
    Request::Authenticate(AuthRequest {
        user: user.to_string(),
        password: Password::from(password),
        service: None,
        client_address: client_address.map(str::to_string),
    })
}

/// (uid, gid) of a system user.
pub fn user_ids(name: &str) -> (u32, u32) {
    let user = User::from_name(name)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("user {name} missing; run scripts/setup-test-env.sh"));
    (user.uid.as_raw(), user.gid.as_raw())
}

pub fn group_exists(name: &str) -> bool {
    matches!(Group::from_name(name), Ok(Some(_)))
}

/// Runs a command to completion with its output, failing the test if it
/// does not exit within the deadline (e.g. a helper that should have refused
/// to start but is serving).
pub fn run_to_exit(mut command: Command) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn");
    let mut done = false;
    let deadline = Instant::now() + DEADLINE;
    while !done {
        done = child.try_wait().expect("try_wait").is_some();
        if !done && Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = Output {
        status: child.wait().expect("wait"),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_end(&mut out.stdout);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_end(&mut out.stderr);
    }
    out
}

/// After sending something bad on `stream`: the helper must answer with an
/// error frame or close the connection — not leave it hanging.
pub fn expect_error_or_disconnect(mut stream: UnixStream) -> String {
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    match x2gobroker_protocol::frame::blocking::read_message::<Response, _>(&mut stream) {
        Ok(Response::Error(e)) => format!("error: {e}"),
        Ok(other) => panic!("expected an error or a disconnect, got {other:?}"),
        Err(FrameError::Closed) | Err(FrameError::Truncated) => "disconnected".into(),
        Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => "disconnected".into(),
        Err(FrameError::TimedOut) => panic!("the helper neither answered nor disconnected"),
        Err(e) => panic!("unexpected frame error {e}"),
    }
}

/// Reads `/proc/<pid>/status` field `name` (e.g. "CapEff") as a number.
pub fn proc_status_hex(pid: u32, task: Option<u32>, name: &str) -> u64 {
    let path = match task {
        Some(tid) => format!("/proc/{pid}/task/{tid}/status"),
        None => format!("/proc/{pid}/status"),
    };
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("{name} missing in {path}"));
    u64::from_str_radix(value.trim(), 16).expect("hex capability mask")
}
