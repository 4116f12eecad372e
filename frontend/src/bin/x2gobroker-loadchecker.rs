//! `x2gobroker-loadchecker`: see [`x2gobroker_frontend::daemon::loadchecker`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    x2gobroker_frontend::daemon::loadchecker::main()
}
