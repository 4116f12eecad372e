//! `x2gobroker-testagent`: runs one broker agent task, locally or on an
//! X2Go server over SSH as the broker does (the daemon user's key, the
//! configured host key policy), and prints the answer.

use crate::core::agent::remote::HostKeyPolicy;
use crate::core::agent::{Agent, LocalAgent, RemoteAgent};
use crate::core::autologin::{self, KeyType};
use crate::core::broker::Broker;
use crate::core::config::Environment;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

const PROGRAM: &str = "x2gobroker-testagent";

#[derive(Parser, Debug)]
#[command(
    name = "x2gobroker-testagent",
    about = "X2Go Session Broker (Agent Test Utility)",
    long_about = "X2Go Session Broker (Agent Test Utility)\n\n\
        Runs one broker agent task, on this machine (-H LOCAL) or on an X2Go server over \
        SSH with the broker account's key, and prints the agent's answer. Run as root: \
        the tool drops to the broker account (X2GOBROKER_DAEMON_USER) first. Exits 0 when \
        the task succeeded, 1 when it failed."
)]
pub struct Cli {
    /// List available broker agent tasks
    #[arg(long = "list-tasks")]
    list_tasks: bool,
    /// When testing the broker agent, test on behalf of this user (needed by all tasks but ping and checkload)
    #[arg(
        short = 'u',
        long = "username",
        visible_alias = "user",
        value_name = "USERNAME"
    )]
    username: Option<String>,
    /// Perform this task on the (remote) broker agent: ping, listsessions, findbusyservers, getservers, checkload, availabletasks, suspendsession, terminatesession, addauthkey, delauthkey
    #[arg(short = 't', long = "task", value_name = "AGENT_TASK", default_value = "ping")]
    task: String,
    /// Test X2Go Session Broker Agent on this (remote) host
    #[arg(short = 'H', long = "host", value_name = "HOSTNAME", default_value = "LOCAL")]
    host: String,
    /// For remote agent calls (via SSH) use this port as SSH port
    #[arg(short = 'p', long = "port", value_name = "PORT", default_value_t = 22)]
    port: u16,
    /// For SSH connections to a remote broker agent: permanently add the remote system's host key to the list of known hosts
    #[arg(short = 'A', long = "add-to-known-hosts")]
    add_to_known_hosts: bool,
    /// when testing the 'suspendsession' or the 'terminatesession' task, the session ID to test those tasks on
    #[arg(long = "session-id", value_name = "SESSION_ID")]
    session_id: Option<String>,
    /// use this public key when testing the 'addauthkey' and the 'delauthkey' tasks (default: a new one)
    #[arg(long = "pubkey", value_name = "PUBKEY_AS_STRING")]
    pubkey: Option<String>,
    /// Specify a special configuration file name (default: X2GOBROKER_CONFIG or /etc/x2go/x2gobroker.conf)
    #[arg(short = 'C', long = "config-file", value_name = "CONFIG_FILE")]
    config_file: Option<PathBuf>,
    /// enable debugging code
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// --generate-man, --generate-completions
    #[command(flatten)]
    docs: x2gobroker_sys::docs::DocsArgs,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = cli.docs.handle::<Cli>(PROGRAM, "8") {
        return code;
    }
    super::init_logging(PROGRAM, cli.debug);
    let mut env = match Environment::from_process(PROGRAM) {
        Ok(e) => e,
        Err(e) => return fail(&e.to_string()),
    };
    if let Some(c) = &cli.config_file {
        env.config_file = c.clone();
    }
    if nix::unistd::geteuid().is_root() {
        let account = match x2gobroker_sys::privileges::Account::resolve(&env.daemon_user) {
            Ok(a) => a,
            Err(e) => return fail(&e),
        };
        if let Err(e) = x2gobroker_sys::privileges::drop_to(&account.groups, account.gid, account.uid) {
            return fail(&format!("cannot drop privileges to {}: {e}", account.name));
        }
    } else {
        return fail("the agent test utility needs to be run with super-user privileges");
    }
    let user = cli.username.clone().unwrap_or_default();
    if user.is_empty() && !cli.list_tasks && !matches!(cli.task.as_str(), "ping" | "checkload") {
        return fail("cannot continue without --username");
    }
    // One call: a master connection would only outlive the tool (and
    // answer later calls after the key was withdrawn).
    crate::core::agent::remote::disable_multiplexing();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&e.to_string()),
    };
    runtime.block_on(run(&cli, &env, &user))
}

