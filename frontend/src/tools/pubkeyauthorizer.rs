//! `x2gobroker-pubkeyauthorizer`: run on an X2Go server, fetches the
//! broker's public keys from its `/pubkeys/` URL and authorises them in
//! `~x2gobroker/.ssh/authorized_keys` — each only for the broker agent
//! (the original's restrictions: forced command, no forwarding, no pty),
//! whatever options the answer carried.

use crate::core::agent::remote::AUTHORIZED_KEY_OPTIONS;
use crate::core::config::Environment;
use clap::Parser;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

const PROGRAM: &str = "x2gobroker-pubkeyauthorizer";
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BODY: usize = 256 * 1024;

#[derive(Parser, Debug)]
#[command(
    name = "x2gobroker-pubkeyauthorizer",
    about = "X2Go Session Broker (PubKey Installer)",
    long_about = "X2Go Session Broker (PubKey Installer)\n\n\
        Retrieves the X2Go Session Broker's public SSH key(s) from its /pubkeys/ URL and \
        adds them to ~x2gobroker/.ssh/authorized_keys (X2GOBROKER_DAEMON_USER), each \
        restricted to the broker agent: command=\"/usr/lib/x2go/x2gobroker-agent\", \
        no-port-forwarding, no-X11-forwarding, no-agent-forwarding, no-pty. Run once on \
        each X2Go server of a multi-server farm, as root. HTTPS certificates are checked \
        against the system's CA certificates."
)]
pub struct Cli {
    /// The URL of the X2Go Session Broker that we want to retrieve public keys from, usually http(s)://<broker_hostname>:<port>/pubkeys/
    #[arg(
        short = 'b',
        short_alias = 't',
        long = "broker-url",
        value_name = "BROKER_URL"
    )]
    broker_url: Option<String>,
    /// --generate-man, --generate-completions
    #[command(flatten)]
    docs: x2gobroker_sys::docs::DocsArgs,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = cli.docs.handle::<Cli>(PROGRAM, "8") {
        return code;
    }
    super::init_logging(PROGRAM, false);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            log::error!("{message}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: &Cli) -> Result<(), (u8, String)> {
    if !nix::unistd::geteuid().is_root() {
        return Err((1, "the PubKey Authorizer has to run with root privileges".into()));
    }
    let Some(url) = &cli.broker_url else {
        return Err((2, "cannot proceed without a URL; use --broker-url".into()));
    };
    let env = Environment::from_process(PROGRAM).map_err(|e| (1, e.to_string()))?;
    let (user, group) = super::broker_account(&env).map_err(|e| (2, e))?;
    let body = tokio::time::timeout(FETCH_TIMEOUT, fetch(url))
        .await
        .map_err(|_| (1, format!("{url}: no answer within {FETCH_TIMEOUT:?}")))?
        .map_err(|e| (1, format!("{url}: {e}")))?;
    let keys =
        authorized_lines(&body).map_err(|e| (1, format!("{e}; check the URL {url} from a web browser")))?;
    if keys.is_empty() {
        log::info!("no public keys found at {url}");
        return Ok(());
    }
    log::info!("found {} public key(s) at {url}", keys.len());
    let ssh = user.dir.join(".ssh");
    if !ssh.exists() {
        std::fs::create_dir(&ssh).map_err(|e| (1, format!("{}: {e}", ssh.display())))?;
        std::os::unix::fs::chown(&ssh, Some(user.uid.as_raw()), Some(group.gid.as_raw()))
            .map_err(|e| (1, e.to_string()))?;
        std::fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .map_err(|e| (1, e.to_string()))?;
    }
    let file = ssh.join("authorized_keys");
    let old = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err((1, format!("{}: {e}", file.display()))),
    };
    let new = merge(&old, &keys);
    if new == old {
        log::info!("all keys already authorised in {}", file.display());
        return Ok(());
    }
    write_replacing(&file, &new, user.uid.as_raw(), group.gid.as_raw())
        .map_err(|e| (1, format!("{}: {e}", file.display())))?;
    log::info!("completed successfully: {} updated", file.display());
    Ok(())
}

