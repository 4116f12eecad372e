//! Starting the broker under test (and its PAM service) in an isolated temp dir,
//! waiting for readiness by polling, and killing and reaping it afterwards.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::scenario::Listen;

/// How long a broker or auth service may take to come up.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between readiness polls (a poll interval, not a synchronisation sleep).
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The original's interpreter: the system one (`python3` on PATH may lack the module).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";
const ORIGINAL_BROKER: &str = "/usr/bin/x2gobroker";
const ORIGINAL_AUTHSERVICE: &str = "/usr/sbin/x2gobroker-authservice";

/// The original cannot bind an IPv6 address with `-b` (it brackets the address and
/// Tornado then fails to resolve `[::1]`). For IPv6 scenarios it is started through
/// this shim, which only strips the brackets from the parsed bind address.
const ORIGINAL_IPV6_SHIM: &str = "import sys\n\
sys.argv[0] = '/usr/bin/x2gobroker'\n\
import runpy, x2gobroker.utils as u\n\
_split = u.split_host_address\n\
def split(host, *a, **k):\n    addr, port = _split(host, *a, **k)\n    return addr.strip('[]'), port\n\
u.split_host_address = split\n\
runpy.run_path('/usr/bin/x2gobroker', run_name='__main__')\n";

/// Which broker the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// The Python x2gobroker from the Debian package.
    Original,
    /// Our Rust `x2gobroker-daemon`.
    Ours,
}

impl BrokerKind {
    /// From BROKER_UNDER_TEST (`original` or `ours`; default `ours`).
    pub fn from_env() -> Result<BrokerKind, String> {
        match std::env::var("BROKER_UNDER_TEST").as_deref() {
            Err(_) | Ok("") | Ok("ours") => Ok(BrokerKind::Ours),
            Ok("original") => Ok(BrokerKind::Original),
            Ok(other) => Err(format!(
                "BROKER_UNDER_TEST={other:?}: expected `original` or `ours`"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Original => "original",
            BrokerKind::Ours => "ours",
        }
    }

    /// Where this broker keeps dynamic cookies in the scenario dir `tmp`, given the
    /// configured cookie-directory. The original ignores `cookie-directory` unless it
    /// runs as its daemon user and uses `~/.x2go/broker-cookies` of the effective user
    /// (ARCHITECTURE.md differences); where mount namespaces work, that `~/.x2go` is a private bind mount
    /// of `tmp/dot-x2go`, else the real, shared one.
    pub fn cookie_dir(self, tmp: &Path, configured: &Path) -> PathBuf {
        match self {
            BrokerKind::Original if private_home_available() => tmp.join("dot-x2go/broker-cookies"),
            BrokerKind::Original => effective_user_home().join(".x2go/broker-cookies"),
            BrokerKind::Ours => configured.to_path_buf(),
        }
    }
}

/// Whether `unshare --mount` works here (root with CAP_SYS_ADMIN), checked once.
fn private_home_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Runs the original with its `~/.x2go` replaced by `tmp/dot-x2go` in a private
/// mount namespace, so that each scenario has its own cookie store.
const PRIVATE_HOME_SCRIPT: &str =
    "src=$1; dst=$2; shift 2; mount --bind \"$src\" \"$dst\" || exit 97; exec \"$@\"";

fn original_command(tmp: &Path) -> Result<Command, String> {
    if !private_home_available() {
        return Ok(Command::new(SYSTEM_PYTHON));
    }
    let src = tmp.join("dot-x2go");
    let dst = effective_user_home().join(".x2go");
    for d in [&src, &dst] {
        std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        PRIVATE_HOME_SCRIPT,
        "sh",
    ])
    .arg(src)
    .arg(dst)
    .arg(SYSTEM_PYTHON);
    Ok(c)
}

/// Our binaries: X2GOBROKER_DAEMON_BIN / X2GOBROKER_AUTHHELPER_BIN, else the
/// workspace target dir (CARGO_TARGET_DIR honoured), debug profile.
fn our_binary(env_name: &str, file: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_name) {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug").join(file)
}

pub fn our_daemon() -> PathBuf {
    our_binary("X2GOBROKER_DAEMON_BIN", "x2gobroker-daemon")
}

pub fn our_authhelper() -> PathBuf {
    our_binary("X2GOBROKER_AUTHHELPER_BIN", "x2gobroker-authhelper")
}

/// Home directory of the effective user, as the original computes it (passwd entry).
fn effective_user_home() -> PathBuf {
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid))
        .map(|f| PathBuf::from(f[5]))
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// A per-scenario directory: a [`TestDir`](crate::support::TestDir)
/// (COMPLIANCE_KEEP_TMP=1 keeps it for debugging).
pub struct TempDir(crate::support::TestDir);

impl TempDir {
    pub fn new(label: &str) -> Result<TempDir, String> {
        Ok(TempDir(crate::support::TestDir::new(label)))
    }

