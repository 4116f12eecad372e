//! Session scripts: the original's `pre_auth_scripts`, `post_auth_scripts`
//! and `select_session_scripts` hooks. The original imports Python modules
//! into the broker; ours runs the executables the configuration names
//! (absolute paths, root-owned, writable by nobody else), as the daemon
//! user, from an argument vector (no shell), with a deadline, one after
//! another in the configured order.
//!
//! Contract (docs/OPERATIONS.md "Session scripts"): a JSON object on
//! standard input with the fields the original passes (`stage`, `user`,
//! `task`, `profile_id`, `client_address`, `cookie`, `authed`, `server`;
//! `password` only for scripts listed in `session-scripts-with-password`).
//! Exit status 0 lets the request go on; standard output is empty or a JSON
//! object whose fields replace the request's, where the stage allows it and
//! the value is valid (fields echoed back unchanged are fine). Anything
//! else — a non-zero exit, a crash, the deadline passing, output that is not
//! such an object, a change the stage does not allow, an invalid value, a
//! script that cannot be started — refuses the request.

use crate::core::audit::shown;
use crate::core::config::GlobalConfig;
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most a script may print on standard output (and what of its standard
/// error is kept for the log).
const MAX_OUTPUT: u64 = 64 * 1024;
const MAX_STDERR_LOGGED: u64 = 2048;
/// The tasks a pre_auth or post_auth script may switch to.
const TASKS: [&str; 5] = [
    "listsessions",
    "listprofiles",
    "selectsession",
    "setpass",
    "testcon",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    PreAuth,
    PostAuth,
    SelectSession,
}

impl Stage {
    /// The configuration key, which is also the `stage` field.
    pub fn key(self) -> &'static str {
        match self {
            Stage::PreAuth => "pre_auth_scripts",
            Stage::PostAuth => "post_auth_scripts",
            Stage::SelectSession => "select_session_scripts",
        }
    }

    fn scripts(self, global: &GlobalConfig) -> &[String] {
        match self {
            Stage::PreAuth => &global.pre_auth_scripts,
            Stage::PostAuth => &global.post_auth_scripts,
            Stage::SelectSession => &global.select_session_scripts,
        }
    }

    /// The fields a script of this stage may change.
    fn changeable(self) -> &'static [&'static str] {
        match self {
            Stage::PreAuth => &["user", "task", "profile_id"],
            Stage::PostAuth => &["task", "profile_id"],
            Stage::SelectSession => &["server"],
        }
    }
}

/// What the scripts of one stage see.
pub struct ScriptInput<'a> {
    pub user: &'a str,
    pub task: &'a str,
    pub profile_id: &'a str,
    pub client: IpAddr,
    pub cookie: &'a str,
    pub password: &'a str,
    pub authed: Option<bool>,
    pub server: Option<&'a str>,
}

/// The fields the scripts changed (validated).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub user: Option<String>,
    pub task: Option<String>,
    pub profile_id: Option<String>,
    pub server: Option<String>,
}

/// A script refused the request, or failed (why, for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// Runs the stage's scripts in order, each seeing the changes of those
/// before it. No scripts: no changes.
pub async fn run_stage(
    global: &GlobalConfig,
    stage: Stage,
    input: &ScriptInput<'_>,
) -> Result<Changes, Refused> {
    let mut changes = Changes::default();
    let deadline = Duration::from_secs(global.session_script_timeout.clamp(1, 3600) as u64);
    for script in stage.scripts(global) {
        let with_password = global.session_scripts_with_password.contains(script);
        let object = input_object(stage, input, &changes, with_password);
        let output = run_script(Path::new(script), &object, deadline)
            .await
            .map_err(|e| Refused(format!("{} script {script}: {e}", stage.key())))?;
        apply(stage, &object, output, &mut changes)
            .map_err(|e| Refused(format!("{} script {script}: {e}", stage.key())))?;
    }
    Ok(changes)
}

