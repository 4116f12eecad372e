//! The X2Go broker agent (`x2gobroker-agent <user> <task> [args]`), for
//! agent query mode LOCAL: run as a child process from an argument vector,
//! never through a shell, with a deadline. SSH mode is not there yet.
//!
//! Answers: first line `OK`, then data lines. Like the original, a failing
//! local agent is not an error: the call just yields no data.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

pub const AGENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest agent answer read.
pub const MAX_ANSWER: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct LocalAgent {
    pub command: PathBuf,
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

impl LocalAgent {
    /// (answered OK, data lines).
    pub async fn call(&self, user: &str, task: &str, args: &[&str]) -> (bool, Vec<String>) {
        log::info!(
            "executing agent command locally: {} {user} {task} {}",
            self.command.display(),
            args.join(" ")
        );
        let child = tokio::process::Command::new(&self.command)
            .arg(user)
            .arg(task)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                log::warn!("executing agent command failed: {e}");
                return (false, Vec::new());
            }
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return (false, Vec::new());
        };
        let read = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let limit = MAX_ANSWER as u64;
            let (mut stdout, mut stderr) = (stdout.take(limit), stderr.take(limit));
            let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            let _ = child.wait().await;
            a.and(b).map(|_| {
                out.extend_from_slice(&err);
                out
            })
        };
        let output = match tokio::time::timeout(AGENT_TIMEOUT, read).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                log::warn!("reading the agent's answer failed: {e}");
                return (false, Vec::new());
            }
            Err(_) => {
                log::warn!("the agent did not answer within {AGENT_TIMEOUT:?}");
                return (false, Vec::new());
            }
        };
        let text = String::from_utf8_lossy(&output);
        let mut lines = text.split('\n');
        if lines.next().is_some_and(|l| l.starts_with("OK")) {
            (true, lines.filter(|l| !l.is_empty()).map(str::to_owned).collect())
        } else {
            (false, Vec::new())
        }
    }

    pub async fn list_sessions(&self, user: &str) -> Vec<SessionLine> {
        let (_, lines) = self.call(user, "listsessions", &[]).await;
        lines.into_iter().map(SessionLine).collect()
    }

    /// Session counts per server as the agent reports them.
    pub async fn find_busy_servers(&self, user: &str) -> Vec<(String, i64)> {
        let (_, lines) = self.call(user, "findbusyservers", &[]).await;
        lines
            .iter()
            .filter_map(|l| {
                let (usage, server) = l.split_once(':')?;
                Some((server.to_owned(), usage.trim().parse().ok()?))
            })
            .collect()
    }

    pub async fn suspend_session(&self, user: &str, session_name: &str) {
        self.call(user, "suspendsession", &[session_name]).await;
    }
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
    use std::os::unix::fs::PermissionsExt;

    fn fake_agent(dir: &std::path::Path, script: &str) -> LocalAgent {
        let path = dir.join("agent");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        LocalAgent { command: path }
    }

    #[tokio::test]
    async fn calls_and_parses() {
        let dir = tempfile::tempdir().unwrap();
        let agent = fake_agent(
            dir.path(),
            "echo \"$*\" >> \"$(dirname \"$0\")/calls\"\ncase \"$2\" in\n\
             listsessions) echo OK; echo '1|s1|50|h2|S|x'; echo '2|s2|51|h1|R|x' ;;\n\
             findbusyservers) echo OK; echo '3:h1'; echo 'junk'; echo '1:h2' ;;\n\
             *) echo FAILED ;;\nesac",
        );
        let sessions = agent.list_sessions("u; rm -rf /").await;
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            (sessions[0].name(), sessions[0].server(), sessions[0].status()),
            ("s1", "h2", "S")
        );
        assert_eq!(
            session_servers(&sessions),
            (vec!["h1".to_owned()], vec!["h2".to_owned()])
        );
        assert_eq!(
            agent.find_busy_servers("u").await,
            vec![("h1".to_owned(), 3), ("h2".to_owned(), 1)]
        );
        assert_eq!(agent.call("u", "other", &[]).await, (false, vec![]));
        // Arguments arrive as they are, no shell in between.
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        assert!(calls.starts_with("u; rm -rf / listsessions\n"), "{calls}");
        let missing = LocalAgent {
            command: dir.path().join("nope"),
        };
        assert_eq!(missing.call("u", "ping", &[]).await, (false, vec![]));
    }
}
