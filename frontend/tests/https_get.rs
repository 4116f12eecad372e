//! The https_get auth mech against a real TLS web server (warp with a
//! throw-away certificate, trusted through SSL_CERT_FILE), through the
//! daemon process.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};
use warp::Filter;
use x2gobroker_systemtests::support::make_cert;

const DAEMON: &str = env!("CARGO_BIN_EXE_x2gobroker-daemon");

/// Kills the daemon however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl_status(url: &str, body: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            body,
            url,
        ])
        .output()
        .expect("curl must be installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_get_accepts_only_what_the_web_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tls = make_cert(
        d,
        &[
            "subjectAltName=DNS:localhost",
            "basicConstraints=critical,CA:FALSE",
        ],
    )
    .expect("openssl must be installed");
    let (cert, key) = (tls.cert, tls.key);

    // "alice:pw-1" in basic auth.
    let auth = warp::path("auth")
        .and(warp::header::optional::<String>("authorization"))
        .map(|h: Option<String>| {
            if h.as_deref() == Some("Basic YWxpY2U6cHctMQ==") {
                warp::http::StatusCode::OK
            } else {
                warp::http::StatusCode::UNAUTHORIZED
            }
        });
    let (addr, server) = warp::serve(auth)
        .tls()
        .cert_path(&cert)
        .key_path(&key)
        .bind_ephemeral(([127, 0, 0, 1], 0));
    tokio::spawn(server);

    let config = d.join("x2gobroker.conf");
    fs::write(
        &config,
        format!(
            "[global]\ndefault-auth-mech = https_get\ncookie-directory = {}/cookies\n\
             [authmech_https_get]\nhost = localhost\nport = {}\npath = /auth\n",
            d.display(),
            addr.port()
        ),
    )
    .unwrap();
    let profiles = d.join("p.conf");
    fs::write(&profiles, "[p]\n").unwrap();
    let log = d.join("daemon.log");
    let out = fs::File::create(&log).unwrap();
    let _daemon = KillOnDrop(
        Command::new(DAEMON)
            .arg("-C")
            .arg(&config)
            .args(["-b", "127.0.0.1:0"])
            .env("X2GOBROKER_SESSIONPROFILES", &profiles)
            .env("SSL_CERT_FILE", &cert)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if let Some(u) = text.lines().find_map(|l| l.split("listening on ").nth(1)) {
            break format!("{}/plain/", u.trim());
        }
        assert!(Instant::now() < deadline, "daemon did not start: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let check = |body: &'static str| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || curl_status(&url, body))
    };
    let ok = check("user=alice&password=pw-1&task=testcon").await.unwrap();
    assert_eq!(
        ok,
        "200",
        "daemon log:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        check("user=alice&password=wrong&task=testcon").await.unwrap(),
        "401"
    );
    assert_eq!(check("user=bob&password=pw-1&task=testcon").await.unwrap(), "401");
}
