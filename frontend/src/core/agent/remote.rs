//! Agent query mode SSH: the agent runs on an X2Go server, reached with
//! the system's OpenSSH client as the agent user (X2GOBROKER_AGENT_USER)
//! with the broker account's key and known_hosts.
//!
//! * `/usr/bin/ssh` is started from an argument vector; no local shell.
//! * The remote command line is `AGENT_CMD 'user' 'task' 'arg'…`, every
//!   value validated and quoted by [`super::quote`]. On the server the
//!   agent's forced command (`command="…/x2gobroker-agent"` in the agent
//!   user's authorized_keys) reads it from SSH_ORIGINAL_COMMAND.
//! * Host keys: the original's policy names map onto OpenSSH's
//!   StrictHostKeyChecking (docs/OPERATIONS.md, "Agents over SSH").
//! * Connections are multiplexed (ControlMaster/ControlPersist) in a
//!   private directory, so warm calls pay no SSH handshake.
//! * ssh's own diagnostics go to `-E /dev/null`: its stderr then carries
//!   only the agent's, which the original treats as a failed call.

use super::quote::{self, UnsafeValue};
use super::{AgentError, Answer, AGENT_TIMEOUT, MAX_ANSWER};
use crate::core::portscan::{PortScanner, TcpPortScanner};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// The OpenSSH client; never looked up through PATH.
pub const SSH_PROGRAM: &str = "/usr/bin/ssh";
/// Overrides where multiplexed connections live (ours, not the original's).
pub const CONTROL_DIR_ENV: &str = "X2GOBROKER_AGENT_SSH_CONTROL_DIR";
/// How long an idle multiplexed connection stays open.
pub const CONTROL_PERSIST: Duration = Duration::from_secs(300);
/// TCP connect and SSH handshake deadline.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The private keys whose presence enables mode SSH (the original looks
/// for the first three; ed25519 is ours).
pub const BROKER_KEY_FILES: &[&str] = &["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"];

/// Bound on ssh processes running at once in this process.
pub const MAX_SSH_PROCESSES: usize = 64;
static SSH_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_SSH_PROCESSES);

/// An agent that answered this recently is used without a new `ping`.
pub const ANSWERED_RECENTLY: Duration = Duration::from_secs(10);

/// An agent: host name, address, port, host key policy.
type AgentKey = (String, String, u16, HostKeyPolicy);
/// When each agent last answered.
static LAST_ANSWER: Mutex<Vec<(AgentKey, Instant)>> = Mutex::new(Vec::new());
/// Bound on [`LAST_ANSWER`]: agents are the configured servers.
const MAX_REMEMBERED: usize = 4096;

/// The original's host key policy (paramiko's MissingHostKeyPolicy names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Unknown host keys are refused.
    Reject,
    /// Unknown keys are accepted with a warning.
    Warning,
    /// Unknown keys are accepted.
    AutoAdd,
}

impl HostKeyPolicy {
    /// Unknown names fall back to RejectPolicy, as in the original.
    pub fn parse(name: &str) -> HostKeyPolicy {
        match name.trim() {
            "RejectPolicy" => HostKeyPolicy::Reject,
            "WarningPolicy" => HostKeyPolicy::Warning,
            "AutoAddPolicy" => HostKeyPolicy::AutoAdd,
            other => {
                log::error!("invalid SSH host key policy \"{other}\", falling back to RejectPolicy");
                HostKeyPolicy::Reject
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HostKeyPolicy::Reject => "RejectPolicy",
            HostKeyPolicy::Warning => "WarningPolicy",
            HostKeyPolicy::AutoAdd => "AutoAddPolicy",
        }
    }

    /// OpenSSH's StrictHostKeyChecking for the policy. A *changed* key is
    /// refused under every policy (paramiko raises BadHostKeyException
    /// too); an unknown key accepted under Warning/AutoAdd is remembered in
    /// known_hosts (paramiko forgets it), so it is checked from then on.
    pub fn strict_host_key_checking(self) -> &'static str {
        match self {
            HostKeyPolicy::Reject => "yes",
            HostKeyPolicy::Warning | HostKeyPolicy::AutoAdd => "accept-new",
        }
    }
}

