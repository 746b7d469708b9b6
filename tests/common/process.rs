//! `lti2 serve` as a real process (system clock): start it, find its address in its JSON log,
//! stop it with SIGTERM or SIGKILL. Nothing sleeps: starting waits for the "serving" line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lti2::clock::Clock;
use serde_json::{json, Value};

/// The admin API token the servers are started with.
pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef0123456789";
/// The public base URL every instance is configured with (one URL in front of several).
pub const PUBLIC_BASE: &str = "http://lms.test";
/// Its host, sent as `Host`.
pub const PUBLIC_HOST: &str = "lms.test";

/// The `lti2` binary with no inherited settings.
pub fn lti2() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lti2"));
    c.env_remove("LTI2_MASTER_KEY")
        .env_remove("LTI2_CONFIG")
        .env_remove("LTI2_BASE_URL")
        .env_remove("LTI2_REDIS_URL");
    c
}

/// A running `lti2 serve`.
pub struct Server {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// Its database URL.
    pub db: String,
    /// Its data directory.
    pub data: String,
    /// Its log lines (JSON), after the "serving" line.
    pub log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `lti2 serve` on `db` and `data` with the public base [`PUBLIC_BASE`], the admin
    /// API on, JSON logs, `--cache-refresh-ms 0` and `extra` flags; returns once it logs that
    /// it serves.
    pub fn start(db: &str, data: &str, extra: &[&str]) -> Server {
        let mut child = lti2()
            .args([
                "serve",
                "--database-url",
                db,
                "--data-dir",
                data,
                "--base-url",
                PUBLIC_BASE,
                "--cache-refresh-ms",
                "0",
                "--log-format",
                "json",
            ])
            .args(extra)
            .env("LTI2_LISTEN", "127.0.0.1:0")
            .env("LTI2_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "info,lti2::server=debug")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("lti2 serve starts");
        let (tx, rx) = mpsc::channel::<String>();
        let stderr = child.stderr.take().expect("stderr");
        let (log_tx, log) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains("lti2 is serving") {
                    let v: Value = serde_json::from_str(&line).expect("a JSON log line");
                    let _ = tx.send(v["fields"]["addr"].as_str().expect("addr").to_owned());
                    sent = true;
                } else if sent {
                    let _ = log_tx.send(line);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server logs that it serves");
        Server {
            child,
            addr: format!("http://{addr}"),
            db: db.into(),
            data: data.into(),
            log,
        }
    }

    /// Waits (up to 60 s) for a log line containing `text`; returns it.
    pub fn wait_for_log(&self, text: &str) -> String {
        loop {
            let line = self
                .log
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("the server logs '{text}'"));
            if line.contains(text) {
                return line;
            }
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    /// SIGKILL, then waits for the process to be gone.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful shutdown), then waits for the exit status.
    pub fn sigterm(&mut self) -> ExitStatus {
        self.send_sigterm();
        self.child.wait().expect("the server exits")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `lti2 admin ARGS` on `db`/`data`; returns its JSON output, panicking on failure.
pub fn admin(db: &str, data: &str, args: &[&str]) -> Value {
    let out = lti2()
        .arg("admin")
        .args(args)
        .args(["--database-url", db, "--data-dir", data])
        .output()
        .expect("lti2 admin runs");
    assert!(
        out.status.success(),
        "lti2 admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Now by the system clock (the servers' clock), seconds since the epoch.
pub fn now() -> i64 {
    lti2::clock::SystemClock.now()
}

/// A fresh assertion of tool proxy `guid` (secret [`super::tool_secret`]) for the public
/// authorize URL of `path`, with a new random `jti`.
pub fn assertion(guid: &str, path: &str) -> String {
    let now = now();
    super::sign(
        &json!({
            "sub": guid,
            "aud": format!("{PUBLIC_BASE}{path}"),
            "iat": now,
            "exp": now + 60,
            "jti": uuid::Uuid::new_v4().to_string(),
        }),
        super::tool_secret(guid).as_bytes(),
    )
}

/// POSTs an assertion to `server`'s authorize route `path` with the public `Host`; returns
/// the status and JSON body.
pub async fn exchange(
    http: &reqwest::Client,
    server_addr: &str,
    path: &str,
    assertion: &str,
) -> (u16, Value) {
    let r = http
        .post(format!("{server_addr}{path}"))
        .header("host", PUBLIC_HOST)
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ])
        .send()
        .await
        .expect("the server answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// GETs `path` on `server_addr` with the public `Host` and a bearer token; returns the status
/// and the body bytes.
pub async fn get(
    http: &reqwest::Client,
    server_addr: &str,
    path: &str,
    token: &str,
) -> (u16, Vec<u8>) {
    let r = http
        .get(format!("{server_addr}{path}"))
        .header("host", PUBLIC_HOST)
        .bearer_auth(token)
        .send()
        .await
        .expect("the server answers");
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap_or_default().to_vec())
}

/// An HTTP client with a 30 s timeout.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The tool the process tests register.
pub const TOOL: &str = "tool-1";
/// The bytes of attachment 30 (submission 20 of assignment 7 in course 5).
pub const ESSAY: &[u8] = b"An essay\x00 with a NUL byte and \xff high bytes";

/// Seeds `db`/`data`: course 5 (account 1) with student 12, assignment 7 using [`TOOL`],
/// submission 20 with attachment 30 ([`ESSAY`], imported through `lti2 admin import`, so the
/// file lands in `data`), and [`TOOL`] registered, bound to course 5 and active, with the
/// originality report, submission and user services.
pub async fn seed_lms(db: &str, data: &str) {
    use base64::Engine;
    let tool = json!({"vendor_code": "acme.example", "product_code": "checker", "resource_type_code": "originality_reports"});
    let doc = json!({
        "courses": [{"id": 5, "account_id": 1, "name": "Biology"}],
        "users": [{"id": 12, "lti_id": "user-lti-12", "name": "Ann"}],
        "enrollments": [{"user_id": 12, "course_id": 5}],
        "assignments": [{"id": 7, "course_id": 5, "name": "Essay", "submission_types": ["online_upload"], "plagiarism_tool": tool}],
        "submissions": [{"id": 20, "assignment_id": 7, "user_id": 12, "history": [
            {"attempt": 1, "submitted_at": "2027-01-10T10:00:00Z", "submission_type": "online_upload",
             "attachments": [{"id": 30, "filename": "essay.txt", "content_type": "text/plain",
                              "content_base64": base64::engine::general_purpose::STANDARD.encode(ESSAY)}]}
        ]}]
    });
    let docs = tempfile::tempdir().unwrap();
    let path = docs.path().join("lms.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    admin(db, data, &["import", path.to_str().unwrap()]);
    let settings = lti2::config::Settings::resolve(lti2::config::Overrides {
        database_url: Some(db.into()),
        data_dir: Some(data.into()),
        ..Default::default()
    })
    .unwrap();
    let store = lti2::server::open_store(&settings).await.unwrap();
    let services = [
        ("vnd.Canvas.OriginalityReport", vec!["GET", "POST", "PUT"]),
        ("vnd.Canvas.submission", vec!["GET"]),
        ("vnd.Canvas.User", vec!["GET"]),
    ]
    .into_iter()
    .map(|(s, a)| lti2::store::ToolService {
        service: format!("{PUBLIC_BASE}/api/lti/courses/5/tool_consumer_profile/x#{s}"),
        action: a.into_iter().map(String::from).collect(),
    })
    .collect();
    super::register_tool(
        store.as_ref(),
        now(),
        TOOL,
        "acme.example",
        "checker",
        &["Canvas.placements.similarityDetection"],
        services,
        lti2::store::ContextRef {
            kind: lti2::store::ContextKind::Course,
            id: 5,
        },
        "{}",
    )
    .await;
}
