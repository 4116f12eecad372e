//! Agent query mode LOCAL: the agent runs on this host as a child process,
//! from an argument vector (never through a shell), with a deadline.

use super::{Answer, AGENT_TIMEOUT, MAX_ANSWER};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncReadExt;

#[derive(Debug, Clone)]
pub struct LocalAgent {
    pub command: PathBuf,
}

impl LocalAgent {
    /// Like the original, a local agent that fails yields no data; its
    /// stderr is read after its stdout (the original merges the two).
    pub async fn call(&self, user: &str, task: &str, args: &[&str]) -> Answer {
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
                return Answer::default();
            }
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Answer::default();
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
        match tokio::time::timeout(AGENT_TIMEOUT, read).await {
            Ok(Ok(output)) => Answer::parse(&output, b""),
            Ok(Err(e)) => {
                log::warn!("reading the agent's answer failed: {e}");
                Answer::default()
            }
            Err(_) => {
                log::warn!("the agent did not answer within {AGENT_TIMEOUT:?}");
                Answer::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{session_servers, Agent};
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake_agent(dir: &std::path::Path, script: &str) -> Agent {
        let path = dir.join("agent");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Agent::Local(LocalAgent { command: path })
    }

    #[tokio::test]
    async fn calls_and_parses() {
        let dir = tempfile::tempdir().unwrap();
        let agent = fake_agent(
            dir.path(),
            "echo \"$*\" >> \"$(dirname \"$0\")/calls\"\ncase \"$2\" in\n\
             listsessions) echo OK; echo '1|s1|50|h2|S|x'; echo '2|s2|51|h1|R|x' ;;\n\
             findbusyservers) echo OK; echo '3:h1'; echo 'junk'; echo '1:h2' ;;\n\
             getservers) echo OK; echo 'h1 3'; echo 'h2 x' ;;\n\
             suspendsession) echo OK ;;\n\
             *) echo FAILED ;;\nesac",
        );
        let sessions = agent.list_sessions("u").await.unwrap();
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
            agent.find_busy_servers("u").await.unwrap(),
            vec![("h1".to_owned(), 3), ("h2".to_owned(), 1)]
        );
        assert_eq!(agent.get_servers("u").await.unwrap(), vec![("h1".to_owned(), 3)]);
        assert_eq!(agent.suspend_session("u", "s2").await, Ok(true));
        assert!(!agent.ping().await);
        // Hostile values never reach the agent, not even as one argument.
        assert!(agent.list_sessions("u; rm -rf /").await.is_err());
        assert!(agent.suspend_session("u", "s1;reboot").await.is_err());
        assert!(agent.add_authorized_key("u", "k", "../x").await.is_err());
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        assert_eq!(
            calls,
            "u listsessions\nu findbusyservers\nu getservers\nu suspendsession s2\nfoo ping\n"
        );
        let missing = Agent::Local(LocalAgent {
            command: dir.path().join("nope"),
        });
        assert_eq!(missing.list_sessions("u").await, Ok(vec![]));
    }
}
