//! The broker's state, shared by every request and, with Redis, by every
//! broker of a site: dynamic cookies and pending auto-login key removals.
//! One interface ([`Store`]), two implementations: files in local
//! directories (the default, as the original) and Redis (several brokers
//! behind a load balancer). Both give the same guarantees, which one test
//! suite checks against both: a cookie is taken once at most, however many
//! brokers race for it; a removal is claimed by one runner at a time, and
//! one whose runner died is claimed again.

pub mod files;
pub mod redis;

use crate::core::cookies::CookieRecord;
use crate::core::key_removals::Removal;
use std::sync::Arc;
use std::time::Duration;

/// `[global] state-store` value of the default store.
pub const FILES: &str = "files";

/// A claimed removal is given to another runner after this long (its
/// runner died or hangs); longer than any agent call takes.
pub const CLAIM_LEASE: Duration = Duration::from_secs(120);

/// At most this many removals are claimed in one go.
pub const CLAIM_BATCH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The store cannot be reached now (Redis down or slow); requests that
    /// need state fail with a clear error and work again once it is back.
    Unavailable(String),
    /// The store refused the operation (a local file error, bad input).
    Failed(String),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Unavailable(e) => write!(f, "the state store is unavailable: {e}"),
            StateError::Failed(e) => write!(f, "state store: {e}"),
        }
    }
}

/// The outcome of presenting a dynamic cookie.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    /// Consumed: nobody else can use it again.
    Taken(CookieRecord),
    /// Not issued, already used or expired.
    Unknown,
    /// Issued to another client address (verify-ip): refused, but the
    /// cookie stays valid for its owner.
    OtherAddress(CookieRecord),
}

/// A removal claimed by this runner; handed back with `finish` or `retry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimId {
    File(std::path::PathBuf),
    Redis(String),
}

/// Limits of the cookie state, from `[global]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieLimits {
    /// `auth-timeout` in seconds: a cookie's lifetime from the password
    /// authentication it descends from.
    pub lifetime: i64,
    /// `max-cookies-per-user`: the oldest are removed beyond it.
    pub per_user: usize,
}

impl CookieLimits {
    pub fn of(global: &crate::core::config::GlobalConfig) -> CookieLimits {
        CookieLimits {
            lifetime: global.auth_timeout,
            per_user: global.max_cookies_per_user,
        }
    }
}

/// The configured store.
#[derive(Debug, Clone)]
pub enum Store {
    Files(files::FileStore),
    Redis(Arc<redis::RedisStore>),
}

