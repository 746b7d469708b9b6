//! Test harness: a real `lti2` server on port 0, a fresh database (SQLite in a temporary
//! directory, or a new PostgreSQL database when `LTI2_TEST_BACKEND=postgres`: see
//! [`database_url`]), and a [`ManualClock`] the test moves. Nothing here sleeps.
#![allow(dead_code)]

pub mod process;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lti2::client::{Credentials, TokenClient};
use lti2::clock::ManualClock;
use lti2::config::{Overrides, Settings};
use lti2::secrets::Secret;
use lti2::server::Running;
use lti2::store::{
    ContextRef, MessageHandlerSpec, NewRegistration, NewToolProxy, ProductFamilySpec,
    RegisteredToolProxy, ResourceHandlerSpec, Store, ToolProxyContent, ToolService,
};
use serde_json::json;
use serde_json::Value;

/// A running server and what the test needs to drive it.
pub struct TestApp {
    /// The server.
    pub running: Running,
    /// The clock the server reads.
    pub clock: ManualClock,
    /// `http://127.0.0.1:PORT`, where requests are sent.
    pub addr: String,
    /// The configured public base URL (what `aud` must name).
    pub public_base: String,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// The data directory (database and master key).
    pub dir: Arc<tempfile::TempDir>,
    /// Settings used (to restart on the same database).
    pub settings: Settings,
}

/// A response: status, headers and parsed JSON body (Null when not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
    pub fn description(&self) -> &str {
        self.json["error_description"].as_str().unwrap_or("")
    }
}

