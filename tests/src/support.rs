//! Test support used by every test crate (system tests, the compliance
//! suite and the front end's integration tests): temporary directories,
//! free ports, polling, TLS certificates and the root requirement, defined
//! once.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Session profiles the SSH-mode and pyhoca tests share: one per user,
/// one per group, one for a user without the others.
pub const PROFILES: &str = "\
[alice-desktop]
name = Alice Desktop
host = srv1 (127.0.0.1:2222)
command = XFCE
acl-users-allow = xbt-alice

[staff-terminal]
name = Staff Terminal
acl-groups-allow = xbt-staff

[bob-only]
name = Bob Only
acl-users-allow = xbt-bob
";

/// Longest wait for anything a test polls for.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `condition` until it holds; panics with `what` at the deadline.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Tests that need root fail loudly without it (scripts/test.sh runs them
/// as root); they never pass by skipping their checks.
pub fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root ({why}); run it as root, as scripts/test.sh does"
    );
}

/// A fresh directory under the system temp dir, world-searchable (0755) so
/// unprivileged probes can reach sockets in it; removed on drop unless
/// `KEEP_TEST_DIRS` (or the compliance suite's `COMPLIANCE_KEEP_TMP`) is set.
/// Names stay short: sockets live inside and AF_UNIX paths are limited.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(tag: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let tag: String = tag
            .chars()
            .take(24)
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = std::env::temp_dir().join(format!(
            "xbt-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).expect("create test dir");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod test dir");
        TestDir(path)
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.0
    }

    /// `name` inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIRS").is_none() && std::env::var_os("COMPLIANCE_KEEP_TMP").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A TCP port on `ip` that was free a moment ago.
pub fn free_port_on(ip: IpAddr) -> Result<u16, String> {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("bind a free port: {e}"))
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("free port")
}

/// Certificate and key file of a throw-away self-signed certificate.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a self-signed certificate for CN=localhost in `dir` with openssl;
/// `extensions` are `-addext` values (subjectAltName, basicConstraints).
pub fn make_cert(dir: &Path, extensions: &[&str]) -> Result<CertFiles, String> {
    let cert = dir.join("tls-cert.pem");
    let key = dir.join("tls-key.pem");
    let mut command = Command::new("openssl");
    command.args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
    ]);
    for extension in extensions {
        command.args(["-addext", extension]);
    }
    let out = command
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(CertFiles { cert, key })
}
