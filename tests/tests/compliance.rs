//! Compliance suite: one test per scenario file in `tests/compliance/scenarios/`,
//! run against the broker named by BROKER_UNDER_TEST (`ours`, default, or `original`).
//!
//! `cargo test -p x2gobroker-systemtests --test compliance [-- FILTER]` (as root).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};
use x2gobroker_systemtests::compliance::{broker::BrokerKind, runner, scenario, scenario_dir};

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let kind = match BrokerKind::from_env() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let files = match scenario::scenario_files(&scenario_dir()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let trials = files
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Trial::test(name, move || runner::run(kind, &path).map_err(Failed::from)).with_kind(kind.name())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
