//! Test probe: talks to an auth helper the way a caller with this process's
//! uid/gid would (the system tests start it with Command::uid/gid).
//!
//! `authprobe SOCKET auth USER [CLIENT_ADDRESS]` (password on stdin),
//! `authprobe SOCKET status`. Prints `authenticated`, `status ok`, or
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
