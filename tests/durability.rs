//! kill -9 under load (issue 5): `lti2 serve` (a real process) answers token requests and
//! admin imports from many concurrent clients and is killed with SIGKILL in the middle. After a
//! restart on the same database, no assertion that got a token before the kill gets another
//! one (its `jti` stayed claimed), and every import that was acknowledged (200) is there.
//!
//! Runs on the suite's backend (SQLite, or PostgreSQL with `LTI2_TEST_BACKEND=postgres`). The
//! server reads the system clock; the test waits for counts of answers, never for a time.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::process::{self, Server, ADMIN_TOKEN, PUBLIC_HOST, TOOL};
use serde_json::json;

const COURSE_AUTHORIZE: &str = "/api/lti/courses/5/authorize";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_claimed_jti_and_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::database_url(dir.path());
    let data = dir.path().display().to_string();
    let mut server = Server::start(&db, &data, &[]);
    process::seed_lms(&db, &data).await;
    let http = process::http();

    // Token clients: each sends fresh assertions in a loop and keeps the ones that got a token.
    let accepted: Arc<Mutex<Vec<String>>> = Default::default();
    let imported: Arc<Mutex<Vec<i64>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (http, addr, accepted, stop, progress) = (
            http.clone(),
            server.addr.clone(),
            accepted.clone(),
            stop.clone(),
            progress.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let a = process::assertion(TOOL, COURSE_AUTHORIZE);
                let sent = http
                    .post(format!("{addr}{COURSE_AUTHORIZE}"))
                    .header("host", PUBLIC_HOST)
                    .form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", a.as_str()),
                    ])
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => {
                        accepted.lock().unwrap().push(a);
                        progress.notify_waiters();
                    }
                    Ok(r) => panic!("before the kill every assertion is new: {}", r.status()),
                    Err(_) => break, // the server is gone
                }
            }
        }));
    }
    // Import clients: each adds one new student of course 5 per request.
    for c in 0..2i64 {
        let (http, addr, imported, stop, progress) = (
            http.clone(),
            server.addr.clone(),
            imported.clone(),
            stop.clone(),
            progress.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = 1000 + c * 100_000 + n;
                n += 1;
                let doc = json!({
                    "users": [{"id": id, "lti_id": format!("user-lti-{id}"), "name": format!("Student {id}")}],
                    "enrollments": [{"user_id": id, "course_id": 5}]
                });
                let sent = http
                    .post(format!("{addr}/api/admin/import"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&doc)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => {
                        imported.lock().unwrap().push(id);
                        progress.notify_waiters();
                    }
                    Ok(r) => panic!("import refused: {}", r.status()),
                    Err(_) => break,
                }
            }
        }));
    }

    // Kill once enough has been acknowledged, with requests still in flight.
    loop {
        let notified = progress.notified();
        let tokens = accepted.lock().unwrap().len();
        let imports = imported.lock().unwrap().len();
        if tokens >= 300 && imports >= 20 {
            break;
        }
        notified.await;
    }
    server.kill9();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    let imported = imported.lock().unwrap().clone();
    assert!(accepted.len() >= 300 && imported.len() >= 20);

    // Restart on the same database: every acknowledged jti is still claimed.
    let server = Server::start(&db, &data, &[]);
    let mut replays = Vec::new();
    for chunk in accepted.chunks(64) {
        let mut batch = Vec::new();
        for a in chunk {
            let (http, addr, a) = (http.clone(), server.addr.clone(), a.clone());
            batch.push(tokio::spawn(async move {
                process::exchange(&http, &addr, COURSE_AUTHORIZE, &a).await
            }));
        }
        for t in batch {
            replays.push(t.await.unwrap());
        }
    }
    for (status, body) in &replays {
        assert_eq!(
            *status, 400,
            "a jti claimed before the kill is refused: {body}"
        );
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }
    // Control: a new assertion still works.
    let (status, body) = process::exchange(
        &http,
        &server.addr,
        COURSE_AUTHORIZE,
        &process::assertion(TOOL, COURSE_AUTHORIZE),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();

    // Every acknowledged import is there: each student reads back through the users API.
    for id in &imported {
        let (status, body) =
            process::get(&http, &server.addr, &format!("/api/lti/users/{id}"), &token).await;
        assert_eq!(status, 200, "user {id}: {}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["name"], format!("Student {id}"));
    }
}
