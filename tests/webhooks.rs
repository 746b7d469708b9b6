//! Webhook subscriptions and live-event delivery through real HTTP, with a receiver started by
//! the test: the Subscriptions API (W1–W5) and its validation, the events an import produces,
//! signatures, retries through a receiver outage, deactivation, the automatic plagiarism
//! subscription, and (in `webhooks_process.rs`) a kill -9 with deliveries pending.

mod common;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{registered_tool, tool_secret, Reply, TestApp};
use hmac::{Hmac, Mac};
use lti2::store::{ContextKind, ContextRef, ToolService};
use serde_json::{json, Value};
use sha2::Sha256;

const NOW: i64 = 1_800_000_000;
const VENDOR: &str = "acme.example";
const PRODUCT: &str = "similarity-checker";
const WEBHOOK_CAPS: &[&str] = &[
    "vnd.instructure.webhooks.root_account.submission_created",
    "vnd.instructure.webhooks.assignment.submission_updated",
];

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, k: &str) -> String {
        self.headers[k].to_str().unwrap().to_owned()
    }
}

/// A webhook receiver: records every request and answers `status` (settable).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    notify: Arc<tokio::sync::Notify>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Default::default();
        let status = Arc::new(AtomicU16::new(200));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (g, st, n) = (got.clone(), status.clone(), notify.clone());
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (g, st, n) = (g.clone(), st.clone(), n.clone());
                    async move {
                        let code = st.load(Ordering::SeqCst);
                        if code == 200 {
                            g.lock().unwrap().push(Received {
                                headers,
                                body: body.to_vec(),
                            });
                        }
                        n.notify_waiters();
                        axum::http::StatusCode::from_u16(code).unwrap()
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver {
            url: format!("http://{addr}/hook"),
            got,
            status,
            notify,
        }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Waits (at most 20 s of real time) until `n` messages have been accepted.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.count() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "only {} of {n} webhook messages arrived",
                self.count()
            );
            let _ =
                tokio::time::timeout(left.min(Duration::from_millis(250)), self.notify.notified())
                    .await;
        }
        self.got.lock().unwrap().clone()
    }
}

fn dev_settings(dir: &std::path::Path) -> lti2::config::Settings {
    lti2::config::Settings::resolve(lti2::config::Overrides {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(common::database_url(dir)),
        data_dir: Some(dir.to_path_buf()),
        cache_refresh_ms: Some(0),
        dev: true,
        ..Default::default()
    })
    .unwrap()
}

async fn dev_app(tweak: impl FnOnce(&mut lti2::config::Settings)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = dev_settings(dir.path());
    tweak(&mut settings);
    TestApp::spawn_with(settings, dir, lti2::clock::ManualClock::new(NOW)).await
}

fn root_account() -> ContextRef {
    ContextRef {
        kind: ContextKind::Account,
        id: 1,
    }
}

fn services(list: &[(&str, &[&str])]) -> Vec<ToolService> {
    list.iter()
        .map(|(s, a)| ToolService {
            service: s.to_string(),
            action: a.iter().map(|x| x.to_string()).collect(),
        })
        .collect()
}

fn webhook_services() -> Vec<ToolService> {
    services(&[(
        "vnd.Canvas.webhooksSubscription",
        &["GET", "POST", "PUT", "DELETE"],
    )])
}

async fn root_uuid(app: &TestApp) -> String {
    app.store()
        .root_account(root_account())
        .await
        .unwrap()
        .unwrap()
        .uuid
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.addr))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    TestApp::reply(req.send().await.unwrap()).await
}

