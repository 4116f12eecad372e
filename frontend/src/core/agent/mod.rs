//! The X2Go broker agent (`x2gobroker-agent <user> <task> [args]`): run
//! locally (agent query mode LOCAL, [`local`]) or on an X2Go server over
//! SSH (mode SSH, [`remote`]). Answers: first line `OK`, then data lines.
//!
//! Every value sent is validated first ([`quote`]); a call has a deadline.
//! As in the original, a local agent that fails just yields no data, while
//! a remote agent that cannot be reached is an error the selection logic
//! reacts to ([`AgentError`]).

pub mod local;
pub mod quote;
pub mod remote;

pub use local::LocalAgent;
pub use remote::RemoteAgent;

use std::time::Duration;

/// Deadline of one agent call.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest agent answer read.
pub const MAX_ANSWER: usize = 1024 * 1024;

/// The call did not reach the agent (the original's X2GoBrokerAgentException).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentError(pub String);

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<quote::UnsafeValue> for AgentError {
    fn from(e: quote::UnsafeValue) -> AgentError {
        AgentError(e.to_string())
    }
}

/// What an agent said: whether its first line was `OK`, and the data lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    pub lines: Vec<String>,
}

impl Answer {
    /// The original's reading: any output on stderr makes the call failed.
    pub fn parse(stdout: &[u8], stderr: &[u8]) -> Answer {
        if !stderr.is_empty() {
            log::warn!(
                "agent reported an error: {}",
                String::from_utf8_lossy(&stderr[..stderr.len().min(512)]).replace('\n', " ")
            );
            return Answer::default();
        }
        let text = String::from_utf8_lossy(stdout);
        let mut lines = text.split('\n');
        if lines.next().is_some_and(|l| l.starts_with("OK")) {
            Answer {
                ok: true,
                lines: lines.filter(|l| !l.is_empty()).map(str::to_owned).collect(),
            }
        } else {
            Answer::default()
        }
    }

    /// `listsessions`: one pipe-separated line per session.
    pub fn sessions(self) -> Vec<SessionLine> {
        self.lines.into_iter().map(SessionLine).collect()
    }

    /// `findbusyservers`: session counts per server (`count:server`).
    pub fn busy_servers(&self) -> Vec<(String, i64)> {
        named_numbers(&self.lines, ':', true)
    }

    /// `getservers`: session counts per server (`server count`).
    pub fn server_counts(&self) -> Vec<(String, i64)> {
        named_numbers(&self.lines, ' ', false)
    }

    /// `checkload`: `key:value` pairs with numeric values.
    pub fn load_values(&self) -> Vec<(String, f64)> {
        named_numbers(&self.lines, ':', false)
    }
}

/// One line of the agent's `listsessions`, pipe-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLine(pub String);

impl SessionLine {
    fn field(&self, i: usize) -> &str {
        self.0.split('|').nth(i).unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.field(1)
    }
    pub fn server(&self) -> &str {
        self.field(3)
    }
    pub fn status(&self) -> &str {
        self.field(4)
    }
}

/// An agent to ask: the local one or one on an X2Go server.
#[derive(Debug, Clone)]
pub enum Agent {
    Local(LocalAgent),
    Remote(RemoteAgent),
}

impl Agent {
    /// Runs `task` for `user`. The user name is validated here, task
    /// arguments by the typed methods below.
    async fn call(&self, user: &str, task: &str, args: &[&str]) -> Result<Answer, AgentError> {
        let user = quote::user_name(user)?;
        let started = std::time::Instant::now();
        let answer = match self {
            Agent::Local(a) => Ok(a.call(user, task, args).await),
            Agent::Remote(a) => a.call(user, task, args).await,
        };
        let ok = matches!(&answer, Ok(Answer { ok: true, .. }));
        crate::core::stats::STATS.agent_call(task, ok, started.elapsed());
        let answer = answer?;
        log::info!(
            "broker agent answered {task}: {} ({} lines)",
            if answer.ok { "OK" } else { "failed" },
            answer.lines.len()
        );
        Ok(answer)
    }

    /// A task without arguments (ping, listsessions, findbusyservers,
    /// getservers, checkload, availabletasks) as the agent answered it, for
    /// x2gobroker-testagent.
    pub async fn plain_task(&self, user: &str, task: &str) -> Result<Answer, AgentError> {
        const PLAIN: [&str; 6] = [
            "ping",
            "listsessions",
            "findbusyservers",
            "getservers",
            "checkload",
            "availabletasks",
        ];
        if !PLAIN.contains(&task) {
            return Err(AgentError(format!("{task} is not a task without arguments")));
        }
        self.call(user, task, &[]).await
    }

