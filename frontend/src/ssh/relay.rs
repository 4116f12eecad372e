//! The worker's side of the caller's connection. The helper starts the
//! worker with the caller's connection as its standard output; the worker
//! points its own standard output and error (so also those of any program
//! it runs) at pipes and relays them to the caller as `TaskOutput` frames,
//! then `TaskFinished`. It enforces the job's time limit and an output cap
//! itself and tells the caller why it stopped ([`WorkerStop`]); its exit
//! status tells the helper, which kills a worker that outlives the time
//! limit as a backstop.

use nix::unistd::{dup2, pipe};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::pipe::Receiver;
use tokio::net::UnixStream;
use tokio::time::{timeout_at, Instant};
use x2gobroker_protocol::frame::nonblocking::write_message;
use x2gobroker_protocol::{OutputStream, Response, WorkerStop};

/// Largest output chunk per frame (well under the 64 KiB frame limit).
pub const CHUNK: usize = 32 * 1024;
/// A task producing more than this in total is stopped.
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// Runs `task` (which returns its exit status) on a thread of its own with
/// descriptors 1 and 2 relayed to the caller (descriptor 1 until now), and
/// exits with the task's status or the [`WorkerStop`] code.
pub fn run(time_limit: Duration, task: impl FnOnce() -> u8 + Send + 'static) -> ExitCode {
    let deadline = Instant::now() + time_limit;
    let set_up = || -> Result<_, String> {
        let caller = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("standard output: {e}"))?;
        let (out_read, out_write) = pipe().map_err(|e| format!("pipe: {e}"))?;
        let (err_read, err_write) = pipe().map_err(|e| format!("pipe: {e}"))?;
        dup2(out_write.as_raw_fd(), 1).map_err(|e| format!("dup2: {e}"))?;
        dup2(err_write.as_raw_fd(), 2).map_err(|e| format!("dup2: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        Ok((caller, out_read, err_read, runtime))
    };
    let (caller, out_read, err_read, runtime) = match set_up() {
        Ok(ready) => ready,
        Err(e) => {
            eprintln!("x2gobroker-ssh: {e}");
            return ExitCode::FAILURE;
        }
    };
    let task_thread = std::thread::spawn(move || {
        let code = task();
        // Our ends of the pipes close: the relay sees the end of the output.
        let _ = std::io::stdout().flush();
        if let Ok(null) = std::fs::File::open("/dev/null") {
            let _ = dup2(null.as_raw_fd(), 1);
            let _ = dup2(null.as_raw_fd(), 2);
        }
        code
    });
    let outcome = runtime.block_on(relay(caller, out_read, err_read, deadline, task_thread));
    // Not `ExitCode`: a task thread that is still stuck must not hold us.
    std::process::exit(match outcome {
        Ok(code) => code.into(),
        Err(stop) => stop.exit_code().into(),
    })
}

async fn relay(
    caller: OwnedFd,
    out_read: OwnedFd,
    err_read: OwnedFd,
    deadline: Instant,
    task_thread: std::thread::JoinHandle<u8>,
) -> Result<u8, WorkerStop> {
    let caller = std::os::unix::net::UnixStream::from(caller);
    let _ = caller.set_nonblocking(true);
    let (Ok(mut caller), Ok(stdout), Ok(stderr)) = (
        UnixStream::from_std(caller),
        Receiver::from_owned_fd(out_read),
        Receiver::from_owned_fd(err_read),
    ) else {
        return Err(WorkerStop::CallerGone);
    };
    let (mut stdout, mut stderr) = (Some(stdout), Some(stderr));
    let result = copy(&mut caller, &mut stdout, &mut stderr, deadline).await;
    let code = match result {
        Ok(()) => task_thread.join().unwrap_or(101),
        Err(stop) => {
            let _ = timeout_at(deadline.max(Instant::now()) + Duration::from_secs(1), async {
                write_message(&mut caller, &Response::Error(stop.reply())).await
            })
            .await;
            return Err(stop);
        }
    };
    let finished = Response::TaskFinished {
        exit_code: code.into(),
    };
    match timeout_at(deadline, write_message(&mut caller, &finished)).await {
        Ok(Ok(())) => Ok(code),
        Ok(Err(_)) => Err(WorkerStop::CallerGone),
        Err(_) => Err(WorkerStop::TimeLimit),
    }
}

/// Copies both pipes to the caller until both end.
async fn copy(
    caller: &mut UnixStream,
    stdout: &mut Option<Receiver>,
    stderr: &mut Option<Receiver>,
    deadline: Instant,
) -> Result<(), WorkerStop> {
    let mut out_buf = vec![0u8; CHUNK];
    let mut err_buf = vec![0u8; CHUNK];
    let mut probe = [0u8; 1];
    let mut total = 0usize;
    while stdout.is_some() || stderr.is_some() {
        let (which, read) = tokio::select! {
            r = read_some(stdout, &mut out_buf) => (OutputStream::Stdout, r),
            r = read_some(stderr, &mut err_buf) => (OutputStream::Stderr, r),
            // The caller sends nothing after its request: readable means
            // it hung up (or broke the protocol); either way, stop.
            _ = caller.read(&mut probe) => return Err(WorkerStop::CallerGone),
            _ = tokio::time::sleep_until(deadline) => return Err(WorkerStop::TimeLimit),
        };
        let n = match read {
            Ok(n) if n > 0 => n,
            _ => {
                match which {
                    OutputStream::Stdout => *stdout = None,
                    OutputStream::Stderr => *stderr = None,
                }
                continue;
            }
        };
        total += n;
        if total > MAX_OUTPUT {
            return Err(WorkerStop::TooMuchOutput);
        }
        let data = match which {
            OutputStream::Stdout => out_buf[..n].to_vec(),
            OutputStream::Stderr => err_buf[..n].to_vec(),
        };
        match timeout_at(
            deadline,
            write_message(caller, &Response::TaskOutput { stream: which, data }),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(WorkerStop::CallerGone),
            Err(_) => return Err(WorkerStop::TimeLimit),
        }
    }
    Ok(())
}

/// Reads from a pipe that may already be finished (then never ready).
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> std::io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_chunks_fit_a_frame() {
        let frame = x2gobroker_protocol::encode(&Response::TaskOutput {
            stream: OutputStream::Stderr,
            data: vec![0xff; CHUNK],
        });
        assert!(frame.is_ok());
    }

    #[test]
    fn stop_codes_are_not_task_codes() {
        for stop in [
            WorkerStop::TimeLimit,
            WorkerStop::TooMuchOutput,
            WorkerStop::CallerGone,
        ] {
            assert_eq!(WorkerStop::from_exit_code(stop.exit_code().into()), Some(stop));
        }
        assert_eq!(WorkerStop::from_exit_code(0), None);
        assert_eq!(WorkerStop::from_exit_code(1), None);
    }
}
