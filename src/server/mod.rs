//! The HTTP service (axum on tokio).
//!
//! Routes:
//! * `POST /api/lti/accounts/{id}/authorize`, `POST /api/lti/courses/{id}/authorize`: the token
//!   endpoint ([`authorize`]).
//! * `GET /api/lti/{accounts|courses}/{id}/tool_consumer_profile[/{uuid}]`,
//!   `POST /api/lti/{accounts|courses}/{id}/tool_proxy`, `GET /api/lti/tool_proxy/{guid}`,
//!   `GET /{accounts|courses}/{id}/lti/registration_return`: LTI 2 registration ([`lti`]),
//!   behind the bearer gate ([`gate`]).
//! * `GET /health`: alive (the process answers). `GET /ready`: the store (and Redis) answers.
//! * `GET /metrics`: Prometheus metrics ([`crate::metrics`]).
//!
//! Every request gets an `x-request-id` (kept if the client sent one) and a tracing span with
//! the method and the matched route. Nothing logs query strings, bodies, assertions, tokens or
//! secrets.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::future::Either;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::authority::{ensure_signing_key, Authority, AuthorityConfig};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::import::FileStore;
use crate::metrics::Metrics;
use crate::secrets::MasterKey;
use crate::store::postgres::PgStore;
use crate::store::redis_nonces::{jti_store_name, RedisNonces, JTI_STORE_SETTING};
use crate::store::sqlite::SqliteStore;
use crate::store::{NonceStore, Store};

pub mod admin;
pub mod authorize;
pub mod gate;
pub mod lti;
pub mod params;
pub mod plagiarism;
pub mod subscriptions;

/// Largest request body accepted on the authorize routes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The authorization server core.
    pub authority: Arc<Authority>,
    /// The stored files (submission attachments).
    pub files: Arc<FileStore>,
    /// The admin API's bearer token; None turns the admin API off.
    pub admin_token: Option<Arc<str>>,
    /// Webhook rules (allowed targets).
    pub webhooks: Arc<crate::webhooks::WebhookSettings>,
}

/// The router with every route and layer.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/lti/accounts/{id}/authorize", post(authorize::account))
        .route("/api/lti/courses/{id}/authorize", post(authorize::course))
        .route(
            "/api/lti/accounts/{id}/tool_consumer_profile",
            get(lti::account_profile),
        )
        .route(
            "/api/lti/accounts/{id}/tool_consumer_profile/{uuid}",
            get(lti::account_profile),
        )
        .route(
            "/api/lti/courses/{id}/tool_consumer_profile",
            get(lti::course_profile),
        )
        .route(
            "/api/lti/courses/{id}/tool_consumer_profile/{uuid}",
            get(lti::course_profile),
        )
        .route(
            "/api/lti/accounts/{id}/tool_proxy",
            post(lti::account_tool_proxy),
        )
        .route(
            "/api/lti/courses/{id}/tool_proxy",
            post(lti::course_tool_proxy),
        )
        .route("/api/lti/tool_proxy/{guid}", get(lti::show_tool_proxy))
        .route(
            "/api/lti/assignments/{assignment_id}/submissions/{submission_id}/originality_report",
            post(plagiarism::create_report),
        )
        .route(
            "/api/lti/assignments/{assignment_id}/submissions/{submission_id}/originality_report/{id}",
            get(plagiarism::show_report).put(plagiarism::update_report),
        )
        .route(
            "/api/lti/assignments/{assignment_id}/files/{file_id}/originality_report",
            get(plagiarism::show_report).put(plagiarism::update_report),
        )
        .route(
            "/api/lti/assignments/{assignment_id}/submissions/{submission_id}",
            get(plagiarism::show_submission),
        )
        .route(
            "/api/lti/assignments/{assignment_id}/submissions/{submission_id}/history",
            get(plagiarism::submission_history),
        )
        .route(
            "/api/lti/assignments/{assignment_id}/submissions/{submission_id}/attachment/{attachment_id}",
            get(plagiarism::submission_attachment),
        )
        .route("/api/lti/users/{id}", get(plagiarism::show_user))
        .route("/api/lti/groups/{group_id}/users", get(plagiarism::group_users))
        .route(
            "/api/lti/assignments/{assignment_id}",
            get(plagiarism::show_assignment),
        )
        .route(
            "/accounts/{id}/lti/registration_return",
            get(lti::registration_return),
        )
        .route(
            "/courses/{id}/lti/registration_return",
            get(lti::registration_return),
        )
        .route(
            "/api/lti/subscriptions",
            get(subscriptions::index).post(subscriptions::create),
        )
        .route(
            "/api/lti/subscriptions/{id}",
            get(subscriptions::show)
                .put(subscriptions::update)
                .delete(subscriptions::destroy),
        )
        .route("/api/admin/import", post(admin::import))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .layer(RequestContextLayer {
            metrics: state.authority.metrics().clone(),
        })
}

