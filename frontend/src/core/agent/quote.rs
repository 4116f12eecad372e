//! Values on their way to a remote agent: validated, then quoted for the
//! remote shell by one function.
//!
//! Over SSH the agent's command line reaches the X2Go server as
//! `SSH_ORIGINAL_COMMAND`; x2gobroker-agent.pl cuts it at the first `;` and
//! hands the rest to `system()`, i.e. to `/bin/sh`. So a value must never
//! contain `;` (the cut would break the quoting) and is otherwise wrapped in
//! single quotes, inside which `sh` interprets nothing. A value holding a
//! single quote or a control character is refused rather than escaped: no
//! legitimate agent argument needs one (ARCHITECTURE.md P7).

use std::fmt;

/// A value that cannot be sent to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeValue {
    pub what: &'static str,
    pub value: String,
}

impl fmt::Display for UnsafeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refusing to send {} {:?} to an agent", self.what, self.value)
    }
}

impl std::error::Error for UnsafeValue {}

fn unsafe_value(what: &'static str, value: &str) -> UnsafeValue {
    // Bounded, so a hostile value cannot flood the log.
    let value: String = value.chars().take(80).collect();
    UnsafeValue { what, value }
}

/// `value` as one word for the remote `sh`: single-quoted. Refuses `'`,
/// `;`, NUL and every other control character.
pub fn shell_word(value: &str) -> Result<String, UnsafeValue> {
    if value.chars().any(|c| c == '\'' || c == ';' || c.is_control()) {
        return Err(unsafe_value(
            "a value with a quote, ';' or control character",
            value,
        ));
    }
    Ok(format!("'{value}'"))
}

/// A user name as the agent and X2Go Server accept it: letters, digits,
/// `.`, `_`, `-`, `@`, a trailing `$` (machine accounts), not starting
/// with `-`, at most 256 bytes.
pub fn user_name(value: &str) -> Result<&str, UnsafeValue> {
    let body = value.strip_suffix('$').unwrap_or(value);
    let ok = !body.is_empty()
        && value.len() <= 256
        && !body.starts_with('-')
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    ok.then_some(value)
        .ok_or_else(|| unsafe_value("user name", value))
}

/// An X2Go session name (`user-50-1763900000_stDXFCE_dp24`): letters,
/// digits, `.`, `_`, `-`, not starting with `-`.
pub fn session_name(value: &str) -> Result<&str, UnsafeValue> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && !value.starts_with('-')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(value)
        .ok_or_else(|| unsafe_value("session name", value))
}

/// An authorized_keys path with the agent's placeholders (`%h`, `%u`,
/// `%U`, `%G`, `%%`): absolute or starting with a placeholder, no `..`.
pub fn keys_path(value: &str) -> Result<&str, UnsafeValue> {
    let ok = (value.starts_with('/') || value.starts_with('%'))
        && value.len() <= 4096
        && !value.split('/').any(|part| part == "..")
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'%' | b'+'));
    ok.then_some(value)
        .ok_or_else(|| unsafe_value("authorized_keys path", value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sh` makes of `script`, one argument per line.
    fn through_sh(script: &str) -> Vec<String> {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("for a in {script}; do printf '%s\\n' \"$a\"; done"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn quoted_words_reach_sh_unchanged() {
        let values = [
            "plain",
            "with space",
            "$(touch /tmp/xbt-pwned)",
            "`id`",
            "a|b&c>d<e",
            "*?[x]",
            "$HOME ${PATH}",
            "\"double\"",
            "back\\slash",
            "no-X11-forwarding,no-pty ssh-ed25519 AAAAC3Nz alice@127.0.0.1",
            "%h/.x2go/authorized_keys",
            "ünïcødé",
            "",
        ];
        let script: Vec<String> = values.iter().map(|v| shell_word(v).unwrap()).collect();
        assert_eq!(through_sh(&script.join(" ")), values);
        assert!(!std::path::Path::new("/tmp/xbt-pwned").exists());
    }

    #[test]
    fn values_that_could_escape_are_refused() {
        for bad in ["it's", "a;b", "a\nb", "a\rb", "nul\0", "tab\there", "\u{1b}[31m"] {
            assert!(shell_word(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_names() {
        for good in ["xbt-alice", "a.b_c-d", "user@REALM", "HOST$", "x"] {
            assert_eq!(user_name(good), Ok(good));
        }
        let long = "a".repeat(257);
        for bad in [
            "",
            "-rf",
            "a b",
            "a;b",
            "a'b",
            "a/b",
            "$",
            "$(id)",
            "ä",
            long.as_str(),
        ] {
            assert!(user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_names() {
        assert!(session_name("xbt-alice-50-1763900000_stDXFCE_dp24").is_ok());
        for bad in ["", "-x", "a b", "a;reboot", "a'b", "a/../b", "a|b"] {
            assert!(session_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_paths() {
        for good in ["%h/.x2go/authorized_keys", "/etc/ssh/keys/%u", "%%/x"] {
            assert!(keys_path(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "relative/x",
            "%h/../../etc/shadow",
            "/a b",
            "/a;b",
            "/a'b",
            "/$(id)",
        ] {
            assert!(keys_path(bad).is_err(), "{bad:?}");
        }
    }
}
