//! The SSH-mode command line: runs as the logged-in user, with nothing
//! privileged. It parses the original's options, answers what needs no
//! broker (usage, `--event`) itself and hands every task to the helper as a
//! typed [`SshTask`](x2gobroker_protocol::SshTask), relaying the task's
//! output and exit status. It sends nothing of its environment but SSH_CLIENT; who the
//! caller is, the helper learns from the kernel.

use super::args::{missing_task_text, SshArgs, MISSING_TASK_EXIT};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use x2gobroker_protocol::client::{blocking::Client, ClientError};
use x2gobroker_protocol::paths::{DEFAULT_AUTHSERVICE_SOCKET, SSH_SOCKET_ENV};
use x2gobroker_protocol::{OutputStream, Request, Response, SshTaskRequest};

/// Longest wait for the helper's next answer (the helper's own task
/// deadline is shorter).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the command line; `program` names us in messages, `args` excludes
/// the program name.
pub fn run(program: &str, args: Vec<String>) -> ExitCode {
    let parsed = match SshArgs::parse_list(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    if parsed.asks_for_http() {
        eprintln!("{program}: runs in SSH mode only; the HTTP(S) broker is x2gobroker-daemon");
        return ExitCode::from(2);
    }
    // As the original: an event is acknowledged and ignored.
    if parsed.event.is_some() {
        return ExitCode::SUCCESS;
    }
    let Some(task) = parsed.to_task() else {
        print!("{}", missing_task_text(nix::unistd::getuid().is_root()));
        let _ = std::io::stdout().flush();
        return ExitCode::from(MISSING_TASK_EXIT);
    };
    let socket = socket_path();
    let request = Request::RunSshTask(SshTaskRequest {
        task,
        ssh_client: std::env::var("SSH_CLIENT").ok(),
    });
    match relay(&socket, &request) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(ClientError::Connect(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "{program}: may not connect to the X2Go Session Broker's helper at {} ({e}). SSH mode is \
                 for members of the group that owns that socket (x2gobroker-users by default); ask the \
                 administrator to add you.",
                socket.display()
            );
            ExitCode::FAILURE
        }
        Err(ClientError::Connect(e)) => {
            eprintln!(
                "{program}: cannot reach the X2Go Session Broker's helper at {} ({e}). It runs SSH-mode \
                 tasks; start it with `systemctl start x2gobroker-authhelper.socket` (or run \
                 x2gobroker-authhelper as root), or point {SSH_SOCKET_ENV} at its socket.",
                socket.display()
            );
            ExitCode::FAILURE
        }
        Err(ClientError::Refused(reply)) => {
            eprintln!("{program}: {}: {}", reply.kind, reply.message);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn socket_path() -> PathBuf {
    // The helper's socket: SSH-mode tasks share it with authentication; the
    // helper decides every request from the caller's kernel-verified uid.
    std::env::var_os(SSH_SOCKET_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_AUTHSERVICE_SOCKET))
}

/// Sends the task and copies its output; Ok(exit status of the task).
fn relay(socket: &std::path::Path, request: &Request) -> Result<i32, ClientError> {
    let mut client = Client::connect(socket, ANSWER_TIMEOUT)?;
    client.send(request)?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    loop {
        match client.receive()? {
            Response::TaskOutput { stream, data } => {
                // A closed stdout (e.g. `| head`) must not stop us from
                // draining the answer and reporting the status.
                let _ = match stream {
                    OutputStream::Stdout => stdout.lock().write_all(&data),
                    OutputStream::Stderr => stderr.lock().write_all(&data),
                };
            }
            Response::TaskFinished { exit_code } => {
                let _ = stdout.lock().flush();
                return Ok(exit_code);
            }
            Response::Error(reply) => return Err(ClientError::Refused(reply)),
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
}