fn input_object(
    stage: Stage,
    input: &ScriptInput<'_>,
    changes: &Changes,
    with_password: bool,
) -> Map<String, Value> {
    let pick = |changed: &Option<String>, original: &str| Value::from(changed.as_deref().unwrap_or(original));
    let mut object = Map::new();
    object.insert("stage".into(), stage.key().into());
    object.insert("user".into(), pick(&changes.user, input.user));
    object.insert("task".into(), pick(&changes.task, input.task));
    object.insert("profile_id".into(), pick(&changes.profile_id, input.profile_id));
    object.insert("client_address".into(), input.client.to_string().into());
    object.insert("cookie".into(), input.cookie.into());
    object.insert("authed".into(), input.authed.map_or(Value::Null, Value::from));
    let server = changes.server.as_deref().or(input.server);
    object.insert("server".into(), server.map_or(Value::Null, Value::from));
    if with_password {
        object.insert("password".into(), input.password.into());
    }
    object
}

/// Checks a script's answer against what it was given and what its stage
/// may change; records the changes.
fn apply(
    stage: Stage,
    given: &Map<String, Value>,
    output: Vec<u8>,
    changes: &mut Changes,
) -> Result<(), String> {
    if output.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let answer: Map<String, Value> =
        serde_json::from_slice(&output).map_err(|e| format!("output is not a JSON object ({e})"))?;
    for (key, value) in answer {
        if given.get(&key) == Some(&value) {
            continue;
        }
        if !stage.changeable().contains(&key.as_str()) {
            return Err(format!("may not change {}", shown(&key)));
        }
        let Value::String(text) = value else {
            return Err(format!("{key} must be a string"));
        };
        let valid = match key.as_str() {
            "user" => valid_user_name(&text),
            "task" => TASKS.contains(&text.as_str()),
            "profile_id" => valid_profile_id(&text),
            _ => valid_server(&text),
        };
        if !valid {
            return Err(format!("invalid {key} {}", shown(&text)));
        }
        let slot = match key.as_str() {
            "user" => &mut changes.user,
            "task" => &mut changes.task,
            "profile_id" => &mut changes.profile_id,
            _ => &mut changes.server,
        };
        *slot = Some(text);
    }
    Ok(())
}

/// A user name as NSS, PAM and the agents take it: letters, digits and
/// `._-@\$`, not starting with `-`, at most 256 characters.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_alphanumeric() || "._-@\\$".contains(c))
}

/// A session profile ID (an INI section name): printable, one line.
fn valid_profile_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_control)
}

/// An IP address or a DNS host name (RFC 1123 labels).
pub fn valid_server(name: &str) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

