//! Webhook delivery survives a crash: `lti2 serve` (a real process) is killed with SIGKILL
//! while its deliveries hang at the receiver; after a restart every event is delivered
//! (duplicates allowed, recognisable by their event id).
//!
//! The server reads the system clock; the test waits for what it watches (log lines, requests
//! at the receiver), never for a fixed time.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lti2::clock::Clock;
use lti2::secrets::Secret;
use lti2::store::webhooks::Subscription;
use lti2::store::{
    ContextKind, ContextRef, MessageHandlerSpec, NewRegistration, ProductFamilySpec,
    RegisteredToolProxy, ResourceHandlerSpec, ToolProxyContent,
};
use serde_json::json;

fn lti2() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lti2"));
    c.env_remove("LTI2_MASTER_KEY")
        .env_remove("LTI2_CONFIG")
        .env_remove("LTI2_BASE_URL");
    c
}

/// Starts `lti2 serve --dev` and waits for its "serving" line.
fn serve(db: &str, data: &str) -> Child {
    let mut child = lti2()
        .args(["serve", "--dev", "--database-url", db, "--data-dir", data])
        .env("LTI2_LISTEN", "127.0.0.1:0")
        .env("LTI2_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains("lti2 is serving") {
                let _ = tx.send(());
                sent = true;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the server starts");
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::database_url(dir.path());
    let data = dir.path().display().to_string();

    // The receiver: while `hang` is set it records the event id and never answers.
    let hung: Arc<Mutex<Vec<String>>> = Default::default();
    let ok: Arc<Mutex<Vec<String>>> = Default::default();
    let hang = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(tokio::sync::Notify::new());
    let router = {
        let (hung, ok, hang, seen) = (hung.clone(), ok.clone(), hang.clone(), seen.clone());
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let (hung, ok, hang, seen) = (hung.clone(), ok.clone(), hang.clone(), seen.clone());
                async move {
                    let id = headers["x-lti2-event-id"].to_str().unwrap().to_owned();
                    if hang.load(Ordering::SeqCst) {
                        hung.lock().unwrap().push(id.clone());
                        seen.notify_waiters();
                        std::future::pending::<()>().await;
                    }
                    ok.lock().unwrap().push(id);
                    seen.notify_waiters();
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    // A tool proxy on the root account and its subscription, written before the server runs.
    let settings = lti2::config::Settings::resolve(lti2::config::Overrides {
        database_url: Some(db.clone()),
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    {
        let store = lti2::server::open_store(&settings).await.unwrap();
        let now = lti2::clock::SystemClock.now();
        let root = ContextRef {
            kind: ContextKind::Account,
            id: 1,
        };
        store
            .create_registration(NewRegistration {
                reg_key: "tool-k".into(),
                reg_password: Secret::new(b"reg-password-0123456789abcdef0123".to_vec()),
                context: root,
                tool_url: None,
                now,
                expires_at: now + 3600,
            })
            .await
            .unwrap();
        store
            .register_tool_proxy(RegisteredToolProxy {
                guid: "tool-k".into(),
                context: root,
                developer_key_id: None,
                product_family: ProductFamilySpec {
                    vendor_code: "acme.example".into(),
                    product_code: "checker".into(),
                    vendor_name: "Acme".into(),
                    vendor_description: None,
                    website: None,
                    vendor_email: None,
                },
                registration_url: None,
                shared_secret: Secret::new(b"tool-k-shared-secret-0123456789abcdef".to_vec()),
                content: ToolProxyContent {
                    name: "Checker".into(),
                    description: None,
                    product_version: None,
                    lti_version: "LTI-2p0".into(),
                    enabled_capability: vec!["Security.splitSecret".into()],
                    tool_service: vec![],
                    resource_handlers: vec![ResourceHandlerSpec {
                        resource_type_code: "originality_reports".into(),
                        name: "Reports".into(),
                        description: None,
                        messages: vec![MessageHandlerSpec {
                            message_type: "basic-lti-launch-request".into(),
                            launch_path: "https://tool.example/launch".into(),
                            capabilities: vec![],
                            parameters: json!([]),
                            placements: vec![],
                        }],
                    }],
                    raw_data: "{}".into(),
                },
                now,
            })
            .await
            .unwrap();
        store
            .set_tool_proxy_state("tool-k", "active", now)
            .await
            .unwrap();
        let uuid = store.root_account(root).await.unwrap().unwrap().uuid;
        store
            .create_subscription(&Subscription {
                id: uuid::Uuid::new_v4().to_string(),
                tool_proxy_guid: "tool-k".into(),
                developer_key_id: None,
                root_account_id: 1,
                context_type: "root_account".into(),
                context_id: uuid,
                assignment_id: None,
                event_types: Some(vec!["submission_created".into()]),
                system_event_types: None,
                user_event_types: None,
                format: "live-event".into(),
                transport_type: "https".into(),
                url: url.clone(),
                associated_integration_id: None,
                state: "Active".into(),
                automatic: false,
                consecutive_failures: 0,
                deactivated_reason: None,
                created_at: now,
                updated_at: now,
            })
            .await
            .unwrap();
    }

    let mut server = serve(&db, &data);
    // Four submissions arrive through an import.
    let doc = json!({
        "courses": [{"id": 5, "account_id": 1}],
        "users": (1..=4).map(|i| json!({"id": i, "lti_id": format!("u{i}")})).collect::<Vec<_>>(),
        "assignments": [{"id": 7, "course_id": 5, "submission_types": ["online_text_entry"]}],
        "submissions": (1..=4).map(|i| json!({"id": 100 + i, "assignment_id": 7, "user_id": i, "history": [{"attempt": 1, "body": "text"}]})).collect::<Vec<_>>(),
    });
    let path = dir.path().join("records.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let out = lti2()
        .args([
            "admin",
            "--database-url",
            &db,
            "--data-dir",
            &data,
            "import",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Wait until deliveries are hanging at the receiver, then kill -9.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while hung.lock().unwrap().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery reached the receiver"
        );
        let _ = tokio::time::timeout(Duration::from_millis(250), seen.notified()).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let in_flight: HashSet<String> = hung.lock().unwrap().iter().cloned().collect();
    assert!(ok.lock().unwrap().is_empty());

    // The receiver is back; so is the server.
    hang.store(false, Ordering::SeqCst);
    let mut server = serve(&db, &data);
    // On PostgreSQL a delivery handed to a worker stays claimed for 45 s (so that another
    // instance does not send it at the same time); after a crash it is sent again when the
    // claim runs out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let got: HashSet<String> = ok.lock().unwrap().iter().cloned().collect();
        if got.len() == 4 {
            assert!(
                in_flight.is_subset(&got),
                "the deliveries cut off by the crash were made again"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 4 events were delivered after the restart",
            got.len()
        );
        let _ = tokio::time::timeout(Duration::from_millis(250), seen.notified()).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
