//! The authorize use case (Canvas `Lti::IMS::AuthorizationController#authorize`, with the
//! differences SPEC.md decides): token request parameters → assertion checks → credential by
//! the unverified `sub` → signature and claims → atomic `jti` claim → access token.
//!
//! [`Authority`] also keeps the in-memory caches the hot path reads (contexts, tool proxies,
//! developer keys, the signing key ring). They are dropped whenever the store's change epoch
//! moves, which triggers in the database bump on every change by any process; the epoch is
//! read at most once per `cache_refresh` interval.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::access_token::{KeyRing, MintRequest, SigningKey};
use crate::assertion::{self, AssertionError, AssertionPolicy, Subject};
use crate::bearer::{contract_allows, Authenticated, GateError, Identity, Requirement};
use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::secrets::{random_bytes, Secret};
use crate::store::{
    ContextRef, DeveloperKeyRecord, NonceStore, Store, StoreError, ToolProxyRecord,
};

/// The RFC 7523 grant type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Canvas's second accepted grant type.
pub const AUTHORIZATION_CODE: &str = "authorization_code";

/// An RFC 6749 §5.2 error (or a 404/413/503 around it), ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// HTTP status.
    pub status: u16,
    /// `error`: `invalid_request`, `invalid_grant`, `unsupported_grant_type`,
    /// `temporarily_unavailable`, or `not_found`.
    pub error: &'static str,
    /// `error_description`: safe to show.
    pub description: String,
    /// A short reason for logs and metrics.
    pub reason: &'static str,
}

impl OAuthError {
    /// 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: "invalid_request",
            description: description.into(),
            reason: "invalid_request",
        }
    }

    /// 400 `invalid_grant` from an assertion fault.
    pub fn grant(e: &AssertionError) -> Self {
        Self {
            status: 400,
            error: "invalid_grant",
            description: e.to_string(),
            reason: e.reason(),
        }
    }

    /// 503 `temporarily_unavailable`: the store could not be reached; nothing was issued.
    pub fn unavailable() -> Self {
        Self {
            status: 503,
            error: "temporarily_unavailable",
            description: "the service cannot check this assertion right now; try again".into(),
            reason: "store_unavailable",
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure on the authorize path");
        OAuthError::unavailable()
    }
}

/// The grant type: it only gates the request (Canvas); either value works for any credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer`
    JwtBearer,
    /// `authorization_code`
    AuthorizationCode,
}

/// A token request's parameters, checked.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The grant type.
    pub grant_type: GrantType,
    /// The assertion.
    pub assertion: String,
    /// `code` (the reg_key), when given and not blank.
    pub code: Option<String>,
}

impl TokenRequest {
    /// Reads `grant_type`, `assertion` and `code` from the request's parameters (query and
    /// body together, in any order). Errors (RFC 6749 §5.2): a parameter given twice, a
    /// missing `grant_type` or blank `assertion` → `invalid_request`; a `grant_type` other
    /// than the two exact values → `unsupported_grant_type`.
    pub fn from_params(params: &[(String, String)]) -> Result<Self, OAuthError> {
        for (i, (k, _)) in params.iter().enumerate() {
            if params[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(OAuthError::invalid_request(format!(
                    "the '{}' parameter is given more than once",
                    printable(k)
                )));
            }
        }
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let grant_type = match get("grant_type") {
            None | Some("") => {
                return Err(OAuthError::invalid_request(
                    "the 'grant_type' parameter is missing",
                ))
            }
            Some(JWT_BEARER) => GrantType::JwtBearer,
            Some(AUTHORIZATION_CODE) => GrantType::AuthorizationCode,
            Some(_) => {
                return Err(OAuthError {
                    status: 400,
                    error: "unsupported_grant_type",
                    description: format!(
                        "the grant_type must be '{JWT_BEARER}' or '{AUTHORIZATION_CODE}'"
                    ),
                    reason: "unsupported_grant_type",
                })
            }
        };
        let assertion = match get("assertion") {
            Some(a) if !a.trim().is_empty() => a.to_owned(),
            _ => {
                return Err(OAuthError::invalid_request(
                    "the 'assertion' parameter is missing",
                ))
            }
        };
        let code = get("code")
            .filter(|c| !c.trim().is_empty())
            .map(str::to_owned);
        Ok(Self {
            grant_type,
            assertion,
            code,
        })
    }
}

fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(40).collect()
}

