//! `x2gobroker`: see [`x2gobroker_frontend::daemon`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    let program = std::env::args()
        .next()
        .and_then(|a| a.rsplit('/').next().map(str::to_owned))
        .unwrap_or_else(|| "x2gobroker".to_owned());
    x2gobroker_frontend::daemon::main(&program)
}
