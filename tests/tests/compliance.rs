//! Compliance suite: one test per scenario file in `tests/compliance/scenarios/`,
//! run against the broker named by BROKER_UNDER_TEST (`ours`, default, or `original`).
//!
//! `cargo test -p x2gobroker-systemtests --test compliance [-- FILTER]` (as root).

#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};
use x2gobroker_systemtests::compliance::{broker::BrokerKind, runner, scenario, scenario_dir, selftest_dir};

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let kind = match BrokerKind::from_env() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (files, selftests) = match (
        scenario::scenario_files(&scenario_dir()),
        scenario::scenario_files(&selftest_dir()),
    ) {
        (Ok(f), Ok(s)) => (f, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut trials: Vec<Trial> = files
        .into_iter()
        .map(|path| {
            let name = stem(&path);
            Trial::test(name, move || runner::run(kind, &path).map_err(Failed::from)).with_kind(kind.name())
        })
        .collect();
    trials.extend(selftests.into_iter().map(|path| {
        let name = format!("selftest-must-fail-{}", stem(&path));
        Trial::test(name, move || must_fail(kind, &path)).with_kind(kind.name())
    }));
    libtest_mimic::run(&args, trials).exit_code()
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A deliberately wrong scenario must fail on a response check, not on start-up.
fn must_fail(kind: BrokerKind, path: &Path) -> Result<(), Failed> {
    match runner::run(kind, path) {
        Ok(()) => Err("the deliberately wrong scenario passed".into()),
        Err(e) if e.contains(&format!(" against {}:", kind.name())) => Ok(()),
        Err(e) => Err(format!("failed, but not on a response check:\n{e}").into()),
    }
}
