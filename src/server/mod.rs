//! The HTTP service (axum on tokio).
//!
//! Routes:
//! * `POST /api/lti/accounts/{id}/authorize`, `POST /api/lti/courses/{id}/authorize`: the token
//!   endpoint ([`authorize`]).
//! * `GET /health`: alive.
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
use axum::serve::ListenerExt;
use axum::{Json, Router};
use tokio::task::JoinHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::authority::{ensure_signing_key, Authority, AuthorityConfig};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::secrets::MasterKey;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

pub mod authorize;
pub mod params;

/// Largest request body accepted on the authorize routes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The authorization server core.
    pub authority: Arc<Authority>,
}

/// The router with every route and layer.
pub fn app(state: AppState) -> Router {
    let x_request_id = axum::http::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/api/lti/accounts/{id}/authorize", post(authorize::account))
        .route("/api/lti/courses/{id}/authorize", post(authorize::course))
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(state)
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_else(|| "unmatched".into());
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            tracing::info_span!("request", method = %req.method(), route, request_id = id)
        }))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Canvas's generic 404 body.
pub fn not_found_response() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"errors":[{"message":"The specified resource does not exist."}]})),
    )
        .into_response()
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
}

impl Running {
    /// Stops accepting connections, lets in-flight requests finish, and waits.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.purge.abort();
        self.task.await.unwrap_or(Ok(()))
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
        anyhow::bail!("PostgreSQL is not supported yet; use a sqlite:// database URL")
    } else {
        anyhow::bail!("database_url '{url}' must start with sqlite:")
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
    let store = open_store(&settings).await?;
    if ensure_signing_key(store.as_ref(), clock.now()).await? {
        tracing::warn!(
            "generated the first access-token signing key (stored encrypted in the database)"
        );
    }
    // Takes this process's claim on the nonce store (a lock file for SQLite), loads the used
    // jtis and drops the expired ones, before any request is accepted.
    let purged = store.purge_nonces(clock.now()).await?;
    tracing::debug!(purged, "nonce store ready");
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
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
    let authority = Arc::new(
        Authority::new(
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
        .await?,
    );
    let purge = tokio::spawn({
        let store = store.clone();
        let clock = clock.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                match store.purge_nonces(clock.now()).await {
                    Ok(n) if n > 0 => tracing::debug!(purged = n, "expired nonces purged"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "nonce purge failed"),
                }
            }
        }
    });
    let router = app(AppState {
        authority: authority.clone(),
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });
    tracing::info!(%addr, base_url = %base_urls[0], database = %redact_url(&settings.database_url), "lti2 is serving");
    Ok(Running {
        addr,
        base_url: base_urls[0].clone(),
        authority,
        shutdown: Some(tx),
        task,
        purge,
    })
}

/// A database URL without its password, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..s], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
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
