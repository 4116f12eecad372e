//! `x2gobroker-authhelper`: the root helper (its status client is
//! `x2gobroker-ctl status`, which needs no privileges). `--generate-man DIR`
//! writes its page, x2gobroker-authhelper.8 (docs/OPERATIONS.md).
#![forbid(unsafe_code)]

use x2gobroker_authhelper::{cli::Options, server};
use x2gobroker_sys::docs::parse_or_generate_man;

fn main() -> std::process::ExitCode {
    match server::run(parse_or_generate_man::<Options>("x2gobroker-authhelper", "8")) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("x2gobroker-authhelper: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
