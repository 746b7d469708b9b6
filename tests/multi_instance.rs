//! Two `lti2 serve` processes on one PostgreSQL database, behind one public URL (issue 5):
//! one assertion sent 32 times at once, split between them, gives exactly one token; a token
//! minted by either is accepted by the other; a signing key rotated with `lti2 admin` is used
//! by both at their next request (`--cache-refresh-ms 0`; the default bound is 200 ms, see the
//! README); a file imported through one is downloaded through the other (a shared data
//! directory); both stop cleanly on SIGTERM.
//!
//! This test always runs on PostgreSQL (a shared store is what it is about), in both passes of
//! the README's test command. The servers read the system clock; nothing here sleeps.

mod common;

use common::process::{self, Server, ESSAY, TOOL};

const COURSE_AUTHORIZE: &str = "/api/lti/courses/5/authorize";

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

async fn token_from(http: &reqwest::Client, server: &Server) -> String {
    let (status, body) = process::exchange(
        http,
        &server.addr,
        COURSE_AUTHORIZE,
        &process::assertion(TOOL, COURSE_AUTHORIZE),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres() {
    let db = common::fresh_postgres_database();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let mut a = Server::start(&db, &data, &[]);
    let mut b = Server::start(&db, &data, &[]);
    process::seed_lms(&db, &data).await;
    let http = process::http();

    // 32 copies of one assertion, 16 to each instance, all at once: exactly one token.
    let assertion = process::assertion(TOOL, COURSE_AUTHORIZE);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (http, assertion) = (http.clone(), assertion.clone());
        let addr = if i % 2 == 0 {
            a.addr.clone()
        } else {
            b.addr.clone()
        };
        tasks.push(tokio::spawn(async move {
            process::exchange(&http, &addr, COURSE_AUTHORIZE, &assertion).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            400 => assert_eq!(body["error"], "invalid_grant", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "exactly one of 32 copies is accepted");

    // A token minted by one instance is accepted by the other, and the file imported into the
    // shared data directory downloads byte for byte from both.
    let from_a = token_from(&http, &a).await;
    let from_b = token_from(&http, &b).await;
    let file = "/api/lti/assignments/7/submissions/20/attachment/30";
    for (server, token) in [(&b, &from_a), (&a, &from_b)] {
        let (status, body) = process::get(&http, &server.addr, file, token).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(body, ESSAY);
    }

    // Rotation through the console is used by both instances at their next request; tokens
    // signed with the retired key stay valid on both.
    let old_kid = kid_of(&from_a);
    assert_eq!(kid_of(&from_b), old_kid);
    process::admin(&db, &data, &["signing-key", "rotate"]);
    let new_a = token_from(&http, &a).await;
    let new_b = token_from(&http, &b).await;
    assert_ne!(kid_of(&new_a), old_kid, "instance A signs with the new key");
    assert_eq!(kid_of(&new_a), kid_of(&new_b), "both sign with the new key");
    for server in [&a, &b] {
        for token in [&from_a, &new_b] {
            let (status, _) = process::get(&http, &server.addr, file, token).await;
            assert_eq!(status, 200);
        }
    }

    // Graceful shutdown of both.
    assert!(a.sigterm().success());
    assert!(b.sigterm().success());
}