fn records(attempts: usize) -> Value {
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let tool = json!({"vendor_code": VENDOR, "product_code": PRODUCT, "resource_type_code": "originality_reports"});
    let history: Vec<Value> = (1..=attempts)
        .map(|n| json!({"attempt": n, "submitted_at": format!("2027-01-1{n}T10:00:00Z"), "submission_type": "online_upload",
                        "attachments": [{"id": 300 + n, "filename": format!("essay-{n}.txt"), "content_base64": b64(&format!("attempt {n}"))}]}))
        .collect();
    json!({
        "courses": [{"id": 5, "account_id": 1, "name": "Biology", "lti_id": "course-lti-5"}],
        "users": [{"id": 12, "lti_id": "user-lti-12", "name": "Ann"}, {"id": 13, "lti_id": "user-lti-13", "name": "Bob"}],
        "enrollments": [{"user_id": 12, "course_id": 5}, {"user_id": 13, "course_id": 5}],
        "groups": [{"id": 3, "course_id": 5, "members": [12, 13]}],
        "assignments": [
            {"id": 7, "course_id": 5, "lti_id": "asg-lti-7", "name": "Essay", "plagiarism_tool": tool},
            {"id": 10, "course_id": 5, "name": "Group work", "plagiarism_tool": tool},
            {"id": 11, "course_id": 5, "name": "No tool"}
        ],
        "submissions": [
            {"id": 20, "assignment_id": 7, "user_id": 12, "history": history},
            {"id": 23, "assignment_id": 10, "user_id": 12, "group_id": 3, "history": [{"attempt": 1, "submitted_at": "2027-01-13T12:00:00Z", "attachments": [{"id": 330, "content_base64": b64("group")}]}]},
            {"id": 24, "assignment_id": 10, "user_id": 13, "group_id": 3, "history": [{"attempt": 1, "submitted_at": "2027-01-13T12:00:00Z", "attachments": [{"id": 330}]}]},
            {"id": 25, "assignment_id": 11, "user_id": 12, "history": [{"attempt": 1, "submitted_at": "2027-01-13T12:00:00Z", "body": "x"}]}
        ]
    })
}

fn import(app: &TestApp, doc: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    app.admin(&["import", path.to_str().unwrap()]).unwrap();
}

fn verify(r: &Received, secret: &str) {
    let ts = r.header("x-lti2-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body);
    let want = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        r.header("x-lti2-signature"),
        want,
        "the signature verifies with the tool's shared secret"
    );
}

/// A tool on the root account that may subscribe to submission events, and its token.
async fn webhook_tool(app: &TestApp, guid: &str) -> String {
    let mut caps = vec!["Canvas.placements.similarityDetection"];
    caps.extend_from_slice(WEBHOOK_CAPS);
    registered_tool(
        app,
        guid,
        VENDOR,
        PRODUCT,
        &caps,
        webhook_services(),
        root_account(),
        "{}",
    )
    .await
}