/// Runs one script: the object on its standard input, its standard output
/// back (bounded) if it exits 0 within `deadline`. The script is its own
/// process group, which is killed at the deadline (children included).
async fn run_script(
    program: &Path,
    input: &Map<String, Value>,
    deadline: Duration,
) -> Result<Vec<u8>, String> {
    if !program.is_absolute() {
        return Err("not an absolute path (the original's Python module names are not run)".into());
    }
    x2gobroker_sys::files::check_program(program)?;
    let mut child = tokio::process::Command::new(program)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let group = child.id().map(|id| nix::unistd::Pid::from_raw(id as i32));
    // A request abandoned mid-run (its deadline, the client gone) drops
    // this future: kill_on_drop ends the script, this guard its group.
    let unreaped = GroupKiller(std::sync::atomic::AtomicI32::new(group.map_or(0, |g| g.as_raw())));
    let input = serde_json::to_vec(input).map_err(|e| e.to_string())?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let exchange = async {
        let feed = async {
            if let Some(mut stdin) = stdin {
                // A script that does not read its input is not an error.
                let _ = stdin.write_all(&input).await;
            }
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            if let Some(s) = stdout {
                let _ = s.take(MAX_OUTPUT + 1).read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(mut s) = stderr {
                let _ = (&mut s).take(MAX_STDERR_LOGGED).read_to_end(&mut err).await;
                // The rest is read and dropped: a closed pipe would kill a
                // script that merely logs a lot.
                let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
            }
        };
        tokio::join!(feed, read_out, read_err);
        let status = child.wait().await;
        // Reaped: the group id may be reused from now on.
        unreaped.0.store(0, std::sync::atomic::Ordering::Relaxed);
        (status, out, err)
    };
    let Ok((status, out, err)) = tokio::time::timeout(deadline, exchange).await else {
        // Not reaped yet, so the group is still the script's: it and
        // whatever it started go.
        drop(unreaped);
        return Err(format!("still running after {deadline:?}; killed"));
    };
    let status = status.map_err(|e| format!("cannot wait for it: {e}"))?;
    if !err.is_empty() {
        log::info!(
            "script {} said: {}",
            program.display(),
            shown(&String::from_utf8_lossy(&err))
        );
    }
    // Checked first: a script cut off there may die of the closed pipe.
    if out.len() as u64 > MAX_OUTPUT {
        return Err(format!("printed more than {MAX_OUTPUT} bytes"));
    }
    if !status.success() {
        return Err(match status.code() {
            Some(code) => format!("refused (exit status {code})"),
            None => format!("crashed ({status})"),
        });
    }
    Ok(out)
}

/// Kills a script's process group when dropped, unless the script was
/// reaped (then its group id may already belong to someone else).
/// (0: none.)
struct GroupKiller(std::sync::atomic::AtomicI32);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        let group = self.0.swap(0, std::sync::atomic::Ordering::Relaxed);
        if group > 0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_scripts_may_set() {
        assert!(valid_user_name("xbt-alice") && valid_user_name("DOMAIN\\bob") && valid_user_name("a@b.c"));
        assert!(
            !valid_user_name("")
                && !valid_user_name("-rf")
                && !valid_user_name("a b")
                && !valid_user_name("a\n")
        );
        assert!(valid_server("127.0.0.12") && valid_server("::1") && valid_server("x2go-1.example.org"));
        assert!(
            !valid_server("a b") && !valid_server("-x") && !valid_server("a..b") && !valid_server("h;rm")
        );
        assert!(!valid_server(&"a".repeat(64)));
    }

    #[test]
    fn answers_are_checked_against_the_stage() {
        let input = ScriptInput {
            user: "u",
            task: "listsessions",
            profile_id: "",
            client: IpAddr::from([127, 0, 0, 1]),
            cookie: "",
            password: "secret",
            authed: None,
            server: None,
        };
        let given = input_object(Stage::PreAuth, &input, &Changes::default(), false);
        assert!(!given.contains_key("password"), "only for scripts listed");
        assert!(input_object(Stage::PreAuth, &input, &Changes::default(), true).contains_key("password"));
        let mut changes = Changes::default();
        let echo = serde_json::to_vec(&given).unwrap();
        assert_eq!(apply(Stage::PreAuth, &given, echo, &mut changes), Ok(()));
        assert_eq!(changes, Changes::default(), "an echo changes nothing");
        let out = br#"{"user": "v", "task": "selectsession"}"#.to_vec();
        assert_eq!(apply(Stage::PreAuth, &given, out, &mut changes), Ok(()));
        assert_eq!(
            (changes.user.as_deref(), changes.task.as_deref()),
            (Some("v"), Some("selectsession"))
        );
        let bad = |stage, out: &[u8]| apply(stage, &given, out.to_vec(), &mut Changes::default()).is_err();
        assert!(
            bad(Stage::PostAuth, br#"{"user": "root"}"#),
            "post_auth may not change the user"
        );
        assert!(bad(Stage::PreAuth, br#"{"client_address": "10.0.0.1"}"#));
        assert!(bad(Stage::PreAuth, br#"{"authed": true}"#));
        assert!(bad(Stage::PreAuth, br#"{"task": "rm -rf"}"#));
        assert!(bad(Stage::SelectSession, br#"{"server": "a b"}"#));
        assert!(bad(Stage::SelectSession, br#"{"server": 7}"#));
        assert!(bad(Stage::PreAuth, b"[1, 2]"));
        assert!(bad(Stage::PreAuth, b"garbage"));
        assert!(!bad(Stage::PreAuth, b" \n"), "no output, no changes");
    }
}
