//! A private redis-server for one test: its own directory, a loopback port
//! and a Unix socket, no persistence; never the packaged service.

use crate::support::{free_port, wait_until, TestDir};
use std::process::{Child, Command, Stdio};

pub struct RedisServer {
    pub dir: TestDir,
    pub port: u16,
    child: Option<Child>,
    /// Append-only file on (every write synced): a restart keeps the data.
    persistent: bool,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// With persistence (append-only file, synced at every write).
    pub fn start_persistent() -> RedisServer {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> RedisServer {
        let mut server = RedisServer {
            dir: TestDir::new("redis"),
            port: free_port(),
            child: None,
            persistent,
        };
        server.run();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `redis+unix:///DIR/redis.sock`.
    pub fn unix_url(&self) -> String {
        format!("redis+unix://{}", self.dir.path("redis.sock").display())
    }

    fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--unixsocket")
            .arg(self.dir.path("redis.sock"))
            .args(["--unixsocketperm", "777", "--save", ""])
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (scripts/setup-test-env.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        wait_until("redis-server answering", || ping(port));
    }

    /// Stops the server (SIGKILL: whatever it held is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, empty, on the same port and socket.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Stops the server as its service would (SIGTERM), waiting for it.
    pub fn stop_gracefully(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// Starts it again after a stop, on the same port, socket and files.
    pub fn start_again(&mut self) {
        self.run();
    }

    /// One command through redis-cli, its output trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .map(|n| buf[..n].starts_with(b"+PONG"))
            .unwrap_or(false)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
