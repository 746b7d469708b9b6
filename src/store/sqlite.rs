//! The embedded SQLite store: one file in WAL mode, migrations embedded in the binary.
//!
//! Nonces: the serving process holds every unexpired (sub, jti) pair in memory and decides
//! uniqueness there, under a mutex (atomic within the process), then appends the pair to the
//! `nonces` table through one writer task that turns every claim waiting at that moment into a
//! single multi-row `INSERT` (group commit). A claim is acknowledged only after its batch
//! committed; if the commit fails the pair is released and the request gets an error, never a
//! token. At start the table is read back into memory, so a jti stays used across restarts.
//! Only one process may claim nonces on a file: the first claim takes an exclusive lock on
//! `<database>.nonce-lock` (one server per SQLite file). `lti2 admin` never claims.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};
use tokio::sync::{mpsc, oneshot, OnceCell};

use super::*;
use crate::secrets::MasterKey;

/// A recursive CTE `chain(id, parent, depth)`: the account bound to `?` (depth 0) and every
/// account above it (at most 64 levels).
pub(super) const CHAIN_FROM_ACCOUNT: &str = "WITH RECURSIVE chain(id, parent, depth) AS (SELECT id, parent_account_id, 0 FROM accounts WHERE id = ? UNION ALL SELECT a.id, a.parent_account_id, c.depth + 1 FROM accounts a JOIN chain c ON a.id = c.parent WHERE c.depth < 64) ";
/// The same from a course (bound to `?`): its account at depth 0, then the parents.
pub(super) const CHAIN_FROM_COURSE: &str = "WITH RECURSIVE chain(id, parent, depth) AS (SELECT a.id, a.parent_account_id, 0 FROM accounts a JOIN courses c ON c.account_id = a.id WHERE c.id = ? UNION ALL SELECT a.id, a.parent_account_id, ch.depth + 1 FROM accounts a JOIN chain ch ON a.id = ch.parent WHERE ch.depth < 64) ";

/// The most nonce claims written in one statement.
const MAX_BATCH: usize = 256;
/// How often the writer yields to other tasks before it takes a batch.
const YIELDS_BEFORE_COMMIT: usize = 4;

/// How SQLite makes commits durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a commit survives a crash of the process (kill -9);
    /// the last commits before a power cut may be lost.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is fsynced before it is acknowledged.
    Full,
}

/// The SQLite implementation of [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    master: MasterKey,
    opts: SqliteConnectOptions,
    lock_path: Option<PathBuf>,
    nonces: std::sync::Arc<OnceCell<Nonces>>,
}

/// The in-memory nonce index and the channel to the writer task.
struct Nonces {
    seen: Mutex<HashMap<u128, i64>>,
    tx: mpsc::Sender<Claim>,
    _lock: Option<std::fs::File>,
}