fn fail(message: &str) -> ExitCode {
    log::error!("{message}");
    ExitCode::from(2)
}

async fn run(cli: &Cli, env: &Environment, user: &str) -> ExitCode {
    let local = cli.host == "LOCAL";
    let agent = if local {
        Agent::Local(LocalAgent {
            command: env.agent_cmd.clone().into(),
        })
    } else {
        let policy = if cli.add_to_known_hosts {
            HostKeyPolicy::AutoAdd
        } else {
            match Broker::load(env) {
                Ok(b) => HostKeyPolicy::parse(&b.global.default_agent_hostkey_policy),
                Err(e) => return fail(&format!("configuration: {e}")),
            }
        };
        if !crate::core::agent::remote::broker_key_present() {
            return fail("this broker account has no SSH key (~/.ssh/id_rsa etc.) and cannot reach remote agents; run x2gobroker-keygen");
        }
        Agent::Remote(RemoteAgent {
            hostname: cli.host.clone(),
            hostaddr: cli.host.clone(),
            port: cli.port,
            policy,
            agent_user: env.agent_user.clone(),
            agent_cmd: env.agent_cmd.clone(),
        })
    };
    let where_ = if local { "local" } else { "remote" };
    println!("X2Go Session Broker (Agent Test Utility)");
    println!("----------------------------------------");
    let task = if cli.list_tasks {
        "availabletasks"
    } else {
        cli.task.as_str()
    };
    let result: Result<(bool, Vec<String>), String> = match task {
        "suspendsession" | "terminatesession" => match &cli.session_id {
            None => return fail(&format!("the task {task} needs --session-id")),
            Some(id) => {
                let r = if task == "suspendsession" {
                    agent.suspend_session(user, id).await
                } else {
                    agent.terminate_session(user, id).await
                };
                r.map(|ok| (ok, Vec::new())).map_err(|e| e.0)
            }
        },
        "addauthkey" | "delauthkey" => {
            let line = match &cli.pubkey {
                Some(k) => match autologin::validate_client_key(k) {
                    Some(key) => autologin::authorized_line(&key, user, "localhost"),
                    None => return fail("--pubkey is not one SSH public key"),
                },
                None => match autologin::generate(KeyType::Rsa, user, "localhost") {
                    Ok(pair) => pair.authorized_line,
                    Err(e) => return fail(&e),
                },
            };
            let keys_file = "%h/.x2go/authorized_keys";
            let r = if task == "addauthkey" {
                agent.add_authorized_key(user, &line, keys_file).await
            } else {
                agent.delete_authorized_key(user, &line, keys_file).await
            };
            r.map(|ok| (ok, vec![line])).map_err(|e| e.0)
        }
        _ => agent
            .plain_task(if user.is_empty() { "foo" } else { user }, task)
            .await
            .map(|a| (a.ok, a.lines))
            .map_err(|e| e.0),
    };
    match result {
        Ok((true, lines)) => {
            if cli.list_tasks {
                println!("The queried broker agent supports these tasks / features:");
                println!();
                for l in &lines {
                    println!("   {l}");
                }
            } else if lines.is_empty() {
                println!("The broker agent could be reached but the task returned no printable output (which probably is fine).");
            } else {
                println!("{}", lines.join("\n"));
            }
            println!();
            println!("The task '{task}' could be executed successfully on the {where_} broker agent.");
            ExitCode::SUCCESS
        }
        Ok((false, _)) => {
            println!("The task '{task}' failed to execute on the {where_} broker agent.");
            ExitCode::from(1)
        }
        Err(e) => {
            println!("{e}.");
            println!("The task '{task}' failed to execute on the {where_} broker agent.");
            ExitCode::from(1)
        }
    }
}
