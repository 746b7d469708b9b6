//! The PostgreSQL store: the shared store of several `lti2 serve` instances.
//!
//! Every instance connects to the same database; nothing that decides an outcome is held in
//! one process's memory. Write transactions that read before they write take one
//! transaction-scoped advisory lock ([`PgStore::begin_write`]), which gives them the same
//! one-writer-at-a-time order the SQLite store has, across every instance. Nonces are claimed
//! with `INSERT … ON CONFLICT DO NOTHING` on the primary key `(sub, jti)`: atomic across
//! instances, durable when the claim is acknowledged (`synchronous_commit` is left on), and
//! batched by one writer task per process (group commit).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::ConnectOptions;

use super::*;
use crate::secrets::MasterKey;

/// The advisory lock key every write transaction takes (`pg_advisory_xact_lock`).
const WRITE_LOCK: i64 = 0x6c74_6932_7772; // "lti2wr"

/// A recursive CTE `chain(id, parent, depth)`: the account bound to `$1` (depth 0) and every
/// account above it (at most 64 levels).
pub(super) const CHAIN_FROM_ACCOUNT: &str = "WITH RECURSIVE chain(id, parent, depth) AS (SELECT id, parent_account_id, 0 FROM accounts WHERE id = $1 UNION ALL SELECT a.id, a.parent_account_id, c.depth + 1 FROM accounts a JOIN chain c ON a.id = c.parent WHERE c.depth < 64) ";
/// The same from a course (bound to `$1`): its account at depth 0, then the parents.
pub(super) const CHAIN_FROM_COURSE: &str = "WITH RECURSIVE chain(id, parent, depth) AS (SELECT a.id, a.parent_account_id, 0 FROM accounts a JOIN courses c ON c.account_id = a.id WHERE c.id = $1 UNION ALL SELECT a.id, a.parent_account_id, ch.depth + 1 FROM accounts a JOIN chain ch ON a.id = ch.parent WHERE ch.depth < 64) ";

/// Connection pool settings (each instance has its own pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// The most connections this process opens.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// How long a request waits for a free connection before it fails (503), in milliseconds.
    pub acquire_timeout_ms: u64,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            min_connections: 1,
            acquire_timeout_ms: 5_000,
        }
    }
}

/// The PostgreSQL implementation of [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    master: MasterKey,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`), and applies the
    /// migrations (`migrations/postgres`, embedded in the binary; several instances starting at
    /// once are serialised by sqlx's migration lock).
    pub async fn open(
        url: &str,
        master: MasterKey,
        pool: PoolSettings,
    ) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)?.disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections.max(1))
            .min_connections(pool.min_connections.min(pool.max_connections.max(1)))
            .acquire_timeout(Duration::from_millis(pool.acquire_timeout_ms.max(1)))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool, master })
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A write transaction holding the store-wide write lock until it ends, so that a
    /// transaction that reads and then writes sees no other writer in between, whichever
    /// instance that writer runs in (the order SQLite's `BEGIN IMMEDIATE` gives).
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    pub(super) fn master(&self) -> &MasterKey {
        &self.master
    }

    pub(super) fn open_secret(&self, aad: &str, sealed: &[u8]) -> Result<Secret, StoreError> {
        Ok(self.master.open(aad, sealed)?)
    }
}
