//! `x2gobroker-testagent`: see [`x2gobroker_frontend::tools::testagent`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    x2gobroker_frontend::tools::testagent::main()
}