/// One X2Go server's agent.
#[derive(Debug, Clone)]
pub struct RemoteAgent {
    /// The name from the profile's host list.
    pub hostname: String,
    /// `host=name (address)` of the profile, else the name.
    pub hostaddr: String,
    pub port: u16,
    pub policy: HostKeyPolicy,
    /// X2GOBROKER_AGENT_USER.
    pub agent_user: String,
    /// X2GOBROKER_AGENT_CMD (an absolute path).
    pub agent_cmd: String,
}

/// The agent command, which the agent's forced command matches by its
/// unquoted path: an absolute path of plain characters only.
fn agent_command(path: &str) -> Result<&str, UnsafeValue> {
    let ok = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
    ok.then_some(path).ok_or_else(|| UnsafeValue {
        what: "agent command",
        value: path.chars().take(80).collect(),
    })
}

/// The command line the remote shell runs.
pub fn remote_command_line(
    agent_cmd: &str,
    user: &str,
    task: &str,
    args: &[&str],
) -> Result<String, UnsafeValue> {
    let mut line = agent_command(agent_cmd)?.to_owned();
    for value in [user, task].iter().chain(args) {
        line.push(' ');
        line.push_str(&quote::shell_word(value)?);
    }
    Ok(line)
}

/// Whether the daemon account has a key for agents (the original's
/// has_remote_broker_agent_setup): without one, mode SSH asks no agent.
pub fn broker_key_present() -> bool {
    let Some(home) = own_home() else { return false };
    BROKER_KEY_FILES
        .iter()
        .any(|name| home.join(".ssh").join(name).is_file())
}

/// The forced command the broker's key gets on X2Go servers (the
/// original's `/pubkeys/`, which `x2gobroker-pubkeyauthorizer` installs).
pub const AUTHORIZED_KEY_OPTIONS: &str =
    "command=\"/usr/lib/x2go/x2gobroker-agent\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty";

/// The broker account's public keys as authorized_keys lines for the agent
/// user on X2Go servers: RSA, then DSA, as the original publishes them,
/// then Ed25519.
pub fn published_keys(daemon_user: &str, hostname: &str) -> String {
    let Ok(Some(account)) = nix::unistd::User::from_name(daemon_user) else {
        return String::new();
    };
    let mut out = String::new();
    // Ed25519 too: mode SSH accepts an id_ed25519 broker key (the original
    // knows only RSA and DSA).
    for (file, kind) in [
        ("id_rsa.pub", "ssh-rsa"),
        ("id_dsa.pub", "ssh-dss"),
        ("id_ed25519.pub", "ssh-ed25519"),
    ] {
        let Ok(text) = std::fs::read_to_string(account.dir.join(".ssh").join(file)) else {
            continue;
        };
        let mut words = text.split_whitespace();
        match (words.next(), words.next()) {
            (Some(k), Some(key))
                if k == kind
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) =>
            {
                out.push_str(&format!(
                    "{AUTHORIZED_KEY_OPTIONS} {kind} {key} {daemon_user}@{hostname}\n"
                ));
            }
            _ => log::warn!(
                "{}: not an {kind} public key",
                account.dir.join(".ssh").join(file).display()
            ),
        }
    }
    out
}

fn own_home() -> Option<PathBuf> {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
}

/// Off in SSH-mode workers: a master connection they started would outlive
/// them, outside the helper's limits on tasks.
static MULTIPLEXING_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This process makes no multiplexed connections (SSH-mode workers).
pub fn disable_multiplexing() {
    MULTIPLEXING_OFF.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The directory for multiplexed connections, once per process: the
/// environment's choice, else systemd's RuntimeDirectory, else one under
/// the temporary directory. It must be ours and private; if it is not,
/// connections are not multiplexed (with a warning).
pub fn control_dir() -> Option<&'static Path> {
    if MULTIPLEXING_OFF.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let uid = nix::unistd::geteuid().as_raw();
        let dir = std::env::var_os(CONTROL_DIR_ENV)
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("RUNTIME_DIRECTORY")
                    .and_then(|d| d.to_str().and_then(|d| d.split(':').next()).map(PathBuf::from))
                    .map(|d| d.join("agent-ssh"))
            })
            .unwrap_or_else(|| std::env::temp_dir().join(format!("x2gobroker-agent-ssh-{uid}")));
        match private_dir(&dir, uid) {
            Ok(()) => Some(dir),
            Err(e) => {
                log::warn!(
                    "agent SSH connections are not multiplexed: {}: {e}",
                    dir.display()
                );
                None
            }
        }
    })
    .as_deref()
}