/// A successful token response (RFC 6749 §5.1, Canvas's shape: `expires_in` is a string).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TokenResponse {
    /// The JWT access token.
    pub access_token: String,
    /// Always `"bearer"`.
    pub token_type: String,
    /// Seconds, as a string (`"3600"`).
    pub expires_in: String,
}

/// What the authority needs besides the store and the clock.
#[derive(Debug, Clone)]
pub struct AuthorityConfig {
    /// Normalised public base URLs; the expected `aud` is the route under each.
    pub base_urls: Vec<String>,
    /// Access-token `aud` hosts.
    pub token_aud: Vec<String>,
    /// Access-token `iss`.
    pub issuer: String,
    /// Access-token lifetime, seconds.
    pub access_token_lifetime: i64,
    /// Assertion checks.
    pub policy: AssertionPolicy,
    /// How often to look for changes by other processes.
    pub cache_refresh: Duration,
}

/// Which credential signed an assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A split-secret tool proxy.
    ToolProxy,
    /// A developer key (then `code` is required).
    DeveloperKey,
    /// A pending registration's reg_password.
    Registration,
}

impl CredentialKind {
    /// The metrics label: `tool_proxy`, `developer_key` or `registration`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ToolProxy => "tool_proxy",
            CredentialKind::DeveloperKey => "developer_key",
            CredentialKind::Registration => "registration",
        }
    }
}

struct Credential {
    kind: CredentialKind,
    secret: Secret,
    sub: Subject,
}

const CACHE_CAP: usize = 50_000;

#[derive(Default)]
struct Caches {
    contexts: HashMap<ContextRef, bool>,
    tool_proxies: HashMap<String, Option<Arc<ToolProxyRecord>>>,
    developer_keys: HashMap<i64, Option<Arc<DeveloperKeyRecord>>>,
}

struct Refresh {
    checked: Instant,
    epoch: i64,
}

/// The authorization server's core: validates assertions and issues access tokens.
pub struct Authority {
    store: Arc<dyn Store>,
    nonces: Arc<dyn NonceStore>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    config: AuthorityConfig,
    caches: RwLock<Caches>,
    keys: RwLock<Arc<KeyRing>>,
    refresh: tokio::sync::Mutex<Refresh>,
    /// (normalised base URL, its `host[:port]`, its host), in configuration order.
    bases: Vec<(String, String, String)>,
}

/// Makes sure the store holds a signing key; returns true when one was generated.
pub async fn ensure_signing_key(store: &dyn Store, now: i64) -> Result<bool, StoreError> {
    if !store.signing_keys().await?.is_empty() {
        return Ok(false);
    }
    store.add_signing_key(&new_signing_key(), now).await?;
    Ok(true)
}

/// A new random 32-byte HS256 key with a random `kid`.
pub fn new_signing_key() -> SigningKey {
    let kid = hex::encode(random_bytes(8));
    SigningKey::new(kid, random_bytes(32))
}

