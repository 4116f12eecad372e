//! `x2gobroker-authhelper`: the root helper (its status client is
//! `x2gobroker-ctl status`, which needs no privileges).
#![forbid(unsafe_code)]

use clap::Parser;
use x2gobroker_authhelper::{cli::Options, server};

fn main() -> std::process::ExitCode {
    match server::run(Options::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("x2gobroker-authhelper: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