const X_REQUEST_ID: &str = "x-request-id";

/// Refuses a path or query that carries a NUL character ([`refuse_nul`]). Gives every request
/// an id (the client's `x-request-id` when it is short printable ASCII,
/// else a new UUID), runs it inside a `request` span with the method, the matched route and
/// the id, logs the status at debug level, counts the request in [`Metrics`] by route, method
/// and status, and returns the id in the response.
#[derive(Clone)]
pub struct RequestContextLayer {
    /// Where requests are counted.
    pub metrics: Arc<Metrics>,
}

impl<S> tower::Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContext {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`RequestContextLayer`].
#[derive(Clone)]
pub struct RequestContext<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<Request> for RequestContext<S>
where
    S: tower::Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let id = req
            .headers()
            .get(X_REQUEST_ID)
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok())
            .cloned()
            .unwrap_or_else(|| {
                let mut buf = uuid::Uuid::encode_buffer();
                let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
                HeaderValue::from_str(text).expect("a UUID is a header value")
            });
        let matched = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        let span = tracing::info_span!(
            "request",
            method = %method,
            route = route_of(&matched),
            request_id = id.to_str().unwrap_or(""),
        );
        let fut = span.in_scope(|| {
            tracing::debug!("request started");
            match refuse_nul(req.uri()) {
                Some(refused) => Either::Right(std::future::ready(Ok(refused))),
                None => Either::Left(self.inner.call(req)),
            }
        });
        let metrics = self.metrics.clone();
        Box::pin(
            async move {
                let mut resp = fut.await?;
                let status = resp.status().as_u16();
                metrics.request(route_of(&matched), &method, status);
                tracing::debug!(status, "response");
                resp.headers_mut().insert(X_REQUEST_ID, id);
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

/// The route template a request matched, or `unmatched` (a bounded set of names).
fn route_of(matched: &Option<MatchedPath>) -> &str {
    matched
        .as_ref()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched")
}

/// `GET /metrics`: the process's metrics in OpenMetrics text ([`crate::metrics`]), with the
/// webhook gauges counted in the database at scrape time (as last counted when the database
/// does not answer: the rest is always served).
async fn metrics(axum::extract::State(s): axum::extract::State<AppState>) -> Response {
    let metrics = s.authority.metrics();
    // The process's own metrics matter most when the database is in trouble: they are served
    // anyway, with the webhook gauges as last counted.
    match s.authority.store().webhook_counts().await {
        Ok((deliveries, subscriptions)) => metrics.set_webhook_counts(&deliveries, &subscriptions),
        Err(e) => tracing::warn!(error = %e, "webhook counts unavailable for /metrics"),
    }
    let mut resp = metrics.render().into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    resp
}

/// `GET /ready`: 200 `{"status":"ready"}` when the database (and Redis, when it holds the
/// nonces) answers; else 503 `{"status":"unavailable","error":…}` naming which failed, so a
/// load balancer stops sending traffic to an instance that cannot issue tokens.
async fn ready(axum::extract::State(s): axum::extract::State<AppState>) -> Response {
    let database = s.authority.store().change_epoch().await.err();
    let nonces = s.authority.nonce_store().check().await.err();
    let error = match (database, nonces) {
        (None, None) => {
            return no_store(Json(serde_json::json!({"status": "ready"})).into_response())
        }
        (Some(e), _) => format!("database: {e}"),
        (None, Some(e)) => format!("nonce store: {e}"),
    };
    tracing::warn!(%error, "not ready");
    no_store(
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "error": error})),
        )
            .into_response(),
    )
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Canvas's generic 404 body (with `Cache-Control: no-store`).
pub fn not_found_response() -> Response {
    no_store(
        (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"errors":[{"message":"The specified resource does not exist."}]})),
        )
            .into_response(),
    )
}

async fn method_not_allowed() -> Response {
    no_store(
        (
            StatusCode::METHOD_NOT_ALLOWED,
            Json(serde_json::json!({"errors":[{"message":"The method is not allowed for this resource."}]})),
        )
            .into_response(),
    )
}

async fn not_found() -> Response {
    not_found_response()
}

/// A running server.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The primary public base URL.
    pub base_url: String,
    /// The authority (for tests and tools in the same process).
    pub authority: Arc<Authority>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    purge: JoinHandle<()>,
    webhooks: JoinHandle<()>,
}

impl Running {
    /// Stops accepting connections, lets in-flight requests finish, and waits.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.purge.abort();
        let done = self.task.await.unwrap_or(Ok(()));
        self.webhooks.abort();
        done
    }

    /// Waits until the server stops on its own.
    pub async fn wait(&mut self) -> std::io::Result<()> {
        (&mut self.task).await.unwrap_or(Ok(()))
    }
}

