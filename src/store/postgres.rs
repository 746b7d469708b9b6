//! The PostgreSQL store: the shared store of several `lti2 serve` instances.
//!
//! Every instance connects to the same database; nothing that decides an outcome is held in
//! one process's memory. Write transactions that read before they write take one
//! transaction-scoped advisory lock (`PgStore::begin_write`), which gives them the same
//! one-writer-at-a-time order the SQLite store has, across every instance.
//!
//! Nonces: a claim is `INSERT … ON CONFLICT (key) DO NOTHING` on the `nonces` primary key, a
//! 16-byte digest of (sub, jti) (`nonce_key`); it is the first use iff its row was inserted.
//! That is atomic across instances and durable when the claim is acknowledged
//! (`synchronous_commit` is left on). Each process batches its claims (group commit): writer
//! tasks take every claim already queued (up to `MAX_BATCH`) and insert them with one
//! statement, with up to `NONCE_WRITERS` batches in flight. A batch that fails answers every
//! claim in it with an error, never with "first use".

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Postgres, Row, Transaction};
use tokio::sync::{mpsc, oneshot, Mutex, OnceCell};

use super::*;
use crate::secrets::MasterKey;

/// The advisory lock key every write transaction takes (`pg_advisory_xact_lock`).
const WRITE_LOCK: i64 = 0x6c74_6932_7772; // "lti2wr"

/// A recursive CTE `chain(id, parent, depth)`: the account bound to `$1` (depth 0) and every
/// account above it (at most 64 levels).
pub(super) const CHAIN_FROM_ACCOUNT: &str = "WITH RECURSIVE chain(id, parent, depth) AS (SELECT id, parent_account_id, 0 FROM accounts WHERE id = $1 UNION ALL SELECT a.id, a.parent_account_id, c.depth + 1 FROM accounts a JOIN chain c ON a.id = c.parent WHERE c.depth < 64) ";
/// The same from a course (bound to `$1`): its account at depth 0, then the parents.
pub(super) const CHAIN_FROM_COURSE: &str = "WITH RECURSIVE chain(id, parent, depth) AS (SELECT a.id, a.parent_account_id, 0 FROM accounts a JOIN courses c ON c.account_id = a.id WHERE c.id = $1 UNION ALL SELECT a.id, a.parent_account_id, ch.depth + 1 FROM accounts a JOIN chain ch ON a.id = ch.parent WHERE ch.depth < 64) ";

/// The most nonce claims written in one statement.
const MAX_BATCH: usize = 256;
/// How many nonce batches may be in flight at once (each on its own pooled connection), so
/// that one round trip does not cap the claim rate.
const NONCE_WRITERS: usize = 4;
/// How often a nonce writer yields to other tasks before it takes a batch.
const YIELDS_BEFORE_COMMIT: usize = 4;
/// How many claims may wait for a writer.
const NONCE_QUEUE: usize = 4096;

/// A random 40-character lowercase hex string (SQLite's `lower(hex(randomblob(20)))`).
const RANDOM_HEX40: &str = "substr(encode(sha256(gen_random_uuid()::text::bytea), 'hex'), 1, 40)";

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
    /// The queue to this process's nonce writers, started by the first claim.
    nonces: Arc<OnceCell<mpsc::Sender<Claim>>>,
    /// How long a write transaction waits for the write lock, ms (the pool's acquire timeout).
    lock_timeout_ms: u64,
}

