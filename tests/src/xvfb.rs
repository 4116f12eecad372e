//! An Xvfb display of a test's own. `-displayfd` lets the X server pick a
//! free number (one without a lock file), and the server
//! is stopped with SIGTERM so it removes its own lock file and socket;
//! numbers picked by hand ran out on machines where killed servers had left
//! their locks behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a stopped Xvfb gets to clean up before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running Xvfb; stopped on drop.
pub struct Xvfb {
    child: Child,
    _number_pipe: ChildStdout,
    /// The display name for `DISPLAY`, e.g. `:3`.
    pub display: String,
}

impl Xvfb {
    /// Starts Xvfb with one screen of `geometry` (e.g. `1280x1024x24`) and
    /// returns once it accepts connections.
    pub fn start(geometry: &str) -> Result<Xvfb, String> {
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", geometry, "-nolisten", "tcp"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("Xvfb (installed by scripts/setup-test-env.sh): {e}"))?;
        let stdout = child.stdout.take().ok_or("Xvfb without stdout")?;
        // Xvfb writes the number once it accepts connections; the read ends
        // at that line or when Xvfb dies.
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let read = reader.read_line(&mut line);
        let number: u32 = match (read, line.trim().parse()) {
            (Ok(_), Ok(n)) => n,
            (read, _) => {
                let _ = child.kill();
                let status = child.wait();
                return Err(format!(
                    "Xvfb gave no display number ({line:?}, {read:?}): {status:?}"
                ));
            }
        };
        Ok(Xvfb {
            child,
            _number_pipe: reader.into_inner(),
            display: format!(":{number}"),
        })
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
