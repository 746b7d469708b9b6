//! Persistence behind traits.
//!
//! Handlers and the [`crate::authority`] see only these traits, so a second backend
//! (PostgreSQL) can be added without touching them. [`sqlite::SqliteStore`] is the embedded
//! default: one file in WAL mode, migrations embedded in the binary, and a single writer task
//! that claims nonces in batches (group commit). [`postgres::PgStore`] is the shared store of
//! several instances; [`redis_nonces::RedisNonces`] optionally takes the nonces.

use async_trait::async_trait;
use serde::Serialize;

use crate::access_token::SigningKey;
use crate::secrets::{Secret, SecretsError};
pub use lms::LmsStore;
pub use webhooks::WebhookStore;

pub mod lms;
pub mod postgres;
mod postgres_lms;
mod postgres_webhooks;
pub mod redis_nonces;
pub mod sqlite;
mod sqlite_lms;
mod sqlite_webhooks;
pub mod webhooks;

/// An LMS context that owns an authorize route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextKind {
    /// `/api/lti/accounts/{id}/…`
    Account,
    /// `/api/lti/courses/{id}/…`
    Course,
}

impl ContextKind {
    /// The path segment (`accounts` or `courses`).
    pub fn plural(self) -> &'static str {
        match self {
            ContextKind::Account => "accounts",
            ContextKind::Course => "courses",
        }
    }

    /// The stored name (`account` or `course`).
    pub fn as_str(self) -> &'static str {
        match self {
            ContextKind::Account => "account",
            ContextKind::Course => "course",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "account" => Some(ContextKind::Account),
            "course" => Some(ContextKind::Course),
            _ => None,
        }
    }
}

/// A context: its kind and local id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ContextRef {
    /// Account or course.
    pub kind: ContextKind,
    /// Its id.
    pub id: i64,
}

/// One service of a tool proxy's security contract (IMS LTI 2.0 `tool_service`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ToolService {
    /// The service id, e.g. `vnd.Canvas.OriginalityReport` (or a URL ending in `#…`).
    pub service: String,
    /// HTTP methods allowed, e.g. `["GET","POST"]`.
    pub action: Vec<String>,
}

/// A tool proxy with its decrypted shared secret.
#[derive(Debug, Clone)]
pub struct ToolProxyRecord {
    /// The guid (the assertion's `sub`).
    pub guid: String,
    /// `active`, `disabled` or `deleted`.
    pub workflow_state: String,
    /// `enabled_capability` of the tool proxy (e.g. `Security.splitSecret`).
    pub enabled_capability: Vec<String>,
    /// The security contract's services.
    pub tool_service: Vec<ToolService>,
    /// The developer key of its product family, if any.
    pub developer_key_id: Option<i64>,
    /// The shared secret (for split secrets, `tc_half ‖ tp_half`).
    pub shared_secret: Secret,
}

impl ToolProxyRecord {
    /// Whether it may sign assertions: active, with `Security.splitSecret` or
    /// `OAuth.splitSecret` (Canvas `AuthorizationValidator`).
    pub fn uses_split_secret(&self) -> bool {
        self.enabled_capability
            .iter()
            .any(|c| c == "Security.splitSecret" || c == "OAuth.splitSecret")
    }
}

/// A tool proxy as listed by the admin console (no secret).
#[derive(Debug, Clone, Serialize)]
pub struct ToolProxySummary {
    /// The guid.
    pub guid: String,
    /// Its state.
    pub workflow_state: String,
    /// Its capabilities.
    pub enabled_capability: Vec<String>,
    /// Its services.
    pub tool_service: Vec<ToolService>,
    /// Its developer key.
    pub developer_key_id: Option<i64>,
    /// Created, seconds since the epoch.
    pub created_at: i64,
}

/// What creating a tool proxy takes.
#[derive(Debug, Clone)]
pub struct NewToolProxy {
    /// The guid.
    pub guid: String,
    /// The shared secret.
    pub shared_secret: Secret,
    /// `active` or `disabled`.
    pub workflow_state: String,
    /// Capabilities.
    pub enabled_capability: Vec<String>,
    /// Services.
    pub tool_service: Vec<ToolService>,
    /// Developer key.
    pub developer_key_id: Option<i64>,
    /// Seconds since the epoch.
    pub now: i64,
}

