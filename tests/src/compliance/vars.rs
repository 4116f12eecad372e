//! `${name}` placeholders in scenario text.
//!
//! Fixed per run: `dir` (the scenario's temp dir), `cookie_dir` (where the broker
//! under test keeps dynamic cookies), `client_ip`, `hostname`, `uuid1`…`uuid4`
//! (fresh random UUIDs), `now` (Unix time), `open_port1`/`open_port2` (loopback
//! ports with a listener), `closed_port` (a loopback port nobody listens on).
//! Computed: `${ago:SECONDS}` (Unix time SECONDS ago). Captured: whatever a
//! request's `capture` names.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Known placeholder values.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    values: BTreeMap<String, String>,
}

impl Vars {
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_owned(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Replaces every `${…}`; an unknown name is an error (a typo must not pass silently).
    pub fn expand(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated placeholder in {text:?}"))?;
            let name = &after[..end];
            out.push_str(&self.value_of(name)?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn value_of(&self, name: &str) -> Result<String, String> {
        if let Some(seconds) = name.strip_prefix("ago:") {
            let seconds: f64 = seconds
                .parse()
                .map_err(|_| format!("bad placeholder ${{{name}}}"))?;
            return Ok(format!("{}", unix_now() - seconds));
        }
        self.get(name)
            .map(str::to_owned)
            .ok_or_else(|| format!("unknown placeholder ${{{name}}}"))
    }
}

/// Seconds since the epoch, as the original writes into cookie files.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A random version-4 UUID in the usual text form.
pub fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn fill_random(buf: &mut [u8]) {
    use std::io::Read;
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok();
    if !ok {
        // Uniqueness is all the suite needs; fall back to time and a counter.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(COUNTER.fetch_add(1, Ordering::Relaxed));
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_known_and_rejects_unknown() {
        let mut v = Vars::default();
        v.set("dir", "/tmp/x");
        assert_eq!(v.expand("a ${dir}/b {json}").unwrap(), "a /tmp/x/b {json}");
        assert!(v.expand("${nope}").is_err());
        assert!(v.expand("${dir").is_err());
        let ago: f64 = v.expand("${ago:100}").unwrap().parse().unwrap();
        assert!(ago < unix_now() - 99.0);
    }

    #[test]
    fn uuid_has_the_usual_shape() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, random_uuid());
    }
}