    pub fn path(&self) -> &Path {
        self.0.root()
    }
}

/// A child process that is killed and reaped when dropped, also on test failure.
pub struct Running {
    what: String,
    child: Child,
    log: PathBuf,
}

impl Running {
    fn spawn(what: &str, mut cmd: Command, log: PathBuf) -> Result<Running, String> {
        let out = File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        // Own process group, so that children it forks (the original's delayed key
        // removal) are killed with it.
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let child = cmd.spawn().map_err(|e| format!("start {what} ({cmd:?}): {e}"))?;
        Ok(Running {
            what: what.to_owned(),
            child,
            log,
        })
    }

    /// Fails if the process has already exited.
    fn check_alive(&mut self) -> Result<(), String> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => Err(format!(
                "{} exited early ({status})\n{}",
                self.what,
                self.log_tail()
            )),
        }
    }

    /// The exit status once the process has ended (a failed wait counts as ended).
    fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(status.to_string()),
            Err(e) => Some(format!("wait failed: {e}")),
        }
    }

    /// The last lines of the process's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(40);
        format!(
            "--- {} log (last {} lines) ---\n{}",
            self.what,
            lines.len() - start,
            lines[start..].join("\n")
        )
    }

    /// Polls `ready` until it holds, the process dies, or the deadline passes.
    fn wait_until(&mut self, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if ready() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not ready after {START_DEADLINE:?}\n{}",
                    self.what,
                    self.log_tail()
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that is free right now.
pub fn free_port(listen: Listen) -> Result<u16, String> {
    crate::support::free_port_on(loopback(listen, 0).ip())
}

pub fn loopback(listen: Listen, port: u16) -> SocketAddr {
    match listen {
        Listen::Ipv4 => SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Listen::Ipv6 => SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
    }
}

/// Everything the broker process needs.
pub struct BrokerSetup<'a> {
    pub kind: BrokerKind,
    pub dir: &'a Path,
    pub config: &'a Path,
    pub profiles: &'a Path,
    pub auth_socket: &'a Path,
    pub listen: Listen,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

/// Starts the PAM authentication service on `socket`.
pub fn start_auth_service(kind: BrokerKind, dir: &Path, socket: &Path) -> Result<Running, String> {
    let mut cmd = match kind {
        BrokerKind::Original => {
            let mut c = Command::new(SYSTEM_PYTHON);
            c.arg(ORIGINAL_AUTHSERVICE).arg("-s").arg(socket).arg("-i");
            c
        }
        BrokerKind::Ours => {
            let mut c = Command::new(our_authhelper());
            c.arg("--socket").arg(socket).arg("--foreground");
            c
        }
    };
    clean_env(&mut cmd);
    let mut running = Running::spawn("auth service", cmd, dir.join("auth.log"))?;
    running.wait_until(|| UnixStream::connect(socket).is_ok())?;
    Ok(running)
}

/// Starts the broker and waits until its port accepts connections.
pub fn start_broker(setup: &BrokerSetup<'_>, port: u16) -> Result<Running, String> {
    start_broker_as(setup, port, None)
}

/// How the original runs as its daemon user, as agent query mode SSH needs it:
/// it resets HOME to the passwd home of its effective user (defaults.py) and
/// takes its SSH key and known_hosts from `~/.ssh` there.
pub struct RunAs<'a> {
    /// The account (`x2gobroker`).
    pub user: &'a str,
    /// Bind-mounted over that account's `~/.ssh` in a private mount namespace
    /// (another known_hosts), or `None` for the real one.
    pub ssh_dir: Option<&'a Path>,
}

/// Runs the original as `run_as.user` (our daemon is started as by
/// [`start_broker`]); `None` is [`start_broker`].
pub fn start_broker_as(
    setup: &BrokerSetup<'_>,
    port: u16,
    run_as: Option<&RunAs<'_>>,
) -> Result<Running, String> {
    let mut running = spawn_broker_as(setup, port, run_as)?;
    let addr = loopback(setup.listen, port);
    running.wait_until(|| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())?;
    Ok(running)
}

/// `unshare` + `setpriv` prefix running `program` as `run_as.user`.
fn command_as(run_as: &RunAs<'_>, program: &Path) -> Result<Command, String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    let home = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[0] == run_as.user)
        .map(|f| PathBuf::from(f[5]))
        .ok_or_else(|| format!("no account {}", run_as.user))?;
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"]);
    match run_as.ssh_dir {
        Some(src) => {
            c.arg(PRIVATE_HOME_SCRIPT)
                .arg("sh")
                .arg(src)
                .arg(home.join(".ssh"));
        }
        None => {
            c.arg("exec \"$@\"").arg("sh");
        }
    }
    c.args([
        "setpriv",
        "--reuid",
        run_as.user,
        "--regid",
        run_as.user,
        "--init-groups",
        "--",
    ])
    .arg(program);
    Ok(c)
}

