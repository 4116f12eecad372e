//! `x2gobroker-ctl status [--json] [--only authhelper|daemon]`: admin
//! diagnostics of the running broker — the auth helper's status (protocol
//! `Request::Status` over the helper socket) and the daemon's (its local
//! control socket). For root and members of the admin group; both services
//! check the caller themselves. The only status client of either: nothing
//! of it needs to run as root.
#![forbid(unsafe_code)]

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use std::fmt::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use x2gobroker_frontend::daemon::control::{socket_path, CONTROL_SOCKET_ENV};
use x2gobroker_protocol::client::blocking::Client;
use x2gobroker_protocol::control::{ControlRequest, ControlResponse, DaemonStatus};
use x2gobroker_protocol::frame::blocking::{read_message, write_message};
use x2gobroker_protocol::paths::{AUTHSERVICE_SOCKET_ENV, DEFAULT_AUTHSERVICE_SOCKET};
use x2gobroker_protocol::{Counters, Request, Response, StatusReport};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    name = "x2gobroker-ctl",
    about = "Diagnostics of the running X2Go Session Broker (root or admin group)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Daemon control socket (default: X2GOBROKER_CONTROL_SOCKET or /run/x2gobroker-daemon/control.socket)
    #[arg(long = "control-socket", value_name = "PATH", global = true)]
    control_socket: Option<PathBuf>,
    /// Auth helper socket (default: X2GOBROKER_AUTHSERVICE_SOCKET or /run/x2gobroker/x2gobroker-authservice.socket)
    #[arg(long = "authservice-socket", value_name = "PATH", global = true)]
    authservice_socket: Option<PathBuf>,
    /// --generate-man, --generate-completions
    #[command(flatten)]
    docs: x2gobroker_sys::docs::DocsArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Versions, uptime, request and authentication counters, configuration
    /// generation and the last reload error of the helper and the daemon
    Status {
        /// Machine-readable output (one JSON object)
        #[arg(long)]
        json: bool,
        /// Ask only this part of the broker (default: both)
        #[arg(long, value_enum)]
        only: Option<Part>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    Authhelper,
    Daemon,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = cli.docs.handle::<Cli>("x2gobroker-ctl", "8") {
        return code;
    }
    let Some(Command::Status { json, only }) = cli.command else {
        let _ = Cli::command().print_help();
        return ExitCode::from(2);
    };
    let helper_path = cli
        .authservice_socket
        .clone()
        .or_else(|| std::env::var_os(AUTHSERVICE_SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_AUTHSERVICE_SOCKET));
    let control_path = socket_path(cli.control_socket.as_deref());
    let helper = (only != Some(Part::Daemon)).then(|| helper_status(&helper_path));
    let daemon = (only != Some(Part::Authhelper)).then(|| daemon_status(&control_path));
    let text = if json {
        render_json(helper.as_ref(), daemon.as_ref())
    } else {
        render_text(helper.as_ref(), &helper_path, daemon.as_ref(), &control_path)
    };
    print!("{text}");
    if !matches!(helper, Some(Err(_))) && !matches!(daemon, Some(Err(_))) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn helper_status(path: &Path) -> Result<StatusReport, String> {
    let mut client = Client::connect(path, TIMEOUT).map_err(|e| e.to_string())?;
    match client.call(&Request::Status).map_err(|e| e.to_string())? {
        Response::Status(report) => Ok(report),
        Response::Error(e) => Err(e.to_string()),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}

fn daemon_status(path: &Path) -> Result<DaemonStatus, String> {
    let mut stream =
        UnixStream::connect(path).map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    // A caller who may not ask is refused before its request is read (and
    // disconnected): the refusal is then waiting although the write failed.
    let written = write_message(&mut stream, &ControlRequest::Status).map_err(|e| e.to_string());
    let read = read_message::<ControlResponse, _>(&mut stream).map_err(|e| e.to_string());
    match read.or_else(|e| written.and(Err(e)))? {
        ControlResponse::Status(s) => Ok(s),
        ControlResponse::Denied(why) => Err(format!("denied: {why}")),
    }
}

fn render_text(
    helper: Option<&Result<StatusReport, String>>,
    helper_path: &Path,
    daemon: Option<&Result<DaemonStatus, String>>,
    control_path: &Path,
) -> String {
    let mut out = String::new();
    if let Some(helper) = helper {
        let _ = writeln!(out, "auth helper ({}):", helper_path.display());
        match helper {
            Ok(h) => {
                let c = &h.counters;
                let _ = writeln!(out, "  version: {}", h.version);
                let _ = writeln!(out, "  uptime: {}s", h.uptime_secs);
                let _ = writeln!(
                    out,
                    "  requests: {} (in flight {}), authentications: {} succeeded, {} failed, {} throttled, {} denied by policy",
                    c.requests, c.in_flight, c.successes, c.failures, c.throttled, c.policy_denials
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  error: {e}");
            }
        }
    }
    let Some(daemon) = daemon else {
        return out;
    };
    let _ = writeln!(out, "daemon ({}):", control_path.display());
    match daemon {
        Ok(d) => {
            let _ = writeln!(out, "  version: {}", d.version);
            let _ = writeln!(out, "  pid: {}", d.pid);
            let _ = writeln!(out, "  uptime: {}s", d.uptime_secs);
            let _ = writeln!(out, "  requests: {} (in flight {})", d.requests, d.in_flight);
            let _ = writeln!(
                out,
                "  authentications: {} granted, {} refused, {} throttled",
                d.auth_successes, d.auth_failures, d.auth_throttled
            );
            let _ = writeln!(out, "  configuration generation: {}", d.config_generation);
            let _ = writeln!(
                out,
                "  last reload error: {}",
                d.last_reload_error.as_deref().unwrap_or("none")
            );
            let _ = writeln!(out, "  state store: {}", d.state_store);
            let _ = writeln!(out, "  state store health: {}", d.state_store_health);
            if let Some(n) = d.pending_key_removals {
                let _ = writeln!(out, "  pending key removals: {n}");
            }
            // The metrics endpoint's numbers (histogram buckets: --json or
            // the endpoint itself).
            let _ = writeln!(out, "  metrics:");
            for line in d.metrics.lines() {
                if !line.starts_with('#') && !line.contains("_bucket{") {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  error: {e}");
        }
    }
    if std::env::var_os(CONTROL_SOCKET_ENV).is_none() && daemon.is_err() {
        let _ = writeln!(
            out,
            "(set {CONTROL_SOCKET_ENV} or --control-socket for another daemon)"
        );
    }
    out
}

/// The helper's part of the JSON object: its counters beside version and uptime.
#[derive(Serialize)]
struct HelperJson<'a> {
    version: &'a str,
    uptime_secs: u64,
    #[serde(flatten)]
    counters: &'a Counters,
}

/// A part that answered, or `{"error": "..."}`.
#[derive(Serialize)]
#[serde(untagged)]
enum Answer<T> {
    Ok(T),
    Err { error: String },
}

impl<T> Answer<T> {
    fn of<'a, S>(result: &'a Result<S, String>, ok: impl FnOnce(&'a S) -> T) -> Self {
        match result {
            Ok(s) => Answer::Ok(ok(s)),
            Err(e) => Answer::Err { error: e.clone() },
        }
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    authhelper: Option<Answer<HelperJson<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    daemon: Option<Answer<&'a DaemonStatus>>,
}

fn render_json(
    helper: Option<&Result<StatusReport, String>>,
    daemon: Option<&Result<DaemonStatus, String>>,
) -> String {
    let status = StatusJson {
        authhelper: helper.map(|h| {
            Answer::of(h, |h| HelperJson {
                version: &h.version,
                uptime_secs: h.uptime_secs,
                counters: &h.counters,
            })
        }),
        daemon: daemon.map(|d| Answer::of(d, |d| d)),
    };
    // Serialising plain structs of strings and numbers cannot fail.
    let text = serde_json::to_string(&status).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    format!("{text}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_its_shape_and_escapes_through_serde() {
        let helper = Ok(StatusReport {
            version: "0.1.0".into(),
            uptime_secs: 5,
            counters: Counters {
                requests: 3,
                successes: 1,
                ..Counters::default()
            },
        });
        let daemon = Err("cannot connect to \"/x\"\n".to_string());
        let text = render_json(Some(&helper), Some(&daemon));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["authhelper"]["requests"], 3);
        assert_eq!(value["authhelper"]["successes"], 1);
        assert_eq!(value["authhelper"]["version"], "0.1.0");
        assert_eq!(value["daemon"]["error"], "cannot connect to \"/x\"\n");
        let daemon = Ok(DaemonStatus {
            config_generation: 2,
            ..DaemonStatus::default()
        });
        let text = render_json(None, Some(&daemon));
        assert!(text.starts_with("{\"daemon\":{"), "{text}");
        assert!(text.contains("\"config_generation\":2"), "{text}");
        assert!(text.contains("\"last_reload_error\":null"), "{text}");
    }
}
