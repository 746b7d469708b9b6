//! Replay protection in Redis (`--redis-url`): each (sub, jti) claim is one
//! `SET lti2:jti:<key> 1 NX EX <ttl>`, atomic across every instance that shares the Redis
//! server. Concurrent claims share one multiplexed connection, so they are pipelined.
//!
//! The key is the hex of [`super::nonce_key`] (a 128-bit digest of `sub` and `jti`), so its
//! size does not depend on the tool's input. The expiry is `expires_at − now` seconds (at least
//! one) by the injected clock, so Redis forgets the pair when the database stores would purge
//! it.
//!
//! Fails closed: when Redis cannot be reached or does not answer within the timeout, the claim
//! is an error ([`StoreError::Unavailable`]), which the authorize endpoint answers with 503; it
//! never counts as a first use. Durability across a crash of Redis itself is Redis's
//! (`appendonly yes`, README).

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{nonce_key, NonceStore, StoreError};
use crate::clock::SharedClock;

/// How long a claim waits for Redis (connecting, or an answer) before it fails.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis nonce store.
pub struct RedisNonces {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    clock: SharedClock,
}

impl RedisNonces {
    /// A store for `url` (`redis://host:port[/db]`). Connects on first use (and reconnects
    /// after failures), so an unreachable server makes claims fail instead of stopping
    /// the service from starting. Errors: the URL does not parse.
    pub fn new(url: &str, clock: SharedClock) -> Result<Self, StoreError> {
        let client =
            redis::Client::open(url).map_err(|e| StoreError::Invalid(format!("redis url: {e}")))?;
        Ok(Self {
            client,
            conn: OnceCell::new(),
            clock,
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(unavailable)
            })
            .await?;
        Ok(conn.clone())
    }
}

/// Whether `url` names a Redis server (`redis://`, `rediss://`, `redis+unix://`, `unix://`).
pub fn is_redis_url(url: &str) -> bool {
    ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

/// The shared setting naming where jtis are claimed ([`Store::agree_setting`]).
///
/// [`Store::agree_setting`]: super::Store::agree_setting
pub const JTI_STORE_SETTING: &str = "jti_store";

/// The value of [`JTI_STORE_SETTING`] for a server: `database`, or the Redis URL without its
/// credentials and options (`redis://host:port/db`). Every instance on one database must give
/// the same, or a jti claimed by one would be unknown to another.
pub fn jti_store_name(redis_url: Option<&str>) -> String {
    let Some(u) = redis_url else {
        return "database".into();
    };
    match url::Url::parse(u) {
        Ok(url) => {
            let host = url.host_str().unwrap_or("");
            let port = url.port().unwrap_or(6379);
            let db = url.path().trim_start_matches('/');
            let db = if db.is_empty() { "0" } else { db };
            if url.scheme().contains("unix") {
                format!("{}://{}", url.scheme(), url.path())
            } else {
                format!("{}://{host}:{port}/{db}", url.scheme())
            }
        }
        Err(_) => "redis".into(),
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

#[async_trait]
impl NonceStore for RedisNonces {
    async fn claim_nonce(&self, sub: &str, jti: &str, expires_at: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let key = format!("lti2:jti:{:032x}", nonce_key(sub, jti));
        let ttl = (expires_at - self.clock.now()).max(1);
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    /// Redis expires the keys itself: nothing to delete.
    async fn purge_nonces(&self, _now: i64) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn check(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
