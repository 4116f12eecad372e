//! The admin tools with real parts: x2gobroker-keygen writes a key pair
//! into a real account's home (xts-keyowner standing in for the broker
//! account) and refuses to overwrite it without --force;
//! x2gobroker-testauth asks real PAM through our auth helper for a real
//! user (xts-tauth), the password on stdin. The tools against the farm's
//! servers (pubkeyauthorizer, testagent) are scenarios in farm.rs.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output, Stdio};
use x2gobroker_systemtests::compliance::broker::{self, BrokerKind};
use x2gobroker_systemtests::support::{require_root, TestDir};

const KEY_OWNER: &str = "xts-keyowner";
const PAM_USER: &str = "xts-tauth";
const PAM_PASSWORD: &str = "Tauth-pw-1";

fn run(program: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(broker::our_program(program));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{program}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn keygen_makes_the_key_pair_and_keeps_it_without_force() {
    require_root("keygen writes into another account's home as root");
    let user = nix::unistd::User::from_name(KEY_OWNER)
        .unwrap()
        .expect("xts-keyowner (setup-test-env.sh)");
    let ssh = user.dir.join(".ssh");
    let _ = std::fs::remove_file(ssh.join("id_rsa"));
    let _ = std::fs::remove_file(ssh.join("id_rsa.pub"));
    let env = [
        ("X2GOBROKER_DAEMON_USER", KEY_OWNER),
        ("X2GOBROKER_DAEMON_GROUP", KEY_OWNER),
    ];
    let out = run("x2gobroker-keygen", &[], &env, "");
    assert!(out.status.success(), "{}", text(&out));
    let private = std::fs::read_to_string(ssh.join("id_rsa")).expect("id_rsa");
    let public = std::fs::read_to_string(ssh.join("id_rsa.pub")).expect("id_rsa.pub");
    assert!(
        private.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{}",
        &private[..40]
    );
    assert!(public.starts_with("ssh-rsa AAAAB3NzaC1yc2EA"), "{public}");
    let meta = std::fs::metadata(ssh.join("id_rsa")).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (user.uid.as_raw(), 0o600)
    );
    // ssh-keygen derives the same public key from the private one.
    let derived = Command::new("ssh-keygen")
        .args(["-y", "-f"])
        .arg(ssh.join("id_rsa"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&derived.stdout).split_whitespace().nth(1),
        public.split_whitespace().nth(1)
    );
    // A second run keeps the key; --force replaces it; DSA is refused.
    let again = run("x2gobroker-keygen", &[], &env, "");
    assert_eq!(again.status.code(), Some(3), "{}", text(&again));
    assert_eq!(std::fs::read_to_string(ssh.join("id_rsa.pub")).unwrap(), public);
    let forced = run("x2gobroker-keygen", &["-f", "-t", "ED25519"], &env, "");
    assert!(forced.status.success(), "{}", text(&forced));
    let ed = std::fs::read_to_string(ssh.join("id_ed25519.pub")).unwrap();
    assert!(ed.starts_with("ssh-ed25519 "), "{ed}");
    let dsa = run("x2gobroker-keygen", &["--key-type", "DSA"], &env, "");
    assert_eq!(dsa.status.code(), Some(2), "{}", text(&dsa));
}

#[test]
fn testauth_asks_pam_through_the_helper_password_from_stdin_only() {
    require_root("the auth helper runs PAM as root");
    let dir = TestDir::new("testauth");
    let socket = dir.path("auth.sock");
    let _helper = broker::start_auth_service(BrokerKind::Ours, dir.root(), &socket).expect("auth helper");
    let config = dir.path("x2gobroker.conf");
    std::fs::write(&config, "[global]\ndefault-auth-mech = pam\n").unwrap();
    let sock = socket.to_string_lossy().to_string();
    let env = [
        ("X2GOBROKER_AUTHSERVICE_SOCKET", sock.as_str()),
        ("X2GOBROKER_SESSIONPROFILES", "/dev/null"),
    ];
    let args = ["-u", PAM_USER, "-C", config.to_str().unwrap()];
    let ok = run("x2gobroker-testauth", &args, &env, &format!("{PAM_PASSWORD}\n"));
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("Authentication succeeded."),
        "{}",
        text(&ok)
    );
    let wrong = run("x2gobroker-testauth", &args, &env, "not-the-password\n");
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        String::from_utf8_lossy(&wrong.stdout).contains("Authentication failed!"),
        "{}",
        text(&wrong)
    );
    // A password in argv is refused before anything is asked.
    let argv = run(
        "x2gobroker-testauth",
        &["-u", PAM_USER, "-p", PAM_PASSWORD, "-C", config.to_str().unwrap()],
        &env,
        "",
    );
    assert_eq!(argv.status.code(), Some(2), "{}", text(&argv));
    assert!(
        !String::from_utf8_lossy(&argv.stdout).contains("succeeded"),
        "{}",
        text(&argv)
    );
}
