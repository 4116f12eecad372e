//! `x2gobroker-authhelper`: serve (default) or query a running helper (`--status`).
#![forbid(unsafe_code)]

use clap::Parser;
use x2gobroker_authhelper::{cli::Options, server, status_client};

fn main() -> std::process::ExitCode {
    let options = Options::parse();
    let result = if options.status {
        status_client::run(&options)
    } else {
        server::run(options)
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("x2gobroker-authhelper: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
