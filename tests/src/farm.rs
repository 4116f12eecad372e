//! The X2Go server farm fixture (`tests/farm/farm.sh`): three real X2Go
//! servers (sshd + x2goserver + x2gobroker-agent) on loopback addresses,
//! each in its own UTS + mount namespace, sharing one PostgreSQL session DB.
//!
//! [`Farm::up`] runs `farm.sh up` once per test binary and parses its
//! summary; the helpers below drive `farm.sh` (sessions, sshd on/off) and
//! read the servers' files. See tests/farm/README.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Pause between polls of a condition (not a synchronisation sleep).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// One X2Go server of the farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmServer {
    /// 1-based number, as `farm.sh` counts.
    pub index: usize,
    /// Host name (its UTS namespace's hostname, in every /etc/hosts).
    pub name: String,
    /// Loopback address its sshd listens on.
    pub addr: String,
    pub port: u16,
    /// Directory bind-mounted as `/home` inside this server.
    pub home: PathBuf,
}

/// Session status as x2goserver records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Suspended,
}

impl Status {
    fn letter(self) -> &'static str {
        match self {
            Status::Running => "R",
            Status::Suspended => "S",
        }
    }
}

/// The farm, as `farm.sh up` describes it.
#[derive(Debug, Clone)]
pub struct Farm {
    pub script: PathBuf,
    pub dir: PathBuf,
    pub servers: Vec<FarmServer>,
    /// known_hosts with every server's host key.
    pub known_hosts: PathBuf,
    /// Per server name: (known_hosts without that server's key, a `.ssh`
    /// directory with the broker key and that known_hosts).
    pub without: BTreeMap<String, (PathBuf, PathBuf)>,
    pub broker_user: String,
    pub broker_home: PathBuf,
    pub broker_key: PathBuf,
    pub users: Vec<String>,
    /// Whether this process started the farm (then [`Farm::down_if_started`] stops it).
    pub started_here: bool,
}

static FARM: OnceLock<Result<Farm, String>> = OnceLock::new();

/// The farm script in the source tree.
pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("farm/farm.sh")
}

fn run_script(script: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {} {args:?}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "farm.sh {} failed ({}):\n--- stdout\n{stdout}--- stderr\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// `key=value key=value` fields of one summary line.
fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|f| f.split_once('='))
        .collect()
}

