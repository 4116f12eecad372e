//! Pending removals of auto-login keys. A key deployed for a selected
//! session is removed again after [`crate::core::autologin::KEY_LIFETIME`];
//! the removal is written to `key-removal-directory` first, so it survives
//! a daemon restart (the original keeps it in a timer thread and forgets
//! it when it stops) and an SSH-mode worker, which exits at once, can hand
//! it to the daemon. The daemon performs due removals ([`run`]).
//!
//! One file per removal, named `<due>-<random>.removal`, written to a
//! temporary name and renamed, before the key is deployed; whoever carries
//! it out claims it by renaming it to `.claimed`, so each removal happens
//! once. The directory must be the broker account's and closed to others;
//! every value in a file is validated again when read back. Where no daemon
//! runs (an SSH-mode worker), a detached runner of our own carries the
//! removals out ([`ensure_runner`]).

use crate::core::agent::quote;
use crate::core::agent::remote::HostKeyPolicy;
use crate::core::agent::{Agent, LocalAgent, RemoteAgent};
use crate::core::broker::Shared;
use crate::core::state::ClaimId;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the daemon looks for due removals.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// A failed removal is tried again after this long, this many times.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
pub const MAX_ATTEMPTS: u32 = 10;

/// Which agent deployed the key (a remote one runs the configured agent
/// command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAddress {
    /// The local agent program that deployed the key.
    Local { command: String },
    Remote {
        hostname: String,
        hostaddr: String,
        port: u16,
        policy: HostKeyPolicy,
    },
}

impl AgentAddress {
    pub fn of(agent: &Agent) -> AgentAddress {
        match agent {
            Agent::Local(a) => AgentAddress::Local {
                command: a.command.to_string_lossy().into_owned(),
            },
            Agent::Remote(r) => AgentAddress::Remote {
                hostname: r.hostname.clone(),
                hostaddr: r.hostaddr.clone(),
                port: r.port,
                policy: r.policy,
            },
        }
    }

