//! The Redis store, shared by several brokers. Keys (under the configured
//! prefix, `x2gobroker:` by default):
//!
//! * `cookie:<user>:<cookie>`: `<client ip> <issued>`, expiring (Redis TTL)
//!   when `auth-timeout` after `issued` has passed;
//! * `cookies:<user>`: sorted set of the user's cookies by `issued`, for the
//!   per-user cap;
//! * `removals`: sorted set of pending key removal ids by due time (a
//!   claimed one: by the end of its lease); `removal:<id>`: its text.
//!
//! Every change that must be atomic is one Lua script (Redis runs a script
//! alone): taking a cookie (read, address check, delete), putting one (with
//! the cap), claiming due removals (move each past its lease). The scripts
//! touch keys they compute, so Redis Cluster is not supported; a primary
//! with replicas (Sentinel) is.
//!
//! One multiplexed connection per store, made when first needed and again
//! after any error; while Redis is down, callers fail fast
//! ([`super::StateError::Unavailable`]) instead of queueing.

use super::{ClaimId, CookieLimits, StateError, StoreConfig, Taken};
use crate::core::cookies::CookieRecord;
use crate::core::key_removals::Removal;
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A store operation (connecting included) fails after this long.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connection attempt, requests fail at once for this long
/// rather than each waiting for a connection of its own.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    shown_url: String,
    connection: Mutex<Option<MultiplexedConnection>>,
    last_failure: Mutex<Option<Instant>>,
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown_url)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The URL without its password.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

fn unavailable(e: impl std::fmt::Display) -> StateError {
    StateError::Unavailable(e.to_string())
}

/// Stores by configuration: reloads keep the connection.
static STORES: OnceLock<Mutex<HashMap<StoreConfig, Arc<RedisStore>>>> = OnceLock::new();

const TAKE_COOKIE: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then redis.call('ZREM', KEYS[2], ARGV[1]) return '' end
if ARGV[2] ~= '' and string.match(v, '^(%S+)') ~= ARGV[2] then return 'O' .. v end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 'T' .. v
";

// ARGV: value, ttl ms, cookie, issued, cap, oldest live issued, key prefix of the user's cookies
const PUT_COOKIE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if excess > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #old, 2 do redis.call('DEL', ARGV[7] .. old[i]) end
end
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 1
";

// ARGV: now, end of the lease, batch, key prefix of removals
const CLAIM_REMOVALS: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local text = redis.call('GET', ARGV[4] .. id)
  if text then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    table.insert(out, id)
    table.insert(out, text)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
";

