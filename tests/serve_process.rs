//! `lti2 serve` as a real process: first-run key generation is logged, debug logs never contain
//! an assertion, a token or a secret, and SIGTERM shuts it down cleanly.
//!
//! The server and `lti2 token` are separate processes that read the system clock; this test
//! does not sleep: it waits for the server's own "serving" log line.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

const SECRET: &str = "s3cret-for-logs-0123456789abcdef01";

fn lti2() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lti2"));
    c.env_remove("LTI2_MASTER_KEY").env_remove("LTI2_CONFIG");
    c
}

#[test]
fn logs_hold_no_secrets_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::database_url(dir.path());
    let data = dir.path().display().to_string();
    let mut server = lti2()
        .args(["serve", "--database-url", &db, "--data-dir", &data])
        // Settings from LTI2_* variables (the flags above come from the command line).
        .env("LTI2_LISTEN", "127.0.0.1:0")
        .env("LTI2_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = server.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    let addr = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the server logs that it serves");
        if line.contains("lti2 is serving") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["fields"]["addr"].as_str().unwrap().to_owned();
        }
    };
    let created = lti2()
        .args([
            "admin",
            "--database-url",
            &db,
            "--data-dir",
            &data,
            "tool-proxy",
            "create",
            "--guid",
            "tp-log",
            "--secret",
            SECRET,
        ])
        .output()
        .unwrap();
    assert!(created.status.success());

    let url = format!("http://{addr}/api/lti/accounts/1/authorize");
    let ok = lti2()
        .args([
            "token", "--url", &url, "--sub", "tp-log", "--secret", SECRET,
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let resp: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    let token = resp["access_token"].as_str().unwrap().to_owned();
    let bad = lti2()
        .args([
            "token",
            "--url",
            &url,
            "--sub",
            "tp-log",
            "--secret",
            "wrong-secret-0123456789abcdef0123",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let marker_assertion = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYXJrZXIifQ.bWFya2Vy";
    let http = lti2()
        .args(["jwt", "decode", marker_assertion])
        .output()
        .unwrap();
    assert!(http.status.success());
    // A malformed request that carries a recognisable assertion in the query string.
    let _ = std::net::TcpStream::connect(&addr).map(|mut s| {
        use std::io::{Read, Write};
        let req = format!(
            "POST /api/lti/accounts/1/authorize?assertion={marker_assertion}&grant_type=authorization_code HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    });

    let term = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = server.wait().unwrap();
    assert!(status.success(), "SIGTERM gives a clean exit: {status:?}");
    let lines = reader.join().unwrap();
    let log = lines.join("\n");
    assert!(
        log.contains("generated a new master key"),
        "first run says so:\n{log}"
    );
    assert!(
        log.contains("token request refused"),
        "refusals are logged:\n{log}"
    );
    assert!(
        log.contains("\"stopped\""),
        "graceful shutdown is logged:\n{log}"
    );
    for (what, needle) in [
        ("secret", SECRET),
        ("access token", token.as_str()),
        ("assertion", marker_assertion),
        ("token signature", token.rsplit('.').next().unwrap()),
    ] {
        assert!(!log.contains(needle), "the log contains the {what}:\n{log}");
    }
}

/// SIGTERM while a request is in flight (its body half sent): the server stops taking new
/// work but answers that request in full, then exits 0. The test waits for the server's own
/// log lines ("request started", "shutting down"), never for a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight() {
    use common::process::{self, Server};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let db = common::database_url(dir.path());
    let data = dir.path().display().to_string();
    let guid = "tp-graceful";
    let secret = common::tool_secret(guid);
    process::admin(
        &db,
        &data,
        &["tool-proxy", "create", "--guid", guid, "--secret", &secret],
    );
    let mut server = Server::start(&db, &data, &[]);
    let path = "/api/lti/accounts/1/authorize";
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
        process::assertion(guid, path)
    );
    let addr = server.addr.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        process::PUBLIC_HOST,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body.as_bytes()[..20]).await.unwrap();
    server.wait_for_log("request started");

    server.send_sigterm();
    server.wait_for_log("shutting down");
    conn.write_all(&body.as_bytes()[20..]).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the request in flight is answered in full: {answer}"
    );
    assert!(answer.contains("access_token"), "{answer}");
    let status = server.child.wait().unwrap();
    assert!(
        status.success(),
        "exits 0 after a graceful shutdown: {status}"
    );
}