    /// `ping` (the original pings with the user name `foo`).
    pub async fn ping(&self) -> bool {
        matches!(self.call("foo", "ping", &[]).await, Ok(Answer { ok: true, .. }))
    }

    pub async fn list_sessions(&self, user: &str) -> Result<Vec<SessionLine>, AgentError> {
        Ok(self.call(user, "listsessions", &[]).await?.sessions())
    }

    /// Session counts per server as the agent reports them (`count:server`).
    pub async fn find_busy_servers(&self, user: &str) -> Result<Vec<(String, i64)>, AgentError> {
        Ok(self.call(user, "findbusyservers", &[]).await?.busy_servers())
    }

    /// Session counts per server from `getservers` (`server count`).
    pub async fn get_servers(&self, user: &str) -> Result<Vec<(String, i64)>, AgentError> {
        Ok(self.call(user, "getservers", &[]).await?.server_counts())
    }

    /// `checkload`: `key:value` pairs with numeric values.
    pub async fn check_load(&self) -> Result<Vec<(String, f64)>, AgentError> {
        Ok(self.call("foo", "checkload", &[]).await?.load_values())
    }

    pub async fn available_tasks(&self, user: &str) -> Result<Vec<String>, AgentError> {
        Ok(self.call(user, "availabletasks", &[]).await?.lines)
    }

    pub async fn suspend_session(&self, user: &str, session: &str) -> Result<bool, AgentError> {
        let session = quote::session_name(session)?;
        Ok(self.call(user, "suspendsession", &[session]).await?.ok)
    }

    pub async fn terminate_session(&self, user: &str, session: &str) -> Result<bool, AgentError> {
        let session = quote::session_name(session)?;
        Ok(self.call(user, "terminatesession", &[session]).await?.ok)
    }

    /// `addauthkey`: deploys `line` (an authorized_keys line as this broker
    /// makes them) into `keys_file` of `user`.
    pub async fn add_authorized_key(
        &self,
        user: &str,
        line: &str,
        keys_file: &str,
    ) -> Result<bool, AgentError> {
        self.authorized_key("addauthkey", user, line, keys_file).await
    }

    /// `delauthkey`: the agent removes the line with a sed expression.
    pub async fn delete_authorized_key(
        &self,
        user: &str,
        line: &str,
        keys_file: &str,
    ) -> Result<bool, AgentError> {
        self.authorized_key("delauthkey", user, line, keys_file).await
    }

    async fn authorized_key(
        &self,
        task: &str,
        user: &str,
        line: &str,
        keys_file: &str,
    ) -> Result<bool, AgentError> {
        if !crate::core::autologin::is_deployable_line(line) {
            return Err(AgentError(format!(
                "refusing to send a key line the broker did not make to {task}"
            )));
        }
        let keys_file = quote::keys_path(keys_file)?;
        Ok(self.call(user, task, &[line, keys_file]).await?.ok)
    }

    /// Where the agent runs, for log lines.
    pub fn describe(&self) -> String {
        match self {
            Agent::Local(_) => "local agent".into(),
            Agent::Remote(r) => format!("agent on {} ({}:{})", r.hostname, r.hostaddr, r.port),
        }
    }
}

/// `name<sep>number` lines (`number<sep>name` when `number_first`) as
/// (name, number); other lines are skipped (the original crashes on them).
fn named_numbers<T: std::str::FromStr>(lines: &[String], sep: char, number_first: bool) -> Vec<(String, T)> {
    lines
        .iter()
        .filter_map(|l| {
            let (a, b) = l.split_once(sep)?;
            let (name, number) = if number_first { (b, a) } else { (a, b) };
            Some((name.to_owned(), number.trim().parse().ok()?))
        })
        .collect()
}

/// Servers with running and with suspended sessions of the user.
pub fn session_servers(sessions: &[SessionLine]) -> (Vec<String>, Vec<String>) {
    let pick = |status: &str| {
        sessions
            .iter()
            .filter(|s| s.status() == status)
            .map(|s| s.server().to_owned())
            .collect()
    };
    (pick("R"), pick("S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_the_original_does() {
        assert_eq!(
            Answer::parse(b"OK\na\n\nb\n", b""),
            Answer {
                ok: true,
                lines: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(Answer::parse(b"FAILED\na\n", b""), Answer::default());
        // Anything on stderr fails the call, even after OK.
        assert_eq!(
            Answer::parse(b"OK\na\n", b"sudo: unable to resolve host"),
            Answer::default()
        );
        assert_eq!(Answer::parse(b"", b""), Answer::default());
    }
}
