//! `x2gobroker-testauth`: tries the configured authentication mechanism of
//! a backend for one user (PAM through the root auth helper, as the broker
//! does). The password comes from a prompt (a terminal) or one line on
//! stdin, never from the command line.

use crate::core::authmech::{authenticate, AuthContext, AuthMech};
use crate::core::backend::Backend;
use crate::core::broker::Broker;
use crate::core::config::Environment;
use clap::Parser;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use zeroize::Zeroizing;

const PROGRAM: &str = "x2gobroker-testauth";
/// Longest password line read.
const MAX_PASSWORD: usize = 4096;

#[derive(Parser, Debug)]
#[command(
    name = "x2gobroker-testauth",
    about = "X2Go Session Broker (Authentication Test Utility)",
    long_about = "X2Go Session Broker (Authentication Test Utility)\n\n\
        Tries the authentication mechanism configured for a backend (auth-mech, else \
        default-auth-mech) with a user's credentials, as the broker would: pam through the \
        auth helper (run as root or the broker account), https_get, none. The password is \
        read from a prompt, or as one line from stdin when stdin is not a terminal \
        (echo \"$PW\" | x2gobroker-testauth -u USER). Exits 0 when authentication \
        succeeded, 1 when it failed."
)]
pub struct Cli {
    /// Test authentication for the account with this username
    #[arg(
        short = 'u',
        long = "username",
        visible_alias = "user",
        value_name = "USERNAME"
    )]
    username: Option<String>,
    /// Refused: a password on the command line is visible to every user of the machine and lands in shell histories; use the prompt or stdin
    #[arg(short = 'p', long = "password", value_name = "PASSWORD")]
    password: Option<String>,
    /// Specify a special configuration file name (default: X2GOBROKER_CONFIG or /etc/x2go/x2gobroker.conf)
    #[arg(short = 'C', long = "config-file", value_name = "CONFIG_FILE")]
    config_file: Option<PathBuf>,
    /// Use this specific backend for testing authentication (default: X2GOBROKER_DEFAULT_BACKEND or inifile)
    #[arg(short = 'b', long = "backend", value_name = "BACKEND")]
    backend: Option<String>,
    /// enable debugging code
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// --generate-man, --generate-completions
    #[command(flatten)]
    docs: x2gobroker_sys::docs::DocsArgs,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = cli.docs.handle::<Cli>(PROGRAM, "1") {
        return code;
    }
    super::init_logging(PROGRAM, cli.debug);
    match run(cli) {
        Ok(true) => {
            println!("Authentication succeeded.");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("Authentication failed!");
            ExitCode::from(1)
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<bool, String> {
    if cli.password.is_some() {
        return Err("-p/--password is refused: give the password at the prompt or on stdin".into());
    }
    let user = cli.username.ok_or("cannot continue without --username")?;
    let mut env = Environment::from_process(PROGRAM).map_err(|e| e.to_string())?;
    if let Some(c) = cli.config_file {
        env.config_file = c;
    }
    let broker = Broker::load(&env).map_err(|e| format!("configuration: {e}"))?;
    let name = cli.backend.unwrap_or_else(|| env.default_backend.clone());
    let backend = Backend::from_name(&name).ok_or_else(|| format!("no such backend: {name}"))?;
    if !broker.backend_config(backend).enable {
        return Err(format!("backend not enabled: {name}"));
    }
    let mech_name = Backend::auth_mech_name(broker.backend_config(backend), &broker.global);
    let mech =
        AuthMech::from_name(&mech_name).ok_or_else(|| format!("unknown auth mechanism: {mech_name}"))?;
    let password = read_password()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let ctx = AuthContext {
        authservice_socket: &env.authservice_socket,
        https_get: &broker.https_get,
        client_address: None,
    };
    Ok(runtime.block_on(authenticate(mech, &user, &password, &ctx)))
}

/// From a prompt without echo on a terminal, else one line of stdin.
fn read_password() -> Result<Zeroizing<String>, String> {
    let stdin = std::io::stdin();
    let mut line = Zeroizing::new(String::new());
    if stdin.is_terminal() {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let saved = tcgetattr(&stdin).map_err(|e| format!("terminal: {e}"))?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(|e| format!("terminal: {e}"))?;
        let read = stdin.lock().take(MAX_PASSWORD as u64).read_line(&mut line);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
        read.map_err(|e| format!("reading the password: {e}"))?;
    } else {
        stdin
            .lock()
            .take(MAX_PASSWORD as u64)
            .read_line(&mut line)
            .map_err(|e| format!("reading the password: {e}"))?;
    }
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(line)
}
