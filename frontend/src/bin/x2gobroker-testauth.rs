//! `x2gobroker-testauth`: see [`x2gobroker_frontend::tools::testauth`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    x2gobroker_frontend::tools::testauth::main()
}