    /// The agent, with the current configuration's command and user.
    pub fn agent(&self, agent_cmd: &str, agent_user: &str) -> Agent {
        match self {
            AgentAddress::Local { command } => Agent::Local(LocalAgent {
                command: command.into(),
            }),
            AgentAddress::Remote {
                hostname,
                hostaddr,
                port,
                policy,
            } => Agent::Remote(RemoteAgent {
                hostname: hostname.clone(),
                hostaddr: hostaddr.clone(),
                port: *port,
                policy: *policy,
                agent_user: agent_user.to_owned(),
                agent_cmd: agent_cmd.to_owned(),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// Seconds since the epoch.
    pub due: u64,
    pub attempts: u32,
    pub agent: AgentAddress,
    pub user: String,
    pub keys_file: String,
    /// The authorized_keys line that was deployed.
    pub line: String,
}

fn host_name_ok(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 255
        && !value.starts_with('-')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'))
}

impl Removal {
    pub(crate) fn to_text(&self) -> String {
        let mut out = format!("due {}\nattempts {}\n", self.due, self.attempts);
        match &self.agent {
            AgentAddress::Local { command } => out.push_str(&format!("agent local\ncommand {command}\n")),
            AgentAddress::Remote {
                hostname,
                hostaddr,
                port,
                policy,
            } => out.push_str(&format!(
                "agent ssh\nhost {hostname}\naddr {hostaddr}\nport {port}\npolicy {}\n",
                policy.name()
            )),
        }
        out.push_str(&format!(
            "user {}\nkeys {}\nline {}\n",
            self.user, self.keys_file, self.line
        ));
        out
    }

    pub(crate) fn from_text(text: &str) -> Option<Removal> {
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')))
        };
        let agent = match get("agent")? {
            "local" => {
                let command = get("command")?;
                let plain = command.starts_with('/')
                    && command
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
                if !plain {
                    return None;
                }
                AgentAddress::Local {
                    command: command.to_owned(),
                }
            }
            "ssh" => {
                let (hostname, hostaddr) = (get("host")?, get("addr")?);
                if !host_name_ok(hostname) || !host_name_ok(hostaddr) {
                    return None;
                }
                AgentAddress::Remote {
                    hostname: hostname.to_owned(),
                    hostaddr: hostaddr.to_owned(),
                    port: get("port")?.parse().ok()?,
                    policy: HostKeyPolicy::parse(get("policy")?),
                }
            }
            _ => return None,
        };
        let user = quote::user_name(get("user")?).ok()?;
        let keys_file = quote::keys_path(get("keys")?).ok()?;
        let line = get("line")?;
        if !crate::core::autologin::is_deployable_line(line) {
            return None;
        }
        Some(Removal {
            due: get("due")?.parse().ok()?,
            attempts: get("attempts")?.parse().ok()?,
            agent,
            user: user.to_owned(),
            keys_file: keys_file.to_owned(),
            line: line.to_owned(),
        })
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The directory of pending removals.
#[derive(Debug, Clone)]
pub struct RemovalStore {
    dir: PathBuf,
}

const SUFFIX: &str = ".removal";
const CLAIMED: &str = ".claimed";

impl RemovalStore {
    /// The store, its directory created (mode 0700) if missing. It must
    /// be this account's and writable by nobody else: what it holds is run.
    pub fn open(dir: &Path) -> Result<RemovalStore, String> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let err = |e: String| format!("key-removal-directory {}: {e}", dir.display());
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| err(e.to_string()))?;
        }
        let meta = std::fs::symlink_metadata(dir).map_err(|e| err(e.to_string()))?;
        let uid = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
            return Err(err(format!(
                "must be a directory of uid {uid} that no one else can write to"
            )));
        }
        Ok(RemovalStore { dir: dir.to_owned() })
    }

    pub fn save(&self, removal: &Removal) -> std::io::Result<PathBuf> {
        let name = format!("{:020}-{}", removal.due, uuid::Uuid::new_v4().simple());
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(format!("{name}{SUFFIX}"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(removal.to_text().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Claims every removal due at `now`: each is returned to one caller
    /// only. Unreadable files are moved aside with a log line.
    pub fn claim_due(&self, now: u64) -> Vec<(PathBuf, Removal)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(SUFFIX))
            .collect();
        names.sort();
        let mut due = Vec::new();
        for name in names {
            let Some(when) = name.split('-').next().and_then(|d| d.parse::<u64>().ok()) else {
                continue;
            };
            if when > now {
                break;
            }
            let path = self.dir.join(&name);
            let claimed = self.dir.join(format!("{name}{CLAIMED}"));
            if std::fs::rename(&path, &claimed).is_err() {
                continue; // another process took it
            }
            match std::fs::read_to_string(&claimed)
                .ok()
                .as_deref()
                .and_then(Removal::from_text)
            {
                Some(removal) => due.push((claimed, removal)),
                None => {
                    log::error!("{}: not a pending key removal, set aside", claimed.display());
                    let _ = std::fs::rename(&claimed, self.dir.join(format!("{name}.invalid")));
                }
            }
        }
        due
    }

    /// Claims left behind by a process that died are pending again.
    pub fn release_stale_claims(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(original) = name.strip_suffix(CLAIMED) {
                let _ = std::fs::rename(entry.path(), self.dir.join(original));
            }
        }
    }

    /// The removal was carried out (or given up): forget it.
    pub fn finish(&self, claimed: &Path) {
        if let Err(e) = std::fs::remove_file(claimed) {
            log::warn!("{}: {e}", claimed.display());
        }
    }

    /// Try again later.
    pub fn retry(&self, claimed: &Path, mut removal: Removal) {
        removal.attempts += 1;
        removal.due = now() + RETRY_AFTER.as_secs();
        self.finish(claimed);
        if let Err(e) = self.save(&removal) {
            log::error!("cannot keep the key removal for a retry: {e}");
        }
    }

    /// How many removals are pending, claimed ones included (for status
    /// and tests).
    pub fn pending(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .map(|e| {
                e.flatten()
                    .filter(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        name.ends_with(SUFFIX) || name.ends_with(&format!("{SUFFIX}{CLAIMED}"))
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Carries out one removal; true when the agent confirmed it.
pub async fn perform(removal: &Removal, agent_cmd: &str, agent_user: &str) -> bool {
    let agent = removal.agent.agent(agent_cmd, agent_user);
    match agent
        .delete_authorized_key(&removal.user, &removal.line, &removal.keys_file)
        .await
    {
        Ok(true) => {
            log::info!(
                "removed the auto-login key of {} through the {}",
                removal.user,
                agent.describe()
            );
            true
        }
        Ok(false) => {
            log::warn!(
                "the {} did not confirm removing a key of {}",
                agent.describe(),
                removal.user
            );
            false
        }
        Err(e) => {
            log::warn!(
                "removing a key of {} through the {}: {e}",
                removal.user,
                agent.describe()
            );
            false
        }
    }
}

/// Set in a process whose own loop ([`run`]) carries out removals.
static LOOP_RUNS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// First argument that runs [`run_detached`] (set only by [`ensure_runner`]).
pub const RUNNER_FLAG: &str = "--run-key-removals";
/// A detached runner gives up after this long even with removals pending
/// (the daemon, or the next runner, takes them over).
pub const RUNNER_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Makes sure someone carries out the store's removals: the daemon's own
/// loop, else a detached runner (this program with [`RUNNER_FLAG`]), at
/// most one per store (it holds a lock), which ends when nothing is left.
pub fn ensure_runner(store: &crate::core::state::Store, env: &crate::core::config::Environment) {
    if LOOP_RUNS.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    // A shared store's removals are carried out by the daemons (any of them).
    let crate::core::state::Store::Files(files) = store else {
        return;
    };
    let Ok(store) = files.removals() else {
        return;
    };
    let spawned = std::env::current_exe().and_then(|exe| {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(exe)
            .arg(RUNNER_FLAG)
            .arg(&store.dir)
            .env_clear()
            .env("X2GOBROKER_AGENT_CMD", &env.agent_cmd)
            .env("X2GOBROKER_AGENT_USER", &env.agent_user)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
    });
    if let Err(e) = spawned {
        log::error!("cannot start the key removal runner: {e}; the daemon removes the keys when it runs");
    }
}

/// The detached runner: carries out due removals of `dir` until none is
/// left (or [`RUNNER_LIFETIME`]); exits at once if another runner holds the
/// store's lock.
pub fn run_detached(dir: &Path) -> std::process::ExitCode {
    let Ok(store) = RemovalStore::open(dir) else {
        return std::process::ExitCode::FAILURE;
    };
    let Ok(lock) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(".runner.lock"))
    else {
        return std::process::ExitCode::FAILURE;
    };
    let Ok(_held) = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) else {
        return std::process::ExitCode::SUCCESS; // another runner is at it
    };
    let agent_cmd = std::env::var("X2GOBROKER_AGENT_CMD").unwrap_or_default();
    let agent_user = std::env::var("X2GOBROKER_AGENT_USER").unwrap_or_else(|_| "x2gobroker".into());
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return std::process::ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let started = std::time::Instant::now();
        while store.pending() > 0 && started.elapsed() < RUNNER_LIFETIME {
            for (claimed, removal) in store.claim_due(now()) {
                carry_out(&store, claimed, removal, &agent_cmd, &agent_user).await;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    });
    std::process::ExitCode::SUCCESS
}

/// Performs a claimed removal; on failure it is retried later, up to
/// [`MAX_ATTEMPTS`].
async fn carry_out(
    store: &RemovalStore,
    claimed: PathBuf,
    removal: Removal,
    agent_cmd: &str,
    agent_user: &str,
) {
    if perform(&removal, agent_cmd, agent_user).await {
        store.finish(&claimed);
    } else if removal.attempts + 1 >= MAX_ATTEMPTS {
        log::error!(
            "giving up removing an auto-login key of {} after {MAX_ATTEMPTS} attempts",
            removal.user
        );
        store.finish(&claimed);
    } else {
        store.retry(&claimed, removal);
    }
}

/// The same for a removal claimed from the configured store.
async fn carry_out_claimed(
    store: &crate::core::state::Store,
    claim: ClaimId,
    mut removal: Removal,
    agent_cmd: &str,
    agent_user: &str,
) {
    let result = if perform(&removal, agent_cmd, agent_user).await {
        store.finish_removal(&claim).await
    } else if removal.attempts + 1 >= MAX_ATTEMPTS {
        log::error!(
            "giving up removing an auto-login key of {} after {MAX_ATTEMPTS} attempts",
            removal.user
        );
        store.finish_removal(&claim).await
    } else {
        removal.attempts += 1;
        removal.due = now() + RETRY_AFTER.as_secs();
        store.retry_removal(&claim, &removal).await
    };
    // The claim's lease ends and another runner tries again.
    if let Err(e) = result {
        log::error!("key removal of {}: {e}", removal.user);
    }
}

/// The daemon's loop: claims due removals from the configured store and
/// performs each in its own task, so a hung server delays no other removal.
pub async fn run(shared: Shared) {
    LOOP_RUNS.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut released = None::<String>;
    loop {
        let broker = shared.current();
        let store = broker.state.clone();
        let described = store.describe();
        if released.as_deref() != Some(described.as_str()) {
            store.release_stale_claims();
            released = Some(described);
        }
        match store.claim_due_removals(now()).await {
            Ok(due) => {
                for (claim, removal) in due {
                    let (store, cmd, user) = (
                        store.clone(),
                        broker.env.agent_cmd.clone(),
                        broker.env.agent_user.clone(),
                    );
                    tokio::spawn(async move { carry_out_claimed(&store, claim, removal, &cmd, &user).await });
                }
            }
            Err(e) => log::debug!("key removals: {e}"),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removal(due: u64) -> Removal {
        Removal {
            due,
            attempts: 0,
            agent: AgentAddress::Remote {
                hostname: "srv2".into(),
                hostaddr: "127.0.0.12".into(),
                port: 2222,
                policy: HostKeyPolicy::Reject,
            },
            user: "xbt-alice".into(),
            keys_file: "%h/.x2go/authorized_keys".into(),
            line: crate::core::autologin::authorized_line(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJSZ7MdQgSMO/vhrqv7CR+v6PfgOa4veOBWC7hnpVnxc",
                "xbt-alice",
                "127.0.0.1",
            ),
        }
    }

    #[test]
    fn round_trip_and_validation() {
        let r = removal(5);
        assert_eq!(Removal::from_text(&r.to_text()), Some(r.clone()));
        let mut local = r.clone();
        local.agent = AgentAddress::Local {
            command: "/usr/lib/x2go/x2gobroker-agent".into(),
        };
        assert_eq!(Removal::from_text(&local.to_text()), Some(local.clone()));
        let hostile = local.to_text().replace("command /usr", "command $(id)/usr");
        assert_eq!(Removal::from_text(&hostile), None);
        // Only lines as this broker deploys them are removed.
        let hostile = r.to_text().replace("ssh-ed25519", "command=\"x\" ssh-ed25519");
        assert_eq!(Removal::from_text(&hostile), None);
        let hostile = r.to_text().replace("user xbt-alice", "user x;reboot");
        assert_eq!(Removal::from_text(&hostile), None);
        let hostile = r.to_text().replace("host srv2", "host -oProxyCommand=x");
        assert_eq!(Removal::from_text(&hostile), None);
    }

    #[test]
    fn the_store_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(RemovalStore::open(&open).is_err());
        let fresh = dir.path().join("fresh");
        RemovalStore::open(&fresh).unwrap();
        assert_eq!(
            std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn due_removals_are_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = RemovalStore::open(&dir.path().join("r")).unwrap();
        store.save(&removal(100)).unwrap();
        store.save(&removal(200)).unwrap();
        std::fs::write(dir.path().join("r/00000000000000000050-x.removal"), "garbage").unwrap();
        assert_eq!(store.pending(), 3);
        assert!(store.claim_due(99).is_empty());
        let due = store.claim_due(150);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1, removal(100));
        assert!(store.claim_due(150).is_empty(), "claimed only once");
        // A claim left by a dead process becomes pending again.
        store.release_stale_claims();
        assert_eq!(store.claim_due(150).len(), 1);
        let (claimed, r) = store.claim_due(300).pop().unwrap();
        store.retry(&claimed, r);
        assert_eq!(store.pending(), 2, "the retried one and the other, still claimed");
        assert!(dir
            .path()
            .join("r/00000000000000000050-x.removal.invalid")
            .exists());
    }
}