/// Opens the store named by `database_url` (creating and migrating it), with the master key
/// from the environment or the data directory (generated on first use, with a log line).
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let (master, created) =
        MasterKey::load_or_create(settings.master_key.as_deref(), &settings.data_dir)?;
    if created {
        tracing::warn!(path = %settings.data_dir.join("master.key").display(), "generated a new master key (it encrypts stored secrets: back it up)");
    }
    let url = &settings.database_url;
    if url.starts_with("sqlite:") {
        if let Some(parent) = sqlite_parent(url) {
            std::fs::create_dir_all(parent)?;
        }
        let store = SqliteStore::open(url, master, settings.sqlite_durability).await?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let store = PgStore::open(url, master, settings.pool)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", redact_url(url)))?;
        Ok(Arc::new(store))
    } else {
        anyhow::bail!(
            "database_url '{}' must start with sqlite: or postgres:",
            redact_url(url)
        )
    }
}

fn sqlite_parent(url: &str) -> Option<&Path> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next()?;
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
}

/// Opens the store, makes sure a signing key exists, binds, and serves in the background.
pub async fn start(settings: Settings, clock: SharedClock) -> anyhow::Result<Running> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
    let store = open_store(&settings).await?;
    if ensure_signing_key(store.as_ref(), clock.now()).await? {
        tracing::warn!(
            "generated the first access-token signing key (stored encrypted in the database)"
        );
    }
    let jti_store = jti_store_name(settings.redis_url.as_deref());
    let in_force = store.agree_setting(JTI_STORE_SETTING, &jti_store).await?;
    if in_force != jti_store {
        anyhow::bail!(
            "this database's jtis are claimed in {in_force}, but this server would claim them in {jti_store}: \
             every instance on one database must use the same jti store (or an assertion could be replayed \
             through an instance that cannot see its claim). To move, stop every instance, then run \
             `lti2 admin jti-store set {jti_store}`"
        );
    }
    // Takes this process's claim on the nonce store (a lock file for SQLite), loads the used
    // jtis and drops the expired ones, before any request is accepted.
    let purged = store.purge_nonces(clock.now()).await?;
    tracing::debug!(purged, "nonce store ready");
    let addr = listener.local_addr()?;
    let base_urls = if settings.base_urls.is_empty() {
        vec![format!("http://{addr}")]
    } else {
        settings.base_urls.clone()
    };
    let mut token_aud = settings.token_aud_hosts();
    if settings.base_urls.is_empty() {
        token_aud.insert(0, crate::config::host_of(&base_urls[0]).unwrap_or_default());
    }
    let mut authority = Authority::new(
        store.clone(),
        clock.clone(),
        AuthorityConfig {
            base_urls: base_urls.clone(),
            token_aud,
            issuer: settings.issuer.clone(),
            access_token_lifetime: settings.access_token_lifetime,
            policy: settings.policy.clone(),
            cache_refresh: settings.cache_refresh,
        },
    )
    .await?;
    if let Some(url) = &settings.redis_url {
        let redis = RedisNonces::new(url, clock.clone())?;
        if let Err(e) = redis.check().await {
            // Not fatal: claims fail closed (503) until Redis answers, and /ready says why.
            tracing::error!(error = %e, "Redis does not answer; token requests get 503 until it does");
        }
        authority = authority.with_nonce_store(Arc::new(redis));
        tracing::info!("jtis are claimed in Redis");
    }
    let authority = Arc::new(authority);
    let purge = tokio::spawn({
        let nonces = authority.nonce_store().clone();
        let clock = clock.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                match nonces.purge_nonces(clock.now()).await {
                    Ok(n) if n > 0 => tracing::debug!(purged = n, "expired nonces purged"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "nonce purge failed"),
                }
            }
        }
    });
    let router = app(AppState {
        authority: authority.clone(),
        files: Arc::new(FileStore::new(&settings.data_dir)),
        admin_token: settings.admin_token.as_deref().map(Arc::from),
        webhooks: Arc::new(settings.webhooks.clone()),
    });
    let webhooks = tokio::spawn(crate::webhooks::run_worker(
        store.clone(),
        clock.clone(),
        settings.webhooks.clone(),
        Arc::new(tokio::sync::Notify::new()),
    ));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router, rx));
    tracing::info!(%addr, base_url = %base_urls[0], database = %redact_url(&settings.database_url), "lti2 is serving");
    Ok(Running {
        addr,
        base_url: base_urls[0].clone(),
        authority,
        shutdown: Some(tx),
        task,
        purge,
        webhooks,
    })
}

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body (then 408).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the route's limit (413).
    TooLarge,
    /// Not sent within [`BODY_READ_TIMEOUT`] (408).
    TimedOut,
    /// Carries a NUL character (400): see [`params::carries_nul`].
    Nul,
}

