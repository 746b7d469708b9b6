//! Persistence behind traits.
//!
//! Handlers and the [`crate::authority`] see only these traits, so a second backend
//! (PostgreSQL) can be added without touching them. [`sqlite::SqliteStore`] is the embedded
//! default: one file in WAL mode, migrations embedded in the binary, and a single writer task
//! that claims nonces in batches (group commit).

use async_trait::async_trait;
use serde::Serialize;

use crate::access_token::SigningKey;
use crate::secrets::{Secret, SecretsError};

pub mod sqlite;

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
}

/// Everything the service stores.
#[async_trait]
pub trait Store: ContextStore + CredentialStore + KeyStore + NonceStore {
    /// A number that changes whenever accounts, courses, credentials or signing keys change,
    /// by any process; caches compare it to know when to reload.
    async fn change_epoch(&self) -> Result<i64, StoreError>;
}
