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
use x2gobroker_protocol::{OutputStream, Password, Request, Response, SshTaskRequest};

/// Longest wait for the helper's next answer (the helper's own task
/// deadline is shorter).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the command line; `program` names us in messages, `args` excludes
/// the program name.
pub fn run(program: &str, args: Vec<String>) -> ExitCode {
    let (parsed, newpass) = match SshArgs::parse_all(&args) {
        Ok(parsed) => (parsed.options, parsed.newpass),
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
    let Some(mut task) = parsed.to_task() else {
        print!("{}", missing_task_text(nix::unistd::getuid().is_root()));
        let _ = std::io::stdout().flush();
        return ExitCode::from(MISSING_TASK_EXIT);
    };
    if task.task == "setpass" {
        match read_passwords(std::io::stdin(), newpass, PASSWORD_INPUT_TIMEOUT) {
            Ok((current, new)) => (task.password, task.new_password) = (Some(current), Some(new)),
            Err(e) => {
                eprintln!("{program}: setpass: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
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

/// How long `setpass` waits for the passwords on standard input (X2Go
/// Client sends none and may keep standard input open).
pub const PASSWORD_INPUT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest password line read.
const PASSWORD_LINE_MAX: u64 = 1024;

/// setpass: the current password (first line of `input`) and the new one
/// (`--newpass`, else the second line). Never from a terminal (it would echo).
pub fn read_passwords(
    input: impl std::io::Read + std::io::IsTerminal + Send + 'static,
    newpass: Option<String>,
    timeout: Duration,
) -> Result<(Password, Password), String> {
    use std::io::BufRead;
    if input.is_terminal() {
        return Err(
            "give the current and the new password on standard input, one per line, not from a terminal"
                .into(),
        );
    }
    let wanted = if newpass.is_some() { 1 } else { 2 };
    let (sender, receiver) = std::sync::mpsc::channel();
    // A reader that never gets its lines is left behind; the process ends.
    std::thread::spawn(move || {
        let mut input = std::io::BufReader::new(input);
        for _ in 0..wanted {
            let mut line = String::new();
            let read = std::io::Read::take(&mut input, PASSWORD_LINE_MAX).read_line(&mut line);
            let line = Password::new(line);
            if read.is_err() || sender.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    for _ in 0..wanted {
        match receiver.recv_timeout(timeout) {
            Ok(line) => lines.push(Password::new(
                line.expose().trim_end_matches(['\n', '\r']).to_owned(),
            )),
            Err(_) => break,
        }
    }
    if lines.len() < wanted || lines.iter().any(Password::is_empty) {
        return Err(format!(
            "the current password{} must come on standard input, one per line, within {}s",
            if wanted == 2 { " and the new password" } else { "" },
            timeout.as_secs()
        ));
    }
    let new = newpass.map(Password::new).unwrap_or_else(|| lines.remove(1));
    Ok((lines.remove(0), new))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn pipe_with(text: &[u8]) -> (File, File) {
        let (read, write) = nix::unistd::pipe().unwrap();
        let mut write = File::from(write);
        write.write_all(text).unwrap();
        (File::from(read), write)
    }

    #[test]
    fn passwords_come_from_standard_input_within_a_deadline() {
        let timeout = Duration::from_secs(5);
        let (input, _w) = pipe_with(b"old pw\nnew pw\r\n");
        let (current, new) = read_passwords(input, None, timeout).unwrap();
        assert_eq!((current.expose(), new.expose()), ("old pw", "new pw"));
        let (input, _w) = pipe_with(b"old\n");
        let (current, new) = read_passwords(input, Some("given".into()), timeout).unwrap();
        assert_eq!((current.expose(), new.expose()), ("old", "given"));
        // Input that stays open but never comes (X2Go Client's SSH mode).
        let (input, _w) = pipe_with(b"");
        let error = read_passwords(input, Some("given".into()), Duration::from_millis(200)).unwrap_err();
        assert!(error.contains("current password"), "{error}");
        let (input, w) = pipe_with(b"only-one\n");
        drop(w);
        assert!(
            read_passwords(input, None, timeout).is_err(),
            "the new password is missing"
        );
    }
}
