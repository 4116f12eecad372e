//! SSH mode: `x2gobroker-ssh` (and `x2gobroker -M SSH`).
//!
//! The command line runs as the logged-in user and holds no privilege: it
//! sends its arguments to the root helper ([`client`]). The helper takes the
//! caller's identity from the kernel, applies the `--user` policy and starts
//! [`worker`] as the daemon user with the verified identity on its stdin;
//! the worker runs the task through the same engine as HTTP `/plain/` and
//! prints the original's SSH-mode output ([`output`]).

pub mod args;
pub mod client;
pub mod manpage;
pub mod output;
pub mod relay;
pub mod worker;

use x2gobroker_protocol::paths::WORKER_FLAG;

/// Entry point of a binary that serves SSH mode: the worker when the first
/// argument is [`WORKER_FLAG`], else the command line. `program` names the
/// binary in messages.
pub fn main(program: &str) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(WORKER_FLAG) => return worker::main(),
        // Started by a worker that deployed auto-login keys (no daemon loop).
        Some(crate::core::key_removals::RUNNER_FLAG) if args.len() == 2 => {
            return crate::core::key_removals::run_detached(std::path::Path::new(&args[1]));
        }
        // The installer's program contract (docs/OPERATIONS.md).
        Some("--generate-man") if args.len() == 2 => {
            return match manpage::generate(std::path::Path::new(&args[1])) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{program}: cannot write the manual page: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Some("--generate-completions") if args.len() == 2 => {
            use clap::CommandFactory;
            let dir = std::path::Path::new(&args[1]);
            return match x2gobroker_sys::docs::write_completions(args::SshArgs::command(), program, dir) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{program}: cannot write the completions: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    client::run(program, args)
}