/// A developer key with its decrypted secret.
#[derive(Debug, Clone)]
pub struct DeveloperKeyRecord {
    /// The global id (the assertion's `sub`).
    pub id: i64,
    /// `active`, `inactive` or `deleted`.
    pub workflow_state: String,
    /// The secret (Canvas `api_key`).
    pub secret: Secret,
}

/// A developer key as listed (no secret).
#[derive(Debug, Clone, Serialize)]
pub struct DeveloperKeySummary {
    /// The global id.
    pub id: i64,
    /// Its state.
    pub workflow_state: String,
    /// Its name.
    pub name: Option<String>,
    /// Created, seconds since the epoch.
    pub created_at: i64,
}

/// A pending LTI 2 registration (Canvas caches it for one hour).
#[derive(Debug, Clone)]
pub struct RegistrationRecord {
    /// The reg_key (also the future tool proxy guid).
    pub reg_key: String,
    /// The reg_password (the HMAC key of reg_key assertions).
    pub reg_password: Secret,
    /// Where registration started.
    pub context: ContextRef,
    /// The tool's registration URL.
    pub tool_url: Option<String>,
    /// Expiry, seconds since the epoch.
    pub expires_at: i64,
    /// When it was used to register a tool proxy, if it was.
    pub consumed_at: Option<i64>,
}

/// What creating a registration takes.
#[derive(Debug, Clone)]
pub struct NewRegistration {
    /// The reg_key.
    pub reg_key: String,
    /// The reg_password.
    pub reg_password: Secret,
    /// The context.
    pub context: ContextRef,
    /// The tool URL.
    pub tool_url: Option<String>,
    /// Seconds since the epoch.
    pub now: i64,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

/// An account as the tool consumer profile names it.
#[derive(Debug, Clone, Serialize)]
pub struct AccountInfo {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its opaque uuid (Canvas `lti_guid`, `ext_tool_consumer_instance_guid`).
    pub uuid: String,
}

/// A custom tool consumer profile (Canvas `Lti::ToolConsumerProfile`): the restricted
/// services and capabilities one developer key unlocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolConsumerProfileRecord {
    /// Its uuid (the last segment of its URL).
    pub uuid: String,
    /// The developer key it belongs to (at most one profile per key).
    pub developer_key_id: i64,
    /// Extra service ids, e.g. `vnd.Canvas.OriginalityReport`.
    pub services: Vec<String>,
    /// Extra capabilities, e.g. `Canvas.placements.similarityDetection`.
    pub capabilities: Vec<String>,
    /// Created, seconds since the epoch.
    pub created_at: i64,
}

/// The vendor and product of a registered tool (Canvas `Lti::ProductFamily`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductFamilySpec {
    /// `tool_profile.product_instance.product_info.product_family.vendor.code`.
    pub vendor_code: String,
    /// `…product_family.code`.
    pub product_code: String,
    /// The vendor's name.
    pub vendor_name: String,
    /// The vendor's description.
    pub vendor_description: Option<String>,
    /// The vendor's website.
    pub website: Option<String>,
    /// The vendor's contact e-mail.
    pub vendor_email: Option<String>,
}

/// A message handler of a resource handler (IMS LTI 2.0 `message`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageHandlerSpec {
    /// e.g. `basic-lti-launch-request`.
    pub message_type: String,
    /// The base URL followed by the message's path.
    pub launch_path: String,
    /// Its `enabled_capability`.
    pub capabilities: Vec<String>,
    /// Its `parameter` list, as sent.
    pub parameters: serde_json::Value,
    /// Canvas placements from its capabilities (e.g. `similarity_detection`).
    pub placements: Vec<String>,
}

/// A resource handler (IMS LTI 2.0 `resource_handler`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceHandlerSpec {
    /// `resource_type.code`, unique within the tool proxy.
    pub resource_type_code: String,
    /// `resource_name.default_value`.
    pub name: String,
    /// `description.default_value`.
    pub description: Option<String>,
    /// Its message handlers.
    pub messages: Vec<MessageHandlerSpec>,
}

