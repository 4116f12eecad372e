//! `x2gobroker-ssh`: the SSH-mode command line (see
//! [`x2gobroker_frontend::ssh::client`]) and, when the root helper starts it
//! with `--ssh-worker` and a job on descriptor 3, the task worker (see
//! [`x2gobroker_frontend::ssh::worker`]).
#![deny(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use x2gobroker_frontend::ssh::{client, worker, JOB_FD, WORKER_FLAG};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(WORKER_FLAG) {
        return match job_descriptor() {
            Some(job) => worker::main(job),
            None => {
                eprintln!(
                    "x2gobroker-ssh: worker mode is for x2gobroker-authhelper only and refuses to run \
                     otherwise (no job descriptor)"
                );
                ExitCode::FAILURE
            }
        };
    }
    client::run("x2gobroker-ssh", args)
}

/// Descriptor 3 as a socket, if it is open. Called first thing in main,
/// before anything in this process opens a descriptor.
fn job_descriptor() -> Option<UnixStream> {
    nix::fcntl::fcntl(JOB_FD, nix::fcntl::FcntlArg::F_GETFD).ok()?;
    // SAFETY: fcntl just showed that descriptor 3 is open; nothing in this
    // process has opened or taken it (main has only read its arguments),
    // so taking ownership once here is sound. What it is gets checked by
    // the worker (SO_PEERCRED fails on anything but a socket).
    #[allow(unsafe_code)]
    let fd = unsafe { OwnedFd::from_raw_fd(JOB_FD) };
    Some(UnixStream::from(fd))
}