struct Claim {
    sub: String,
    jti: String,
    expires_at: i64,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url`
    /// (`sqlite://path`, `sqlite:path` or `sqlite::memory:`), and starts the nonce writer.
    pub async fn open(
        url: &str,
        master: MasterKey,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .synchronous(match durability {
                Durability::Normal => SqliteSynchronous::Normal,
                Durability::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .disable_statement_logging();
        let memory = url.contains(":memory:");
        if !memory {
            // WAL is a property of the file. Switching a new file into it takes an exclusive lock
            // that busy_timeout cannot wait for, so it is done once, on one connection, before
            // the pool opens several connections at once (which would race and fail with
            // "database is locked"); the pool's connections then find the file in WAL mode.
            let conn = opts
                .clone()
                .journal_mode(SqliteJournalMode::Wal)
                .connect()
                .await?;
            conn.close().await?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { 4 })
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let lock_path = (!memory)
            .then(|| PathBuf::from(format!("{}.nonce-lock", opts.get_filename().display())));
        Ok(Self {
            pool,
            master,
            opts,
            lock_path,
            nonces: Default::default(),
        })
    }

    /// Starts nonce claiming in this process: takes the lock file, loads the stored pairs into
    /// memory, and starts the writer and the WAL checkpointer.
    async fn nonces(&self) -> Result<&Nonces, StoreError> {
        self.nonces
            .get_or_try_init(|| async {
                let lock = match &self.lock_path {
                    Some(path) => {
                        let f = std::fs::OpenOptions::new()
                            .create(true)
                            .truncate(false)
                            .write(true)
                            .open(path)
                            .map_err(|e| StoreError::Invalid(format!("{}: {e}", path.display())))?;
                        f.try_lock().map_err(|_| {
                            StoreError::Invalid(format!(
                                "another lti2 serve is using this SQLite database ({} is locked): one server per SQLite file",
                                path.display()
                            ))
                        })?;
                        Some(f)
                    }
                    None => None,
                };
                let mut seen = HashMap::new();
                let mut rows = sqlx::query("SELECT sub, jti, expires_at FROM nonces").fetch(&self.pool);
                while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
                    let (sub, jti, exp): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
                    let e = seen.entry(nonce_key(&sub, &jti)).or_insert(exp);
                    *e = (*e).max(exp);
                }
                drop(rows);
                let (tx, rx) = mpsc::channel(4096);
                if self.lock_path.is_some() {
                    let conn = self
                        .opts
                        .clone()
                        .statement_cache_capacity(MAX_BATCH + 8)
                        .pragma("wal_autocheckpoint", "0")
                        .connect()
                        .await?;
                    tokio::spawn(nonce_writer(WriterConn::Own(conn), rx));
                    tokio::spawn(checkpointer(self.pool.clone()));
                } else {
                    tokio::spawn(nonce_writer(WriterConn::Pool(self.pool.clone()), rx));
                }
                Ok(Nonces { seen: Mutex::new(seen), tx, _lock: lock })
            })
            .await
    }

    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction. `BEGIN IMMEDIATE` takes the write lock at once (waiting up to the
    /// busy timeout), so a transaction that reads before it writes cannot fail with "database
    /// is locked" when another connection wrote in between (SQLite's deferred transactions
    /// cannot upgrade a stale read snapshot).
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    fn open_secret(&self, aad: &str, sealed: &[u8]) -> Result<Secret, StoreError> {
        Ok(self.master.open(aad, sealed)?)
    }
}

#[async_trait]
impl ContextStore for SqliteStore {
    async fn context_exists(&self, ctx: ContextRef) -> Result<bool, StoreError> {
        let sql = match ctx.kind {
            ContextKind::Account => "SELECT 1 FROM accounts WHERE id = ?",
            ContextKind::Course => "SELECT 1 FROM courses WHERE id = ?",
        };
        Ok(sqlx::query(sql)
            .bind(ctx.id)
            .fetch_optional(&self.pool)
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
        sqlx::query("INSERT INTO accounts (id, name, parent_account_id, uuid, created_at) VALUES (?, ?, ?, lower(hex(randomblob(20))), ?)")
            .bind(id)
            .bind(name)
            .bind(parent)
            .bind(now)
            .execute(&self.pool)
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
        sqlx::query("INSERT INTO courses (id, account_id, name, created_at, lti_id) VALUES (?, ?, ?, ?, lower(hex(randomblob(20))))")
            .bind(id)
            .bind(account_id)
            .bind(name)
            .bind(now)
            .execute(&self.pool)
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
        let start: Option<i64> = match ctx.kind {
            ContextKind::Account => Some(ctx.id),
            ContextKind::Course => {
                sqlx::query_scalar("SELECT account_id FROM courses WHERE id = ?")
                    .bind(ctx.id)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        let Some(start) = start else { return Ok(None) };
        let row = sqlx::query(
            &format!("{CHAIN_FROM_ACCOUNT}SELECT a.id, a.name, a.uuid FROM chain c JOIN accounts a ON a.id = c.id ORDER BY c.depth DESC LIMIT 1"),
        )
        .bind(start)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| AccountInfo {
            id: r.get(0),
            name: r.get(1),
            uuid: r.get(2),
        }))
    }
}

#[async_trait]
impl RegistrationStore for SqliteStore {
    async fn set_developer_key_vendor_code(
        &self,
        id: i64,
        vendor_code: Option<&str>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE developer_keys SET vendor_code = ? WHERE id = ?")
            .bind(vendor_code)
            .bind(id)
            .execute(&self.pool)
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
            sqlx::query_scalar("SELECT id FROM developer_keys WHERE vendor_code = ? ORDER BY id")
                .bind(vendor_code)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn create_tool_consumer_profile(
        &self,
        tcp: &ToolConsumerProfileRecord,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tool_consumer_profiles (uuid, developer_key_id, services, capabilities, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&tcp.uuid)
            .bind(tcp.developer_key_id)
            .bind(serde_json::to_string(&tcp.services).expect("strings serialise"))
            .bind(serde_json::to_string(&tcp.capabilities).expect("strings serialise"))
            .bind(tcp.created_at)
            .execute(&self.pool)
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
        let row = sqlx::query("SELECT uuid, developer_key_id, services, capabilities, created_at FROM tool_consumer_profiles WHERE uuid = ?")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(tcp_row))
    }

    async fn tool_consumer_profile_for_developer_key(
        &self,
        developer_key_id: i64,
    ) -> Result<Option<ToolConsumerProfileRecord>, StoreError> {
        let row = sqlx::query("SELECT uuid, developer_key_id, services, capabilities, created_at FROM tool_consumer_profiles WHERE developer_key_id = ?")
            .bind(developer_key_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(tcp_row))
    }

    async fn list_tool_consumer_profiles(
        &self,
    ) -> Result<Vec<ToolConsumerProfileRecord>, StoreError> {
        let rows = sqlx::query("SELECT uuid, developer_key_id, services, capabilities, created_at FROM tool_consumer_profiles ORDER BY created_at, uuid")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(tcp_row).collect())
    }

    async fn register_tool_proxy(&self, tp: RegisteredToolProxy) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let consumed = sqlx::query(
            "UPDATE registrations SET consumed_at = ? WHERE reg_key = ? AND context_type = ? AND context_id = ? AND consumed_at IS NULL AND expires_at > ?",
        )
        .bind(tp.now)
        .bind(&tp.guid)
        .bind(tp.context.kind.as_str())
        .bind(tp.context.id)
        .bind(tp.now)
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
            "SELECT id FROM product_families WHERE vendor_code = ? AND product_code = ? AND ifnull(developer_key_id, 0) = ifnull(?, 0)",
        )
        .bind(&pf.vendor_code)
        .bind(&pf.product_code)
        .bind(tp.developer_key_id)
        .fetch_optional(&mut *tx)
        .await?;
        let family_id = match family_id {
            Some(id) => id,
            None => sqlx::query_scalar(
                "INSERT INTO product_families (vendor_code, product_code, developer_key_id, vendor_name, vendor_description, website, vendor_email, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
            .master
            .seal(&ctx_aad("tool_proxy", &tp.guid), tp.shared_secret.expose());
        let c = &tp.content;
        sqlx::query(
            "INSERT INTO tool_proxies (guid, secret_enc, workflow_state, enabled_capability, tool_service, developer_key_id, created_at, updated_at, product_family_id, name, description, product_version, lti_version, registration_url, raw_data) VALUES (?, ?, 'disabled', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&tp.guid)
        .bind(sealed)
        .bind(serde_json::to_string(&c.enabled_capability).expect("strings serialise"))
        .bind(serde_json::to_string(&c.tool_service).expect("services serialise"))
        .bind(tp.developer_key_id)
        .bind(tp.now)
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
        sqlx::query("INSERT INTO tool_proxy_bindings (tool_proxy_guid, context_type, context_id, enabled, created_at) VALUES (?, ?, ?, 1, ?)")
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
            "SELECT tp.guid, tp.workflow_state, tp.developer_key_id, pf.vendor_code, pf.product_code, tp.raw_data, tp.update_payload FROM tool_proxies tp LEFT JOIN product_families pf ON pf.id = tp.product_family_id WHERE tp.guid = ?",
        )
        .bind(guid)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let bindings = sqlx::query(
            "SELECT context_type, context_id FROM tool_proxy_bindings WHERE tool_proxy_guid = ? AND enabled = 1 ORDER BY id",
        )
        .bind(guid)
        .fetch_all(&self.pool)
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
            self.master
                .seal(&ctx_aad("tool_proxy_update", guid), s.expose())
        });
        let done = sqlx::query(
            "UPDATE tool_proxies SET update_payload = ?, update_secret_enc = ?, updated_at = ? WHERE guid = ?",
        )
        .bind(payload)
        .bind(sealed)
        .bind(now)
        .bind(guid)
        .execute(&self.pool)
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
            "SELECT update_payload, update_secret_enc FROM tool_proxies WHERE guid = ?",
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
                    self.master
                        .seal(&ctx_aad("tool_proxy", guid), secret.expose()),
                )
            }
            None => None,
        };
        sqlx::query(
            "UPDATE tool_proxies SET secret_enc = coalesce(?, secret_enc), enabled_capability = ?, tool_service = ?, name = ?, description = ?, product_version = ?, lti_version = ?, raw_data = ?, update_payload = NULL, update_secret_enc = NULL, updated_at = ? WHERE guid = ?",
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
        sqlx::query("DELETE FROM resource_handlers WHERE tool_proxy_guid = ?")
            .bind(guid)
            .execute(&mut *tx)
            .await?;
        insert_handlers(&mut tx, guid, &content.resource_handlers).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn tcp_row(r: sqlx::sqlite::SqliteRow) -> ToolConsumerProfileRecord {
    ToolConsumerProfileRecord {
        uuid: r.get(0),
        developer_key_id: r.get(1),
        services: json_list(r.get(2)),
        capabilities: json_list(r.get(3)),
        created_at: r.get(4),
    }
}

async fn insert_handlers(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    guid: &str,
    handlers: &[ResourceHandlerSpec],
) -> Result<(), StoreError> {
    for rh in handlers {
        let rh_id: i64 = sqlx::query_scalar(
            "INSERT INTO resource_handlers (tool_proxy_guid, resource_type_code, name, description) VALUES (?, ?, ?, ?) RETURNING id",
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
            sqlx::query("INSERT INTO message_handlers (resource_handler_id, message_type, launch_path, capabilities, parameters, placements) VALUES (?, ?, ?, ?, ?, ?)")
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
impl CredentialStore for SqliteStore {
    async fn tool_proxy(&self, guid: &str) -> Result<Option<ToolProxyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT guid, secret_enc, workflow_state, enabled_capability, tool_service, developer_key_id FROM tool_proxies WHERE guid = ?",
        )
        .bind(guid)
        .fetch_optional(&self.pool)
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
            .master
            .seal(&ctx_aad("tool_proxy", &tp.guid), tp.shared_secret.expose());
        sqlx::query(
            "INSERT INTO tool_proxies (guid, secret_enc, workflow_state, enabled_capability, tool_service, developer_key_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&tp.guid)
        .bind(sealed)
        .bind(&tp.workflow_state)
        .bind(serde_json::to_string(&tp.enabled_capability).expect("strings serialise"))
        .bind(serde_json::to_string(&tp.tool_service).expect("services serialise"))
        .bind(tp.developer_key_id)
        .bind(tp.now)
        .bind(tp.now)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || format!("tool proxy {}", tp.guid), || format!("developer key {}", tp.developer_key_id.unwrap_or_default())))?;
        Ok(())
    }

    async fn list_tool_proxies(&self) -> Result<Vec<ToolProxySummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT guid, workflow_state, enabled_capability, tool_service, developer_key_id, created_at FROM tool_proxies ORDER BY created_at, guid",
        )
        .fetch_all(&self.pool)
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
            "UPDATE tool_proxies SET workflow_state = ?, updated_at = ? WHERE guid = ?",
        )
        .bind(state)
        .bind(now)
        .bind(guid)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tool proxy {guid}")));
        }
        super::sqlite_webhooks::sync_auto_subscription(&mut tx, guid, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn developer_key(&self, id: i64) -> Result<Option<DeveloperKeyRecord>, StoreError> {
        let row =
            sqlx::query("SELECT id, secret_enc, workflow_state FROM developer_keys WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
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
            .master
            .seal(&ctx_aad("developer_key", &id.to_string()), secret.expose());
        sqlx::query("INSERT INTO developer_keys (id, secret_enc, name, workflow_state, created_at) VALUES (?, ?, ?, 'active', ?)")
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
        .fetch_all(&self.pool)
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
        let done = sqlx::query("UPDATE developer_keys SET workflow_state = ? WHERE id = ?")
            .bind(state)
            .bind(id)
            .execute(&self.pool)
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
        let sealed = self.master.seal(
            &ctx_aad("registration", &reg.reg_key),
            reg.reg_password.expose(),
        );
        sqlx::query(
            "INSERT INTO registrations (reg_key, reg_password_enc, context_type, context_id, tool_url, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&reg.reg_key)
        .bind(sealed)
        .bind(reg.context.kind.as_str())
        .bind(reg.context.id)
        .bind(&reg.tool_url)
        .bind(reg.expires_at)
        .bind(reg.now)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || format!("registration {}", reg.reg_key), String::new))?;
        Ok(())
    }

    async fn registration(&self, reg_key: &str) -> Result<Option<RegistrationRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT reg_key, reg_password_enc, context_type, context_id, tool_url, expires_at, consumed_at FROM registrations WHERE reg_key = ?",
        )
        .bind(reg_key)
        .fetch_optional(&self.pool)
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
impl KeyStore for SqliteStore {
    async fn signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        let rows = sqlx::query("SELECT kid, key_enc FROM signing_keys ORDER BY seq DESC")
            .fetch_all(&self.pool)
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
            .master
            .seal(&ctx_aad("signing_key", &key.kid), key.bytes());
        sqlx::query("INSERT INTO signing_keys (kid, key_enc, created_at) VALUES (?, ?, ?)")
            .bind(&key.kid)
            .bind(sealed)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict_or(e, || format!("signing key {}", key.kid), String::new))?;
        Ok(())
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeySummary>, StoreError> {
        let rows = sqlx::query("SELECT kid, created_at FROM signing_keys ORDER BY seq DESC")
            .fetch_all(&self.pool)
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
        let exists = sqlx::query("SELECT 1 FROM signing_keys WHERE kid = ?")
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
        sqlx::query("DELETE FROM signing_keys WHERE kid = ?")
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl NonceStore for SqliteStore {
    async fn claim_nonce(&self, sub: &str, jti: &str, expires_at: i64) -> Result<bool, StoreError> {
        let nonces = self.nonces().await?;
        let key = nonce_key(sub, jti);
        {
            let mut seen = nonces.seen.lock().expect("nonce index lock");
            if seen.contains_key(&key) {
                return Ok(false);
            }
            seen.insert(key, expires_at);
        }
        let (reply, rx) = oneshot::channel();
        let claim = Claim {
            sub: sub.to_owned(),
            jti: jti.to_owned(),
            expires_at,
            reply,
        };
        let outcome = match nonces.tx.send(claim).await {
            Ok(()) => rx.await.unwrap_or(Err(StoreError::Stopped)),
            Err(_) => Err(StoreError::Stopped),
        };
        if let Err(e) = outcome {
            // Not durable: release the pair so the tool can retry; no token is issued.
            nonces.seen.lock().expect("nonce index lock").remove(&key);
            return Err(e);
        }
        Ok(true)
    }

    async fn purge_nonces(&self, now: i64) -> Result<u64, StoreError> {
        let nonces = self.nonces().await?;
        nonces
            .seen
            .lock()
            .expect("nonce index lock")
            .retain(|_, exp| *exp >= now);
        let done = sqlx::query("DELETE FROM nonces WHERE expires_at < ?")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Copies the WAL into the database file once a second without blocking the nonce writer
/// (whose own automatic checkpoints are off, so its commits never wait for an fsync of the
/// database file).
async fn checkpointer(pool: SqlitePool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn agree_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO service_settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        let in_force: String =
            sqlx::query_scalar("SELECT value FROM service_settings WHERE name = ?")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(in_force)
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM service_settings WHERE name = ?")
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    async fn put_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO service_settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(value)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// An exclusive lock on `<database>.<name>.lock` (released when the guard drops, or when
    /// the process dies); nothing for an in-memory database, which one process owns.
    async fn exclusive(&self, name: &str) -> Result<ExclusiveGuard, StoreError> {
        let Some(nonce_lock) = &self.lock_path else {
            return Ok(ExclusiveGuard(Box::new(())));
        };
        let path = nonce_lock.with_extension(format!("{:016x}.lock", lock_key(name)));
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            f.lock()?;
            Ok(f)
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("lock: {e}")))?
        .map_err(|e| StoreError::Invalid(format!("lock: {e}")))?;
        Ok(ExclusiveGuard(Box::new(file)))
    }

    async fn change_epoch(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT epoch FROM change_epoch WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

enum WriterConn {
    Own(SqliteConnection),
    Pool(SqlitePool),
}

/// The group-commit loop: waits for one claim, takes every other claim already queued (up to
/// [`MAX_BATCH`]), appends them in one statement, and answers each once it committed.
async fn nonce_writer(mut conn: WriterConn, mut rx: mpsc::Receiver<Claim>) {
    let mut batch: Vec<Claim> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
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
        let outcome = match &mut conn {
            WriterConn::Own(c) => insert_batch(c, &batch).await,
            WriterConn::Pool(p) => match p.acquire().await {
                Ok(mut c) => insert_batch(&mut c, &batch).await,
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(()) => {
                for claim in batch.drain(..) {
                    let _ = claim.reply.send(Ok(()));
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

/// Appends the batch in one statement (one implicit transaction, one commit).
async fn insert_batch(conn: &mut SqliteConnection, batch: &[Claim]) -> Result<(), sqlx::Error> {
    let mut sql = String::with_capacity(60 + batch.len() * 8);
    sql.push_str("INSERT INTO nonces (sub, jti, expires_at) VALUES ");
    for i in 0..batch.len() {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?)");
    }
    let mut q = sqlx::query(&sql);
    for c in batch {
        q = q.bind(&c.sub).bind(&c.jti).bind(c.expires_at);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}