/// Whether this run is against PostgreSQL (`LTI2_TEST_BACKEND=postgres`); else SQLite.
pub fn postgres() -> bool {
    match std::env::var("LTI2_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("LTI2_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
}

/// The PostgreSQL server tests create their databases on: `LTI2_TEST_POSTGRES_URL`, by default
/// `postgres://lti2:lti2@127.0.0.1:5432/postgres` (README: "Running the tests"). The role needs
/// CREATEDB.
pub fn postgres_admin_url() -> String {
    std::env::var("LTI2_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres://lti2:lti2@127.0.0.1:5432/postgres".into())
}

/// Runs one SQL command on the PostgreSQL server with `psql`; returns its unaligned output.
pub fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .expect("psql runs (install postgresql-client; README: Running the tests)");
    assert!(
        out.status.success(),
        "psql {sql}: {} (is PostgreSQL running? README: Running the tests)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new, empty PostgreSQL database `lti2_t_<pid>_<n>`; returns its URL. The first call in a
/// test process drops the databases left by test processes that have ended.
pub fn fresh_postgres_database() -> String {
    static CLEANED: std::sync::Once = std::sync::Once::new();
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let admin = postgres_admin_url();
    CLEANED.call_once(|| {
        for name in psql(
            &admin,
            "SELECT datname FROM pg_database WHERE datname LIKE 'lti2_t_%'",
        )
        .lines()
        {
            let pid = name.split('_').nth(2).unwrap_or("");
            if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                // Best effort: a database that cannot be dropped now is dropped by a later run.
                let _ = std::process::Command::new("psql")
                    .args([admin.as_str(), "-qAtc"])
                    .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .output();
            }
        }
    });
    let name = format!(
        "lti2_t_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    psql(&admin, &format!("CREATE DATABASE {name}"));
    let mut url = url::Url::parse(&admin).expect("LTI2_TEST_POSTGRES_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

/// The database URL of a new test server whose data directory is `dir`: a SQLite file in
/// `dir`, or a fresh PostgreSQL database when the run is against PostgreSQL.
pub fn database_url(dir: &std::path::Path) -> String {
    if postgres() {
        fresh_postgres_database()
    } else {
        format!("sqlite://{}", dir.join("lti2.db").display())
    }
}

pub fn settings_for(dir: &std::path::Path, public_base: &str) -> Settings {
    Settings::resolve(Overrides {
        listen: Some("127.0.0.1:0".into()),
        base_url: vec![public_base.into()],
        database_url: Some(database_url(dir)),
        data_dir: Some(dir.to_path_buf()),
        cache_refresh_ms: Some(0),
        ..Default::default()
    })
    .expect("test settings")
}

/// The shared secret [`registered_tool`] gives a tool proxy.
pub fn tool_secret(guid: &str) -> String {
    format!("{guid}-shared-secret-0123456789abcdef0123456789")
}

/// Registers a tool proxy in `store` at `now` (product family, resource handler
/// `originality_reports` with a similarity-detection message handler, binding to `bind`,
/// shared secret [`tool_secret`]) and makes it active. `raw_data` is its ToolProxy document.
#[allow(clippy::too_many_arguments)]
pub async fn register_tool(
    store: &dyn Store,
    now: i64,
    guid: &str,
    vendor: &str,
    product: &str,
    caps: &[&str],
    services: Vec<ToolService>,
    bind: ContextRef,
    raw_data: &str,
) {
    let secret = tool_secret(guid);
    store
        .create_registration(NewRegistration {
            reg_key: guid.into(),
            reg_password: Secret::new(b"reg-password-0123456789abcdef0123".to_vec()),
            context: bind,
            tool_url: None,
            now,
            expires_at: now + 3600,
        })
        .await
        .unwrap();
    let mut enabled = vec!["Security.splitSecret".to_string()];
    enabled.extend(caps.iter().map(|c| c.to_string()));
    store
        .register_tool_proxy(RegisteredToolProxy {
            guid: guid.into(),
            context: bind,
            developer_key_id: None,
            product_family: ProductFamilySpec {
                vendor_code: vendor.into(),
                product_code: product.into(),
                vendor_name: "Acme".into(),
                vendor_description: None,
                website: None,
                vendor_email: None,
            },
            registration_url: None,
            shared_secret: Secret::new(secret.clone().into_bytes()),
            content: ToolProxyContent {
                name: "Checker".into(),
                description: None,
                product_version: None,
                lti_version: "LTI-2p0".into(),
                enabled_capability: enabled,
                tool_service: services,
                resource_handlers: vec![ResourceHandlerSpec {
                    resource_type_code: "originality_reports".into(),
                    name: "Reports".into(),
                    description: None,
                    messages: vec![MessageHandlerSpec {
                        message_type: "basic-lti-launch-request".into(),
                        launch_path: "https://tool.example/launch".into(),
                        capabilities: vec!["Canvas.placements.similarityDetection".into()],
                        parameters: json!([]),
                        placements: vec!["similarity_detection".into()],
                    }],
                }],
                raw_data: raw_data.into(),
            },
            now,
        })
        .await
        .unwrap();
    store
        .set_tool_proxy_state(guid, "active", now)
        .await
        .unwrap();
}

/// A tool proxy registered with [`register_tool`] on the app's store and accepted; returns an
/// access token for it from the authorize endpoint.
#[allow(clippy::too_many_arguments)]
pub async fn registered_tool(
    app: &TestApp,
    guid: &str,
    vendor: &str,
    product: &str,
    caps: &[&str],
    services: Vec<ToolService>,
    bind: ContextRef,
    raw_data: &str,
) -> String {
    register_tool(
        app.store().as_ref(),
        app.now(),
        guid,
        vendor,
        product,
        caps,
        services,
        bind,
        raw_data,
    )
    .await;
    let secret = tool_secret(guid);
    let client = TokenClient::new(
        &format!("{}/api/lti/accounts/1/authorize", app.addr),
        Credentials::tool_proxy(guid, secret.into_bytes()),
    )
    .with_clock(Arc::new(app.clock.clone()));
    client.access_token().await.expect("a tool token")
}

/// Spawns a second server on the same authority with one extra route, `/probe`, guarded by
/// the bearer gate as a plagiarism API is (`vnd.Canvas.OriginalityReport`, tool proxies only,
/// the standard 401 body). GET or POST (a form body's `access_token` counts). Answers 200
/// `{"sub": …}`. Returns its `http://127.0.0.1:PORT`.
pub async fn spawn_probe(authority: Arc<lti2::authority::Authority>) -> String {
    use axum::extract::{Request, State};
    use axum::response::{IntoResponse, Response};
    use lti2::server::gate::{self, Refusal, Requirement};
    use lti2::server::AppState;

    async fn probe(State(s): State<AppState>, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, 65536).await.unwrap_or_default();
        let form: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
        let need = Requirement::service(&["vnd.Canvas.OriginalityReport"]);
        match gate::authenticate(&s.authority, &parts, &form, &need).await {
            Ok(a) => axum::Json(serde_json::json!({"sub": a.claims.sub.as_text()})).into_response(),
            Err(e) => gate::refusal(&e, Refusal::Standard),
        }
    }

    let router = axum::Router::new()
        .route("/probe", axum::routing::get(probe).post(probe))
        .with_state(AppState {
            authority,
            files: Arc::new(lti2::import::FileStore::new(std::path::Path::new("."))),
            admin_token: None,
            webhooks: Arc::new(lti2::webhooks::WebhookSettings::default()),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

impl TestApp {
    /// A server with no configured base URL: its public base is its own
    /// `http://127.0.0.1:PORT`, so URLs it hands out (launch parameters, profile endpoints)
    /// are reachable by the test as a tool would use them.
    pub async fn spawn_self_addressed(now: i64) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let settings = Settings::resolve(Overrides {
            listen: Some("127.0.0.1:0".into()),
            database_url: Some(database_url(dir.path())),
            data_dir: Some(dir.path().to_path_buf()),
            cache_refresh_ms: Some(0),
            ..Default::default()
        })
        .expect("test settings");
        Self::spawn_with(settings, dir, ManualClock::new(now)).await
    }

    /// The public host (`host[:port]`) of the configured base URL.
    pub fn public_host(&self) -> String {
        self.public_base
            .split_once("://")
            .map(|(_, a)| a.to_string())
            .unwrap_or_default()
    }

    /// GETs `url` with a Host header and extra headers.
    pub async fn get_with(&self, url: &str, host: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.http.get(url).header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::reply(req.send().await.expect("request")).await
    }

    /// Runs the `lti2` binary's `admin` command on this server's database; parses its JSON.
    pub fn admin(&self, args: &[&str]) -> Result<Value, String> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lti2"))
            .arg("admin")
            .args(args)
            .arg("--database-url")
            .arg(self.database_url())
            .arg("--data-dir")
            .arg(self.dir.path())
            .env_remove("LTI2_BASE_URL")
            .env_remove("LTI2_MASTER_KEY")
            .output()
            .expect("lti2 runs");
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A server whose public base URL is `public_base`, with the clock at `now`.
    pub async fn spawn(public_base: &str, now: i64) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let settings = settings_for(dir.path(), public_base);
        Self::spawn_with(settings, dir, ManualClock::new(now)).await
    }

    /// A server with these settings.
    pub async fn spawn_with(
        mut settings: Settings,
        dir: Arc<tempfile::TempDir>,
        clock: ManualClock,
    ) -> TestApp {
        // Many test servers share one PostgreSQL server: small pools.
        settings.pool.max_connections = settings.pool.max_connections.min(4);
        let running = lti2::server::start(settings.clone(), Arc::new(clock.clone()))
            .await
            .expect("server starts");
        TestApp {
            addr: format!("http://{}", running.addr),
            public_base: running.base_url.clone(),
            running,
            clock,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            dir,
            settings,
        }
    }

    /// Stops the server and starts a new one on the same database and clock.
    pub async fn restart(self) -> TestApp {
        let TestApp {
            running,
            clock,
            dir,
            settings,
            ..
        } = self;
        running.shutdown().await.expect("clean shutdown");
        Self::spawn_with(settings, dir, clock).await
    }

    /// The server's database URL (SQLite or PostgreSQL).
    pub fn database_url(&self) -> String {
        self.settings.database_url.clone()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("lti2.db")
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.running.authority.store()
    }

    /// The public authorize URL of a path (the `aud` to put in assertions).
    pub fn aud(&self, path: &str) -> String {
        format!("{}{}", self.public_base, path)
    }

    pub fn now(&self) -> i64 {
        lti2::clock::Clock::now(&self.clock)
    }

    /// Adds an active split-secret tool proxy.
    pub async fn tool_proxy(&self, guid: &str, secret: &str) {
        self.tool_proxy_with(
            guid,
            secret,
            "active",
            &["Security.splitSecret"],
            vec![],
            None,
        )
        .await;
    }

    pub async fn tool_proxy_with(
        &self,
        guid: &str,
        secret: &str,
        state: &str,
        caps: &[&str],
        services: Vec<ToolService>,
        dev_key: Option<i64>,
    ) {
        self.store()
            .create_tool_proxy(NewToolProxy {
                guid: guid.into(),
                shared_secret: Secret::new(secret.as_bytes().to_vec()),
                workflow_state: state.into(),
                enabled_capability: caps.iter().map(|s| s.to_string()).collect(),
                tool_service: services,
                developer_key_id: dev_key,
                now: 0,
            })
            .await
            .expect("tool proxy created");
    }

    /// Adds an active developer key.
    pub async fn developer_key(&self, id: i64, secret: &str) {
        self.store()
            .create_developer_key(Some(id), &Secret::new(secret.as_bytes().to_vec()), None, 0)
            .await
            .expect("developer key created");
    }

    /// POSTs a urlencoded form to `path` on the server.
    pub async fn post_form(&self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.post_raw(
            path,
            Some("application/x-www-form-urlencoded"),
            body.into_bytes(),
        )
        .await
    }

    /// POSTs a multipart form.
    pub async fn post_multipart(&self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in pairs {
            form = form.text(k.to_string(), v.to_string());
        }
        let resp = self
            .http
            .post(format!("{}{}", self.addr, path))
            .multipart(form)
            .send()
            .await
            .expect("request");
        Self::reply(resp).await
    }

    /// POSTs raw bytes with an optional Content-Type.
    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
        let mut req = self.http.post(format!("{}{}", self.addr, path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        Self::reply(req.send().await.expect("request")).await
    }

    pub async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    /// Exchanges a jwt-bearer assertion at `path` (form body).
    pub async fn exchange(&self, path: &str, assertion: &str) -> Reply {
        self.post_form(
            path,
            &[
                ("grant_type", lti2::authority::JWT_BEARER),
                ("assertion", assertion),
            ],
        )
        .await
    }
}

/// Decodes a token's claims without checking it.
pub fn claims_of(token: &str) -> serde_json::Map<String, Value> {
    lti2::jose::decode_unchecked(token).expect("a JWT").1
}

/// Signs `claims` (any JSON) with `header` and an HMAC `alg` under `key`.
pub fn sign_raw(header: &Value, claims: &Value, alg: lti2::jose::Alg, key: &[u8]) -> String {
    lti2::jose::sign(header, claims, alg, key)
}

/// Signs `claims` with HS256 and the header {"alg":"HS256","typ":"JWT"}.
pub fn sign(claims: &Value, key: &[u8]) -> String {
    sign_raw(
        &serde_json::json!({"alg":"HS256","typ":"JWT"}),
        claims,
        lti2::jose::Alg::HS256,
        key,
    )
}
