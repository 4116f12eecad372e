//! The default store: today's local files. Cookies in `cookie-directory`
//! ([`CookieStore`]), pending key removals in `key-removal-directory`
//! ([`RemovalStore`]). A cookie is taken by renaming its file to a name of
//! the taker's own: of two racing takers, one rename succeeds.

use super::{CookieLimits, StateError, Taken};
use crate::core::cookies::{CookieRecord, CookieStore};
use crate::core::key_removals::{Removal, RemovalStore};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct FileStore {
    cookies: CookieStore,
    cookie_dir: PathBuf,
    removal_dir: PathBuf,
}

fn failed(e: impl std::fmt::Display) -> StateError {
    StateError::Failed(e.to_string())
}

impl FileStore {
    pub fn new(cookie_dir: &Path, removal_dir: &Path) -> FileStore {
        FileStore {
            cookies: CookieStore::new(cookie_dir),
            cookie_dir: cookie_dir.to_owned(),
            removal_dir: removal_dir.to_owned(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "files (cookies in {}, key removals in {})",
            self.cookie_dir.display(),
            self.removal_dir.display()
        )
    }

    pub fn health(&self) -> Result<(), StateError> {
        self.cookies
            .ensure_dir()
            .map_err(|e| failed(format!("cookie-directory {}: {e}", self.cookie_dir.display())))?;
        self.removals().map(|_| ())
    }

    /// The removal directory, checked (it must be private) on every use.
    pub fn removals(&self) -> Result<RemovalStore, StateError> {
        RemovalStore::open(&self.removal_dir).map_err(StateError::Failed)
    }

    /// Keeps a cookie; `new_one` (a password login, not the next cookie of
    /// a chain, which replaces the one taken) applies the per-user cap,
    /// which reads the whole directory.
    pub fn put_cookie(
        &self,
        user: &str,
        cookie: &str,
        record: &CookieRecord,
        limits: CookieLimits,
        new_one: bool,
    ) -> Result<(), StateError> {
        self.cookies
            .ensure_dir()
            .map_err(|e| failed(format!("cookie-directory {}: {e}", self.cookie_dir.display())))?;
        self.cookies.write(user, cookie, record).map_err(failed)?;
        if new_one {
            self.cap(user, limits.per_user);
        }
        Ok(())
    }

    /// Removes the user's oldest cookies beyond `per_user`.
    fn cap(&self, user: &str, per_user: usize) {
        let mut held = self.cookies.of_user(user);
        if held.len() <= per_user {
            return;
        }
        held.sort_by(|a, b| a.1.issued.total_cmp(&b.1.issued));
        let excess = held.len() - per_user;
        for (cookie, _) in held.into_iter().take(excess) {
            self.cookies.remove(user, &cookie);
        }
    }

    pub fn take_cookie(
        &self,
        user: &str,
        cookie: &str,
        required_address: Option<&str>,
    ) -> Result<Taken, StateError> {
        let Some(record) = self.cookies.read(user, cookie) else {
            return Ok(Taken::Unknown);
        };
        if required_address.is_some_and(|ip| ip != record.client_ip) {
            return Ok(Taken::OtherAddress(record));
        }
        Ok(if self.cookies.take(user, cookie) {
            Taken::Taken(record)
        } else {
            Taken::Unknown // another request took it first
        })
    }

    pub fn cookie_count(&self, user: &str) -> usize {
        self.cookies.of_user(user).len()
    }

    pub async fn sweep_cookies(&self, lifetime: i64) -> Result<usize, StateError> {
        let cookies = self.cookies.clone();
        tokio::task::spawn_blocking(move || cookies.remove_expired(lifetime))
            .await
            .map_err(failed)
    }

    pub fn schedule_removal(&self, removal: &Removal) -> Result<(), StateError> {
        let store = self.removals()?;
        store.save(removal).map_err(failed)?;
        Ok(())
    }

    pub fn claim_due_removals(&self, now: u64) -> Vec<(super::ClaimId, Removal)> {
        match self.removals() {
            Ok(store) => store
                .claim_due(now)
                .into_iter()
                .map(|(path, removal)| (super::ClaimId::File(path), removal))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn finish_removal(&self, claimed: &Path) {
        if let Ok(store) = self.removals() {
            store.finish(claimed);
        }
    }

    pub fn retry_removal(&self, claimed: &Path, removal: &Removal) -> Result<(), StateError> {
        let store = self.removals()?;
        store.save(removal).map_err(failed)?;
        store.finish(claimed);
        Ok(())
    }

    pub fn pending_removals(&self) -> usize {
        self.removals().map(|s| s.pending()).unwrap_or(0)
    }

    pub fn release_stale_claims(&self) {
        if let Ok(store) = self.removals() {
            store.release_stale_claims();
        }
    }
}