impl Farm {
    /// Parses the summary `farm.sh up` / `status` prints.
    pub fn parse(script: &Path, summary: &str) -> Result<Farm, String> {
        let mut farm = Farm {
            script: script.to_path_buf(),
            dir: PathBuf::new(),
            servers: Vec::new(),
            known_hosts: PathBuf::new(),
            without: BTreeMap::new(),
            broker_user: String::new(),
            broker_home: PathBuf::new(),
            broker_key: PathBuf::new(),
            users: Vec::new(),
            started_here: false,
        };
        let mut state = None;
        for line in summary.lines() {
            let f = fields(line);
            let get = |k: &str| -> Result<&str, String> {
                f.get(k)
                    .copied()
                    .ok_or_else(|| format!("summary line without {k}: {line}"))
            };
            match line.split_once('=').map(|(k, _)| k) {
                Some("farm_dir") => farm.dir = PathBuf::from(get("farm_dir")?),
                Some("server") => farm.servers.push(FarmServer {
                    index: get("index")?.parse().map_err(|e| format!("{line}: {e}"))?,
                    name: get("server")?.to_owned(),
                    addr: get("addr")?.to_owned(),
                    port: get("port")?.parse().map_err(|e| format!("{line}: {e}"))?,
                    home: PathBuf::from(get("home")?),
                }),
                Some("known_hosts") => farm.known_hosts = PathBuf::from(get("known_hosts")?),
                Some("known_hosts_without") => {
                    let ssh_dir = Path::new(get("broker_home")?).join(".ssh");
                    farm.without.insert(
                        get("known_hosts_without")?.to_owned(),
                        (PathBuf::from(get("path")?), ssh_dir),
                    );
                }
                Some("broker_user") => farm.broker_user = get("broker_user")?.to_owned(),
                Some("broker_home") => farm.broker_home = PathBuf::from(get("broker_home")?),
                Some("broker_key") => farm.broker_key = PathBuf::from(get("broker_key")?),
                Some("users") => {
                    farm.users = get("users")?
                        .split(',')
                        .filter(|u| !u.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                Some("state") => state = Some(get("state")?.to_owned()),
                _ => {}
            }
        }
        if state.as_deref() != Some("up") {
            return Err(format!("farm is not up (state={state:?}):\n{summary}"));
        }
        if farm.servers.len() < 3 {
            return Err(format!(
                "farm has {} servers, want at least 3:\n{summary}",
                farm.servers.len()
            ));
        }
        Ok(farm)
    }

    /// Why the farm cannot run here, if it cannot (it needs root).
    pub fn unavailable() -> Option<String> {
        if !nix::unistd::geteuid().is_root() {
            return Some("the farm needs root (sshd, namespaces, PostgreSQL, apt)".into());
        }
        None
    }

    /// `farm.sh up`, once per process; later calls return the same farm.
    pub fn up() -> Result<&'static Farm, String> {
        FARM.get_or_init(|| {
            if let Some(why) = Farm::unavailable() {
                return Err(why);
            }
            let script = script_path();
            let was_up = run_script(&script, &["status"])
                .map(|s| s.lines().any(|l| l == "state=up"))
                .unwrap_or(false);
            let started = Instant::now();
            let summary = run_script(&script, &["up"])?;
            eprintln!("farm: up in {:.1?} (was up before: {was_up})", started.elapsed());
            let mut farm = Farm::parse(&script, &summary)?;
            farm.started_here = !was_up;
            Ok(farm)
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    /// The farm if [`Farm::up`] has brought it up in this process.
    pub fn started() -> Option<&'static Farm> {
        FARM.get().and_then(|r| r.as_ref().ok())
    }

    /// `farm.sh down` if this process brought the farm up and FARM_KEEP is unset.
    pub fn down_if_started(&self) -> Result<(), String> {
        if self.started_here && std::env::var_os("FARM_KEEP").is_none() {
            run_script(&self.script, &["down"]).map(|_| ())
        } else {
            Ok(())
        }
    }

    /// Exclusive use of the farm (one shared session DB) for one test (a
    /// mutex in this process, `flock` on `$FARM_DIR/tests.lock` across processes), reset
    /// to a clean state: no sessions, every sshd running, no auto-login keys.
    pub fn exclusive(&'static self) -> Result<FarmGuard, String> {
        static LOCK: Mutex<()> = Mutex::new(());
        let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // ... and across processes (other test binaries using the same farm).
        let path = self.dir.join("tests.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| format!("lock {}: {e}", path.display()))?;
        self.clear_sessions()?;
        for s in &self.servers {
            self.start_sshd(s.index)?;
            for u in &self.users {
                let f = self.authorized_keys_path(s.index, u);
                if f.exists() {
                    std::fs::write(&f, "").map_err(|e| format!("truncate {}: {e}", f.display()))?;
                }
            }
        }
        Ok(FarmGuard {
            farm: self,
            _flock: flock,
            _guard: guard,
        })
    }

    pub fn server(&self, index: usize) -> &FarmServer {
        self.servers
            .iter()
            .find(|s| s.index == index)
            .unwrap_or_else(|| panic!("no farm server {index}"))
    }

    pub fn server_by_name(&self, name: &str) -> Option<&FarmServer> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The session profile's `host` value: `xfarm1 (127.0.0.11:2222), ...`.
    pub fn profile_hosts(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("{} ({}:{})", s.name, s.addr, s.port))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Registers a session of `user` on server `index` with x2goserver's own
    /// tools; returns the session id.
    pub fn add_session(&self, index: usize, user: &str, status: Status) -> Result<String, String> {
        let out = run_script(
            &self.script,
            &["session", &index.to_string(), user, status.letter()],
        )?;
        out.lines()
            .last()
            .map(str::to_owned)
            .ok_or_else(|| "farm.sh session printed no session id".into())
    }

    pub fn clear_sessions(&self) -> Result<(), String> {
        run_script(&self.script, &["clear-sessions"]).map(|_| ())
    }

    pub fn stop_sshd(&self, index: usize) -> Result<(), String> {
        run_script(&self.script, &["stop-sshd", &index.to_string()]).map(|_| ())
    }

    pub fn start_sshd(&self, index: usize) -> Result<(), String> {
        run_script(&self.script, &["start-sshd", &index.to_string()]).map(|_| ())
    }

    /// The real agent on server `index`, called over SSH as the broker calls
    /// it; the lines after `OK`, or an error if it failed or wrote to stderr.
    pub fn agent(&self, index: usize, user: &str, task: &str) -> Result<Vec<String>, String> {
        let out = Command::new("bash")
            .arg(&self.script)
            .args(["agent", &index.to_string(), user, task])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut lines = stdout.lines();
        if !out.status.success() || !stderr.is_empty() || lines.next() != Some("OK") {
            return Err(format!(
                "agent {task} on server {index}: {}\n{stdout}{stderr}",
                out.status
            ));
        }
        Ok(lines.filter(|l| !l.is_empty()).map(str::to_owned).collect())
    }

    /// Sessions of `user` in the shared DB (`listsessions` via server `via`).
    pub fn sessions(&self, via: usize, user: &str) -> Result<Vec<String>, String> {
        self.agent(via, user, "listsessions")
    }

    /// `%h/.x2go/authorized_keys` of `user` as server `index` sees it.
    pub fn authorized_keys_path(&self, index: usize, user: &str) -> PathBuf {
        self.server(index).home.join(user).join(".x2go/authorized_keys")
    }

    /// Its content ("" when missing).
    pub fn authorized_keys(&self, index: usize, user: &str) -> String {
        std::fs::read_to_string(self.authorized_keys_path(index, user)).unwrap_or_default()
    }

    /// The `.ssh` directory (broker key + known_hosts without server `name`'s key)
    /// to bind-mount over the broker account's `~/.ssh`.
    pub fn ssh_dir_without(&self, name: &str) -> &Path {
        &self
            .without
            .get(name)
            .unwrap_or_else(|| panic!("no server {name}"))
            .1
    }

    /// sshd log of server `index`.
    pub fn sshd_log(&self, index: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("srv{index}/sshd.log"))).unwrap_or_default()
    }
}

/// Held while a test uses the farm.
pub struct FarmGuard {
    pub farm: &'static Farm,
    _flock: nix::fcntl::Flock<std::fs::File>,
    _guard: MutexGuard<'static, ()>,
}

impl std::ops::Deref for FarmGuard {
    type Target = Farm;
    fn deref(&self) -> &Farm {
        self.farm
    }
}

/// Polls `check` until it returns `Some`, or fails after `deadline`.
pub fn poll<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T, String> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > end {
            return Err(format!("timed out after {deadline:?} waiting for {what}"));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_summary() {
        let summary = "farm_dir=/f\n\
            server=xfarm1 addr=127.0.0.11 port=2222 sshd=up home=/f/srv1/home index=1\n\
            server=xfarm2 addr=127.0.0.12 port=2222 sshd=down home=/f/srv2/home index=2\n\
            server=xfarm3 addr=127.0.0.13 port=2222 sshd=up home=/f/srv3/home index=3\n\
            known_hosts=/f/known_hosts\n\
            known_hosts_without=xfarm2 path=/f/kh.without-xfarm2 broker_home=/f/bh/without-xfarm2\n\
            broker_user=x2gobroker\nbroker_home=/var/lib/x2gobroker\n\
            broker_key=/var/lib/x2gobroker/.ssh/id_rsa\npostgres=127.0.0.1:25432\n\
            users=xbt-alice,xbt-bob\nstate=up\n";
        let f = Farm::parse(Path::new("/x/farm.sh"), summary).unwrap();
        assert_eq!(f.servers.len(), 3);
        assert_eq!(f.server(2).addr, "127.0.0.12");
        assert_eq!(
            f.profile_hosts(),
            "xfarm1 (127.0.0.11:2222), xfarm2 (127.0.0.12:2222), xfarm3 (127.0.0.13:2222)"
        );
        assert_eq!(
            f.ssh_dir_without("xfarm2"),
            Path::new("/f/bh/without-xfarm2/.ssh")
        );
        assert_eq!(f.users, ["xbt-alice", "xbt-bob"]);
        assert_eq!(
            f.authorized_keys_path(3, "xbt-bob"),
            Path::new("/f/srv3/home/xbt-bob/.x2go/authorized_keys")
        );
        assert!(Farm::parse(Path::new("/x"), &summary.replace("state=up", "state=down")).is_err());
    }
}