fn private_dir(dir: &Path, uid: u32) -> Result<(), String> {
    // Parallel calls may race to create it: whoever loses finds it made.
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create: {e}")),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(format!("must be a directory of uid {uid} with mode 0700"));
    }
    Ok(())
}

use std::os::unix::fs::DirBuilderExt;

impl RemoteAgent {
    fn key(&self) -> AgentKey {
        (
            self.hostname.clone(),
            self.hostaddr.clone(),
            self.port,
            self.policy,
        )
    }

    /// Remembers whether a call reached the agent.
    fn note_answer(&self, reached: bool) {
        let Ok(mut seen) = LAST_ANSWER.lock() else { return };
        let key = self.key();
        seen.retain(|(k, _)| *k != key);
        if reached {
            if seen.len() >= MAX_REMEMBERED {
                seen.remove(0);
            }
            seen.push((key, Instant::now()));
        }
    }

    /// The agent answered within [`ANSWERED_RECENTLY`].
    pub fn answered_recently(&self) -> bool {
        let key = self.key();
        LAST_ANSWER.lock().is_ok_and(|seen| {
            seen.iter()
                .any(|(k, at)| *k == key && at.elapsed() < ANSWERED_RECENTLY)
        })
    }

    /// Where to connect: the host name if its port answers, else the
    /// address (the original's order).
    async fn target(&self) -> Result<&str, AgentError> {
        let port = i64::from(self.port);
        if TcpPortScanner.scan(&self.hostname, port).await {
            return Ok(&self.hostname);
        }
        if self.hostaddr != self.hostname && TcpPortScanner.scan(&self.hostaddr, port).await {
            return Ok(&self.hostaddr);
        }
        Err(AgentError(format!(
            "could not reach the agent host {} ({}) on port {}",
            self.hostname, self.hostaddr, self.port
        )))
    }

