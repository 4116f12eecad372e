//! Running one scenario against one broker, start to clean-up.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::broker::{self, BrokerKind, BrokerSetup, Running, TempDir};
use super::expect;
use super::http::{self, Outgoing};
use super::scenario::{Listen, Request, Scenario};
use super::tls;
use super::vars::{self, Vars};

/// Runs the scenario in `path` against `kind`; the error text says what differed.
pub fn run(kind: BrokerKind, path: &Path) -> Result<(), String> {
    let scenario = Scenario::load(path)?;
    let label = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = TempDir::new(&label)?;
    let mut cookies = CookieCleanup::new(kind, tmp.path());
    let result = run_in(kind, &scenario, tmp.path(), &mut cookies);
    cookies.clean();
    for argv in &scenario.cleanup {
        let _ = run_command(argv);
    }
    result.map_err(|e| match &scenario.difference {
        Some(why) => format!("{e}\n(deliberate difference in this scenario: {why})"),
        None => e,
    })
}

fn run_in(kind: BrokerKind, sc: &Scenario, dir: &Path, cookies: &mut CookieCleanup) -> Result<(), String> {
    // Listeners for port-scan scenarios live as long as the scenario.
    let open1 = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let open2 = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let closed = broker::free_port(Listen::Ipv4)?;

    let configured_cookie_dir = dir.join("cookies");
    std::fs::create_dir_all(&configured_cookie_dir).map_err(|e| e.to_string())?;
    let cookie_dir = kind.cookie_dir(dir, &configured_cookie_dir);

    let mut v = Vars::default();
    v.set("dir", dir.to_string_lossy());
    v.set("cookie_dir", cookie_dir.to_string_lossy());
    v.set(
        "client_ip",
        if sc.listen == Listen::Ipv6 {
            "::1"
        } else {
            "127.0.0.1"
        },
    );
    v.set("hostname", hostname());
    v.set("now", format!("{}", vars::unix_now()));
    for i in 1..=4 {
        v.set(&format!("uuid{i}"), vars::random_uuid());
    }
    v.set("open_port1", port_of(&open1)?.to_string());
    v.set("open_port2", port_of(&open2)?.to_string());
    v.set("closed_port", closed.to_string());

    let config = dir.join("x2gobroker.conf");
    let profiles = dir.join("x2gobroker-sessionprofiles.conf");
    write(&config, &v.expand(&sc.config)?)?;
    write(&profiles, &v.expand(&sc.profiles)?)?;
    let files = sc
        .files
        .iter()
        .map(|f| (f, false))
        .chain(sc.executables.iter().map(|f| (f, true)));
    for ((name, content), executable) in files {
        let target = PathBuf::from(v.expand(name)?);
        let target = if target.is_absolute() {
            target
        } else {
            dir.join(target)
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        cookies.remember_path(&target);
        write(&target, &v.expand(content)?)?;
        if executable {
            let mode = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(&target, mode)
                .map_err(|e| format!("chmod {}: {e}", target.display()))?;
        }
    }

    for argv in &sc.setup {
        let argv: Vec<String> = argv.iter().map(|a| v.expand(a)).collect::<Result<_, _>>()?;
        run_command(&argv)?;
    }

    let auth_dir = dir.join("auth");
    std::fs::create_dir_all(&auth_dir).map_err(|e| e.to_string())?;
    let auth_socket = auth_dir.join("auth.sock");
    let _auth: Option<Running> = if sc.auth_service {
        Some(broker::start_auth_service(kind, dir, &auth_socket)?)
    } else {
        None
    };

    let mut env = Vec::new();
    let cert = if sc.tls { Some(tls::make_cert(dir)?) } else { None };
    if let Some(c) = &cert {
        env.push((
            "X2GOBROKER_SSL_CERTFILE".to_owned(),
            c.cert.to_string_lossy().into_owned(),
        ));
        env.push((
            "X2GOBROKER_SSL_KEYFILE".to_owned(),
            c.key.to_string_lossy().into_owned(),
        ));
    }
    for (k, val) in &sc.env {
        env.push((k.clone(), v.expand(val)?));
    }
    let setup = BrokerSetup {
        kind,
        dir,
        config: &config,
        profiles: &profiles,
        auth_socket: &auth_socket,
        listen: sc.listen,
        env,
        args: sc.args.iter().map(|a| v.expand(a)).collect::<Result<_, _>>()?,
    };
    let port = broker::free_port(sc.listen)?;
    if sc.start_fails.iter().any(|b| b == kind.name()) {
        return broker::expect_start_failure(&setup, port);
    }
    let running = broker::start_broker(&setup, port)?;
    let addr = broker::loopback(sc.listen, port);

    for (i, req) in sc.requests.iter().enumerate() {
        let what = format!(
            "request #{} ({} {}{})",
            i + 1,
            req.method,
            req.path,
            label_of(req)
        );
        for argv in &req.before {
            let argv: Vec<String> = argv.iter().map(|a| v.expand(a)).collect::<Result<_, _>>()?;
            run_command(&argv).map_err(|e| format!("{what}: {e}"))?;
        }
        // With retry_secs the request is repeated until it meets its expectation
        // (for changes the broker picks up asynchronously, e.g. a reloaded file).
        let deadline = Instant::now() + Duration::from_secs(req.retry_secs.unwrap_or(0));
        loop {
            let target = Target {
                addr,
                cert: cert.as_ref(),
                kind,
            };
            match attempt(&target, req, &mut v, cookies)? {
                Ok(()) => break,
                Err(_) if Instant::now() < deadline => std::thread::sleep(RETRY_INTERVAL),
                Err(mismatch) => {
                    return Err(format!(
                        "{what} against {}:\n  {mismatch}\n{}",
                        kind.name(),
                        running.log_tail()
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Pause between repetitions of a request with `retry_secs`.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Where requests go.
struct Target<'a> {
    addr: SocketAddr,
    cert: Option<&'a tls::CertFiles>,
    kind: BrokerKind,
}

/// Sends the request once and checks the answer. The outer error is fatal (the
/// scenario cannot go on); the inner one describes a mismatch.
fn attempt(
    t: &Target<'_>,
    req: &Request,
    v: &mut Vars,
    cookies: &mut CookieCleanup,
) -> Result<Result<(), String>, String> {
    let outgoing = outgoing(req, v)?;
    let timeout = req
        .timeout_secs
        .map(Duration::from_secs)
        .unwrap_or(http::DEFAULT_TIMEOUT);
    let answer = match t.cert {
        Some(c) => tls::send(t.addr, &outgoing, timeout, &c.cert)?,
        None => match http::send(t.addr, &outgoing, timeout) {
            // The original (one tornado process) now and then resets a
            // connection while the suite runs in parallel. It is the oracle,
            // not under test, so it gets one more try; ours gets none.
            Err(e) if t.kind == BrokerKind::Original && e.contains("reset by peer") => {
                http::send(t.addr, &outgoing, timeout)?
            }
            other => other?,
        },
    };
    let exp = req.expect.for_broker(t.kind);
    let resp = match (answer, exp.no_answer) {
        (None, true) => return Ok(Ok(())),
        (Some(r), true) => return Ok(Err(format!("expected no answer, got status {}", r.status))),
        (None, false) => return Ok(Err(format!("no answer within {timeout:?}"))),
        (Some(r), false) => r,
    };
    cookies.remember_body(&resp.body);
    // Captures first, so that this request's own checks can use them.
    for (name, pattern) in &req.capture {
        let re = expect::multiline(pattern)?;
        match re.captures(&resp.body).and_then(|c| c.get(1)) {
            Some(m) => v.set(name, m.as_str()),
            None => {
                return Ok(Err(format!(
                    "status {}, capture {name}: /{pattern}/ not found in {:?}",
                    resp.status, resp.body
                )))
            }
        }
    }
    let problems = expect::check(&resp, exp, v).map_err(|e| format!("scenario error: {e}"))?;
    if problems.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(problems.join("\n  ")))
    }
}

fn outgoing<'a>(req: &'a Request, v: &Vars) -> Result<Outgoing<'a>, String> {
    let body = if let Some(raw) = &req.body {
        Some(v.expand(raw)?)
    } else if !req.form.is_empty() {
        let mut parts = Vec::new();
        for (k, val) in &req.form {
            parts.push(format!(
                "{}={}",
                http::form_encode(k),
                http::form_encode(&v.expand(val)?)
            ));
        }
        Some(parts.join("&"))
    } else {
        None
    };
    let mut headers = Vec::new();
    let content_type = match &req.content_type {
        Some(ct) => v.expand(ct)?,
        None if body.is_some() => "application/x-www-form-urlencoded".to_owned(),
        None => String::new(),
    };
    if !content_type.is_empty() {
        headers.push(("Content-Type".to_owned(), content_type));
    }
    for (k, val) in &req.headers {
        headers.push((k.clone(), v.expand(val)?));
    }
    // The path is static text in the scenario; placeholders there would hide what is sent.
    Ok(Outgoing {
        method: &req.method,
        path: &req.path,
        headers,
        body,
    })
}

fn label_of(req: &Request) -> String {
    req.name.as_deref().map(|n| format!(", {n}")).unwrap_or_default()
}

/// Runs one command of a scenario (no shell); an error unless it exits 0.
fn run_command(argv: &[String]) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("run {argv:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{argv:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn write(path: &Path, content: &str) -> Result<(), String> {
    std::fs::write(path, content).map_err(|e| format!("write {}: {e}", path.display()))
}

fn port_of(l: &TcpListener) -> Result<u16, String> {
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// The host name the original substitutes for `localhost` (socket.gethostname()).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Without mount namespaces the original writes cookies into the effective user's
/// real home, shared by all scenarios; remove the files this scenario caused (named
/// `<user>_<uuid>`) as far as it saw them.
struct CookieCleanup {
    shared_dir: Option<PathBuf>,
    uuids: BTreeSet<String>,
    seeded: Vec<PathBuf>,
}

impl CookieCleanup {
    fn new(kind: BrokerKind, tmp: &Path) -> CookieCleanup {
        let dir = kind.cookie_dir(tmp, &tmp.join("cookies"));
        let shared_dir = if dir.starts_with(tmp) { None } else { Some(dir) };
        CookieCleanup {
            shared_dir,
            uuids: BTreeSet::new(),
            seeded: Vec::new(),
        }
    }

    fn remember_path(&mut self, p: &Path) {
        if self.shared_dir.as_ref().is_some_and(|d| p.starts_with(d)) {
            self.seeded.push(p.to_path_buf());
        }
    }

    fn remember_body(&mut self, body: &str) {
        if self.shared_dir.is_none() {
            return;
        }
        if let Ok(re) = regex::Regex::new("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}") {
            self.uuids
                .extend(re.find_iter(body).map(|m| m.as_str().to_owned()));
        }
    }

    fn clean(&self) {
        let Some(dir) = &self.shared_dir else { return };
        for p in &self.seeded {
            let _ = std::fs::remove_file(p);
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if self.uuids.iter().any(|u| name.ends_with(&format!("_{u}"))) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
