//! Which X2Go Server login a broker user may ask for (ARCHITECTURE.md P9). The
//! login is the broker user unless the configuration maps it:
//!
//! ```ini
//! [login-mapping]
//! # broker user = logins it may use on X2Go servers
//! alice = alice-admin, alice-test
//! ```
//!
//! (The original uses whatever `--login` the client names.)

use crate::core::ini::{parse_list, Ini};
use std::path::Path;

pub const SECTION: &str = "login-mapping";

/// Ok when `login` is `user` itself or mapped for `user` in `config`.
pub fn check(config: &Path, user: &str, login: &str) -> Result<(), String> {
    if login == user {
        return Ok(());
    }
    let ini = Ini::load(config).map_err(|e| format!("{e}"))?;
    let mapped = ini
        .section(SECTION)
        .and_then(|s| s.get(user))
        .map(parse_list)
        .unwrap_or_default();
    if mapped.iter().any(|l| l == login) {
        Ok(())
    } else {
        Err(format!(
            "login {login:?} differs from the broker user {user:?} and is not mapped for it in [{SECTION}] of {}",
            config.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mapped_logins_pass() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("x2gobroker.conf");
        std::fs::write(
            &conf,
            "[global]\n[login-mapping]\nalice = alice-admin, alice-test\n",
        )
        .unwrap();
        assert!(check(&conf, "alice", "alice").is_ok());
        assert!(check(&conf, "alice", "alice-test").is_ok());
        assert!(check(&conf, "alice", "bob").is_err());
        assert!(check(&conf, "bob", "alice-admin").is_err());
        // Same-name logins need no configuration at all.
        assert!(check(&dir.path().join("missing.conf"), "bob", "bob").is_ok());
    }
}