    /// Where this agent's multiplexed connection lives. A master
    /// connection skips host key checks for every later call, so masters
    /// are only shared by calls under the same host key policy, the same
    /// known_hosts files and the same broker key: each combination gets
    /// its own subdirectory, and a changed known_hosts takes effect at once.
    fn control_subdir(&self, dir: &Path) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let mut files = vec![PathBuf::from("/etc/ssh/ssh_known_hosts")];
        if let Some(home) = own_home() {
            files.push(home.join(".ssh/known_hosts"));
            files.extend(BROKER_KEY_FILES.iter().map(|k| home.join(".ssh").join(k)));
        }
        for file in &files {
            if let Ok(m) = std::fs::metadata(file) {
                (file, m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()).hash(&mut hasher);
            }
        }
        let policy = &self.policy.name()[..1];
        let sub = dir.join(format!("{policy}{:012x}", hasher.finish() & 0xffff_ffff_ffff));
        // ssh binds "<path>.<16 random chars>" first: the whole must fit a
        // socket address (108 bytes).
        if sub.as_os_str().len() + 1 + 40 + 17 >= 108 {
            log::warn!(
                "{}: too long for SSH control sockets, not multiplexing",
                sub.display()
            );
            return None;
        }
        let uid = nix::unistd::geteuid().as_raw();
        let fresh = !sub.exists();
        match private_dir(&sub, uid) {
            Ok(()) => {
                if fresh {
                    // Subdirectories of older known_hosts: empty once their
                    // masters have ended (remove_dir leaves busy ones).
                    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                        if entry.path() != sub {
                            let _ = std::fs::remove_dir(entry.path());
                        }
                    }
                }
                Some(sub)
            }
            Err(e) => {
                log::warn!("{}: {e}, not multiplexing", sub.display());
                None
            }
        }
    }

    /// The ssh argument vector for one call.
    pub fn ssh_args(&self, target: &str, remote_command: String, control_dir: Option<&Path>) -> Vec<String> {
        let mut args: Vec<String> = vec!["-T".into(), "-E".into(), "/dev/null".into()];
        let mut option = |o: String| {
            args.push("-o".into());
            args.push(o);
        };
        option("BatchMode=yes".into());
        option(format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs()));
        option("ServerAliveInterval=10".into());
        option("ServerAliveCountMax=2".into());
        option(format!(
            "StrictHostKeyChecking={}",
            self.policy.strict_host_key_checking()
        ));
        option("ForwardAgent=no".into());
        option("ForwardX11=no".into());
        option("ClearAllForwardings=yes".into());
        match control_dir {
            Some(dir) => {
                option("ControlMaster=auto".into());
                option(format!("ControlPath={}/%C", dir.display()));
                option(format!("ControlPersist={}", CONTROL_PERSIST.as_secs()));
            }
            None => option("ControlMaster=no".into()),
        }
        args.extend([
            "-p".into(),
            self.port.to_string(),
            "-l".into(),
            self.agent_user.clone(),
            "--".into(),
            target.to_owned(),
            remote_command,
        ]);
        args
    }

    pub async fn call(&self, user: &str, task: &str, args: &[&str]) -> Result<Answer, AgentError> {
        let command = remote_command_line(&self.agent_cmd, user, task, args)?;
        let result = self.run(command).await;
        // Only an `OK` answer makes the agent one that needs no ping.
        self.note_answer(matches!(result, Ok(Answer { ok: true, .. })));
        result
    }

    async fn run(&self, command: String) -> Result<Answer, AgentError> {
        // Every ssh process counts against one bound (ARCHITECTURE.md P5):
        // parallel pings of many requests cannot exhaust processes or
        // descriptors; a call that waits too long for a slot fails.
        let _slot = match tokio::time::timeout(AGENT_TIMEOUT, SSH_SLOTS.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(AgentError("too many agent calls in flight".into())),
        };
        let target = self.target().await?;
        log::info!(
            "executing agent command on remote host {} ({target}:{}): {command}",
            self.hostname,
            self.port
        );
        let child = tokio::process::Command::new(SSH_PROGRAM)
            .args(self.ssh_args(
                target,
                command,
                control_dir().and_then(|d| self.control_subdir(d)).as_deref(),
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = child.map_err(|e| AgentError(format!("cannot start {SSH_PROGRAM}: {e}")))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(AgentError("no pipes to ssh".into()));
        };
        let run = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let limit = MAX_ANSWER as u64;
            let (mut stdout, mut stderr) = (stdout.take(limit), stderr.take(limit));
            let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            let status = child.wait().await;
            a.and(b).and(status).map(|status| (status, out, err))
        };
        let (status, out, err) = match tokio::time::timeout(AGENT_TIMEOUT, run).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(AgentError(format!("ssh to {target}: {e}"))),
            Err(_) => {
                return Err(AgentError(format!(
                    "the agent on {target} did not answer within {AGENT_TIMEOUT:?}"
                )))
            }
        };
        if status.code() == Some(255) {
            return Err(self.connection_failed(target).await);
        }
        Ok(Answer::parse(&out, &err))
    }

    /// Why ssh failed, as far as we can tell without its diagnostics.
    async fn connection_failed(&self, target: &str) -> AgentError {
        let user = &self.agent_user;
        if self.policy == HostKeyPolicy::Reject && !self.host_key_known(target).await {
            let message = format!(
                "refusing agent host {target} port {}: its host key is not in the known_hosts of the broker account \
                 and the host key policy is RejectPolicy (add it, e.g. with ssh-keyscan, after checking it)",
                self.port
            );
            log::error!("{message}");
            return AgentError(message);
        }
        let message = format!(
            "ssh to the agent {user}@{target} port {} failed (broker key not authorised, host key changed, or sshd down)",
            self.port
        );
        log::error!("{message}");
        AgentError(message)
    }

    /// Whether known_hosts (the account's or the system's) lists `target`.
    async fn host_key_known(&self, target: &str) -> bool {
        let name = if self.port == 22 {
            target.to_owned()
        } else {
            format!("[{target}]:{}", self.port)
        };
        let mut files: Vec<PathBuf> = vec![PathBuf::from("/etc/ssh/ssh_known_hosts")];
        if let Some(home) = own_home() {
            files.push(home.join(".ssh/known_hosts"));
        }
        for file in files.iter().filter(|f| f.is_file()) {
            let found = tokio::process::Command::new("/usr/bin/ssh-keygen")
                .arg("-F")
                .arg(&name)
                .arg("-f")
                .arg(file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if found.is_ok_and(|s| s.success()) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(policy: HostKeyPolicy) -> RemoteAgent {
        RemoteAgent {
            hostname: "srv1".into(),
            hostaddr: "127.0.0.11".into(),
            port: 2222,
            policy,
            agent_user: "x2gobroker".into(),
            agent_cmd: "/usr/lib/x2go/x2gobroker-agent".into(),
        }
    }

    #[test]
    fn policies_map_onto_openssh() {
        assert_eq!(HostKeyPolicy::parse("RejectPolicy"), HostKeyPolicy::Reject);
        assert_eq!(HostKeyPolicy::parse("WarningPolicy"), HostKeyPolicy::Warning);
        assert_eq!(HostKeyPolicy::parse("AutoAddPolicy"), HostKeyPolicy::AutoAdd);
        assert_eq!(HostKeyPolicy::parse("Bogus"), HostKeyPolicy::Reject);
        assert_eq!(HostKeyPolicy::Reject.strict_host_key_checking(), "yes");
        assert_eq!(HostKeyPolicy::AutoAdd.strict_host_key_checking(), "accept-new");
    }

    #[test]
    fn argument_vector() {
        let a = agent(HostKeyPolicy::Reject);
        let args = a.ssh_args("srv1", "CMD".into(), Some(Path::new("/run/x")));
        let joined = args.join(" ");
        assert!(joined.contains("-o StrictHostKeyChecking=yes"), "{joined}");
        assert!(joined.contains("-o BatchMode=yes"));
        assert!(joined.contains("-o ControlPath=/run/x/%C"));
        assert!(joined.ends_with("-p 2222 -l x2gobroker -- srv1 CMD"), "{joined}");
        let plain = a.ssh_args("srv1", "CMD".into(), None).join(" ");
        assert!(plain.contains("ControlMaster=no") && !plain.contains("ControlPath"));
    }

    /// What the server does with the command line: x2gobroker-agent.pl
    /// cuts SSH_ORIGINAL_COMMAND at the first `;` and runs the rest with
    /// `sh`. Hostile values must arrive as the same single arguments.
    #[test]
    fn hostile_values_arrive_as_single_arguments_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("x2gobroker-agent");
        std::fs::write(
            &agent_path,
            "#!/bin/sh\nfor a; do printf '<%s>\\n' \"$a\"; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&agent_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let marker = dir.path().join("pwned");
        let hostile = format!("$(touch {m}) `touch {m}` && touch {m} | x", m = marker.display());
        let key = "no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJSZ7Md alice@127.0.0.1";
        let line = remote_command_line(
            agent_path.to_str().unwrap(),
            "alice",
            "addauthkey",
            &[key, &hostile],
        )
        .unwrap();
        let as_agent_pl = line.split(';').next().unwrap();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(as_agent_pl)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("<alice>\n<addauthkey>\n<{key}>\n<{hostile}>\n")
        );
        assert!(!marker.exists());
        for bad in ["x;touch /tmp/p", "it's", "a\nb"] {
            assert!(remote_command_line("/usr/lib/x2go/x2gobroker-agent", "alice", "t", &[bad]).is_err());
        }
        assert!(remote_command_line("x2gobroker-agent", "alice", "t", &[]).is_err());
        assert!(remote_command_line("/usr/lib/x2go/agent $(id)", "alice", "t", &[]).is_err());
    }

    #[test]
    fn control_directory_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let fresh = dir.path().join("mux");
        assert_eq!(private_dir(&fresh, uid), Ok(()));
        assert_eq!(
            std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(private_dir(&fresh, uid).is_err());
        assert!(private_dir(&fresh, uid + 1).is_err());
    }
}