impl Authority {
    /// Builds the authority, loading the key ring (the store must hold a signing key).
    pub async fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        config: AuthorityConfig,
    ) -> Result<Self, StoreError> {
        let ring = load_ring(store.as_ref()).await?;
        let epoch = store.change_epoch().await?;
        let bases = config
            .base_urls
            .iter()
            .map(|b| {
                let authority = b.split_once("://").map(|(_, a)| a).unwrap_or(b);
                let host = crate::config::host_of(b).unwrap_or_default();
                (b.clone(), authority.to_ascii_lowercase(), host)
            })
            .collect();
        Ok(Self {
            bases,
            nonces: store.clone(),
            metrics: Arc::new(Metrics::new()),
            store,
            clock,
            config,
            caches: RwLock::new(Caches::default()),
            keys: RwLock::new(Arc::new(ring)),
            refresh: tokio::sync::Mutex::new(Refresh {
                checked: Instant::now(),
                epoch,
            }),
        })
    }

    /// Claims `jti`s in `nonces` instead of the store (e.g. Redis, `--redis-url`).
    pub fn with_nonce_store(mut self, nonces: Arc<dyn NonceStore>) -> Self {
        self.nonces = nonces;
        self
    }

    /// The nonce store `jti`s are claimed in.
    pub fn nonce_store(&self) -> &Arc<dyn NonceStore> {
        &self.nonces
    }

    /// This process's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &AuthorityConfig {
        &self.config
    }

    /// Now, seconds since the epoch, from the injected clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The configured public base URL a request's `Host` header (`host[:port]`) names: the
    /// one with the same host and port, else the first with the same host (Canvas compares
    /// hosts without ports). None when the host is not a configured public host.
    pub fn base_url_for(&self, host_header: Option<&str>) -> Option<&str> {
        let h = host_header?.trim().to_ascii_lowercase();
        let host = crate::config::strip_port(&h);
        self.bases
            .iter()
            .find(|(_, authority, _)| *authority == h)
            .or_else(|| self.bases.iter().find(|(_, _, bh)| bh == host))
            .map(|(b, _, _)| b.as_str())
    }

    /// The first configured public base URL.
    pub fn primary_base_url(&self) -> &str {
        self.bases.first().map(|(b, _, _)| b.as_str()).unwrap_or("")
    }

    /// The bearer gate (see [`crate::bearer`]): verifies `token` for a request addressed to
    /// `host_header` with `method`, and checks the tool against `req`.
    ///
    /// Errors: every [`GateError`] but `Store` is a 401; `Store` (the store could not be
    /// read) is a 503.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        host_header: Option<&str>,
        method: &str,
        req: &Requirement,
    ) -> Result<Authenticated, GateError> {
        let token = token.ok_or(GateError::NoToken)?;
        if token.len() > crate::bearer::MAX_TOKEN_BYTES {
            return Err(GateError::Token(
                crate::access_token::AccessTokenError::Malformed(crate::jose::JoseError::Segments),
            ));
        }
        let base = self.base_url_for(host_header).ok_or(GateError::Host)?;
        let host = crate::config::host_of(base).unwrap_or_default();
        let ring = self.key_ring().await?;
        let claims = ring.verify(token, &self.config.issuer, &host, self.clock.now())?;
        let sub = claims.sub.as_text();
        let identity = if let Some(tp) = self.tool_proxy(&sub).await? {
            if tp.workflow_state != "active" {
                return Err(GateError::ToolProxyNotActive);
            }
            if let Some(dk) = tp.developer_key_id {
                let usable = self
                    .developer_key(dk)
                    .await?
                    .is_some_and(|k| k.workflow_state == "active");
                if !usable {
                    return Err(GateError::DeveloperKeyNotActive);
                }
            }
            if !req.tool_proxy {
                return Err(GateError::WrongSubject);
            }
            if !req.services.is_empty() {
                contract_allows(&tp.tool_service, req.services, method)?;
            }
            Identity::ToolProxy(tp)
        } else if let Some(key) = match claims.sub.developer_key_id() {
            Some(id) => self.developer_key(id).await?,
            None => None,
        } {
            if key.workflow_state != "active" {
                return Err(GateError::DeveloperKeyNotActive);
            }
            if !req.developer_key {
                return Err(GateError::WrongSubject);
            }
            Identity::DeveloperKey(key.id)
        } else {
            if !req.unregistered {
                return Err(GateError::WrongSubject);
            }
            Identity::Unregistered
        };
        Ok(Authenticated { claims, identity })
    }

    /// The current key ring.
    pub async fn key_ring(&self) -> Result<Arc<KeyRing>, StoreError> {
        self.refresh_caches().await?;
        Ok(self.keys.read().expect("key ring lock").clone())
    }

    async fn refresh_caches(&self) -> Result<(), StoreError> {
        let interval = self.config.cache_refresh;
        let mut guard = if interval.is_zero() {
            self.refresh.lock().await
        } else {
            match self.refresh.try_lock() {
                Ok(g) => g,
                Err(_) => return Ok(()), // another request is refreshing; use what we have
            }
        };
        if guard.checked.elapsed() < interval {
            return Ok(());
        }
        let epoch = self.store.change_epoch().await?;
        if epoch != guard.epoch {
            let ring = load_ring(self.store.as_ref()).await?;
            *self.keys.write().expect("key ring lock") = Arc::new(ring);
            *self.caches.write().expect("cache lock") = Caches::default();
            guard.epoch = epoch;
        }
        guard.checked = Instant::now();
        Ok(())
    }

    /// Whether the account or course exists (cached).
    pub async fn context_exists(&self, ctx: ContextRef) -> Result<bool, StoreError> {
        self.refresh_caches().await?;
        if let Some(hit) = self.caches.read().expect("cache lock").contexts.get(&ctx) {
            return Ok(*hit);
        }
        let exists = self.store.context_exists(ctx).await?;
        let mut c = self.caches.write().expect("cache lock");
        if c.contexts.len() >= CACHE_CAP {
            c.contexts.clear();
        }
        c.contexts.insert(ctx, exists);
        Ok(exists)
    }

    /// A tool proxy by guid, in any state. Only an active tool proxy is served from the cache
    /// (the caller refreshed the caches for this request, as `authorize` does through
    /// `context_exists`); a miss, an unknown guid or an inactive tool proxy is read again from the
    /// store, so a tool proxy registered or accepted a moment ago (by this process or by
    /// `lti2 admin`) is usable at once. Disabling one is seen at the next refresh.
    async fn tool_proxy(&self, guid: &str) -> Result<Option<Arc<ToolProxyRecord>>, StoreError> {
        if let Some(Some(hit)) = self
            .caches
            .read()
            .expect("cache lock")
            .tool_proxies
            .get(guid)
            .filter(|h| h.as_ref().is_some_and(|t| t.workflow_state == "active"))
        {
            return Ok(Some(hit.clone()));
        }
        let found = self.store.tool_proxy(guid).await?.map(Arc::new);
        let mut c = self.caches.write().expect("cache lock");
        if c.tool_proxies.len() >= CACHE_CAP {
            c.tool_proxies.clear();
        }
        c.tool_proxies.insert(guid.to_owned(), found.clone());
        Ok(found)
    }

    /// A developer key by global id, in any state (only active keys are served from the cache;
    /// see `tool_proxy`).
    async fn developer_key(&self, id: i64) -> Result<Option<Arc<DeveloperKeyRecord>>, StoreError> {
        if let Some(Some(hit)) = self
            .caches
            .read()
            .expect("cache lock")
            .developer_keys
            .get(&id)
            .filter(|h| h.as_ref().is_some_and(|k| k.workflow_state == "active"))
        {
            return Ok(Some(hit.clone()));
        }
        let found = self.store.developer_key(id).await?.map(Arc::new);
        let mut c = self.caches.write().expect("cache lock");
        if c.developer_keys.len() >= CACHE_CAP {
            c.developer_keys.clear();
        }
        c.developer_keys.insert(id, found.clone());
        Ok(found)
    }

    /// The authorize route's URL under each base URL (the accepted `aud` values).
    pub fn expected_aud(&self, ctx: ContextRef) -> Vec<String> {
        self.config
            .base_urls
            .iter()
            .map(|b| format!("{b}/api/lti/{}/{}/authorize", ctx.kind.plural(), ctx.id))
            .collect()
    }

    /// Picks the secret from the unverified `sub` (Canvas order): an active split-secret tool
    /// proxy (whose developer key, if any, is active); else an active developer key; else a
    /// live, unused registration of this same context.
    async fn resolve(
        &self,
        sub: &Subject,
        ctx: ContextRef,
        now: i64,
    ) -> Result<Option<Credential>, StoreError> {
        let text = sub.as_text();
        if let Some(tp) = self.tool_proxy(&text).await? {
            if tp.workflow_state == "active" && tp.uses_split_secret() {
                if let Some(dk_id) = tp.developer_key_id {
                    let usable = self
                        .developer_key(dk_id)
                        .await?
                        .is_some_and(|k| k.workflow_state == "active");
                    if !usable {
                        return Ok(None);
                    }
                }
                return Ok(Some(Credential {
                    kind: CredentialKind::ToolProxy,
                    secret: tp.shared_secret.clone(),
                    sub: Subject::Str(tp.guid.clone()),
                }));
            }
        }
        if let Some(id) = sub.developer_key_id() {
            if let Some(key) = self.developer_key(id).await? {
                if key.workflow_state != "active" {
                    return Ok(None);
                }
                return Ok(Some(Credential {
                    kind: CredentialKind::DeveloperKey,
                    secret: key.secret.clone(),
                    sub: Subject::Int(id as u64),
                }));
            }
        }
        if let Some(reg) = self.store.registration(&text).await? {
            if reg.context == ctx && reg.expires_at > now && reg.consumed_at.is_none() {
                return Ok(Some(Credential {
                    kind: CredentialKind::Registration,
                    secret: reg.reg_password,
                    sub: sub.clone(),
                }));
            }
        }
        Ok(None)
    }

    /// Handles a token request for the authorize route of `ctx`.
    ///
    /// Errors: 404 `not_found` for an unknown context; 400 `invalid_grant` for every assertion
    /// fault (generic before the signature is verified, precise after); 400 `invalid_request`
    /// for a developer-key assertion without `code`; 503 `temporarily_unavailable` when the
    /// store fails (the replay check is never skipped).
    ///
    /// Counts the outcome in [`Metrics`]: a token by credential kind, or a refusal by reason.
    pub async fn authorize(
        &self,
        ctx: ContextRef,
        req: &TokenRequest,
    ) -> Result<(TokenResponse, CredentialKind), OAuthError> {
        let outcome = self.exchange(ctx, req).await;
        match &outcome {
            Ok((_, kind)) => self.metrics.token_issued(kind.as_str()),
            Err(e) => self.metrics.assertion_rejected(e.reason),
        }
        outcome
    }

    async fn exchange(
        &self,
        ctx: ContextRef,
        req: &TokenRequest,
    ) -> Result<(TokenResponse, CredentialKind), OAuthError> {
        if !self.context_exists(ctx).await? {
            return Err(OAuthError {
                status: 404,
                error: "not_found",
                description: format!("there is no {} {}", ctx.kind.as_str(), ctx.id),
                reason: "context_not_found",
            });
        }
        let policy = &self.config.policy;
        let parsed = assertion::parse(&req.assertion, policy).map_err(|e| OAuthError::grant(&e))?;
        let now = self.clock.now();
        let cred = self
            .resolve(parsed.sub(), ctx, now)
            .await?
            .ok_or_else(|| OAuthError::grant(&AssertionError::Unverifiable))?;
        let verified = parsed
            .verify(cred.secret.expose(), &self.expected_aud(ctx), policy, now)
            .map_err(|e| OAuthError::grant(&e))?;
        if cred.kind == CredentialKind::DeveloperKey && req.code.is_none() {
            return Err(OAuthError {
                reason: "code_missing",
                ..OAuthError::invalid_request(
                    "a developer key assertion needs the 'code' parameter (the reg_key)",
                )
            });
        }
        self.metrics.clock_offset(verified.iat - now as f64);
        let sub_text = cred.sub.as_text();
        let started = Instant::now();
        let claimed = self
            .nonces
            .claim_nonce(&sub_text, &verified.jti, verified.nonce_expires_at)
            .await;
        self.metrics
            .nonce_claim(started.elapsed().as_secs_f64(), claimed.is_err());
        if !claimed? {
            return Err(OAuthError::grant(&AssertionError::Replayed));
        }
        // The caches were refreshed by `context_exists` at the start of this request.
        let ring = self.keys.read().expect("key ring lock").clone();
        let reg_key = req.code.as_deref().unwrap_or(&sub_text);
        let token = ring.mint(&MintRequest {
            sub: &cred.sub,
            reg_key,
            aud: &self.config.token_aud,
            iss: &self.config.issuer,
            now,
            lifetime: self.config.access_token_lifetime,
        });
        Ok((
            TokenResponse {
                access_token: token,
                token_type: "bearer".into(),
                expires_in: self.config.access_token_lifetime.to_string(),
            },
            cred.kind,
        ))
    }
}