/// The broker's keys as restricted authorized_keys lines: every non-empty,
/// non-comment line must hold one RSA, DSA or Ed25519 public key (after
/// any options, which are replaced by the agent's restrictions).
pub fn authorized_lines(body: &str) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for line in body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words
            .iter()
            .position(|w| matches!(*w, "ssh-rsa" | "ssh-dss" | "ssh-ed25519"))
        else {
            return Err("the broker returned something that does not look like SSH public keys".into());
        };
        let key_text = words[at..].join(" ");
        let key = ssh_key::PublicKey::from_openssh(&key_text)
            .map_err(|e| format!("not a valid public key: {e}"))?;
        let comment = words.get(at + 2).copied().unwrap_or("");
        if !comment.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a key comment contains odd characters".into());
        }
        let mut key = key;
        key.set_comment("");
        let public = key.to_openssh().map_err(|e| e.to_string())?;
        lines.push(
            format!("{AUTHORIZED_KEY_OPTIONS} {} {comment}", public.trim_end())
                .trim_end()
                .to_owned(),
        );
    }
    Ok(lines)
}

/// `old` with the new lines appended; a line with the same key but other
/// (or no) options is replaced, as the original drops those.
pub fn merge(old: &str, keys: &[String]) -> String {
    let key_of = |line: &str| -> Option<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| matches!(*w, "ssh-rsa" | "ssh-dss" | "ssh-ed25519"))?;
        words.get(at + 1).map(|k| (*k).to_owned())
    };
    let new_keys: Vec<Option<String>> = keys.iter().map(|k| key_of(k)).collect();
    let mut out: Vec<String> = Vec::new();
    for line in old.lines() {
        let same_key_other_line = key_of(line)
            .is_some_and(|k| new_keys.iter().any(|n| n.as_deref() == Some(k.as_str())))
            && !keys.iter().any(|k| k == line);
        if same_key_other_line {
            log::info!("dropping a line for the same key with other or no options");
            continue;
        }
        out.push(line.to_owned());
    }
    for key in keys {
        if !out.iter().any(|l| l == key) {
            out.push(key.clone());
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

fn write_replacing(path: &Path, text: &str, uid: u32, gid: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    std::fs::rename(&tmp, path)
}

/// One GET (HTTP, or HTTPS with the system's CA certificates); the body of
/// a 200 answer.
async fn fetch(url: &str) -> Result<String, String> {
    use hyper::header::{HOST, USER_AGENT};
    let uri: hyper::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("the URL must start with http:// or https://".into()),
    };
    let host = uri
        .host()
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let authority = uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_else(|| host.clone());
    let request = hyper::Request::get(path.as_str())
        .header(HOST, authority)
        .header(USER_AGENT, "X2Go Session Broker PubKey Authorizer")
        .body(hyper::Body::empty())
        .map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let response = if https {
        let tls = tokio::task::spawn_blocking(crate::core::authmech::tls_client_config)
            .await
            .map_err(|e| e.to_string())??;
        let name =
            tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(stream, request).await?
    } else {
        send(tcp, request).await?
    };
    if response.status() != hyper::StatusCode::OK {
        return Err(format!("HTTP status {}", response.status()));
    }
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = hyper::body::HttpBody::data(&mut body).await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        data.extend_from_slice(&chunk);
        if data.len() > MAX_BODY {
            return Err("the answer is too large".into());
        }
    }
    String::from_utf8(data).map_err(|_| "the answer is not text".to_owned())
}

async fn send<S>(
    stream: S,
    request: hyper::Request<hyper::Body>,
) -> Result<hyper::Response<hyper::Body>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::handshake(stream)
        .await
        .map_err(|e| e.to_string())?;
    // Detached: the body is read after this returns.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(request).await.map_err(|e| e.to_string());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn keys_get_the_agent_restrictions_whatever_was_sent() {
        let body = format!(
            "# comment\n\nssh-ed25519 {KEY} x2gobroker@broker\nenvironment=\"X=1\" ssh-ed25519 {KEY}\n"
        );
        let lines = authorized_lines(&body).unwrap();
        assert_eq!(
            lines[0],
            format!("{AUTHORIZED_KEY_OPTIONS} ssh-ed25519 {KEY} x2gobroker@broker")
        );
        assert_eq!(lines[1], format!("{AUTHORIZED_KEY_OPTIONS} ssh-ed25519 {KEY}"));
        assert!(authorized_lines("<html>not a key</html>").is_err());
        assert!(authorized_lines("ssh-rsa AAAAnotbase64").is_err());
    }

    #[test]
    fn merging_replaces_unrestricted_copies_and_keeps_the_rest() {
        let line = format!("{AUTHORIZED_KEY_OPTIONS} ssh-ed25519 {KEY} b@h");
        let old = format!("ssh-rsa AAAAother admin@x\nssh-ed25519 {KEY} b@h\n");
        let merged = merge(&old, std::slice::from_ref(&line));
        assert_eq!(merged, format!("ssh-rsa AAAAother admin@x\n{line}\n"));
        assert_eq!(merge(&merged, std::slice::from_ref(&line)), merged);
    }
}
