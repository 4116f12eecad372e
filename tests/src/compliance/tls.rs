//! HTTPS scenarios: a throw-away self-signed certificate (openssl) for the broker
//! and curl as the client, so that the suite needs no TLS stack of its own.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::http::{self, Outgoing, Response};

pub use crate::support::CertFiles;

/// A self-signed certificate for 127.0.0.1, ::1 and localhost in `dir`.
pub fn make_cert(dir: &Path) -> Result<CertFiles, String> {
    crate::support::make_cert(dir, &["subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"])
}

/// Sends one request over HTTPS (HTTP/1.1) with curl, trusting only `ca`.
/// `None` when curl saw no answer (timeout or empty reply).
pub fn send(
    addr: SocketAddr,
    req: &Outgoing<'_>,
    timeout: Duration,
    ca: &Path,
) -> Result<Option<Response>, String> {
    let host = match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--include", "--http1.1", "--globoff"])
        .arg("--max-time")
        .arg(timeout.as_secs().max(1).to_string())
        .arg("--cacert")
        .arg(ca)
        .args(["-H", "Connection: close"]);
    if req.method.eq_ignore_ascii_case("HEAD") {
        cmd.arg("--head");
    } else {
        cmd.args(["-X", req.method]);
    }
    let has_content_type = req
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    for (k, v) in &req.headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    if req.body.is_some() {
        cmd.args(["--data-binary", "@-"]);
        if !has_content_type {
            // curl would add its own form Content-Type; the scenario asked for none.
            cmd.args(["-H", "Content-Type:"]);
        }
    }
    cmd.arg(format!("https://{host}{}", req.path));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("run curl: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(req.body.as_deref().unwrap_or("").as_bytes())
            .map_err(|e| format!("curl stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("curl: {e}"))?;
    match out.status.code() {
        Some(0) => http::parse(&out.stdout).map(Some),
        // 28: timeout, 52: empty reply from server.
        Some(28) | Some(52) => Ok(None),
        _ => Err(format!(
            "curl failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}