async fn load_ring(store: &dyn Store) -> Result<KeyRing, StoreError> {
    KeyRing::new(store.signing_keys().await?).ok_or_else(|| {
        StoreError::Invalid("no signing key: run `lti2 admin signing-key rotate`".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn token_request_parameters() {
        let ok =
            TokenRequest::from_params(&p(&[("grant_type", JWT_BEARER), ("assertion", "a.b.c")]))
                .unwrap();
        assert_eq!(ok.grant_type, GrantType::JwtBearer);
        assert!(ok.code.is_none());
        let e = TokenRequest::from_params(&p(&[("assertion", "a.b.c")])).unwrap_err();
        assert_eq!(e.error, "invalid_request");
        for g in [
            "urn:ietf:params:oauth:grant-type:jwt_bearer",
            "AUTHORIZATION_CODE",
            "authorization_code ",
            "client_credentials",
        ] {
            let e = TokenRequest::from_params(&p(&[("grant_type", g), ("assertion", "a.b.c")]))
                .unwrap_err();
            assert_eq!(e.error, "unsupported_grant_type", "{g}");
        }
        let e = TokenRequest::from_params(&p(&[
            ("grant_type", JWT_BEARER),
            ("assertion", "a"),
            ("assertion", "a"),
        ]))
        .unwrap_err();
        assert_eq!(e.error, "invalid_request");
        let e = TokenRequest::from_params(&p(&[("grant_type", JWT_BEARER), ("assertion", "  ")]))
            .unwrap_err();
        assert_eq!(e.error, "invalid_request");
        let blank_code = TokenRequest::from_params(&p(&[
            ("grant_type", AUTHORIZATION_CODE),
            ("assertion", "x"),
            ("code", " "),
        ]))
        .unwrap();
        assert!(blank_code.code.is_none());
    }
}