async fn subscribe(app: &TestApp, token: &str, url: &str, events: &[&str]) -> Value {
    let uuid = root_uuid(app).await;
    let r = call(
        app,
        reqwest::Method::POST,
        "/api/lti/subscriptions",
        token,
        Some(json!({"subscription": {
            "ContextType": "root_account", "ContextId": uuid, "EventTypes": events,
            "Format": "live-event", "TransportType": "https", "TransportMetadata": {"Url": url}
        }})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_receives_exactly_the_signed_messages_of_an_import() {
    let app = dev_app(|_| {}).await;
    let token = webhook_tool(&app, "tool-a").await;
    let rx = Receiver::start().await;
    let sub = subscribe(&app, &token, &rx.url, &["submission_created"]).await;
    assert_eq!(sub["State"], "Active");
    assert_eq!(sub["ContextType"], "root_account");
    assert_eq!(sub["TransportMetadata"]["Url"], rx.url);

    import(&app, &records(2));
    // Two attempts of 20, the group submissions 23 and 24 (one per member), and 25.
    let got = rx.wait_for(5).await;
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let j = r.json();
            (
                j["body"]["submission_id"].as_str().unwrap().to_owned(),
                j["body"]["attempt"].to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("20".into(), "1".into()),
            ("20".into(), "2".into()),
            ("23".into(), "1".into()),
            ("24".into(), "1".into()),
            ("25".into(), "1".into())
        ]
    );
    let mut ids = std::collections::HashSet::new();
    for r in &got {
        verify(r, &tool_secret("tool-a"));
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(
            r.header("x-lti2-subscription-id"),
            sub["Id"].as_str().unwrap()
        );
        assert!(
            ids.insert(r.header("x-lti2-event-id")),
            "one event id per event"
        );
        let j = r.json();
        assert_eq!(j["metadata"]["event_name"], "submission_created");
        assert!(j["metadata"]["event_time"]
            .as_str()
            .unwrap()
            .ends_with(".000Z"));
        assert_eq!(j["metadata"]["root_account_id"], "1");
        assert_eq!(j["metadata"]["context_type"], "Course");
        assert_eq!(j["metadata"]["context_id"], "5");
    }
    let first = got
        .iter()
        .map(|r| r.json())
        .find(|j| j["body"]["submission_id"] == "20" && j["body"]["attempt"] == 1)
        .unwrap();
    let body = &first["body"];
    assert_eq!(body["assignment_id"], "7");
    assert_eq!(body["user_id"], "12");
    assert_eq!(body["lti_user_id"], "user-lti-12");
    assert_eq!(body["lti_assignment_id"], "asg-lti-7");
    assert_eq!(body["submitted_at"], "2027-01-11T10:00:00Z");
    assert_eq!(body["associated_integration_id"], "tool-a");
    assert_eq!(body["group_id"], Value::Null);
    let group = got
        .iter()
        .map(|r| r.json())
        .find(|j| j["body"]["submission_id"] == "24")
        .unwrap();
    assert_eq!(group["body"]["group_id"], "3");
    let no_tool = got
        .iter()
        .map(|r| r.json())
        .find(|j| j["body"]["submission_id"] == "25")
        .unwrap();
    assert!(no_tool["body"].get("associated_integration_id").is_none());

    // Importing the same document again changes nothing and sends nothing; a third attempt
    // sends one message. (Events are dispatched in order, so once the third attempt's delivery
    // exists, any event of the repeated import would have its delivery too.)
    import(&app, &records(2));
    import(&app, &records(3));
    let got = rx.wait_for(6).await;
    assert_eq!(got.last().unwrap().json()["body"]["attempt"], 3);
    let deliveries = app.admin(&["deliveries", "list"]).unwrap();
    assert_eq!(deliveries.as_array().unwrap().len(), 6, "{deliveries}");
    assert!(deliveries
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["state"] == "delivered" || d["state"] == "pending"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_for_a_while_gets_every_event_when_it_is_back() {
    let app = dev_app(|_| {}).await;
    let token = webhook_tool(&app, "tool-a").await;
    let rx = Receiver::start().await;
    subscribe(&app, &token, &rx.url, &["submission_created"]).await;
    rx.status.store(503, Ordering::SeqCst);
    import(&app, &records(2));
    // Wait until each of the 5 deliveries has failed at least once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = app.store().list_deliveries(false, 100).await.unwrap();
        if list.len() == 5
            && list
                .iter()
                .all(|d| d.attempts >= 1 && d.last_status == Some(503))
        {
            assert!(
                list.iter().all(|d| d.state == "pending"),
                "still being retried"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries were not attempted: {list:?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(250), rx.notify.notified()).await;
    }
    // A retry before its backoff has passed does not happen: time stands still, nothing arrives.
    assert_eq!(rx.count(), 0);
    rx.status.store(200, Ordering::SeqCst);
    app.clock.advance(30);
    let got = rx.wait_for(5).await;
    let ids: std::collections::HashSet<String> =
        got.iter().map(|r| r.header("x-lti2-event-id")).collect();
    assert_eq!(ids.len(), 5, "every event, none lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_fail_after_the_retry_window_and_the_subscription_is_deactivated() {
    let app = dev_app(|s| {
        s.webhooks.retry_for = 60;
        s.webhooks.deactivate_after = 3;
    })
    .await;
    let token = webhook_tool(&app, "tool-a").await;
    let rx = Receiver::start().await;
    let sub = subscribe(&app, &token, &rx.url, &["submission_created"]).await;
    rx.status.store(500, Ordering::SeqCst);
    import(&app, &records(2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = app.store().list_deliveries(true, 100).await.unwrap();
        if list.len() == 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries did not fail: {:?}",
            app.store().list_deliveries(false, 100).await.unwrap()
        );
        app.clock.advance(61);
        let _ = tokio::time::timeout(Duration::from_millis(250), rx.notify.notified()).await;
    }
    let failed = app.admin(&["deliveries", "list", "--failed"]).unwrap();
    assert_eq!(failed.as_array().unwrap().len(), 5);
    let metrics = app
        .http
        .get(format!("{}/metrics", app.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("lti2_webhook_deliveries{outcome=\"failed\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lti2_webhook_subscriptions{state=\"Deactivated\"} 1"),
        "{metrics}"
    );
    let shown = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/lti/subscriptions/{}", sub["Id"].as_str().unwrap()),
        &token,
        None,
    )
    .await;
    assert_eq!(shown.json["State"], "Deactivated", "{}", shown.text);
    assert!(shown.json["DeactivatedReason"]
        .as_str()
        .unwrap()
        .contains("in a row"));
    // The tool fixes its receiver and updates the subscription: active again.
    let r = call(
        &app,
        reqwest::Method::PUT,
        &format!("/api/lti/subscriptions/{}", sub["Id"].as_str().unwrap()),
        &token,
        Some(json!({"subscription": {"TransportMetadata": {"Url": rx.url}}})),
    )
    .await;
    assert_eq!(
        (r.status, r.json["State"].clone()),
        (200, json!("Active")),
        "{}",
        r.text
    );
    assert!(r.json.get("DeactivatedReason").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_see_only_their_own_subscriptions_and_every_validation_error() {
    let app = dev_app(|_| {}).await;
    let a = webhook_tool(&app, "tool-a").await;
    let b = webhook_tool(&app, "tool-b").await;
    let rx = Receiver::start().await;
    let sub = subscribe(&app, &a, &rx.url, &["submission_created"]).await;
    let id = sub["Id"].as_str().unwrap().to_owned();
    let path = format!("/api/lti/subscriptions/{id}");
    // Tool B cannot see, change or delete tool A's subscription.
    assert_eq!(
        call(&app, reqwest::Method::GET, &path, &b, None)
            .await
            .status,
        404
    );
    assert_eq!(
        call(
            &app,
            reqwest::Method::PUT,
            &path,
            &b,
            Some(json!({"subscription": {"TransportMetadata": {"Url": "https://evil.example/"}}}))
        )
        .await
        .status,
        404
    );
    assert_eq!(
        call(&app, reqwest::Method::DELETE, &path, &b, None)
            .await
            .status,
        404
    );
    let list = call(
        &app,
        reqwest::Method::GET,
        "/api/lti/subscriptions",
        &b,
        None,
    )
    .await;
    assert_eq!(list.json, json!([]));
    let list = call(
        &app,
        reqwest::Method::GET,
        "/api/lti/subscriptions",
        &a,
        None,
    )
    .await;
    assert_eq!(list.json.as_array().unwrap().len(), 1);
    assert_eq!(list.json[0]["Id"], id.as_str());

    // Update and delete by the owner.
    let r = call(
        &app,
        reqwest::Method::PUT,
        &path,
        &a,
        Some(json!({"subscription": {"EventTypes": ["submission_created", "submission_updated"]}})),
    )
    .await;
    assert_eq!(
        (r.status, r.json["EventTypes"].clone()),
        (200, json!(["submission_created", "submission_updated"]))
    );
    let r = call(&app, reqwest::Method::DELETE, &path, &a, None).await;
    assert_eq!((r.status, r.json["State"].clone()), (200, json!("Deleted")));
    assert_eq!(
        call(&app, reqwest::Method::GET, &path, &a, None)
            .await
            .status,
        404
    );

    // Validation, in Canvas's order.
    let uuid = root_uuid(&app).await;
    let base = json!({"ContextType": "root_account", "ContextId": uuid, "EventTypes": ["submission_created"], "Format": "live-event", "TransportType": "https", "TransportMetadata": {"Url": rx.url}});
    let with = |k: &str, v: Value| {
        let mut s = base.clone();
        if v.is_null() {
            s.as_object_mut().unwrap().remove(k);
        } else {
            s[k] = v;
        }
        json!({"subscription": s})
    };
    app.store().create_course(5, 1, "C", NOW).await.unwrap();
    let cases: Vec<(Value, u16, Value)> = vec![
        (
            with("EventTypes", json!(["grade_change"])),
            401,
            json!({"error": "Unauthorized subscription"}),
        ),
        (
            with("EventTypes", json!(["made_up"])),
            401,
            json!({"error": "Unauthorized subscription"}),
        ),
        (
            with("ContextType", json!("User")),
            400,
            json!({"error": "Invalid subscription"}),
        ),
        (
            with("ContextId", json!("no-such-uuid")),
            400,
            json!({"error": "Invalid context for subscription - context not found."}),
        ),
        (
            with("ContextType", json!("assignment")),
            400,
            json!({"error": "Invalid context for subscription - context not found."}),
        ),
    ];
    for (body, status, want) in cases {
        let r = call(
            &app,
            reqwest::Method::POST,
            "/api/lti/subscriptions",
            &a,
            Some(body.clone()),
        )
        .await;
        assert_eq!((r.status, r.json.clone()), (status, want), "{body}");
    }
    for (body, needle) in [
        (with("EventTypes", Value::Null), "EventTypes"),
        (with("TransportType", json!("sqs")), "sqs"),
        (with("Format", json!("caliper")), "caliper"),
        (
            with("TransportMetadata", json!({"Url": "/relative"})),
            "absolute",
        ),
        (with("TransportMetadata", json!({})), "Url"),
        (json!({"nope": 1}), "subscription"),
    ] {
        let r = call(
            &app,
            reqwest::Method::POST,
            "/api/lti/subscriptions",
            &a,
            Some(body.clone()),
        )
        .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(
            r.json["message"].as_str().unwrap_or("").contains(needle),
            "{needle}: {}",
            r.text
        );
    }
    // Unknown event types are refused even for a grant-all tool; Format and TransportType
    // default to live-event and https.
    let all = registered_tool(
        &app,
        "tool-all",
        VENDOR,
        PRODUCT,
        &["vnd.instructure.webhooks.root_account.all"],
        webhook_services(),
        root_account(),
        "{}",
    )
    .await;
    let r = call(
        &app,
        reqwest::Method::POST,
        "/api/lti/subscriptions",
        &all,
        Some(with("EventTypes", json!(["no_such_event"]))),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let mut minimal = base.clone();
    minimal.as_object_mut().unwrap().remove("Format");
    minimal.as_object_mut().unwrap().remove("TransportType");
    let r = call(
        &app,
        reqwest::Method::POST,
        "/api/lti/subscriptions",
        &all,
        Some(json!({"subscription": minimal})),
    )
    .await;
    assert_eq!(
        (
            r.status,
            r.json["Format"].clone(),
            r.json["TransportType"].clone()
        ),
        (201, json!("live-event"), json!("https")),
        "{}",
        r.text
    );
    // An assignment context needs the assignment to use the tool (Canvas asks less).
    let doc = json!({"assignments": [
        {"id": 70, "course_id": 5, "plagiarism_tool": {"vendor_code": VENDOR, "product_code": PRODUCT, "resource_type_code": "originality_reports"}},
        {"id": 71, "course_id": 5, "plagiarism_tool": {"vendor_code": VENDOR, "product_code": "other", "resource_type_code": "originality_reports"}}
    ]});
    import(&app, &doc);
    for (asg, status) in [("70", 201), ("71", 401)] {
        let mut s = base.clone();
        s["ContextType"] = json!("assignment");
        s["ContextId"] = json!(asg);
        let r = call(
            &app,
            reqwest::Method::POST,
            "/api/lti/subscriptions",
            &a,
            Some(json!({"subscription": s})),
        )
        .await;
        assert_eq!(r.status, status, "assignment {asg}: {}", r.text);
    }
    // A tool without webhook capabilities; a tool not installed on the root account; no token.
    let plain = registered_tool(
        &app,
        "tool-plain",
        VENDOR,
        PRODUCT,
        &[],
        webhook_services(),
        root_account(),
        "{}",
    )
    .await;
    let r = call(
        &app,
        reqwest::Method::POST,
        "/api/lti/subscriptions",
        &plain,
        Some(with("EventTypes", json!(["submission_created"]))),
    )
    .await;
    assert_eq!(
        (r.status, r.json.clone()),
        (401, json!({"error": "Unauthorized subscription"}))
    );
    let mut caps = vec!["Canvas.placements.similarityDetection"];
    caps.extend_from_slice(WEBHOOK_CAPS);
    let course_tool = registered_tool(
        &app,
        "tool-course",
        VENDOR,
        PRODUCT,
        &caps,
        webhook_services(),
        ContextRef {
            kind: ContextKind::Course,
            id: 5,
        },
        "{}",
    )
    .await;
    let r = call(
        &app,
        reqwest::Method::POST,
        "/api/lti/subscriptions",
        &course_tool,
        Some(with("EventTypes", json!(["submission_created"]))),
    )
    .await;
    assert_eq!(
        (r.status, r.json.clone()),
        (401, json!({"error": "Unauthorized subscription"})),
        "not active on the root account"
    );
    let resp = app
        .http
        .get(format!("{}/api/lti/subscriptions", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let no_service = registered_tool(
        &app,
        "tool-nosvc",
        VENDOR,
        PRODUCT,
        &caps,
        vec![],
        root_account(),
        "{}",
    )
    .await;
    let r = call(
        &app,
        reqwest::Method::GET,
        "/api/lti/subscriptions",
        &no_service,
        None,
    )
    .await;
    assert_eq!(r.json["status"], "unauthenticated");

    // Internal targets are refused without --dev; http too.
    let strict = TestApp::spawn_self_addressed(NOW).await;
    let t = webhook_tool(&strict, "tool-s").await;
    let uuid = root_uuid(&strict).await;
    for url in [
        "http://tool.example/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://169.254.169.254/latest",
    ] {
        let r = call(&strict, reqwest::Method::POST, "/api/lti/subscriptions", &t, Some(json!({"subscription": {"ContextType": "root_account", "ContextId": uuid, "EventTypes": ["submission_created"], "Format": "live-event", "TransportType": "https", "TransportMetadata": {"Url": url}}}))).await;
        assert_eq!(r.status, 400, "{url}: {}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_pages_with_start_and_end_keys() {
    let app = dev_app(|_| {}).await;
    let token = webhook_tool(&app, "tool-a").await;
    let uuid = root_uuid(&app).await;
    for i in 0..105 {
        app.store()
            .create_subscription(&lti2::store::webhooks::Subscription {
                id: format!("{i:08}-0000-4000-8000-000000000000"),
                tool_proxy_guid: "tool-a".into(),
                developer_key_id: None,
                root_account_id: 1,
                context_type: "root_account".into(),
                context_id: uuid.clone(),
                assignment_id: None,
                event_types: Some(vec!["submission_created".into()]),
                system_event_types: None,
                user_event_types: None,
                format: "live-event".into(),
                transport_type: "https".into(),
                url: "https://tool.example/hook".into(),
                associated_integration_id: None,
                state: "Active".into(),
                automatic: false,
                consecutive_failures: 0,
                deactivated_reason: None,
                created_at: NOW,
                updated_at: NOW,
            })
            .await
            .unwrap();
    }
    let first = call(
        &app,
        reqwest::Method::GET,
        "/api/lti/subscriptions",
        &token,
        None,
    )
    .await;
    assert_eq!(first.json.as_array().unwrap().len(), 100);
    let end_key = first.headers["endkey"].to_str().unwrap().to_owned();
    let key: Value = serde_json::from_str(&end_key).unwrap();
    assert_eq!(key["Id"], first.json[99]["Id"]);
    let resp = app
        .http
        .get(format!("{}/api/lti/subscriptions", app.addr))
        .bearer_auth(&token)
        .header("StartKey", &end_key)
        .send()
        .await
        .unwrap();
    let second = TestApp::reply(resp).await;
    assert_eq!(second.json.as_array().unwrap().len(), 5);
    assert!(second.headers.get("endkey").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_automatic_plagiarism_subscription_follows_the_tool_proxy() {
    let app = dev_app(|_| {}).await;
    let rx = Receiver::start().await;
    let raw = json!({"tool_profile": {"service_offered": [
        {"@type": "RestService", "@id": "https://tool.example/tp#vnd.Canvas.SubmissionEvent", "endpoint": rx.url, "action": ["POST"], "format": ["application/json"]}
    ]}});
    let token = registered_tool(
        &app,
        "tool-auto",
        VENDOR,
        PRODUCT,
        &["Canvas.placements.similarityDetection"],
        webhook_services(),
        root_account(),
        &raw.to_string(),
    )
    .await;
    let list = call(
        &app,
        reqwest::Method::GET,
        "/api/lti/subscriptions",
        &token,
        None,
    )
    .await;
    let subs = list.json.as_array().unwrap().clone();
    assert_eq!(subs.len(), 1, "{}", list.text);
    let s = &subs[0];
    assert_eq!(s["AssociatedIntegrationId"], "tool-auto");
    assert_eq!(s["ContextType"], "root_account");
    assert_eq!(s["TransportMetadata"]["Url"], rx.url);
    assert_eq!(
        s["SystemEventTypes"],
        json!([
            "submission_created",
            "plagiarism_resubmit",
            "submission_updated",
            "assignment_updated",
            "assignment_created"
        ])
    );

    // Another product's assignment is not this tool's: its events are not delivered.
    let mut doc = records(1);
    doc["assignments"][2]["plagiarism_tool"] = json!({"vendor_code": VENDOR, "product_code": "other", "resource_type_code": "originality_reports"});
    import(&app, &doc);
    // assignment_created for 7 and 10 (this tool's), submission_created for 20, 23, 24.
    let got = rx.wait_for(5).await;
    let mut names: Vec<String> = got
        .iter()
        .map(|r| {
            r.json()["metadata"]["event_name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "assignment_created",
            "assignment_created",
            "submission_created",
            "submission_created",
            "submission_created"
        ]
    );
    assert!(got
        .iter()
        .all(|r| r.json()["body"]["associated_integration_id"] == "tool-auto"));
    let asg = got
        .iter()
        .map(|r| r.json())
        .find(|j| {
            j["metadata"]["event_name"] == "assignment_created" && j["body"]["assignment_id"] == "7"
        })
        .unwrap();
    assert_eq!(asg["body"]["lti_assignment_id"], "asg-lti-7");
    assert_eq!(asg["body"]["submission_types"], "online_upload");
    for r in &got {
        verify(r, &tool_secret("tool-auto"));
    }
    // An updated assignment, and a resubmission requested by the console.
    let mut changed = doc.clone();
    changed["assignments"][0]["name"] = json!("Essay (revised)");
    import(&app, &changed);
    app.admin(&["submission", "resubmit", "--submission", "20"])
        .unwrap();
    let got = rx.wait_for(7).await;
    let names: Vec<String> = got[5..]
        .iter()
        .map(|r| {
            r.json()["metadata"]["event_name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        names.contains(&"assignment_updated".to_string())
            && names.contains(&"plagiarism_resubmit".to_string()),
        "{names:?}"
    );

    // Disabled: the subscription is gone.
    app.store()
        .set_tool_proxy_state("tool-auto", "disabled", NOW)
        .await
        .unwrap();
    let sub = app
        .store()
        .subscription(s["Id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.state, "Deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_subscription_ends_its_pending_deliveries() {
    let app = dev_app(|_| {}).await;
    let token = webhook_tool(&app, "tool-a").await;
    let rx = Receiver::start().await;
    let sub = subscribe(&app, &token, &rx.url, &["submission_created"]).await;
    rx.status.store(503, Ordering::SeqCst);
    import(&app, &records(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app
        .store()
        .list_deliveries(false, 100)
        .await
        .unwrap()
        .iter()
        .filter(|d| d.attempts >= 1)
        .count()
        < 4
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries were not attempted"
        );
        let _ = tokio::time::timeout(Duration::from_millis(250), rx.notify.notified()).await;
    }
    let r = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/lti/subscriptions/{}", sub["Id"].as_str().unwrap()),
        &token,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let list = app.store().list_deliveries(false, 100).await.unwrap();
    assert!(
        list.iter().all(|d| d.state == "failed"
            && d.last_error.as_deref() == Some("the subscription is no longer active")),
        "{list:?}"
    );
}