/// What a tool proxy's document says, as stored when it registers or an update is accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolProxyContent {
    /// The product name.
    pub name: String,
    /// The product description.
    pub description: Option<String>,
    /// The product version.
    pub product_version: Option<String>,
    /// `LTI-2p0`.
    pub lti_version: String,
    /// The tool proxy's `enabled_capability`.
    pub enabled_capability: Vec<String>,
    /// The security contract's services.
    pub tool_service: Vec<ToolService>,
    /// Its resource handlers.
    pub resource_handlers: Vec<ResourceHandlerSpec>,
    /// The ToolProxy JSON as the tool sent it.
    pub raw_data: String,
}

/// A tool proxy created by registration (Canvas `ToolProxyService#process_tool_proxy_json`).
#[derive(Debug, Clone)]
pub struct RegisteredToolProxy {
    /// The guid: the registration's reg_key, which is consumed in the same transaction.
    pub guid: String,
    /// The context the registration belongs to; the tool proxy is bound to it.
    pub context: ContextRef,
    /// The developer key that registered it, if any.
    pub developer_key_id: Option<i64>,
    /// Vendor and product.
    pub product_family: ProductFamilySpec,
    /// The registration URL (the tool's).
    pub registration_url: Option<String>,
    /// The shared secret (for split secrets `tc_half ‖ tp_half`).
    pub shared_secret: Secret,
    /// The document's content.
    pub content: ToolProxyContent,
    /// Seconds since the epoch.
    pub now: i64,
}

/// A tool proxy's registration details (no secret).
#[derive(Debug, Clone, Serialize)]
pub struct ToolProxyDetail {
    /// The guid.
    pub guid: String,
    /// Its state.
    pub workflow_state: String,
    /// The developer key of its product family.
    pub developer_key_id: Option<i64>,
    /// Vendor code, when it was registered.
    pub vendor_code: Option<String>,
    /// Product code, when it was registered.
    pub product_code: Option<String>,
    /// The contexts it is bound to.
    pub contexts: Vec<ContextRef>,
    /// The ToolProxy JSON, when it was registered (not created by the console).
    pub raw_data: Option<String>,
    /// A re-registration waiting for acceptance:
    /// `{"acknowledgement_url", "payload", "tc_half_shared_secret"?}` (the secret half is
    /// not kept here; it is sealed apart).
    pub update_payload: Option<String>,
}

