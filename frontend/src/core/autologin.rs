//! Auto-login keys: a fresh key pair per session selection whose public
//! half (restricted) is deployed for the user by the broker agent, or a
//! client-sent public key, validated as exactly one SSH public key line.
//! X2Go Client recognises only PEM RSA/DSA private keys, so RSA in PKCS#1
//! PEM is the default; Ed25519 can be chosen.

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

/// The options every deployed key gets: the original's for generated keys
/// but `no-pty`, because X2Go Client checks its login through a pty
/// (`ssh_channel_request_pty failed` otherwise; ARCHITECTURE.md, D:
/// auto-login key options). Port forwarding stays allowed: the session's
/// graphics and sound run through forwarded ports.
pub const KEY_OPTIONS: &str = "no-X11-forwarding,no-user-rc";

/// The authorized_keys line for a validated public key (`type base64`):
/// the options every deployed key gets and a `user@client` comment. A
/// client's own comment never reaches the server: the agent's delauthkey
/// puts the line into a sed expression.
pub fn authorized_line(key: &str, user: &str, client: &str) -> String {
    format!("{KEY_OPTIONS} {key} {user}@{client}")
}

/// Whether `line` is an authorized_keys line as this broker deploys it
/// (checked again when a pending removal is read back from disk).
pub fn is_deployable_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix(KEY_OPTIONS).and_then(|r| r.strip_prefix(' ')) else {
        return false;
    };
    let mut words = rest.split(' ');
    let (Some(kind), Some(key), Some(comment), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return false;
    };
    PublicKey::from_openssh(&format!("{kind} {key}")).is_ok()
        && !comment.is_empty()
        && comment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._:%-".contains(&b))
}

/// The kind of auto-login key made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA ([`RSA_BITS`]), private key in PKCS#1 PEM: what X2Go Client
    /// reads and the original hands out (the default).
    Rsa,
    /// Ed25519, private key in OpenSSH format (pyhoca-cli; not X2Go Client).
    Ed25519,
}

impl KeyType {
    /// `RSA` or `ED25519`, any case; None for anything else.
    pub fn parse(name: &str) -> Option<KeyType> {
        match name.trim().to_ascii_uppercase().as_str() {
            "RSA" => Some(KeyType::Rsa),
            "ED25519" => Some(KeyType::Ed25519),
            _ => None,
        }
    }
}

/// RSA key size: 3072 bits (NIST's size for use beyond 2030; the
/// original's keys have 2048).
pub const RSA_BITS: usize = 3072;

/// A new key pair for `user` connecting from `client`.
pub fn generate(kind: KeyType, user: &str, client: &str) -> Result<KeyPair, String> {
    let (public, private_key) = key_pair(kind)?;
    Ok(KeyPair {
        authorized_line: authorized_line(public.trim_end(), user, client),
        private_key,
    })
}

/// A new key pair: the public key as `type base64`, the private key (RSA:
/// PKCS#1 PEM, Ed25519: OpenSSH format).
pub fn key_pair(kind: KeyType) -> Result<(String, Zeroizing<String>), String> {
    Ok(match kind {
        KeyType::Ed25519 => {
            let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| e.to_string())?;
            let public = key.public_key().to_openssh().map_err(|e| e.to_string())?;
            (public, key.to_openssh(LineEnding::LF).map_err(|e| e.to_string())?)
        }
        KeyType::Rsa => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(|e| e.to_string())?;
            let data = ssh_key::public::RsaPublicKey {
                e: ssh_key::Mpint::from_positive_bytes(&key.e().to_bytes_be()).map_err(|e| e.to_string())?,
                n: ssh_key::Mpint::from_positive_bytes(&key.n().to_bytes_be()).map_err(|e| e.to_string())?,
            };
            let public = PublicKey::new(ssh_key::public::KeyData::Rsa(data), "")
                .to_openssh()
                .map_err(|e| e.to_string())?;
            let pem = key
                .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
                .map_err(|e| e.to_string())?;
            (public, Zeroizing::new(pem.to_string()))
        }
    })
}

/// The client's key as `type base64` when it sent one well-formed public
/// key line (type, base64 key, optional comment; no options, no line
/// breaks). Its comment is dropped.
pub fn validate_client_key(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.len() > 16 * 1024 || line.chars().any(|c| c.is_control()) {
        return None;
    }
    let mut key = PublicKey::from_openssh(line).ok()?;
    key.set_comment("");
    Some(key.to_openssh().ok()?.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_rsa_keys_are_pkcs1_pem() {
        let pair = generate(KeyType::Rsa, "alice", "127.0.0.1").unwrap();
        assert!(pair
            .authorized_line
            .starts_with("no-X11-forwarding,no-user-rc ssh-rsa AAAAB3NzaC1yc2E"));
        assert!(pair.authorized_line.ends_with(" alice@127.0.0.1"));
        assert!(pair.private_key.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(pair.private_key.ends_with("-----END RSA PRIVATE KEY-----\n"));
        // The public half in the line is the private key's.
        let words: Vec<&str> = pair.authorized_line.split(' ').collect();
        let public = PublicKey::from_openssh(&format!("{} {}", words[1], words[2])).unwrap();
        assert_eq!(public.algorithm(), Algorithm::Rsa { hash: None });
        assert_eq!(KeyType::parse(" rsa "), Some(KeyType::Rsa));
        assert_eq!(KeyType::parse("Ed25519"), Some(KeyType::Ed25519));
        assert_eq!(KeyType::parse("dsa"), None);
    }

    #[test]
    fn generated_ed25519_keys() {
        let pair = generate(KeyType::Ed25519, "alice", "127.0.0.1").unwrap();
        assert!(pair
            .authorized_line
            .starts_with("no-X11-forwarding,no-user-rc ssh-ed25519 AAAA"));
        assert!(pair.authorized_line.ends_with(" alice@127.0.0.1"));
        assert!(pair
            .private_key
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(pair.private_key.ends_with("-----END OPENSSH PRIVATE KEY-----\n"));
        let other = generate(KeyType::Ed25519, "alice", "127.0.0.1").unwrap();
        assert_ne!(pair.authorized_line, other.authorized_line);
    }

    #[test]
    fn client_keys_are_validated() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJSZ7MdQgSMO/vhrqv7CR+v6PfgOa4veOBWC7hnpVnxc";
        let good = format!("{key} alice@laptop");
        // The comment is dropped: it would reach the agent's sed expression.
        assert_eq!(validate_client_key(&good).as_deref(), Some(key));
        assert_eq!(validate_client_key(&format!(" {good}\n")).as_deref(), Some(key));
        assert_eq!(
            validate_client_key(&format!("{key} c!id>/tmp/o #!e#")).as_deref(),
            Some(key)
        );
        let line = authorized_line(key, "alice", "127.0.0.1");
        assert!(is_deployable_line(&line));
        assert!(is_deployable_line(&authorized_line(key, "alice", "::1")));
        for bad in [
            format!("{key} alice@x"),
            format!("command=\"/bin/sh\" {key} alice@x"),
            format!("{KEY_OPTIONS} {key} c!id>/tmp/o"),
            format!("{KEY_OPTIONS} {key} a b"),
            format!("{KEY_OPTIONS} ssh-ed25519 AAAA!! a@b"),
        ] {
            assert!(!is_deployable_line(&bad), "{bad}");
        }
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
