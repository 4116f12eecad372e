//! `x2gobroker`: see [`x2gobroker_frontend::daemon`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    // A worker started by the helper through an x2gobroker-ssh symlink.
    if std::env::args().nth(1).as_deref() == Some(x2gobroker_protocol::paths::WORKER_FLAG) {
        return x2gobroker_frontend::ssh::worker::main();
    }
    // A key removal runner started by such a worker.
    if std::env::args().nth(1).as_deref() == Some(x2gobroker_frontend::core::key_removals::RUNNER_FLAG) {
        return x2gobroker_frontend::ssh::main("x2gobroker");
    }
    let program = std::env::args()
        .next()
        .and_then(|a| a.rsplit('/').next().map(str::to_owned))
        .unwrap_or_else(|| "x2gobroker".to_owned());
    x2gobroker_frontend::daemon::main(&program)
}
