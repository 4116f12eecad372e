//! Rate limiting of repeated log lines: a storm of failing requests must
//! not fill the log. Lines of one kind (a fixed key per call site and
//! outcome, never a client value) are written at most [`BURST`] times per
//! [`WINDOW`]; the rest are counted, and the count is reported with the
//! next line of that kind ("… (N similar lines suppressed)") or by
//! [`flush`], which the daemon calls periodically. The counters
//! (crate::core::stats) still count every event.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(10);
pub const BURST: u32 = 10;

struct Kind {
    window_start: Instant,
    written: u32,
    suppressed: u64,
    level: log::Level,
    target: &'static str,
}

fn kinds() -> MutexGuard<'static, HashMap<&'static str, Kind>> {
    static KINDS: OnceLock<Mutex<HashMap<&'static str, Kind>>> = OnceLock::new();
    KINDS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether a line of kind `key` may be written now; `Some(n)`: yes, and
/// `n` lines of this kind were suppressed before it.
fn admit(key: &'static str, level: log::Level, target: &'static str) -> Option<u64> {
    let mut kinds = kinds();
    let now = Instant::now();
    let kind = kinds.entry(key).or_insert(Kind {
        window_start: now,
        written: 0,
        suppressed: 0,
        level,
        target,
    });
    if now.duration_since(kind.window_start) >= WINDOW {
        kind.window_start = now;
        kind.written = 0;
    }
    if kind.written >= BURST {
        kind.suppressed += 1;
        return None;
    }
    kind.written += 1;
    Some(std::mem::take(&mut kind.suppressed))
}

/// Writes `line()` (built only when written) unless too many lines of kind
/// `key` were written lately.
pub fn log(key: &'static str, target: &'static str, level: log::Level, line: impl FnOnce() -> String) {
    let Some(suppressed) = admit(key, level, target) else {
        return;
    };
    let line = line();
    if suppressed > 0 {
        log::log!(target: target, level, "{line} ({suppressed} similar lines suppressed)");
    } else {
        log::log!(target: target, level, "{line}");
    }
}

/// Reports the counts of kinds whose window has passed without another
/// line, so that the end of a storm is in the log too.
pub fn flush() {
    let mut pending = Vec::new();
    {
        let mut kinds = kinds();
        for (key, kind) in kinds.iter_mut() {
            if kind.suppressed > 0 && kind.window_start.elapsed() >= WINDOW {
                pending.push((
                    *key,
                    kind.target,
                    kind.level,
                    std::mem::take(&mut kind.suppressed),
                ));
                kind.window_start = Instant::now();
                kind.written = 0;
            }
        }
    }
    for (key, target, level, n) in pending {
        log::log!(target: target, level, "{key}: ({n} similar lines suppressed)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_counted() {
        let key = "test kind a";
        for _ in 0..BURST {
            assert_eq!(admit(key, log::Level::Info, "t"), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(admit(key, log::Level::Info, "t"), None);
        }
        // The next window's first line carries the count.
        kinds().get_mut(key).unwrap().window_start -= WINDOW;
        assert_eq!(admit(key, log::Level::Info, "t"), Some(5));
        assert_eq!(admit(key, log::Level::Info, "t"), Some(0));
    }
}