impl BodyError {
    /// The Canvas-shaped answer: [`body_timeout_response`] (408), [`nul_response`] (400), or
    /// the route's own `too_large` answer (413, its message names its limit).
    pub fn response(self, too_large: impl FnOnce() -> Response) -> Response {
        match self {
            BodyError::TooLarge => too_large(),
            BodyError::TimedOut => body_timeout_response(),
            BodyError::Nul => nul_response(),
        }
    }
}

/// Reads a request body of at most `limit` bytes within [`BODY_READ_TIMEOUT`]: a declared
/// `Content-Length` over the limit is refused before anything is read. A body that is already
/// buffered (the usual small request) is taken without arming a timer, so the hot path pays
/// nothing for the timeout. A body that carries a NUL character in any encoding is refused
/// ([`BodyError::Nul`]), so no field of any route can hold one.
pub async fn read_body(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<bytes::Bytes, BodyError> {
    use futures_util::FutureExt;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let read = axum::body::to_bytes(body, limit);
    let mut read = std::pin::pin!(read);
    let done = match (&mut read).now_or_never() {
        Some(r) => r,
        None => tokio::time::timeout(BODY_READ_TIMEOUT, read)
            .await
            .map_err(|_| BodyError::TimedOut)?,
    };
    let bytes = done.map_err(|_| BodyError::TooLarge)?;
    if params::carries_nul(&bytes) {
        return Err(BodyError::Nul);
    }
    Ok(bytes)
}

/// What a NUL character is refused with, in words.
pub const NUL_MESSAGE: &str =
    "the request carries a NUL character (\\u0000 or %00), which no field may hold";

/// 400 `{"errors":[{"message":…}]}` for a request that carries a NUL character.
pub fn nul_response() -> Response {
    no_store(
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"errors": [{"message": NUL_MESSAGE}]})),
        )
            .into_response(),
    )
}

/// The answer to a request whose path or query string carries a NUL character (`%00`), if it
/// does: for the path Canvas's 404 (no resource has such a name), for the query a 400
/// (RFC 6749 §5.2 `invalid_request` on the authorize routes).
fn refuse_nul(uri: &axum::http::Uri) -> Option<Response> {
    if params::carries_nul(uri.path().as_bytes()) {
        return Some(not_found_response());
    }
    if uri
        .query()
        .is_some_and(|q| params::carries_nul(q.as_bytes()))
    {
        if uri.path().ends_with("/authorize") {
            return Some(authorize::error_response(&authorize::nul_error()));
        }
        return Some(nul_response());
    }
    None
}

/// 408 `{"errors":[{"message":…}]}` for a body that did not arrive in time.
pub fn body_timeout_response() -> Response {
    no_store(
        (
            StatusCode::REQUEST_TIMEOUT,
            Json(serde_json::json!({"errors": [{"message": "the request body did not arrive in time"}]})),
        )
            .into_response(),
    )
}

/// Accepts connections and serves HTTP/1.1 on each until `shutdown` fires; then stops
/// accepting and waits for the requests in flight. A client that does not send its headers
/// within [`HEADER_READ_TIMEOUT`] is disconnected; bodies are read with [`read_body`].
async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A database URL without its password, for logs.
pub fn redact_url(url: &str) -> String {
    // The password in the userinfo (`user:password@`), and any query parameter that carries a
    // secret (`?password=…`, `sslpassword=…`, `…key=…`, `…token=…`, `…secret=…`).
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &base[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &base[..s], &base[at + 1..])
        }
        _ => base.to_owned(),
    };
    if let Some(q) = query {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| {
                let name = pair.split('=').next().unwrap_or("");
                let lower = name.to_ascii_lowercase();
                if ["pass", "key", "token", "secret"]
                    .iter()
                    .any(|w| lower.contains(w))
                {
                    format!("{name}=***")
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Adds `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    h.insert(
        axum::http::header::PRAGMA,
        HeaderValue::from_static("no-cache"),
    );
    resp
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn passwords_are_masked_wherever_the_url_carries_them() {
        for (url, want) in [
            (
                "postgres://lti2:pw@db:5432/lti2",
                "postgres://lti2:***@db:5432/lti2",
            ),
            (
                "postgres://db/lti2?user=lti2&password=pw",
                "postgres://db/lti2?user=lti2&password=***",
            ),
            (
                "postgres://u:pw@db/x?sslmode=require&sslpassword=k&PassWord=z",
                "postgres://u:***@db/x?sslmode=require&sslpassword=***&PassWord=***",
            ),
            ("sqlite://lti2.db", "sqlite://lti2.db"),
            ("sqlite://a@b.db?mode=rwc", "sqlite://a:***@b.db?mode=rwc"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}
