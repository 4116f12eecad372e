//! Auto-login keys: a fresh key pair per session selection whose public
//! half (restricted) is deployed for the user by the broker agent, or a
//! client-sent public key, validated as exactly one SSH public key line.

use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};
use std::time::Duration;
use zeroize::Zeroizing;

/// The original removes deployed keys again after this long.
pub const KEY_LIFETIME: Duration = Duration::from_secs(20);

pub struct KeyPair {
    /// The authorized_keys line: options, key, `user@client` comment.
    pub authorized_line: String,
    /// OpenSSH private key text, ending with a newline.
    pub private_key: Zeroizing<String>,
}

/// The options every deployed key gets (the original's for generated keys).
pub const KEY_OPTIONS: &str = "no-X11-forwarding,no-pty,no-user-rc";

/// A validated client key with the same restrictions as a generated one
/// (the original deploys client keys unrestricted).
pub fn restricted(key: &str) -> String {
    format!("{KEY_OPTIONS} {key}")
}

/// A new Ed25519 key pair for `user` connecting from `client`.
pub fn generate(user: &str, client: &str) -> Result<KeyPair, String> {
    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| e.to_string())?;
    let public = key.public_key().to_openssh().map_err(|e| e.to_string())?;
    let private_key = key.to_openssh(LineEnding::LF).map_err(|e| e.to_string())?;
    Ok(KeyPair {
        authorized_line: format!("{KEY_OPTIONS} {public} {user}@{client}"),
        private_key,
    })
}

/// The client's key when it is one well-formed public key line (type,
/// base64 key, optional comment; no options, no line breaks).
pub fn validate_client_key(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.len() > 16 * 1024 || line.chars().any(|c| c.is_control()) {
        return None;
    }
    PublicKey::from_openssh(line).ok()?;
    Some(line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys() {
        let pair = generate("alice", "127.0.0.1").unwrap();
        assert!(pair
            .authorized_line
            .starts_with("no-X11-forwarding,no-pty,no-user-rc ssh-ed25519 AAAA"));
        assert!(pair.authorized_line.ends_with(" alice@127.0.0.1"));
        assert!(pair
            .private_key
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(pair.private_key.ends_with("-----END OPENSSH PRIVATE KEY-----\n"));
        let other = generate("alice", "127.0.0.1").unwrap();
        assert_ne!(pair.authorized_line, other.authorized_line);
    }

    #[test]
    fn client_keys_are_validated() {
        let good =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJSZ7MdQgSMO/vhrqv7CR+v6PfgOa4veOBWC7hnpVnxc alice@laptop";
        assert_eq!(validate_client_key(good).as_deref(), Some(good));
        assert_eq!(validate_client_key(&format!(" {good}\n")).as_deref(), Some(good));
        for bad in [
            "",
            "command=\"/bin/false\" not-a-key at all",
            &format!("command=\"/bin/sh\" {good}"),
            &format!("{good}\n{good}"),
            "ssh-ed25519 not-base64!",
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIJSZ7MdQgSMO/vhrqv7CR+v6PfgOa4veOBWC7hnpVnxc",
        ] {
            assert_eq!(validate_client_key(bad), None, "{bad:?}");
        }
    }
}
