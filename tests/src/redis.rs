//! A private redis-server for one test: its own directory, a loopback port
//! and a Unix socket, no persistence; never the packaged service.

use crate::support::{free_port, make_cert, wait_until, CertFiles, TestDir};
use std::process::{Child, Command, Stdio};

pub struct RedisServer {
    pub dir: TestDir,
    pub port: u16,
    child: Option<Child>,
    /// Append-only file on (every write synced): a restart keeps the data.
    persistent: bool,
    /// TLS only on `port` (no plain TCP), with this self-signed certificate.
    tls: Option<CertFiles>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// With persistence (append-only file, synced at every write).
    pub fn start_persistent() -> RedisServer {
        Self::start_with(true)
    }

    /// TLS only on `port` (plain TCP off; the Unix socket stays plain),
    /// with a self-signed certificate for IP 127.0.0.1: [`Self::tls_cert`].
    pub fn start_tls() -> RedisServer {
        let dir = TestDir::new("redis");
        let cert = make_cert(
            dir.root(),
            &[
                "subjectAltName=IP:127.0.0.1",
                "basicConstraints=critical,CA:FALSE",
            ],
        )
        .expect("openssl (scripts/setup-test-env.sh installs it)");
        let mut server = RedisServer {
            dir,
            port: free_port(),
            child: None,
            persistent: false,
            tls: Some(cert),
        };
        server.run();
        server
    }

    fn start_with(persistent: bool) -> RedisServer {
        let mut server = RedisServer {
            dir: TestDir::new("redis"),
            port: free_port(),
            child: None,
            persistent,
            tls: None,
        };
        server.run();
        server
    }

    /// The TLS server's certificate (its own CA), if it runs TLS.
    pub fn tls_cert(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().map(|c| c.cert.as_path())
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
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .args(["--bind", "127.0.0.1"])
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
        // The Unix socket is plain either way, and redis-server opens all
        // its listeners before it serves any.
        let socket = self.dir.path("redis.sock");
        wait_until("redis-server answering", || ping(&socket));
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
            .arg("-s")
            .arg(self.dir.path("redis.sock"))
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

fn ping(socket: &std::path::Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
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
