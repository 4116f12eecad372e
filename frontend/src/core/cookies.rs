//! Dynamic authentication cookies: one file per issued cookie in the
//! cookie directory, named `<user>_<cookie>`, holding `<client ip> <time>`.
//! Names come only from validated user names and cookie values, files are
//! written 0600 through a temporary file and a rename.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq)]
pub struct CookieRecord {
    pub client_ip: String,
    /// Seconds since the epoch of the password authentication.
    pub issued: f64,
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A user name usable in a file name: no path separators, no leading dot,
/// no control characters, bounded length.
pub fn valid_user_name(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 256
        && !user.starts_with('.')
        && !user.chars().any(|c| c == '/' || c.is_control())
}

/// A cookie value as we issue them (UUID text); anything else is unknown.
pub fn valid_cookie(cookie: &str) -> bool {
    !cookie.is_empty() && cookie.len() <= 64 && cookie.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub fn new_cookie() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(Debug, Clone)]
pub struct CookieStore {
    dir: PathBuf,
}

impl CookieStore {
    pub fn new(dir: &Path) -> CookieStore {
        CookieStore { dir: dir.to_owned() }
    }

    /// Creates the directory (0700) when missing.
    pub fn ensure_dir(&self) -> std::io::Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
    }

    fn path(&self, user: &str, cookie: &str) -> Option<PathBuf> {
        (valid_user_name(user) && valid_cookie(cookie)).then(|| self.dir.join(format!("{user}_{cookie}")))
    }

    pub fn write(&self, user: &str, cookie: &str, record: &CookieRecord) -> std::io::Result<()> {
        let Some(path) = self.path(user, cookie) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "invalid user name or cookie",
            ));
        };
        let tmp = self.dir.join(format!(".{user}_{cookie}.{}", new_cookie()));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            write!(f, "{} {}", record.client_ip, record.issued)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Issues a new cookie for `user` and returns it.
    pub fn issue(&self, user: &str, record: &CookieRecord) -> std::io::Result<String> {
        let cookie = new_cookie();
        self.write(user, &cookie, record)?;
        Ok(cookie)
    }

    pub fn read(&self, user: &str, cookie: &str) -> Option<CookieRecord> {
        let path = self.path(user, cookie)?;
        let text = fs::read_to_string(path).ok()?;
        let mut words = text.split_whitespace();
        let client_ip = words.next()?.to_owned();
        let issued = words.next()?.parse().ok()?;
        Some(CookieRecord { client_ip, issued })
    }

    pub fn remove(&self, user: &str, cookie: &str) {
        if let Some(path) = self.path(user, cookie) {
            let _ = fs::remove_file(path);
        }
    }

    /// Consumes the cookie: renames its file to a name of this caller's
    /// own, then removes it. True for the one caller whose rename
    /// succeeded; every other caller finds the file gone.
    pub fn take(&self, user: &str, cookie: &str) -> bool {
        let Some(path) = self.path(user, cookie) else {
            return false;
        };
        let taken = self.dir.join(format!(".taken.{}", new_cookie()));
        if fs::rename(&path, &taken).is_err() {
            return false;
        }
        let _ = fs::remove_file(&taken);
        true
    }

    /// The cookies of `user` with their records.
    pub fn of_user(&self, user: &str) -> Vec<(String, CookieRecord)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let (owner, cookie) = name.rsplit_once('_')?;
                if owner != user {
                    return None;
                }
                let record = self.read(user, cookie)?;
                Some((cookie.to_owned(), record))
            })
            .collect()
    }

    /// Removes cookies older than `timeout` seconds; returns how many.
    pub fn remove_expired(&self, timeout: i64) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((user, cookie)) = name.rsplit_once('_') else {
                continue;
            };
            if let Some(record) = self.read(user, cookie) {
                if now - record.issued > timeout as f64 {
                    self.remove(user, cookie);
                    removed += 1;
                }
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn names_are_validated() {
        assert!(valid_user_name("xbt-alice"));
        assert!(valid_user_name("DOMAIN\\user"));
        for bad in ["", "../etc", "a/b", ".hidden", "a\nb"] {
            assert!(!valid_user_name(bad), "{bad:?}");
        }
        assert!(valid_cookie(&new_cookie()));
        for bad in ["", "../x", "a b", "a_b"] {
            assert!(!valid_cookie(bad), "{bad:?}");
        }
    }

    #[test]
    fn issue_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = CookieStore::new(&dir.path().join("cookies"));
        store.ensure_dir().unwrap();
        let record = CookieRecord {
            client_ip: "127.0.0.1".into(),
            issued: 1700000000.5,
        };
        let c = store.issue("alice", &record).unwrap();
        let path = dir.path().join("cookies").join(format!("alice_{c}"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "127.0.0.1 1700000000.5");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(store.read("alice", &c), Some(record));
        assert_eq!(store.read("bob", &c), None);
        assert_eq!(store.read("../cookies/alice", &c), None);
        store.remove("alice", &c);
        assert_eq!(store.read("alice", &c), None);
        assert!(store
            .write(
                "a/b",
                &c,
                &CookieRecord {
                    client_ip: "x".into(),
                    issued: 0.0
                }
            )
            .is_err());
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path().join("cookies")).unwrap().count(), 0);
    }

    #[test]
    fn expired_cookies_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = CookieStore::new(dir.path());
        let old = store
            .issue(
                "u",
                &CookieRecord {
                    client_ip: "1.2.3.4".into(),
                    issued: 1.0,
                },
            )
            .unwrap();
        let fresh = store
            .issue(
                "u",
                &CookieRecord {
                    client_ip: "1.2.3.4".into(),
                    issued: now(),
                },
            )
            .unwrap();
        assert_eq!(store.remove_expired(3600), 1);
        assert!(store.read("u", &old).is_none());
        assert!(store.read("u", &fresh).is_some());
    }
}
