//! `x2gobroker-keygen`: see [`x2gobroker_frontend::tools::keygen`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    x2gobroker_frontend::tools::keygen::main()
}