/// How `[global]` configures the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreConfig {
    /// `files`, `redis://…`, `rediss://…` (TLS) or `redis+unix:///…`.
    pub url: String,
    pub key_prefix: String,
    /// A file holding the Redis password (kept out of x2gobroker.conf).
    pub password_file: Option<std::path::PathBuf>,
    /// PEM CA certificates for `rediss://` instead of the system's.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl Store {
    /// The store `[global]` asks for; a Redis store is shared by every
    /// configuration generation with the same settings (its connection
    /// survives reloads). Nothing is connected yet.
    pub fn open(
        config: &StoreConfig,
        cookie_dir: &std::path::Path,
        removal_dir: &std::path::Path,
    ) -> Result<Store, String> {
        if config.url == FILES || config.url.is_empty() {
            return Ok(Store::Files(files::FileStore::new(cookie_dir, removal_dir)));
        }
        redis::RedisStore::shared(config).map(Store::Redis)
    }

    /// What the store is, for status output (never a password).
    pub fn describe(&self) -> String {
        match self {
            Store::Files(f) => f.describe(),
            Store::Redis(r) => r.describe(),
        }
    }

    /// Whether the store works now.
    pub async fn health(&self) -> Result<(), StateError> {
        match self {
            Store::Files(f) => f.health(),
            Store::Redis(r) => r.health().await,
        }
    }

    /// Keeps `record` as `cookie` of `user` (the next cookie of a chain,
    /// replacing the one taken); beyond `limits.per_user` cookies of the
    /// user, the oldest are removed (the files store checks this in
    /// [`Store::issue_cookie`] only, where the count grows).
    pub async fn put_cookie(
        &self,
        user: &str,
        cookie: &str,
        record: &CookieRecord,
        limits: CookieLimits,
    ) -> Result<(), StateError> {
        match self {
            Store::Files(f) => f.put_cookie(user, cookie, record, limits, false),
            Store::Redis(r) => r.put_cookie(user, cookie, record, limits).await,
        }
    }

    /// A new cookie for `user`.
    pub async fn issue_cookie(
        &self,
        user: &str,
        record: &CookieRecord,
        limits: CookieLimits,
    ) -> Result<String, StateError> {
        let cookie = crate::core::cookies::new_cookie();
        match self {
            Store::Files(f) => f.put_cookie(user, &cookie, record, limits, true)?,
            Store::Redis(r) => r.put_cookie(user, &cookie, record, limits).await?,
        }
        Ok(cookie)
    }

    /// Consumes `cookie` of `user` in one atomic step, unless
    /// `required_address` is given and differs from the one it was issued to.
    pub async fn take_cookie(
        &self,
        user: &str,
        cookie: &str,
        required_address: Option<&str>,
    ) -> Result<Taken, StateError> {
        if !crate::core::cookies::valid_user_name(user) || !crate::core::cookies::valid_cookie(cookie) {
            return Ok(Taken::Unknown);
        }
        match self {
            Store::Files(f) => f.take_cookie(user, cookie, required_address),
            Store::Redis(r) => r.take_cookie(user, cookie, required_address).await,
        }
    }

    /// Forgets `cookie` of `user` (if it exists).
    pub async fn remove_cookie(&self, user: &str, cookie: &str) -> Result<(), StateError> {
        self.take_cookie(user, cookie, None).await.map(|_| ())
    }

    /// How many cookies `user` holds (status, tests).
    pub async fn cookie_count(&self, user: &str) -> Result<usize, StateError> {
        match self {
            Store::Files(f) => Ok(f.cookie_count(user)),
            Store::Redis(r) => r.cookie_count(user).await,
        }
    }

    /// Removes expired cookies; Redis expires them itself.
    pub async fn sweep_cookies(&self, lifetime: i64) -> Result<usize, StateError> {
        match self {
            Store::Files(f) => f.sweep_cookies(lifetime).await,
            Store::Redis(_) => Ok(0),
        }
    }

    /// Keeps a removal until it is carried out.
    pub async fn schedule_removal(&self, removal: &Removal) -> Result<(), StateError> {
        match self {
            Store::Files(f) => f.schedule_removal(removal),
            Store::Redis(r) => r.schedule_removal(removal).await,
        }
    }

    /// Claims removals due at `now` (seconds since the epoch): each goes
    /// to one runner, until its lease ends.
    pub async fn claim_due_removals(&self, now: u64) -> Result<Vec<(ClaimId, Removal)>, StateError> {
        match self {
            Store::Files(f) => Ok(f.claim_due_removals(now)),
            Store::Redis(r) => r.claim_due_removals(now).await,
        }
    }

    /// A claimed removal was carried out (or given up).
    pub async fn finish_removal(&self, claim: &ClaimId) -> Result<(), StateError> {
        match (self, claim) {
            (Store::Files(f), ClaimId::File(path)) => {
                f.finish_removal(path);
                Ok(())
            }
            (Store::Redis(r), ClaimId::Redis(id)) => r.finish_removal(id).await,
            _ => Err(StateError::Failed("a claim of another store".into())),
        }
    }

    /// A claimed removal failed: try again at `removal.due`.
    pub async fn retry_removal(&self, claim: &ClaimId, removal: &Removal) -> Result<(), StateError> {
        match (self, claim) {
            (Store::Files(f), ClaimId::File(path)) => f.retry_removal(path, removal),
            (Store::Redis(r), ClaimId::Redis(id)) => r.retry_removal(id, removal).await,
            _ => Err(StateError::Failed("a claim of another store".into())),
        }
    }

    /// How many removals are pending, claimed ones included.
    pub async fn pending_removals(&self) -> Result<usize, StateError> {
        match self {
            Store::Files(f) => Ok(f.pending_removals()),
            Store::Redis(r) => r.pending_removals().await,
        }
    }

    /// At start: claims of an earlier run of this process are free again
    /// (files; Redis claims end with their lease).
    pub fn release_stale_claims(&self) {
        if let Store::Files(f) = self {
            f.release_stale_claims();
        }
    }
}

#[cfg(test)]
pub(crate) mod suite;
