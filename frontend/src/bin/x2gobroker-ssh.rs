//! `x2gobroker-ssh`: the SSH-mode command line (see
//! [`x2gobroker_frontend::ssh::client`]) and, when the root helper starts it
//! with `--ssh-worker` and a job on its stdin, the task worker (see
//! [`x2gobroker_frontend::ssh::worker`]).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    x2gobroker_frontend::ssh::main("x2gobroker-ssh")
}
