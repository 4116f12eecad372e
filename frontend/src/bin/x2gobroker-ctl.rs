//! `x2gobroker-ctl status [--json]`: admin diagnostics of the running
//! broker — the auth helper's status (protocol `Request::Status` over the
//! helper socket) and the daemon's (its local control socket). For root and
//! members of the admin group; both services check the caller themselves.
#![forbid(unsafe_code)]

use clap::{CommandFactory, Parser, Subcommand};
use std::fmt::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use x2gobroker_frontend::core::jsonout;
use x2gobroker_frontend::daemon::control::{socket_path, CONTROL_SOCKET_ENV};
use x2gobroker_protocol::client::blocking::Client;
use x2gobroker_protocol::control::{ControlRequest, ControlResponse, DaemonStatus};
use x2gobroker_protocol::frame::blocking::{read_message, write_message};
use x2gobroker_protocol::paths::{AUTHSERVICE_SOCKET_ENV, DEFAULT_AUTHSERVICE_SOCKET};
use x2gobroker_protocol::{Request, Response, StatusReport};

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
    /// Write the manual page into DIR and exit
    #[arg(long = "generate-man", value_name = "DIR", hide = true)]
    generate_man: Option<PathBuf>,
    /// Write bash, zsh and fish completions into DIR and exit
    #[arg(long = "generate-completions", value_name = "DIR", hide = true)]
    generate_completions: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Versions, uptime, request and authentication counters, configuration
    /// generation and the last reload error of the helper and the daemon
    Status {
        /// Machine-readable output (one JSON object)
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = x2gobroker_frontend::cli::manpages::handle(
        Cli::command,
        "x2gobroker-ctl",
        "8",
        cli.generate_man.as_deref(),
        cli.generate_completions.as_deref(),
    ) {
        return code;
    }
    let Some(Command::Status { json }) = cli.command else {
        let _ = Cli::command().print_help();
        return ExitCode::from(2);
    };
    let helper_path = cli
        .authservice_socket
        .clone()
        .or_else(|| std::env::var_os(AUTHSERVICE_SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_AUTHSERVICE_SOCKET));
    let control_path = socket_path(cli.control_socket.as_deref());
    let helper = helper_status(&helper_path);
    let daemon = daemon_status(&control_path);
    let text = if json {
        render_json(&helper, &daemon)
    } else {
        render_text(&helper, &helper_path, &daemon, &control_path)
    };
    print!("{text}");
    if helper.is_ok() && daemon.is_ok() {
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
    write_message(&mut stream, &ControlRequest::Status).map_err(|e| e.to_string())?;
    match read_message::<ControlResponse, _>(&mut stream).map_err(|e| e.to_string())? {
        ControlResponse::Status(s) => Ok(s),
        ControlResponse::Denied(why) => Err(format!("denied: {why}")),
    }
}

fn render_text(
    helper: &Result<StatusReport, String>,
    helper_path: &Path,
    daemon: &Result<DaemonStatus, String>,
    control_path: &Path,
) -> String {
    let mut out = String::new();
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

fn json_str(s: &str) -> String {
    let mut out = String::new();
    jsonout::string(&mut out, s);
    out
}

fn render_json(helper: &Result<StatusReport, String>, daemon: &Result<DaemonStatus, String>) -> String {
    let helper = match helper {
        Ok(h) => {
            let c = &h.counters;
            format!(
                "{{\"version\":{},\"uptime_secs\":{},\"requests\":{},\"in_flight\":{},\"successes\":{},\"failures\":{},\"throttled\":{},\"policy_denials\":{}}}",
                json_str(&h.version),
                h.uptime_secs,
                c.requests,
                c.in_flight,
                c.successes,
                c.failures,
                c.throttled,
                c.policy_denials
            )
        }
        Err(e) => format!("{{\"error\":{}}}", json_str(e)),
    };
    let daemon = match daemon {
        Ok(d) => format!(
            "{{\"version\":{},\"pid\":{},\"uptime_secs\":{},\"requests\":{},\"in_flight\":{},\"auth_successes\":{},\"auth_failures\":{},\"auth_throttled\":{},\"config_generation\":{},\"last_reload_error\":{}}}",
            json_str(&d.version),
            d.pid,
            d.uptime_secs,
            d.requests,
            d.in_flight,
            d.auth_successes,
            d.auth_failures,
            d.auth_throttled,
            d.config_generation,
            d.last_reload_error.as_deref().map(json_str).unwrap_or_else(|| "null".into())
        ),
        Err(e) => format!("{{\"error\":{}}}", json_str(e)),
    };
    format!("{{\"authhelper\":{helper},\"daemon\":{daemon}}}\n")
}
