//! Parsers for command-line values that the programs share (clap
//! `value_parser`s): octal modes, seconds, the original's booleans.

use std::time::Duration;

pub fn parse_mode(s: &str) -> Result<u32, String> {
    let mode =
        u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|e| format!("not an octal mode: {e}"))?;
    if mode > 0o777 {
        return Err("mode must be at most 0777".into());
    }
    Ok(mode)
}

pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("not a number of seconds: {e}"))?;
    if !(0.01..=86400.0).contains(&secs) {
        return Err("must be between 0.01 and 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// X2GOBROKER_DEBUG uses the original's boolean spellings.
pub fn parse_bool_flag(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" | "" => Ok(false),
        other => Err(format!("not a boolean: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_seconds_are_validated() {
        assert!(parse_mode("0777").is_ok());
        assert!(parse_mode("1777").is_err());
        assert!(parse_mode("rw").is_err());
        assert_eq!(parse_seconds("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_seconds("-1").is_err());
    }
}
