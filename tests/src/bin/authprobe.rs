//! Test probe: talks to an auth helper the way a caller with this process's
//! uid/gid would (the system tests start it with Command::uid/gid).
//!
//! `authprobe SOCKET auth USER [CLIENT_ADDRESS]` (password on stdin),
//! `authprobe SOCKET status`, `authprobe SOCKET hold N` (opens up to N
//! connections with a handshake each, prints `held K`; on each line of
//! stdin sends every held connection two more Hellos and prints `open M`,
//! the number that answered both; exits at end of input). Prints `authenticated`, `status ok`, or
//! `refused <kind>: <message>`; exit 0, 2 (refused) or 1 (other error).
#![forbid(unsafe_code)]

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use x2gobroker_protocol::client::{blocking::Client, ClientError};
use x2gobroker_protocol::{AuthRequest, Password, Request, Response};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(socket), Some(command)) = (args.first(), args.get(1)) else {
        eprintln!("usage: authprobe SOCKET auth USER [CLIENT_ADDRESS] | authprobe SOCKET status");
        return ExitCode::from(1);
    };
    if command == "hold" {
        let count = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1);
        return hold(&PathBuf::from(socket), count);
    }
    let request = match command.as_str() {
        "auth" => {
            let Some(user) = args.get(2) else {
                eprintln!("auth needs a user");
                return ExitCode::from(1);
            };
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line).is_err() {
                eprintln!("cannot read the password from stdin");
                return ExitCode::from(1);
            }
            Request::Authenticate(AuthRequest {
                user: user.clone(),
                password: Password::new(line.trim_end_matches('\n').to_string()),
                service: None,
                client_address: args.get(3).cloned(),
            })
        }
        "status" => Request::Status,
        other => {
            eprintln!("unknown command {other}");
            return ExitCode::from(1);
        }
    };
    let result =
        Client::connect(&PathBuf::from(socket), Duration::from_secs(30)).and_then(|mut c| c.call(&request));
    match result {
        Ok(Response::Authenticated) => println!("authenticated"),
        Ok(Response::Status(_)) => println!("status ok"),
        Ok(other) => {
            println!("unexpected {other:?}");
            return ExitCode::from(1);
        }
        Err(ClientError::Refused(reply)) => {
            println!("refused {:?}: {}", reply.kind, reply.message);
            return ExitCode::from(2);
        }
        Err(e) => {
            println!("error {e}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// A local caller holding helper connections open (issue 10, attack 3).
fn hold(socket: &std::path::Path, count: usize) -> ExitCode {
    use std::os::unix::net::UnixStream;
    use x2gobroker_protocol::frame::blocking::{read_message, write_message};
    use x2gobroker_protocol::PROTOCOL_VERSION;
    let request = Request::Hello {
        version: PROTOCOL_VERSION,
    };
    let hello = |stream: &mut UnixStream| {
        write_message(stream, &request).is_ok()
            && matches!(read_message::<Response, _>(stream), Ok(Response::Hello { .. }))
    };
    // Any answer (a repeated Hello is a bad request) keeps it open.
    let answers = |stream: &mut UnixStream| {
        write_message(stream, &request).is_ok() && read_message::<Response, _>(stream).is_ok()
    };
    let mut held: Vec<UnixStream> = (0..count)
        .filter_map(|_| {
            let mut stream = UnixStream::connect(socket).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            hello(&mut stream).then_some(stream)
        })
        .collect();
    println!("held {}", held.len());
    for _ in std::io::stdin().lock().lines() {
        held.retain_mut(|stream| answers(stream) && answers(stream));
        println!("open {}", held.len());
    }
    ExitCode::SUCCESS
}