/// A signing key as listed (no key bytes).
#[derive(Debug, Clone, Serialize)]
pub struct SigningKeySummary {
    /// The key id.
    pub kid: String,
    /// Created, seconds since the epoch.
    pub created_at: i64,
    /// Whether it signs new tokens (the newest key).
    pub active: bool,
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record to change does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A record with this key exists already.
    #[error("{0} already exists")]
    Conflict(String),
    /// The change breaks a rule of the data (e.g. removing the last signing key).
    #[error("{0}")]
    Invalid(String),
    /// The database could not be reached or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored secret does not open.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The nonce writer has stopped.
    #[error("the nonce store is not running")]
    Stopped,
    /// A service the store needs (Redis) cannot be reached or did not answer in time.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Accounts and courses.
#[async_trait]
pub trait ContextStore: Send + Sync {
    /// Whether the account or course exists.
    async fn context_exists(&self, ctx: ContextRef) -> Result<bool, StoreError>;
    /// Creates an account. Errors: `Conflict`, `NotFound` (parent).
    async fn create_account(
        &self,
        id: i64,
        name: &str,
        parent: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Creates a course in an account. Errors: `Conflict`, `NotFound` (account).
    async fn create_course(
        &self,
        id: i64,
        account_id: i64,
        name: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// The root account of an account or course (the account itself when it has no parent).
    async fn root_account(&self, ctx: ContextRef) -> Result<Option<AccountInfo>, StoreError>;
}

/// Tool proxies, developer keys and registrations.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// A tool proxy by guid, in any state.
    async fn tool_proxy(&self, guid: &str) -> Result<Option<ToolProxyRecord>, StoreError>;
    /// Creates a tool proxy. Errors: `Conflict`, `NotFound` (developer key).
    async fn create_tool_proxy(&self, tp: NewToolProxy) -> Result<(), StoreError>;
    /// Every tool proxy.
    async fn list_tool_proxies(&self) -> Result<Vec<ToolProxySummary>, StoreError>;
    /// Sets a tool proxy's state. Errors: `NotFound`.
    async fn set_tool_proxy_state(
        &self,
        guid: &str,
        state: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// A developer key by global id, in any state.
    async fn developer_key(&self, id: i64) -> Result<Option<DeveloperKeyRecord>, StoreError>;
    /// Creates a developer key; `id` None takes the next free global id. Returns the id.
    async fn create_developer_key(
        &self,
        id: Option<i64>,
        secret: &Secret,
        name: Option<&str>,
        now: i64,
    ) -> Result<i64, StoreError>;
    /// Every developer key.
    async fn list_developer_keys(&self) -> Result<Vec<DeveloperKeySummary>, StoreError>;
    /// Sets a developer key's state. Errors: `NotFound`.
    async fn set_developer_key_state(&self, id: i64, state: &str) -> Result<(), StoreError>;
    /// Creates a registration. Errors: `Conflict`, `NotFound` (context).
    async fn create_registration(&self, reg: NewRegistration) -> Result<(), StoreError>;
    /// A registration by reg_key, whatever its state.
    async fn registration(&self, reg_key: &str) -> Result<Option<RegistrationRecord>, StoreError>;
}

/// LTI 2 registration: custom tool consumer profiles, registered tool proxies and their
/// re-registrations.
#[async_trait]
pub trait RegistrationStore: Send + Sync {
    /// Sets the vendor code a developer key registers tools for. Errors: `NotFound`.
    async fn set_developer_key_vendor_code(
        &self,
        id: i64,
        vendor_code: Option<&str>,
    ) -> Result<(), StoreError>;
    /// The developer keys with this vendor code.
    async fn developer_keys_with_vendor_code(
        &self,
        vendor_code: &str,
    ) -> Result<Vec<i64>, StoreError>;
    /// Creates a custom profile. Errors: `Conflict` (uuid, or the key has one), `NotFound` (key).
    async fn create_tool_consumer_profile(
        &self,
        tcp: &ToolConsumerProfileRecord,
    ) -> Result<(), StoreError>;
    /// A custom profile by uuid.
    async fn tool_consumer_profile(
        &self,
        uuid: &str,
    ) -> Result<Option<ToolConsumerProfileRecord>, StoreError>;
    /// The custom profile of a developer key.
    async fn tool_consumer_profile_for_developer_key(
        &self,
        developer_key_id: i64,
    ) -> Result<Option<ToolConsumerProfileRecord>, StoreError>;
    /// Every custom profile.
    async fn list_tool_consumer_profiles(
        &self,
    ) -> Result<Vec<ToolConsumerProfileRecord>, StoreError>;
    /// In one transaction: consumes the registration `guid` (it must be live, unconsumed and of
    /// `context` at `now`), finds or creates the product family, creates the tool proxy
    /// (`disabled`), its resource and message handlers, and its binding to the context.
    /// Errors: `Conflict` when the registration is not live any more or the guid is taken
    /// (nothing is written).
    async fn register_tool_proxy(&self, tp: RegisteredToolProxy) -> Result<(), StoreError>;
    /// A tool proxy's registration details.
    async fn tool_proxy_detail(&self, guid: &str) -> Result<Option<ToolProxyDetail>, StoreError>;
    /// Stores a re-registration for the admin to accept (replacing one already waiting).
    /// `payload` is `{"acknowledgement_url", "payload", …}`; `secret` the new shared secret
    /// when the tool uses a split secret. Errors: `NotFound`.
    async fn stage_tool_proxy_update(
        &self,
        guid: &str,
        payload: &str,
        secret: Option<&Secret>,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Applies the waiting re-registration, which must still be `expected_payload`: the new
    /// content, handlers and (if one was staged) shared secret, in one transaction; clears it.
    /// Errors: `NotFound`; `Invalid` when no such update is waiting.
    async fn apply_tool_proxy_update(
        &self,
        guid: &str,
        expected_payload: &str,
        content: &ToolProxyContent,
        now: i64,
    ) -> Result<(), StoreError>;
}

/// The access-token signing keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every key, newest (the signing key) first.
    async fn signing_keys(&self) -> Result<Vec<SigningKey>, StoreError>;
    /// Adds a key, which becomes the signing key.
    async fn add_signing_key(&self, key: &SigningKey, now: i64) -> Result<(), StoreError>;
    /// Every key, without the key bytes.
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeySummary>, StoreError>;
    /// Removes a key. Errors: `NotFound`; `Invalid` for the last key.
    async fn remove_signing_key(&self, kid: &str) -> Result<(), StoreError>;
}

/// Replay protection: each (sub, jti) is accepted once.
#[async_trait]
pub trait NonceStore: Send + Sync {
    /// Records (sub, jti) until `expires_at` (seconds since the epoch) if it is not recorded
    /// yet. `Ok(true)`: first use; `Ok(false)`: a replay. Atomic: of concurrent calls with
    /// the same pair, exactly one gets `true`. Durable once it returns.
    async fn claim_nonce(&self, sub: &str, jti: &str, expires_at: i64) -> Result<bool, StoreError>;
    /// Deletes the entries whose `expires_at` is before `now`; returns how many.
    async fn purge_nonces(&self, now: i64) -> Result<u64, StoreError>;
    /// Whether claims can be made now (`GET /ready`). Stores that keep nonces in the database
    /// answer Ok: the database itself is checked with [`Store::change_epoch`].
    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Everything the service stores.
#[async_trait]
pub trait Store:
    ContextStore + CredentialStore + RegistrationStore + LmsStore + WebhookStore + KeyStore + NonceStore
{
    /// A number that changes whenever accounts, courses, credentials or signing keys change,
    /// by any process; caches compare it to know when to reload.
    async fn change_epoch(&self) -> Result<i64, StoreError>;
    /// Waits for, then holds, the lock named `name` among every process that uses this
    /// database (a PostgreSQL session advisory lock; a lock file beside a SQLite file), until
    /// the guard is dropped. For console commands that read, then write what they read (e.g.
    /// `submission create` picks the next ids), so that two runs at once cannot pick the same.
    async fn exclusive(&self, name: &str) -> Result<ExclusiveGuard, StoreError>;
    /// Records `value` for the shared setting `name` unless one is recorded already; returns
    /// the value in force (the one just recorded, or the earlier one). Atomic across processes.
    async fn agree_setting(&self, name: &str, value: &str) -> Result<String, StoreError>;
    /// The shared setting `name`, if one is recorded.
    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Replaces the shared setting `name` (the console, with every server stopped).
    async fn put_setting(&self, name: &str, value: &str) -> Result<(), StoreError>;
}

/// Holds a lock taken with [`Store::exclusive`] until dropped.
pub struct ExclusiveGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

/// A 64-bit lock key for a lock name (the first 8 bytes of its SHA-256).
fn lock_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("lti2-lock:{name}").as_bytes());
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// A 128-bit digest of (sub, jti): the key of the in-memory index.
pub(crate) fn nonce_key(sub: &str, jti: &str) -> u128 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((sub.len() as u64).to_be_bytes());
    h.update(sub.as_bytes());
    h.update(jti.as_bytes());
    let d = h.finalize();
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}

fn ctx_aad(kind: &str, id: &str) -> String {
    format!("{kind}:{id}")
}

fn conflict_or(e: sqlx::Error, what: impl Fn() -> String, fk: impl Fn() -> String) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Conflict(what());
        }
        if db.is_foreign_key_violation() {
            return StoreError::NotFound(fk());
        }
    }
    StoreError::Database(e)
}

fn json_list<T: serde::de::DeserializeOwned>(s: &str) -> Vec<T> {
    serde_json::from_str(s).unwrap_or_default()
}

/// The longest identifier the stores key records by (guids, reg_keys, vendor, product and
/// resource type codes, LTI ids), in characters: Canvas keeps them in `varchar(255)` columns,
/// and a PostgreSQL index entry cannot hold much more than 2,700 bytes.
pub const MAX_IDENTIFIER_LEN: usize = 255;

/// Checks an identifier's length: `Err("must be at most 255 characters")` when longer.
pub fn check_identifier(value: &str) -> Result<(), String> {
    if value.chars().count() > MAX_IDENTIFIER_LEN {
        return Err(format!("must be at most {MAX_IDENTIFIER_LEN} characters"));
    }
    Ok(())
}
