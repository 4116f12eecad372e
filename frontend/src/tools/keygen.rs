//! `x2gobroker-keygen`: makes the SSH key pair the broker account
//! (X2GOBROKER_DAEMON_USER) uses to reach the agents on X2Go servers
//! (agent query mode SSH), in `~/.ssh` of that account.

use crate::core::autologin::{key_pair, KeyType};
use crate::core::config::Environment;
use clap::Parser;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;

const PROGRAM: &str = "x2gobroker-keygen";

#[derive(Parser, Debug)]
#[command(
    name = "x2gobroker-keygen",
    about = "X2Go Session Broker (Key Generator)",
    long_about = "X2Go Session Broker (Key Generator)\n\n\
        Generates the SSH key pair of the broker account (X2GOBROKER_DAEMON_USER, default \
        x2gobroker) in ~x2gobroker/.ssh. The broker uses it to reach the broker agents on \
        the X2Go servers (agent query mode SSH); deploy it there with \
        x2gobroker-pubkeyauthorizer. Run once per broker installation, as root."
)]
pub struct Cli {
    /// Key type: RSA (3072 bits, the default) or ED25519. DSA, which the original also offers, is refused: OpenSSH no longer accepts DSA keys
    #[arg(
        short = 't',
        long = "key-type",
        visible_alias = "key_type",
        value_name = "TYPE",
        default_value = "RSA"
    )]
    key_type: String,
    /// Overwrite an existing key pair (agents then need the new public key: run x2gobroker-pubkeyauthorizer on every X2Go server again)
    #[arg(short = 'f', long = "force")]
    force: bool,
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
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            log::error!("{message}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: &Cli) -> Result<(), (u8, String)> {
    if !nix::unistd::geteuid().is_root() {
        return Err((1, "the key generator has to run with root privileges".into()));
    }
    let (kind, file) = match cli.key_type.to_ascii_uppercase().as_str() {
        "RSA" => (KeyType::Rsa, "id_rsa"),
        "ED25519" => (KeyType::Ed25519, "id_ed25519"),
        "DSA" => {
            return Err((
                2,
                "DSA keys are not supported (OpenSSH no longer accepts them); use RSA or ED25519".into(),
            ))
        }
        other => {
            return Err((
                2,
                format!("unknown key type {other}; possible key types are RSA and ED25519"),
            ))
        }
    };
    let env = Environment::from_process(PROGRAM).map_err(|e| (1, e.to_string()))?;
    let (user, group) = super::broker_account(&env).map_err(|e| (2, e))?;
    let ssh = user.dir.join(".ssh");
    if !ssh.exists() {
        std::fs::create_dir(&ssh).map_err(|e| (1, format!("{}: {e}", ssh.display())))?;
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o750))
            .map_err(|e| (1, e.to_string()))?;
        nix::unistd::chown(&ssh, Some(user.uid), Some(group.gid)).map_err(|e| (1, e.to_string()))?;
        log::info!("created {}", ssh.display());
    }
    let private = ssh.join(file);
    if private.exists() && !cli.force {
        return Err((
            3,
            format!(
                "private key {} exists; use --force to overwrite it (then deploy the new public key with x2gobroker-pubkeyauthorizer)",
                private.display()
            ),
        ));
    }
    if private.exists() {
        log::warn!("overwriting the existing key pair {}", private.display());
    }
    let (public, secret) = key_pair(kind).map_err(|e| (1, format!("key generation: {e}")))?;
    write_file(&private, secret.as_bytes(), 0o600, user.uid, group.gid)?;
    log::info!("private key written to {}", private.display());
    let public_path = ssh.join(format!("{file}.pub"));
    write_file(
        &public_path,
        format!("{}\n", public.trim_end()).as_bytes(),
        0o644,
        user.uid,
        group.gid,
    )?;
    log::info!("public key written to {}", public_path.display());
    println!("{}", public.trim_end());
    Ok(())
}

/// Replaces `path` with a new file of that mode and owner (never through a
/// link an account could have placed there).
fn write_file(
    path: &Path,
    data: &[u8],
    mode: u32,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
) -> Result<(), (u8, String)> {
    let fail = |e: std::io::Error| (1, format!("{}: {e}", path.display()));
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(data).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::os::unix::fs::fchown(&f, Some(uid.as_raw()), Some(gid.as_raw())).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
