//! Operations (issue 5): `/health`, `/ready`, Prometheus `/metrics`; Redis as the jti store
//! (atomic across requests, fail closed when it is unreachable); a database outage answered
//! with 503 and nothing half-done.
//!
//! The Redis tests need a Redis server at `LTI2_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`, README: "Running the tests"); the outage test needs PostgreSQL.

mod common;

use common::{sign, Reply, TestApp};
use serde_json::json;

const NOW: i64 = 1_767_225_600;
const BASE: &str = "https://lms.example.edu";
const PATH: &str = "/api/lti/accounts/1/authorize";
const SECRET: &str = "k3y-0123456789abcdef0123456789ab";

fn redis_url() -> String {
    std::env::var("LTI2_TEST_REDIS_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

fn assertion(app: &TestApp, jti: &str) -> String {
    let now = app.now();
    sign(
        &json!({"sub": "tp-1", "aud": app.aud(PATH), "exp": now + 50, "iat": now - 3, "jti": jti}),
        SECRET.as_bytes(),
    )
}

async fn spawn_with(edit: impl FnOnce(&mut lti2::config::Settings)) -> TestApp {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut settings = common::settings_for(dir.path(), BASE);
    edit(&mut settings);
    let app = TestApp::spawn_with(settings, dir, lti2::clock::ManualClock::new(NOW)).await;
    app.tool_proxy("tp-1", SECRET).await;
    app
}

async fn get(app: &TestApp, path: &str) -> Reply {
    app.get_with(&format!("{}{path}", app.addr), "lms.example.edu", &[])
        .await
}

fn assert_unavailable(what: &str, r: &Reply) {
    assert_eq!(r.status, 503, "{what}: {}", r.text);
    assert_eq!(r.error(), "temporarily_unavailable", "{what}: {}", r.text);
    assert_eq!(
        r.headers["cache-control"], "no-store",
        "{what}: RFC 6749 §5.2 errors are not cached"
    );
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let app = spawn_with(|_| {}).await;
    let health = get(&app, "/health").await;
    assert_eq!(
        (health.status, &health.json),
        (200, &json!({"status": "ok"}))
    );
    let ready = get(&app, "/ready").await;
    assert_eq!(
        (ready.status, &ready.json),
        (200, &json!({"status": "ready"}))
    );

    let a = assertion(&app, "m-1");
    assert_eq!(app.exchange(PATH, &a).await.status, 200);
    assert_eq!(app.exchange(PATH, &a).await.status, 400); // replayed
    let bad = sign(&json!({"sub": "tp-1"}), SECRET.as_bytes());
    assert_eq!(app.exchange(PATH, &bad).await.status, 400);

    let m = get(&app, "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(
        m.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        m.headers
    );
    let text = &m.text;
    for line in [
        // Requests by route and status (the /health and /ready calls above, the three exchanges).
        "lti2_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"} 1",
        "lti2_http_requests_total{route=\"/ready\",method=\"GET\",status=\"200\"} 1",
        "lti2_http_requests_total{route=\"/api/lti/accounts/{id}/authorize\",method=\"POST\",status=\"200\"} 1",
        "lti2_http_requests_total{route=\"/api/lti/accounts/{id}/authorize\",method=\"POST\",status=\"400\"} 2",
        "lti2_access_tokens_issued_total{credential=\"tool_proxy\"} 1",
        "lti2_assertions_rejected_total{reason=\"replay\"} 1",
        "lti2_nonce_store_duration_seconds_count 2",
        "lti2_nonce_store_errors_total 0",
        // iat was 3 s before now, twice (the replay is verified before its claim fails).
        "lti2_assertion_clock_offset_seconds_count 2",
        "lti2_assertion_clock_offset_seconds_sum -6.0",
        "lti2_assertion_clock_offset_seconds_bucket{le=\"-5.0\"} 0",
        "lti2_assertion_clock_offset_seconds_bucket{le=\"-2.0\"} 2",
        "lti2_webhook_deliveries{outcome=\"pending\"} 0",
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    let other_reasons = text
        .lines()
        .filter(|l| l.starts_with("lti2_assertions_rejected_total{reason="))
        .filter(|l| !l.contains("\"replay\""))
        .count();
    assert_eq!(
        other_reasons, 1,
        "the malformed assertion is counted by its reason:\n{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[tokio::test]
async fn redis_claims_each_jti_once() {
    let app = spawn_with(|s| s.redis_url = Some(redis_url())).await;
    assert_eq!(get(&app, "/ready").await.status, 200);
    let jti = uuid::Uuid::new_v4().to_string();
    let a = assertion(&app, &jti);
    let replies = futures_util::future::join_all((0..32).map(|_| app.exchange(PATH, &a))).await;
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 1);
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_eq!((r.status, r.error()), (400, "invalid_grant"), "{}", r.text);
    }
    // The claim is in Redis, not in the process: a restarted server refuses it too.
    let app = app.restart().await;
    let again = app.exchange(PATH, &a).await;
    assert_eq!((again.status, again.error()), (400, "invalid_grant"));
    // Control: a new jti is accepted.
    let fresh = assertion(&app, &uuid::Uuid::new_v4().to_string());
    assert_eq!(app.exchange(PATH, &fresh).await.status, 200);
}

#[tokio::test]
async fn unreachable_redis_fails_closed() {
    // Port 1 on loopback: nothing listens, connections are refused at once.
    let app = spawn_with(|s| s.redis_url = Some("redis://127.0.0.1:1".into())).await;
    let a = assertion(&app, "r-down");
    for _ in 0..2 {
        assert_unavailable("Redis down", &app.exchange(PATH, &a).await);
    }
    let ready = get(&app, "/ready").await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert!(
        ready.json["error"]
            .as_str()
            .unwrap()
            .contains("nonce store"),
        "{}",
        ready.text
    );
    let m = get(&app, "/metrics").await.text;
    assert!(m.contains("lti2_nonce_store_errors_total 2"), "{m}");
    assert!(
        m.contains("lti2_assertions_rejected_total{reason=\"store_unavailable\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn a_database_outage_is_a_503_and_changes_nothing() {
    // Always PostgreSQL: an outage can be made and ended without touching files.
    let db = common::fresh_postgres_database();
    let name = db.rsplit('/').next().unwrap().to_owned();
    let app = spawn_with(|s| {
        s.database_url = db.clone();
        s.pool.acquire_timeout_ms = 500;
    })
    .await;
    let admin = common::postgres_admin_url();
    let a = assertion(&app, "db-down");

    common::psql(
        &admin,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
    );
    common::psql(
        &admin,
        &format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}'"),
    );
    for _ in 0..2 {
        assert_unavailable("database down", &app.exchange(PATH, &a).await);
    }
    let ready = get(&app, "/ready").await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert!(ready.json["error"].as_str().unwrap().contains("database"));
    // The metrics are served anyway, and count the refusals.
    let m = get(&app, "/metrics").await;
    assert_eq!(m.status, 200, "{}", m.text);
    assert!(
        m.text
            .contains("lti2_assertions_rejected_total{reason=\"store_unavailable\"} 2"),
        "{}",
        m.text
    );

    // Back up: the refused assertion was not recorded, so it works now, once.
    common::psql(
        &admin,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    );
    assert_eq!(get(&app, "/ready").await.status, 200);
    let ok = app.exchange(PATH, &a).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let replay = app.exchange(PATH, &a).await;
    assert_eq!((replay.status, replay.error()), (400, "invalid_grant"));
}

#[tokio::test]
async fn request_metrics_have_bounded_labels() {
    let app = spawn_with(|_| {}).await;
    for i in 0..20 {
        let r = get(&app, &format!("/no/such/path/{i}")).await;
        assert_eq!(r.status, 404);
        let r = app
            .http
            .request(
                reqwest::Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap(),
                format!("{}/health", app.addr),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    }
    let m = get(&app, "/metrics").await.text;
    let series: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("lti2_http_requests_total{"))
        .collect();
    assert!(
        series.contains(
            &"lti2_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 20"
        ),
        "{m}"
    );
    assert!(
        series.contains(
            &"lti2_http_requests_total{route=\"/health\",method=\"other\",status=\"405\"} 20"
        ),
        "{m}"
    );
    assert_eq!(
        series.len(),
        2,
        "one series each, whatever the paths and methods: {series:?}"
    );
}

/// Every instance on one database must claim jtis in the same place: a server configured
/// otherwise than the first refuses to start, naming both stores and the way to move; after
/// `lti2 admin jti-store set` (with every server stopped) it starts.
#[tokio::test]
async fn instances_must_agree_on_the_jti_store() {
    let app = spawn_with(|_| {}).await;
    let a = assertion(&app, "agree-1");
    assert_eq!(app.exchange(PATH, &a).await.status, 200);
    let shown = app.admin(&["jti-store", "show"]).unwrap();
    assert_eq!(shown["jti_store"], "database");

    // A second server (or a restart) with Redis on the same database is refused.
    let mut with_redis = app.settings.clone();
    with_redis.redis_url = Some(redis_url());
    let clock = std::sync::Arc::new(app.clock.clone());
    let err = match lti2::server::start(with_redis.clone(), clock.clone()).await {
        Ok(_) => panic!("a server with another jti store must not start"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("claimed in database") && err.contains("lti2 admin jti-store set redis://"),
        "{err}"
    );

    // Moved on purpose, with the server stopped: now the Redis server starts, and the
    // database-only configuration is the one refused.
    let dir = app.dir.clone();
    let settings = app.settings.clone();
    let app_clock = app.clock.clone();
    app.running.shutdown().await.unwrap();
    let moved = common::process::admin(
        &settings.database_url,
        &dir.path().display().to_string(),
        &["jti-store", "set", &redis_url()],
    );
    assert!(moved["jti_store"]
        .as_str()
        .unwrap()
        .starts_with("redis://127.0.0.1:6379"));
    let app = TestApp::spawn_with(with_redis, dir, app_clock).await;
    let b = assertion(&app, &uuid::Uuid::new_v4().to_string());
    assert_eq!(app.exchange(PATH, &b).await.status, 200);
    assert!(lti2::server::start(settings, clock).await.is_err());
}

/// A write lock held elsewhere for long (a stuck session on any instance) makes a write fail
/// after the acquire timeout, instead of hanging every writer of every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_write_lock_times_out() {
    let db = common::fresh_postgres_database();
    let app = spawn_with(|s| {
        s.database_url = db.clone();
        s.pool.acquire_timeout_ms = 300;
    })
    .await;
    // Another session takes the store's write lock and keeps it for 10 s.
    let mut holder = std::process::Command::new("psql")
        .args([
            db.as_str(),
            "-qAtc",
            "BEGIN; SELECT pg_advisory_xact_lock(119247236921202); SELECT pg_sleep(10); COMMIT;",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let admin = common::postgres_admin_url();
    loop {
        let held = common::psql(
            &admin,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 27764 AND objid = 1764915058 AND granted",
        );
        if held.trim() == "1" {
            break;
        }
    }
    let r = app
        .store()
        .create_developer_key(None, &lti2::secrets::Secret::new(vec![7; 32]), None, NOW)
        .await;
    // Without the lock timeout it would wait for the holder and then succeed.
    assert!(
        r.is_err(),
        "the write fails while the lock is held elsewhere"
    );
    let _ = holder.kill();
    let _ = holder.wait();
}
