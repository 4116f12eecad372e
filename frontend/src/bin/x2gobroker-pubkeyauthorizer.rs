//! `x2gobroker-pubkeyauthorizer`: see [`x2gobroker_frontend::tools::pubkeyauthorizer`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    x2gobroker_frontend::tools::pubkeyauthorizer::main()
}