fn spawn_broker(setup: &BrokerSetup<'_>, port: u16) -> Result<Running, String> {
    spawn_broker_as(setup, port, None)
}

fn spawn_broker_as(
    setup: &BrokerSetup<'_>,
    port: u16,
    run_as: Option<&RunAs<'_>>,
) -> Result<Running, String> {
    let bind = match setup.listen {
        Listen::Ipv4 => format!("127.0.0.1:{port}"),
        Listen::Ipv6 => format!("[::1]:{port}"),
    };
    let mut cmd = match setup.kind {
        BrokerKind::Original => {
            let mut c = match run_as {
                Some(r) => command_as(r, Path::new(SYSTEM_PYTHON))?,
                None => original_command(setup.dir)?,
            };
            match setup.listen {
                Listen::Ipv4 => c.arg(ORIGINAL_BROKER),
                Listen::Ipv6 => c.arg("-c").arg(ORIGINAL_IPV6_SHIM),
            };
            // -i: log to stderr (our log file) rather than /var/log/x2gobroker.
            c.args(["-M", "HTTP", "-b", &bind, "-i", "-C"]).arg(setup.config);
            c
        }
        BrokerKind::Ours => {
            let mut c = match run_as {
                Some(r) => command_as(r, &our_daemon())?,
                None => Command::new(our_daemon()),
            };
            c.arg("-C").arg(setup.config).arg("-b").arg(&bind);
            c
        }
    };
    cmd.args(&setup.args);
    clean_env(&mut cmd);
    cmd.env("X2GOBROKER_SESSIONPROFILES", setup.profiles)
        .env("X2GOBROKER_AUTHSERVICE_SOCKET", setup.auth_socket)
        .env(
            "X2GOBROKER_LOADCHECKER_SOCKET",
            setup.dir.join("loadchecker.socket"),
        )
        .env("X2GOBROKER_AGENT_CMD", setup.dir.join("no-such-agent"));
    for (k, v) in &setup.env {
        cmd.env(k, v);
    }
    Running::spawn("broker", cmd, setup.dir.join("broker.log"))
}

/// For setups the broker must refuse: Ok once it has exited, an error if it
/// comes up (accepts connections) instead.
pub fn expect_start_failure(setup: &BrokerSetup<'_>, port: u16) -> Result<(), String> {
    let mut running = spawn_broker(setup, port)?;
    let addr = loopback(setup.listen, port);
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if running.exit_status().is_some() {
            return Ok(());
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Err(format!(
                "broker started although this setup must be refused\n{}",
                running.log_tail()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("broker neither exited nor came up in {START_DEADLINE:?}"));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Drops the caller's broker settings so that only the scenario's apply.
fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("X2GOBROKER_") || name == "DAEMON_BIND_ADDRESS" || name.starts_with("PYTHON") {
            cmd.env_remove(&k);
        }
    }
}

/// The original's load checker program.
const ORIGINAL_LOADCHECKER: &str = "/usr/sbin/x2gobroker-loadchecker";

pub fn our_loadchecker() -> PathBuf {
    our_binary("X2GOBROKER_LOADCHECKER_BIN", "x2gobroker-loadchecker")
}

/// Starts the load checker of `kind` as `run_as` on `socket`, reading
/// `config` and `profiles` (environment as the broker's); waits until the
/// socket accepts connections. Its log is `dir/loadchecker-KIND.log`.
pub fn start_loadchecker(
    kind: BrokerKind,
    dir: &Path,
    socket: &Path,
    config: &Path,
    profiles: &Path,
    env: &[(String, String)],
    run_as: &RunAs<'_>,
) -> Result<Running, String> {
    let mut cmd = match kind {
        BrokerKind::Original => {
            let mut c = command_as(run_as, Path::new(SYSTEM_PYTHON))?;
            c.arg(ORIGINAL_LOADCHECKER);
            c
        }
        BrokerKind::Ours => command_as(run_as, &our_loadchecker())?,
    };
    // -i: log to stderr; owner and group: the account it runs as.
    cmd.arg("-i")
        .arg("-s")
        .arg(socket)
        .args(["-o", run_as.user, "-g", run_as.user, "-p", "0660"]);
    clean_env(&mut cmd);
    cmd.env("X2GOBROKER_CONFIG", config)
        .env("X2GOBROKER_SESSIONPROFILES", profiles);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut running = Running::spawn(
        "load checker",
        cmd,
        dir.join(format!("loadchecker-{}.log", kind.name())),
    )?;
    running.wait_until(|| UnixStream::connect(socket).is_ok())?;
    Ok(running)
}

/// One of our programs in the workspace target dir (e.g. `x2gobroker-keygen`).
pub fn our_program(file: &str) -> PathBuf {
    our_binary("X2GOBROKER_NO_SUCH_OVERRIDE", file)
}