fn script(source: &'static str) -> &'static redis::Script {
    static SCRIPTS: OnceLock<Mutex<HashMap<&'static str, &'static redis::Script>>> = OnceLock::new();
    let mut map = match SCRIPTS.get_or_init(Default::default).lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    map.entry(source)
        .or_insert_with(|| Box::leak(Box::new(redis::Script::new(source))))
}

impl RedisStore {
    /// The store for `config`, made once per process.
    pub fn shared(config: &StoreConfig) -> Result<Arc<RedisStore>, String> {
        let mut stores = match STORES.get_or_init(Default::default).lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(store) = stores.get(config) {
            return Ok(store.clone());
        }
        let store = Arc::new(RedisStore::new(config)?);
        stores.insert(config.clone(), store.clone());
        Ok(store)
    }

    fn new(config: &StoreConfig) -> Result<RedisStore, String> {
        let shown_url = without_password(&config.url);
        let err = |e: String| format!("state-store {shown_url}: {e}");
        let mut info: redis::ConnectionInfo =
            redis::IntoConnectionInfo::into_connection_info(config.url.as_str())
                .map_err(|e| err(e.to_string()))?;
        if let Some(path) = &config.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| err(format!("state-store-password-file {}: {e}", path.display())))?;
            let password = text.lines().next().unwrap_or("").to_owned();
            if password.is_empty() {
                return Err(err(format!(
                    "state-store-password-file {} is empty",
                    path.display()
                )));
            }
            info.redis.password = Some(password);
        }
        let client = match &config.tls_ca_file {
            Some(path) => {
                let root_cert = std::fs::read(path)
                    .map_err(|e| err(format!("state-store-tls-ca-file {}: {e}", path.display())))?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
            None => redis::Client::open(info),
        }
        .map_err(|e| err(e.to_string()))?;
        Ok(RedisStore {
            client,
            prefix: config.key_prefix.clone(),
            shown_url,
            connection: Mutex::new(None),
            last_failure: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    pub fn describe(&self) -> String {
        format!("redis {} (key prefix {:?})", self.shown_url, self.prefix)
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        match self.connection.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_cached(&self, connection: Option<MultiplexedConnection>) {
        match self.connection.lock() {
            Ok(mut c) => *c = connection,
            Err(poisoned) => *poisoned.into_inner() = connection,
        }
    }

    fn failed_recently(&self, set: bool) -> bool {
        let mut last = match self.last_failure.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if set {
            *last = Some(Instant::now());
        }
        last.is_some_and(|t| t.elapsed() < RECONNECT_PAUSE)
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StateError> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        if self.failed_recently(false) {
            return Err(unavailable(format!("{}: not connected", self.shown_url)));
        }
        let made = tokio::time::timeout(
            OPERATION_TIMEOUT,
            self.client
                .get_multiplexed_async_connection_with_timeouts(OPERATION_TIMEOUT, OPERATION_TIMEOUT),
        )
        .await;
        match made {
            Ok(Ok(c)) => {
                log::info!("state store {}: connected", self.shown_url);
                self.set_cached(Some(c.clone()));
                Ok(c)
            }
            Ok(Err(e)) => {
                self.failed_recently(true);
                log::warn!("state store {}: {e}", self.shown_url);
                Err(unavailable(format!("{}: {e}", self.shown_url)))
            }
            Err(_) => {
                self.failed_recently(true);
                Err(unavailable(format!("{}: connecting timed out", self.shown_url)))
            }
        }
    }

    /// Runs one operation on the connection; any failure drops the
    /// connection, so the next operation makes a new one. An operation
    /// that failed on a connection which turned out dead (Redis restarted,
    /// an idle connection cut) is sent once more on a new one: on a dead
    /// connection it was never carried out, and every operation here is
    /// safe to repeat (a repeated take finds the cookie gone).
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StateError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let mut tried_again = false;
        loop {
            let connection = self.connection().await?;
            match tokio::time::timeout(OPERATION_TIMEOUT, op(connection)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => {
                    self.set_cached(None);
                    let dead_connection =
                        e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal();
                    if dead_connection && !tried_again {
                        tried_again = true;
                        continue;
                    }
                    return Err(unavailable(format!("{}: {e}", self.shown_url)));
                }
                Err(_) => {
                    self.set_cached(None);
                    return Err(unavailable(format!("{}: no answer in time", self.shown_url)));
                }
            }
        }
    }

    pub async fn health(&self) -> Result<(), StateError> {
        let pong: String = self
            .run(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(unavailable(format!("PING answered {pong:?}")))
        }
    }

    fn cookie_key(&self, user: &str, cookie: &str) -> String {
        format!("{}cookie:{user}:{cookie}", self.prefix)
    }

    fn index_key(&self, user: &str) -> String {
        format!("{}cookies:{user}", self.prefix)
    }

    pub async fn put_cookie(
        &self,
        user: &str,
        cookie: &str,
        record: &CookieRecord,
        limits: CookieLimits,
    ) -> Result<(), StateError> {
        if !crate::core::cookies::valid_user_name(user) || !crate::core::cookies::valid_cookie(cookie) {
            return Err(StateError::Failed("invalid user name or cookie".into()));
        }
        let now = crate::core::cookies::now();
        let remaining = record.issued + limits.lifetime as f64 - now;
        // An already expired record is kept for a moment: whoever takes it
        // sees it is too old (the files store behaves the same).
        let ttl_ms = ((remaining * 1000.0) as i64).max(1000);
        let value = format!("{} {}", record.client_ip, record.issued);
        let oldest_live = now - limits.lifetime as f64;
        let (key, index) = (self.cookie_key(user, cookie), self.index_key(user));
        let user_keys = format!("{}cookie:{user}:", self.prefix);
        let per_user = limits.per_user.max(1);
        let mut invocation = script(PUT_COOKIE).prepare_invoke();
        invocation
            .key(key)
            .key(index)
            .arg(value)
            .arg(ttl_ms)
            .arg(cookie)
            .arg(record.issued)
            .arg(per_user)
            .arg(oldest_live)
            .arg(user_keys);
        let invocation = &invocation;
        self.run(|mut c| async move { invocation.invoke_async::<_, i64>(&mut c).await })
            .await
            .map(|_| ())
    }

    pub async fn take_cookie(
        &self,
        user: &str,
        cookie: &str,
        required_address: Option<&str>,
    ) -> Result<Taken, StateError> {
        let (key, index) = (self.cookie_key(user, cookie), self.index_key(user));
        let address = required_address.unwrap_or("").to_owned();
        let mut invocation = script(TAKE_COOKIE).prepare_invoke();
        invocation.key(key).key(index).arg(cookie).arg(address);
        let invocation = &invocation;
        let answer: String = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        let record = |text: &str| {
            let mut words = text.split_whitespace();
            Some(CookieRecord {
                client_ip: words.next()?.to_owned(),
                issued: words.next()?.parse().ok()?,
            })
        };
        Ok(if let Some(rest) = answer.strip_prefix('T') {
            record(rest).map(Taken::Taken).unwrap_or(Taken::Unknown)
        } else if let Some(rest) = answer.strip_prefix('O') {
            record(rest).map(Taken::OtherAddress).unwrap_or(Taken::Unknown)
        } else {
            Taken::Unknown
        })
    }

    pub async fn cookie_count(&self, user: &str) -> Result<usize, StateError> {
        let index = self.index_key(user);
        // Entries whose cookie expired by TTL stay in the index until the
        // next put; count only cookies that still exist.
        let members: Vec<String> = self
            .run(|mut c| {
                let index = &index;
                async move {
                    redis::cmd("ZRANGE")
                        .arg(index)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        let keys: Vec<String> = members.iter().map(|m| self.cookie_key(user, m)).collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let keys = &keys;
        let existing: usize = self
            .run(|mut c| async move { redis::cmd("EXISTS").arg(keys).query_async(&mut c).await })
            .await?;
        Ok(existing)
    }

    fn removals_key(&self) -> String {
        format!("{}removals", self.prefix)
    }

    fn removal_key(&self, id: &str) -> String {
        format!("{}removal:{id}", self.prefix)
    }

    pub async fn schedule_removal(&self, removal: &Removal) -> Result<(), StateError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(self.removal_key(&id), removal.to_text())
            .ignore()
            .zadd(self.removals_key(), id, removal.due)
            .ignore();
        self.run_pipe(&pipe).await
    }

    async fn run_pipe(&self, pipe: &redis::Pipeline) -> Result<(), StateError> {
        self.run(|mut c| async move { pipe.query_async::<_, ()>(&mut c).await })
            .await
    }

    pub async fn claim_due_removals(&self, now: u64) -> Result<Vec<(ClaimId, Removal)>, StateError> {
        let (set, prefix) = (self.removals_key(), format!("{}removal:", self.prefix));
        let lease_end = now + super::CLAIM_LEASE.as_secs();
        let mut invocation = script(CLAIM_REMOVALS).prepare_invoke();
        invocation
            .key(set)
            .arg(now)
            .arg(lease_end)
            .arg(super::CLAIM_BATCH)
            .arg(prefix);
        let invocation = &invocation;
        let claimed: Vec<String> = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        let mut out = Vec::new();
        for pair in claimed.chunks(2) {
            let [id, text] = pair else { continue };
            match Removal::from_text(text) {
                Some(removal) => out.push((ClaimId::Redis(id.clone()), removal)),
                None => {
                    log::error!("state store: key removal {id} is not valid; dropped");
                    self.finish_removal(id).await?;
                }
            }
        }
        Ok(out)
    }

    pub async fn finish_removal(&self, id: &str) -> Result<(), StateError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zrem(self.removals_key(), id)
            .ignore()
            .del(self.removal_key(id))
            .ignore();
        self.run_pipe(&pipe).await
    }

    pub async fn retry_removal(&self, id: &str, removal: &Removal) -> Result<(), StateError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(self.removal_key(id), removal.to_text())
            .ignore()
            .zadd(self.removals_key(), id, removal.due)
            .ignore();
        self.run_pipe(&pipe).await
    }

    pub async fn pending_removals(&self) -> Result<usize, StateError> {
        let set = &self.removals_key();
        self.run(|mut c| async move { redis::cmd("ZCARD").arg(set).query_async(&mut c).await })
            .await
    }
}