/// One nonce claim waiting for its batch.
struct Claim {
    /// `nonce_key(sub, jti)`, big-endian.
    key: [u8; 16],
    /// Seconds since the epoch.
    expires_at: i64,
    /// `Ok(true)` iff this claim inserted the row.
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`), and applies the
    /// migrations (`migrations/postgres`, embedded in the binary; several instances starting at
    /// once are serialised by sqlx's migration lock).
    pub async fn open(
        url: &str,
        master: MasterKey,
        settings: PoolSettings,
    ) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)?.disable_statement_logging();
        let pool = settings;
        // One connection first, so that a refused connection, a wrong password or a missing
        // database is reported as such (the pool would only say that it timed out).
        let first = tokio::time::timeout(
            Duration::from_millis(pool.acquire_timeout_ms.max(1)),
            opts.connect(),
        )
        .await
        .map_err(|_| StoreError::Unavailable("no answer from the database server".into()))??;
        sqlx::Connection::close(first).await?;
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections.max(1))
            .min_connections(pool.min_connections.min(pool.max_connections.max(1)))
            .acquire_timeout(Duration::from_millis(pool.acquire_timeout_ms.max(1)))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            master,
            nonces: Default::default(),
            lock_timeout_ms: settings.acquire_timeout_ms.max(1),
        })
    }

    /// The queue to the nonce writers, starting them on first use.
    async fn nonce_queue(&self) -> &mpsc::Sender<Claim> {
        self.nonces
            .get_or_init(|| async {
                let (tx, rx) = mpsc::channel(NONCE_QUEUE);
                let rx = Arc::new(Mutex::new(rx));
                for _ in 0..NONCE_WRITERS {
                    tokio::spawn(nonce_writer(self.pool.clone(), rx.clone()));
                }
                tx
            })
            .await
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
        // Waits at most as long as for a connection: a lock held for long (a stuck session, a
        // huge import) makes other writers fail with 503, not hang.
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(format!("{}ms", self.lock_timeout_ms))
            .execute(&mut *tx)
            .await?;
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

#[async_trait]
impl ContextStore for PgStore {
    async fn context_exists(&self, ctx: ContextRef) -> Result<bool, StoreError> {
        let sql = match ctx.kind {
            ContextKind::Account => "SELECT 1 FROM accounts WHERE id = $1",
            ContextKind::Course => "SELECT 1 FROM courses WHERE id = $1",
        };
        Ok(sqlx::query(sql)
            .bind(ctx.id)
            .fetch_optional(self.pool())
            .await?
            .is_some())
    }

    async fn create_account(
        &self,
        id: i64,
        name: &str,
        parent: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!("INSERT INTO accounts (id, name, parent_account_id, uuid, created_at) VALUES ($1, $2, $3, {RANDOM_HEX40}, $4)"))
            .bind(id)
            .bind(name)
            .bind(parent)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(|e| conflict_or(e, || format!("account {id}"), || format!("parent account {}", parent.unwrap_or_default())))?;
        Ok(())
    }

    async fn create_course(
        &self,
        id: i64,
        account_id: i64,
        name: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!("INSERT INTO courses (id, account_id, name, created_at, lti_id) VALUES ($1, $2, $3, $4, {RANDOM_HEX40})"))
            .bind(id)
            .bind(account_id)
            .bind(name)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(|e| {
                conflict_or(
                    e,
                    || format!("course {id}"),
                    || format!("account {account_id}"),
                )
            })?;
        Ok(())
    }

    async fn root_account(&self, ctx: ContextRef) -> Result<Option<AccountInfo>, StoreError> {
        // From a course: its account, then the parents (no row when the course does not exist).
        let chain = match ctx.kind {
            ContextKind::Account => CHAIN_FROM_ACCOUNT,
            ContextKind::Course => CHAIN_FROM_COURSE,
        };
        let row = sqlx::query(&format!(
            "{chain}SELECT a.id, a.name, a.uuid FROM chain c JOIN accounts a ON a.id = c.id ORDER BY c.depth DESC LIMIT 1"
        ))
        .bind(ctx.id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| AccountInfo {
            id: r.get(0),
            name: r.get(1),
            uuid: r.get(2),
        }))
    }
}

#[async_trait]
impl RegistrationStore for PgStore {
    async fn set_developer_key_vendor_code(
        &self,
        id: i64,
        vendor_code: Option<&str>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE developer_keys SET vendor_code = $1 WHERE id = $2")
            .bind(vendor_code)
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("developer key {id}")));
        }
        Ok(())
    }

    async fn developer_keys_with_vendor_code(
        &self,
        vendor_code: &str,
    ) -> Result<Vec<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM developer_keys WHERE vendor_code = $1 ORDER BY id")
                .bind(vendor_code)
                .fetch_all(self.pool())
                .await?,
        )
    }

    async fn create_tool_consumer_profile(
        &self,
        tcp: &ToolConsumerProfileRecord,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tool_consumer_profiles (uuid, developer_key_id, services, capabilities, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&tcp.uuid)
            .bind(tcp.developer_key_id)
            .bind(serde_json::to_string(&tcp.services).expect("strings serialise"))
            .bind(serde_json::to_string(&tcp.capabilities).expect("strings serialise"))
            .bind(tcp.created_at)
            .execute(self.pool())
            .await
            .map_err(|e| {
                conflict_or(
                    e,
                    || format!("a tool consumer profile with uuid {} or for developer key {}", tcp.uuid, tcp.developer_key_id),
                    || format!("developer key {}", tcp.developer_key_id),
                )
            })?;
        Ok(())
    }

    async fn tool_consumer_profile(
        &self,
        uuid: &str,
    ) -> Result<Option<ToolConsumerProfileRecord>, StoreError> {
        let row = sqlx::query("SELECT uuid, developer_key_id, services, capabilities, created_at FROM tool_consumer_profiles WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(tcp_row))
    }

    async fn tool_consumer_profile_for_developer_key(
        &self,
        developer_key_id: i64,
    ) -> Result<Option<ToolConsumerProfileRecord>, StoreError> {
        let row = sqlx::query("SELECT uuid, developer_key_id, services, capabilities, created_at FROM tool_consumer_profiles WHERE developer_key_id = $1")
            .bind(developer_key_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(tcp_row))
    }

    async fn list_tool_consumer_profiles(
        &self,
    ) -> Result<Vec<ToolConsumerProfileRecord>, StoreError> {
        let rows = sqlx::query("SELECT uuid, developer_key_id, services, capabilities, created_at FROM tool_consumer_profiles ORDER BY created_at, uuid")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(tcp_row).collect())
    }

    async fn register_tool_proxy(&self, tp: RegisteredToolProxy) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let consumed = sqlx::query(
            "UPDATE registrations SET consumed_at = $1 WHERE reg_key = $2 AND context_type = $3 AND context_id = $4 AND consumed_at IS NULL AND expires_at > $1",
        )
        .bind(tp.now)
        .bind(&tp.guid)
        .bind(tp.context.kind.as_str())
        .bind(tp.context.id)
        .execute(&mut *tx)
        .await?;
        if consumed.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "a live registration {}",
                tp.guid
            )));
        }
        let pf = &tp.product_family;
        let family_id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM product_families WHERE vendor_code = $1 AND product_code = $2 AND COALESCE(developer_key_id, 0) = COALESCE($3, 0)",
        )
        .bind(&pf.vendor_code)
        .bind(&pf.product_code)
        .bind(tp.developer_key_id)
        .fetch_optional(&mut *tx)
        .await?;
        let family_id = match family_id {
            Some(id) => id,
            None => sqlx::query_scalar(
                "INSERT INTO product_families (vendor_code, product_code, developer_key_id, vendor_name, vendor_description, website, vendor_email, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(&pf.vendor_code)
            .bind(&pf.product_code)
            .bind(tp.developer_key_id)
            .bind(&pf.vendor_name)
            .bind(&pf.vendor_description)
            .bind(&pf.website)
            .bind(&pf.vendor_email)
            .bind(tp.now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, || "product family".into(), || format!("developer key {}", tp.developer_key_id.unwrap_or_default())))?,
        };
        let sealed = self
            .master()
            .seal(&ctx_aad("tool_proxy", &tp.guid), tp.shared_secret.expose());
        let c = &tp.content;
        sqlx::query(
            "INSERT INTO tool_proxies (guid, secret_enc, workflow_state, enabled_capability, tool_service, developer_key_id, created_at, updated_at, product_family_id, name, description, product_version, lti_version, registration_url, raw_data) VALUES ($1, $2, 'disabled', $3, $4, $5, $6, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&tp.guid)
        .bind(sealed)
        .bind(serde_json::to_string(&c.enabled_capability).expect("strings serialise"))
        .bind(serde_json::to_string(&c.tool_service).expect("services serialise"))
        .bind(tp.developer_key_id)
        .bind(tp.now)
        .bind(family_id)
        .bind(&c.name)
        .bind(&c.description)
        .bind(&c.product_version)
        .bind(&c.lti_version)
        .bind(&tp.registration_url)
        .bind(&c.raw_data)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, || format!("tool proxy {}", tp.guid), || format!("developer key {}", tp.developer_key_id.unwrap_or_default())))?;
        insert_handlers(&mut tx, &tp.guid, &c.resource_handlers).await?;
        sqlx::query("INSERT INTO tool_proxy_bindings (tool_proxy_guid, context_type, context_id, enabled, created_at) VALUES ($1, $2, $3, TRUE, $4)")
            .bind(&tp.guid)
            .bind(tp.context.kind.as_str())
            .bind(tp.context.id)
            .bind(tp.now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn tool_proxy_detail(&self, guid: &str) -> Result<Option<ToolProxyDetail>, StoreError> {
        let row = sqlx::query(
            "SELECT tp.guid, tp.workflow_state, tp.developer_key_id, pf.vendor_code, pf.product_code, tp.raw_data, tp.update_payload FROM tool_proxies tp LEFT JOIN product_families pf ON pf.id = tp.product_family_id WHERE tp.guid = $1",
        )
        .bind(guid)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let bindings = sqlx::query(
            "SELECT context_type, context_id FROM tool_proxy_bindings WHERE tool_proxy_guid = $1 AND enabled ORDER BY id",
        )
        .bind(guid)
        .fetch_all(self.pool())
        .await?;
        let contexts = bindings
            .into_iter()
            .filter_map(|b| {
                let kind: String = b.get(0);
                Some(ContextRef {
                    kind: ContextKind::parse(&kind)?,
                    id: b.get(1),
                })
            })
            .collect();
        Ok(Some(ToolProxyDetail {
            guid: row.get(0),
            workflow_state: row.get(1),
            developer_key_id: row.get(2),
            vendor_code: row.get(3),
            product_code: row.get(4),
            contexts,
            raw_data: row.get(5),
            update_payload: row.get(6),
        }))
    }

    async fn stage_tool_proxy_update(
        &self,
        guid: &str,
        payload: &str,
        secret: Option<&Secret>,
        now: i64,
    ) -> Result<(), StoreError> {
        let sealed = secret.map(|s| {
            self.master()
                .seal(&ctx_aad("tool_proxy_update", guid), s.expose())
        });
        let done = sqlx::query(
            "UPDATE tool_proxies SET update_payload = $1, update_secret_enc = $2, updated_at = $3 WHERE guid = $4",
        )
        .bind(payload)
        .bind(sealed)
        .bind(now)
        .bind(guid)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tool proxy {guid}")));
        }
        Ok(())
    }

    async fn apply_tool_proxy_update(
        &self,
        guid: &str,
        expected_payload: &str,
        content: &ToolProxyContent,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT update_payload, update_secret_enc FROM tool_proxies WHERE guid = $1",
        )
        .bind(guid)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("tool proxy {guid}")))?;
        let staged: Option<String> = row.get(0);
        if staged.as_deref() != Some(expected_payload) {
            return Err(StoreError::Invalid(format!(
                "tool proxy {guid} has no such re-registration waiting"
            )));
        }
        let sealed: Option<Vec<u8>> = row.get(1);
        let secret = match sealed {
            Some(s) => {
                let secret = self.open_secret(&ctx_aad("tool_proxy_update", guid), &s)?;
                Some(
                    self.master()
                        .seal(&ctx_aad("tool_proxy", guid), secret.expose()),
                )
            }
            None => None,
        };
        sqlx::query(
            "UPDATE tool_proxies SET secret_enc = COALESCE($1, secret_enc), enabled_capability = $2, tool_service = $3, name = $4, description = $5, product_version = $6, lti_version = $7, raw_data = $8, update_payload = NULL, update_secret_enc = NULL, updated_at = $9 WHERE guid = $10",
        )
        .bind(secret)
        .bind(serde_json::to_string(&content.enabled_capability).expect("strings serialise"))
        .bind(serde_json::to_string(&content.tool_service).expect("services serialise"))
        .bind(&content.name)
        .bind(&content.description)
        .bind(&content.product_version)
        .bind(&content.lti_version)
        .bind(&content.raw_data)
        .bind(now)
        .bind(guid)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM resource_handlers WHERE tool_proxy_guid = $1")
            .bind(guid)
            .execute(&mut *tx)
            .await?;
        insert_handlers(&mut tx, guid, &content.resource_handlers).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn tcp_row(r: PgRow) -> ToolConsumerProfileRecord {
    ToolConsumerProfileRecord {
        uuid: r.get(0),
        developer_key_id: r.get(1),
        services: json_list(r.get(2)),
        capabilities: json_list(r.get(3)),
        created_at: r.get(4),
    }
}

/// Inserts resource handlers and their message handlers for a tool proxy, in the caller's
/// transaction. Errors: `Conflict` for a repeated resource type code (the transaction is then
/// aborted; the caller returns the error, which rolls it back).
async fn insert_handlers(
    tx: &mut Transaction<'_, Postgres>,
    guid: &str,
    handlers: &[ResourceHandlerSpec],
) -> Result<(), StoreError> {
    for rh in handlers {
        let rh_id: i64 = sqlx::query_scalar(
            "INSERT INTO resource_handlers (tool_proxy_guid, resource_type_code, name, description) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(guid)
        .bind(&rh.resource_type_code)
        .bind(&rh.name)
        .bind(&rh.description)
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| {
            conflict_or(
                e,
                || format!("resource handler {}", rh.resource_type_code),
                String::new,
            )
        })?;
        for mh in &rh.messages {
            sqlx::query("INSERT INTO message_handlers (resource_handler_id, message_type, launch_path, capabilities, parameters, placements) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(rh_id)
                .bind(&mh.message_type)
                .bind(&mh.launch_path)
                .bind(serde_json::to_string(&mh.capabilities).expect("strings serialise"))
                .bind(mh.parameters.to_string())
                .bind(serde_json::to_string(&mh.placements).expect("strings serialise"))
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl CredentialStore for PgStore {
    async fn tool_proxy(&self, guid: &str) -> Result<Option<ToolProxyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT guid, secret_enc, workflow_state, enabled_capability, tool_service, developer_key_id FROM tool_proxies WHERE guid = $1",
        )
        .bind(guid)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let guid: String = row.get(0);
        let sealed: Vec<u8> = row.get(1);
        Ok(Some(ToolProxyRecord {
            shared_secret: self.open_secret(&ctx_aad("tool_proxy", &guid), &sealed)?,
            guid,
            workflow_state: row.get(2),
            enabled_capability: json_list(row.get(3)),
            tool_service: json_list(row.get(4)),
            developer_key_id: row.get(5),
        }))
    }

    async fn create_tool_proxy(&self, tp: NewToolProxy) -> Result<(), StoreError> {
        let sealed = self
            .master()
            .seal(&ctx_aad("tool_proxy", &tp.guid), tp.shared_secret.expose());
        sqlx::query(
            "INSERT INTO tool_proxies (guid, secret_enc, workflow_state, enabled_capability, tool_service, developer_key_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&tp.guid)
        .bind(sealed)
        .bind(&tp.workflow_state)
        .bind(serde_json::to_string(&tp.enabled_capability).expect("strings serialise"))
        .bind(serde_json::to_string(&tp.tool_service).expect("services serialise"))
        .bind(tp.developer_key_id)
        .bind(tp.now)
        .execute(self.pool())
        .await
        .map_err(|e| conflict_or(e, || format!("tool proxy {}", tp.guid), || format!("developer key {}", tp.developer_key_id.unwrap_or_default())))?;
        Ok(())
    }

    async fn list_tool_proxies(&self) -> Result<Vec<ToolProxySummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT guid, workflow_state, enabled_capability, tool_service, developer_key_id, created_at FROM tool_proxies ORDER BY created_at, guid",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ToolProxySummary {
                guid: r.get(0),
                workflow_state: r.get(1),
                enabled_capability: json_list(r.get(2)),
                tool_service: json_list(r.get(3)),
                developer_key_id: r.get(4),
                created_at: r.get(5),
            })
            .collect())
    }

    async fn set_tool_proxy_state(
        &self,
        guid: &str,
        state: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE tool_proxies SET workflow_state = $1, updated_at = $2 WHERE guid = $3",
        )
        .bind(state)
        .bind(now)
        .bind(guid)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tool proxy {guid}")));
        }
        super::postgres_webhooks::sync_auto_subscription(&mut tx, guid, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn developer_key(&self, id: i64) -> Result<Option<DeveloperKeyRecord>, StoreError> {
        let row =
            sqlx::query("SELECT id, secret_enc, workflow_state FROM developer_keys WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.get(1);
        Ok(Some(DeveloperKeyRecord {
            id,
            workflow_state: row.get(2),
            secret: self.open_secret(&ctx_aad("developer_key", &id.to_string()), &sealed)?,
        }))
    }

    async fn create_developer_key(
        &self,
        id: Option<i64>,
        secret: &Secret,
        name: Option<&str>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let id = match id {
            Some(id) => id,
            None => {
                let max: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM developer_keys")
                    .fetch_one(&mut *tx)
                    .await?;
                let above = max.unwrap_or(10_000_000_000_000).max(10_000_000_000_000);
                above.checked_add(1).ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "no developer key id is left above {above}: give one with --id"
                    ))
                })?
            }
        };
        let sealed = self
            .master()
            .seal(&ctx_aad("developer_key", &id.to_string()), secret.expose());
        sqlx::query("INSERT INTO developer_keys (id, secret_enc, name, workflow_state, created_at) VALUES ($1, $2, $3, 'active', $4)")
            .bind(id)
            .bind(sealed)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, || format!("developer key {id}"), String::new))?;
        tx.commit().await?;
        Ok(id)
    }

    async fn list_developer_keys(&self) -> Result<Vec<DeveloperKeySummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, workflow_state, name, created_at FROM developer_keys ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DeveloperKeySummary {
                id: r.get(0),
                workflow_state: r.get(1),
                name: r.get(2),
                created_at: r.get(3),
            })
            .collect())
    }

    async fn set_developer_key_state(&self, id: i64, state: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE developer_keys SET workflow_state = $1 WHERE id = $2")
            .bind(state)
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("developer key {id}")));
        }
        Ok(())
    }

    async fn create_registration(&self, reg: NewRegistration) -> Result<(), StoreError> {
        if !self.context_exists(reg.context).await? {
            return Err(StoreError::NotFound(format!(
                "{} {}",
                reg.context.kind.as_str(),
                reg.context.id
            )));
        }
        let sealed = self.master().seal(
            &ctx_aad("registration", &reg.reg_key),
            reg.reg_password.expose(),
        );
        sqlx::query(
            "INSERT INTO registrations (reg_key, reg_password_enc, context_type, context_id, tool_url, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&reg.reg_key)
        .bind(sealed)
        .bind(reg.context.kind.as_str())
        .bind(reg.context.id)
        .bind(&reg.tool_url)
        .bind(reg.expires_at)
        .bind(reg.now)
        .execute(self.pool())
        .await
        .map_err(|e| conflict_or(e, || format!("registration {}", reg.reg_key), String::new))?;
        Ok(())
    }

    async fn registration(&self, reg_key: &str) -> Result<Option<RegistrationRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT reg_key, reg_password_enc, context_type, context_id, tool_url, expires_at, consumed_at FROM registrations WHERE reg_key = $1",
        )
        .bind(reg_key)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key: String = row.get(0);
        let sealed: Vec<u8> = row.get(1);
        let kind: String = row.get(2);
        Ok(Some(RegistrationRecord {
            reg_password: self.open_secret(&ctx_aad("registration", &key), &sealed)?,
            reg_key: key,
            context: ContextRef {
                kind: ContextKind::parse(&kind)
                    .ok_or_else(|| StoreError::Invalid(format!("context type {kind}")))?,
                id: row.get(3),
            },
            tool_url: row.get(4),
            expires_at: row.get(5),
            consumed_at: row.get(6),
        }))
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        let rows = sqlx::query("SELECT kid, key_enc FROM signing_keys ORDER BY seq DESC")
            .fetch_all(self.pool())
            .await?;
        rows.into_iter()
            .map(|r| {
                let kid: String = r.get(0);
                let sealed: Vec<u8> = r.get(1);
                let key = self.open_secret(&ctx_aad("signing_key", &kid), &sealed)?;
                Ok(SigningKey::new(kid, key.expose().to_vec()))
            })
            .collect()
    }

    async fn add_signing_key(&self, key: &SigningKey, now: i64) -> Result<(), StoreError> {
        let sealed = self
            .master()
            .seal(&ctx_aad("signing_key", &key.kid), key.bytes());
        sqlx::query("INSERT INTO signing_keys (kid, key_enc, created_at) VALUES ($1, $2, $3)")
            .bind(&key.kid)
            .bind(sealed)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(|e| conflict_or(e, || format!("signing key {}", key.kid), String::new))?;
        Ok(())
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeySummary>, StoreError> {
        let rows = sqlx::query("SELECT kid, created_at FROM signing_keys ORDER BY seq DESC")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| SigningKeySummary {
                kid: r.get(0),
                created_at: r.get(1),
                active: i == 0,
            })
            .collect())
    }

    async fn remove_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM signing_keys WHERE kid = $1")
            .bind(kid)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound(format!("signing key {kid}")));
        }
        let active: Option<String> =
            sqlx::query_scalar("SELECT kid FROM signing_keys ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        // The newest key signs; when it is the only one, it is also the last one.
        if active.as_deref() == Some(kid) {
            return Err(StoreError::Invalid(
                "the active signing key cannot be removed: rotate first, then remove it".into(),
            ));
        }
        sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl NonceStore for PgStore {
    async fn claim_nonce(&self, sub: &str, jti: &str, expires_at: i64) -> Result<bool, StoreError> {
        let queue = self.nonce_queue().await;
        let (reply, rx) = oneshot::channel();
        let claim = Claim {
            key: nonce_key(sub, jti).to_be_bytes(),
            expires_at,
            reply,
        };
        match queue.send(claim).await {
            // A writer that went away without answering is an error, never a first use.
            Ok(()) => rx.await.unwrap_or(Err(StoreError::Stopped)),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    async fn purge_nonces(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM nonces WHERE expires_at < $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

/// A group-commit loop; [`NONCE_WRITERS`] of them share the queue. Each waits for one claim,
/// takes every other claim already queued (up to [`MAX_BATCH`]), lets go of the queue (so the
/// next writer can gather the next batch while this one waits for the database), inserts the
/// batch with one statement, and answers each claim. Ends when the store is dropped.
async fn nonce_writer(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<Claim>>>) {
    let mut batch: Vec<Claim> = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            batch.push(first);
            // Let the requests that are already running reach their claim, so that one commit
            // serves as many of them as possible.
            for _ in 0..YIELDS_BEFORE_COMMIT {
                tokio::task::yield_now().await;
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
        }
        match insert_batch(&pool, &batch).await {
            Ok(mut inserted) => {
                for claim in batch.drain(..) {
                    // Only the first claim of a key in the batch takes its insertion.
                    let first_use = inserted.remove(&claim.key);
                    let _ = claim.reply.send(Ok(first_use));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "nonce batch failed");
                let msg = e.to_string();
                for claim in batch.drain(..) {
                    let _ = claim
                        .reply
                        .send(Err(StoreError::Database(sqlx::Error::Protocol(
                            msg.clone(),
                        ))));
                }
            }
        }
    }
}

/// Inserts the batch's distinct keys (each with the expiry of its first claim) in one
/// statement (one implicit transaction, one commit); returns the keys that were inserted,
/// i.e. not claimed before.
async fn insert_batch(pool: &PgPool, batch: &[Claim]) -> Result<HashSet<[u8; 16]>, sqlx::Error> {
    let mut distinct = HashSet::with_capacity(batch.len());
    let mut keys: Vec<[u8; 16]> = Vec::with_capacity(batch.len());
    let mut expiries: Vec<i64> = Vec::with_capacity(batch.len());
    for c in batch {
        if distinct.insert(c.key) {
            keys.push(c.key);
            expiries.push(c.expires_at);
        }
    }
    let inserted: Vec<[u8; 16]> = sqlx::query_scalar(
        "INSERT INTO nonces (key, expires_at) SELECT * FROM UNNEST($1::bytea[], $2::int8[]) ON CONFLICT (key) DO NOTHING RETURNING key",
    )
    .bind(keys)
    .bind(expiries)
    .fetch_all(pool)
    .await?;
    Ok(inserted.into_iter().collect())
}

#[async_trait]
impl Store for PgStore {
    async fn agree_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO service_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        let in_force: String =
            sqlx::query_scalar("SELECT value FROM service_settings WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(in_force)
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM service_settings WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    async fn put_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO service_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(value)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// A session advisory lock on a connection of its own (not returned to the pool): dropping
    /// the guard closes the connection, which ends the session and releases the lock, also if
    /// the process dies.
    async fn exclusive(&self, name: &str) -> Result<ExclusiveGuard, StoreError> {
        let mut conn = self.pool().acquire().await?.detach();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(lock_key(name))
            .execute(&mut conn)
            .await?;
        Ok(ExclusiveGuard(Box::new(conn)))
    }

    /// Bumped by triggers whenever accounts, courses, developer keys, tool proxies or signing
    /// keys change, by any instance.
    async fn change_epoch(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT epoch FROM change_epoch WHERE id = 1")
                .fetch_one(self.pool())
                .await?,
        )
    }
}
