//! The plagiarism detection platform APIs through real HTTP, on records loaded with
//! `lti2 admin import`: originality reports (O1–O5), submissions (S1–S3), users (U1, U2) and
//! assignments (G1), with Canvas's permission checks and error bodies; the importer and the
//! admin HTTP API.

mod common;

use std::sync::Arc;

use common::{Reply, TestApp};
use lti2::client::{Credentials, TokenClient};
use lti2::store::{ContextKind, ContextRef, ToolService};
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000;
const VENDOR: &str = "acme.example";
const PRODUCT: &str = "similarity-checker";
const RT: &str = "originality_reports";
const SIMILARITY: &str = "Canvas.placements.similarityDetection";
const DRAFT: &[u8] = b"First draft: the mitochondria is the powerhouse of the cell.\n";
const FINAL: &[u8] = b"%PDF-1.4 final essay bytes \x00\x01\x02\xff";
const OTHER: &[u8] = b"another student's essay";
const GROUP_FILE: &[u8] = b"group project report";

fn course(id: i64) -> ContextRef {
    ContextRef {
        kind: ContextKind::Course,
        id,
    }
}

fn all_services() -> Vec<ToolService> {
    [
        ("vnd.Canvas.OriginalityReport", vec!["GET", "POST", "PUT"]),
        ("vnd.Canvas.submission", vec!["GET"]),
        ("vnd.Canvas.User", vec!["GET"]),
        ("vnd.Canvas.Assignment", vec!["GET"]),
    ]
    .into_iter()
    .map(|(s, a)| ToolService {
        service: format!("http://lms/api/lti/courses/5/tool_consumer_profile/x#{s}"),
        action: a.into_iter().map(String::from).collect(),
    })
    .collect()
}

async fn tool(
    app: &TestApp,
    guid: &str,
    product: &str,
    caps: &[&str],
    services: Vec<ToolService>,
    bind: ContextRef,
) -> String {
    common::registered_tool(app, guid, VENDOR, product, caps, services, bind, "{}").await
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The import document: course 5 with students 12 and 13, teacher 14 (and 15 in no course);
/// assignment 7 (file upload, this tool, an override for 12), 8 (text entry, this tool),
/// 9 (no tool), 10 (group assignment, this tool); submissions 20 (two attempts, files 30 then
/// 31), 21 (text entry, two attempts), 22 (student 13, file 32), 23 and 24 (group 3, file 33).
fn document(dir: &std::path::Path) -> Value {
    std::fs::write(dir.join("draft.txt"), DRAFT).unwrap();
    std::fs::write(dir.join("final.pdf"), FINAL).unwrap();
    let tool = json!({"vendor_code": VENDOR, "product_code": PRODUCT, "resource_type_code": RT});
    json!({
        "courses": [{"id": 5, "account_id": 1, "name": "Biology 101", "lti_id": "course-lti-5"}],
        "users": [
            {"id": 12, "lti_id": "user-lti-12", "past_lti_ids": ["old-lti-12"], "name": "Ann Smith", "sortable_name": "Smith, Ann", "short_name": "Ann", "email": "ann@example.edu"},
            {"id": 13, "lti_id": "user-lti-13", "name": "Bob Jones", "sortable_name": "Jones, Bob", "short_name": "Bob"},
            {"id": 14, "lti_id": "user-lti-14", "name": "Teacher"},
            {"id": 15, "lti_id": "user-lti-15", "name": "Stranger"}
        ],
        "enrollments": [
            {"user_id": 12, "course_id": 5},
            {"user_id": 13, "course_id": 5, "role": "student"},
            {"user_id": 14, "course_id": 5, "role": "teacher"}
        ],
        "groups": [{"id": 3, "course_id": 5, "name": "Lab group", "members": [12, 13]}],
        "assignments": [
            {"id": 7, "course_id": 5, "lti_id": "asg-lti-7", "name": "Essay", "description": "<p>Write.</p>", "due_at": "2027-01-15T23:59:00Z", "points_possible": 10, "submission_types": ["online_upload"], "plagiarism_tool": tool, "overrides": [{"user_id": 12, "due_at": "2027-01-20T12:00:00Z"}]},
            {"id": 8, "course_id": 5, "name": "Journal", "submission_types": ["online_text_entry"], "plagiarism_tool": tool},
            {"id": 9, "course_id": 5, "name": "Quiz", "submission_types": ["online_upload"]},
            {"id": 10, "course_id": 5, "name": "Group project", "submission_types": ["online_upload"], "plagiarism_tool": tool}
        ],
        "submissions": [
            {"id": 20, "assignment_id": 7, "user_id": 12, "eula_agreement_timestamp": "1508250487578", "history": [
                {"attempt": 1, "submitted_at": "2027-01-10T10:00:00Z", "submission_type": "online_upload", "attachments": [{"id": 30, "filename": "draft.txt", "content_type": "text/plain", "path": "draft.txt"}]},
                {"attempt": 2, "submitted_at": "2027-01-11T11:00:00Z", "submission_type": "online_upload", "attachments": [{"id": 31, "filename": "1508250488_822__final.pdf", "display_name": "final.pdf", "content_type": "application/pdf", "path": "final.pdf"}]}
            ]},
            {"id": 21, "assignment_id": 8, "user_id": 12, "history": [
                {"attempt": 1, "submitted_at": "2027-01-10T09:00:00Z", "submission_type": "online_text_entry", "body": "<p>Day one</p>"},
                {"attempt": 2, "submitted_at": "2027-01-12T09:00:00Z", "submission_type": "online_text_entry", "body": "<p>Day two</p>"}
            ]},
            {"id": 22, "assignment_id": 7, "user_id": 13, "history": [
                {"attempt": 1, "submitted_at": "2027-01-10T12:00:00Z", "submission_type": "online_upload", "attachments": [{"id": 32, "filename": "bob.txt", "content_type": "text/plain", "content_base64": b64(OTHER)}]}
            ]},
            {"id": 23, "assignment_id": 10, "user_id": 12, "group_id": 3, "history": [
                {"attempt": 1, "submitted_at": "2027-01-13T12:00:00Z", "submission_type": "online_upload", "attachments": [{"id": 33, "filename": "group.txt", "content_type": "text/plain", "content_base64": b64(GROUP_FILE)}]}
            ]},
            {"id": 24, "assignment_id": 10, "user_id": 13, "group_id": 3, "history": [
                {"attempt": 1, "submitted_at": "2027-01-13T12:00:00Z", "submission_type": "online_upload", "attachments": [{"id": 33}]}
            ]}
        ]
    })
}

/// A self-addressed server with the document imported through `lti2 admin import` and the tool
/// (bound to course 5) holding `token`.
struct Lms {
    app: TestApp,
    token: String,
}

async fn lms() -> Lms {
    let app = TestApp::spawn_self_addressed(NOW).await;
    let docs = tempfile::tempdir().unwrap();
    let path = docs.path().join("lms.json");
    std::fs::write(&path, document(docs.path()).to_string()).unwrap();
    let out = app.admin(&["import", path.to_str().unwrap()]).unwrap();
    assert_eq!(out["imported"]["submissions"], 5, "{out}");
    let token = tool(
        &app,
        "tool-1",
        PRODUCT,
        &[SIMILARITY],
        all_services(),
        course(5),
    )
    .await;
    Lms { app, token }
}

impl Lms {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.app.addr, path)
    }

    async fn get(&self, path: &str) -> Reply {
        self.get_as(path, &self.token).await
    }

    async fn get_as(&self, path: &str, token: &str) -> Reply {
        let resp = self
            .app
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        TestApp::reply(resp).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Reply {
        self.send_as(method, path, body, &self.token).await
    }

    async fn send_as(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
        token: &str,
    ) -> Reply {
        let resp = self
            .app
            .http
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        TestApp::reply(resp).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, body).await
    }

    async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::PUT, path, body).await
    }
}

fn standard_401(r: &Reply, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text);
    assert_eq!(
        r.json,
        json!({"status":"unauthenticated","errors":[{"message":"user authorization required"}]}),
        "{what}"
    );
}

fn helper_401(r: &Reply, what: &str) {
    assert_eq!(
        (r.status, r.json.clone()),
        (401, json!({"error": "unauthorized"})),
        "{what}: {}",
        r.text
    );
}

fn not_found(r: &Reply, what: &str) {
    assert_eq!(r.status, 404, "{what}: {}", r.text);
    assert_eq!(
        r.json,
        json!({"errors":[{"message":"The specified resource does not exist."}]}),
        "{what}"
    );
}

const REPORT_KEYS: [&str; 14] = [
    "id",
    "file_id",
    "originality_score",
    "originality_report_file_id",
    "originality_report_url",
    "originality_report_lti_url",
    "created_at",
    "updated_at",
    "submission_id",
    "workflow_state",
    "link_id",
    "error_message",
    "submission_time",
    "root_account_id",
];

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_import_token_submission_download_report() {
    let lms = lms().await;
    // The submission, its history and both files.
    let s = lms.get("/api/lti/assignments/7/submissions/20").await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert_eq!(s.json["user_id"], "user-lti-12", "the opaque LTI id");
    assert_eq!(s.json["attempt"], 2);
    assert_eq!(s.json["submitted_at"], "2027-01-11T11:00:00Z");
    assert_eq!(s.json["eula_agreement_timestamp"], "1508250487578");
    assert_eq!(s.json["course_id"], 5);
    assert_eq!(s.json["lti_course_id"], "course-lti-5");
    assert_eq!(s.json["workflow_state"], "submitted");
    let mut want = vec![
        "id",
        "body",
        "url",
        "submitted_at",
        "assignment_id",
        "user_id",
        "submission_type",
        "workflow_state",
        "attempt",
        "eula_agreement_timestamp",
        "attachments",
        "course_id",
        "lti_course_id",
    ];
    want.sort();
    assert_eq!(keys(&s.json), want);
    let att = &s.json["attachments"][0];
    assert_eq!(att["id"], 31);
    assert_eq!(att["display_name"], "final.pdf");
    assert_eq!(att["filename"], "1508250488_822__final.pdf");
    assert_eq!(att["size"], FINAL.len());
    assert!(att.get("content_type").is_none() && att.get("content-type").is_none());
    assert_eq!(
        att["url"],
        lms.url("/api/lti/assignments/7/submissions/20/attachment/31")
    );

    let h = lms
        .get("/api/lti/assignments/7/submissions/20/history")
        .await;
    assert_eq!(h.status, 200);
    let versions = h.json.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(
        (
            versions[0]["attempt"].clone(),
            versions[0]["attachments"][0]["id"].clone()
        ),
        (json!(1), json!(30))
    );
    assert_eq!(
        (
            versions[1]["attempt"].clone(),
            versions[1]["attachments"][0]["id"].clone()
        ),
        (json!(2), json!(31))
    );

    for (v, bytes, ctype) in [
        (&versions[0], DRAFT, "text/plain"),
        (&versions[1], FINAL, "application/pdf"),
    ] {
        let url = v["attachments"][0]["url"].as_str().unwrap();
        let resp = lms
            .app
            .http
            .get(url)
            .bearer_auth(&lms.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], ctype);
        assert_eq!(
            resp.headers()["content-length"],
            bytes.len().to_string().as_str()
        );
        assert_eq!(
            resp.bytes().await.unwrap().as_ref(),
            bytes,
            "the bytes imported"
        );
    }

    // A pending report, then scored; read back by id and by file.
    let r = lms
        .post(
            "/api/lti/assignments/7/submissions/20/originality_report",
            json!({"originality_report": {"file_id": 31, "workflow_state": "pending"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["workflow_state"], "pending");
    let mut k14: Vec<String> = REPORT_KEYS.iter().map(|s| s.to_string()).collect();
    k14.sort();
    assert_eq!(keys(&r.json), k14, "exactly the 14 keys without a link");
    assert_eq!(r.json["submission_time"], "2027-01-11T11:00:00Z");
    assert_eq!(r.json["root_account_id"], 1);
    let id = r.json["id"].as_i64().unwrap();
    let u = lms.put(&format!("/api/lti/assignments/7/submissions/20/originality_report/{id}"), json!({"originality_report": {"originality_score": 42.5, "originality_report_url": "https://tool.example/r/1"}})).await;
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(
        (
            u.json["workflow_state"].clone(),
            u.json["originality_score"].clone()
        ),
        (json!("scored"), json!(42.5))
    );
    let by_id = lms
        .get(&format!(
            "/api/lti/assignments/7/submissions/20/originality_report/{id}"
        ))
        .await;
    assert_eq!(by_id.status, 200);
    assert_eq!(by_id.json, u.json);
    let by_file = lms
        .get("/api/lti/assignments/7/files/31/originality_report")
        .await;
    assert_eq!(by_file.status, 200);
    assert_eq!(by_file.json, u.json);
    // Create is an upsert: the same file again updates the same report.
    let again = lms
        .post(
            "/api/lti/assignments/7/submissions/20/originality_report",
            json!({"originality_report": {"file_id": 31, "originality_score": 50}}),
        )
        .await;
    assert_eq!((again.status, again.json["id"].as_i64()), (200, Some(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originality_report_rules() {
    let lms = lms().await;
    let create = "/api/lti/assignments/7/submissions/20/originality_report";

    // Bodies that are refused.
    let r = lms.post(create, json!({})).await;
    assert_eq!(r.status, 400);
    let r = lms.post(create, json!({"originality_report": {}})).await;
    assert_eq!(r.status, 400);
    let r = lms
        .post(
            create,
            json!({"originality_report": {"originality_score": 5}}),
        )
        .await;
    not_found(&r, "no file on a file-upload assignment");
    let r = lms
        .post(
            create,
            json!({"originality_report": {"file_id": 999, "originality_score": 5}}),
        )
        .await;
    not_found(&r, "unknown file");
    let r = lms
        .post(
            create,
            json!({"originality_report": {"file_id": 32, "originality_score": 5}}),
        )
        .await;
    standard_401(&r, "another student's file");
    let r = lms
        .post(
            "/api/lti/assignments/8/submissions/20/originality_report",
            json!({"originality_report": {"file_id": 31}}),
        )
        .await;
    standard_401(&r, "the submission is not the path assignment's");
    let r = lms
        .post(
            "/api/lti/assignments/77/submissions/20/originality_report",
            json!({"originality_report": {"file_id": 31}}),
        )
        .await;
    not_found(&r, "unknown assignment");
    let r = lms
        .post(
            "/api/lti/assignments/7/submissions/999/originality_report",
            json!({"originality_report": {"file_id": 31}}),
        )
        .await;
    not_found(&r, "unknown submission");
    let r = lms
        .post(
            "/api/lti/assignments/x/submissions/20/originality_report",
            json!({"originality_report": {"file_id": 31}}),
        )
        .await;
    not_found(&r, "malformed URL");
    for bad in [json!(150), json!(-1), json!(100.5)] {
        let r = lms
            .post(
                create,
                json!({"originality_report": {"file_id": 31, "originality_score": bad}}),
            )
            .await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(
            r.json,
            json!({"errors": {"originality_score": [{"attribute": "originality_score", "type": "score must be between 0 and 100", "message": "score must be between 0 and 100"}]}})
        );
    }
    // Nothing was created by any of those.
    let r = lms
        .get("/api/lti/assignments/7/files/31/originality_report")
        .await;
    not_found(&r, "no report yet");

    // An earlier attempt's file is in the history: a report for it.
    let r = lms.post(create, json!({"originality_report": {"file_id": 30, "originality_score": 0.3, "tool_setting": {"resource_type_code": RT, "resource_url": "https://tool.example/r/30"}}})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.json["tool_setting"],
        json!({"resource_url": "https://tool.example/r/30", "resource_type_code": RT})
    );
    let id = r.json["id"].as_i64().unwrap();
    let by_id = format!("/api/lti/assignments/7/submissions/20/originality_report/{id}");
    // error_message forces error, and an update without it clears it (the state stays error).
    let r = lms
        .put(
            &by_id,
            json!({"originality_report": {"error_message": "timed out"}}),
        )
        .await;
    assert_eq!(
        (
            r.json["workflow_state"].clone(),
            r.json["error_message"].clone()
        ),
        (json!("error"), json!("timed out"))
    );
    assert_eq!(
        r.json["tool_setting"]["resource_url"], "https://tool.example/r/30",
        "kept without tool_setting"
    );
    let r = lms
        .put(
            &by_id,
            json!({"originality_report": {"originality_score": 12}}),
        )
        .await;
    assert_eq!(
        (
            r.json["workflow_state"].clone(),
            r.json["error_message"].clone()
        ),
        (json!("error"), Value::Null)
    );
    let r = lms.post(create, json!({"originality_report": {"file_id": 30, "workflow_state": "pending", "originality_score": null}})).await;
    assert_eq!(
        (
            r.status,
            r.json["workflow_state"].clone(),
            r.json["id"].as_i64()
        ),
        (200, json!("pending"), Some(id))
    );
    let r = lms
        .put(
            &by_id,
            json!({"originality_report": {"tool_setting": {"resource_type_code": null}}}),
        )
        .await;
    assert!(r.json.get("tool_setting").is_none(), "the link is deleted");
    let r = lms
        .put(
            &by_id,
            json!({"originality_report": {"originality_score": 150}}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = lms.get(&by_id).await;
    assert_eq!(
        r.json["originality_score"],
        Value::Null,
        "a refused update changes nothing"
    );
    // Update by file (O3), with a form body.
    let resp = lms
        .app
        .http
        .put(lms.url("/api/lti/assignments/7/files/30/originality_report"))
        .bearer_auth(&lms.token)
        .form(&[
            ("originality_report[originality_score]", "77"),
            ("originality_report[originality_report_file_id]", "31"),
        ])
        .send()
        .await
        .unwrap();
    let r = TestApp::reply(resp).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (
            r.json["originality_score"].clone(),
            r.json["originality_report_file_id"].clone(),
            r.json["id"].as_i64()
        ),
        (json!(77.0), json!(31), Some(id))
    );
    // Text fields must be text; a form field given twice is refused.
    let r = lms
        .put(
            &by_id,
            json!({"originality_report": {"originality_report_url": {"x": [1]}}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let resp = lms
        .app
        .http
        .post(lms.url(create))
        .bearer_auth(&lms.token)
        .form(&[
            ("originality_report[file_id]", "31"),
            ("originality_report[file_id]", "30"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Unknown ids.
    not_found(
        &lms.get("/api/lti/assignments/7/submissions/20/originality_report/9999")
            .await,
        "unknown report",
    );
    not_found(
        &lms.put(
            "/api/lti/assignments/7/submissions/20/originality_report/9999",
            json!({"originality_report": {"originality_score": 1}}),
        )
        .await,
        "unknown report, with a body",
    );
    not_found(
        &lms.get("/api/lti/assignments/7/files/999/originality_report")
            .await,
        "unknown file",
    );
    // Another user's submission in the path: the report's file is not in its history.
    standard_401(
        &lms.get(&format!(
            "/api/lti/assignments/7/submissions/22/originality_report/{id}"
        ))
        .await,
        "another user's submission",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_entry_reports_by_attempt() {
    let lms = lms().await;
    let url = "/api/lti/assignments/8/submissions/21/originality_report";
    let r2 = lms
        .post(
            url,
            json!({"originality_report": {"attempt": 2, "originality_score": 20}}),
        )
        .await;
    assert_eq!(r2.status, 201, "{}", r2.text);
    assert_eq!(r2.json["submission_time"], "2027-01-12T09:00:00Z");
    assert_eq!(r2.json["file_id"], Value::Null);
    let r1 = lms
        .post(
            url,
            json!({"originality_report": {"attempt": 1, "originality_score": 10}}),
        )
        .await;
    assert_eq!(r1.status, 201, "out of order is fine");
    assert_eq!(r1.json["submission_time"], "2027-01-10T09:00:00Z");
    let again = lms
        .post(
            url,
            json!({"originality_report": {"attempt": 2, "originality_score": 25}}),
        )
        .await;
    assert_eq!(
        (again.status, again.json["id"].clone()),
        (200, r2.json["id"].clone())
    );
    let r = lms
        .post(
            url,
            json!({"originality_report": {"attempt": 9, "originality_score": 1}}),
        )
        .await;
    not_found(&r, "unknown attempt");
    let show = lms.get(&format!("{url}/{}", r1.json["id"])).await;
    assert_eq!(show.json["originality_score"], 10.0);
    // Without an attempt: the first report with no file, updated by a second POST.
    let first = lms
        .post(url, json!({"originality_report": {"originality_score": 5}}))
        .await;
    assert_eq!(
        first.status, 200,
        "the attempt-2 report has no file either: {}",
        first.text
    );
    let again = lms
        .post(url, json!({"originality_report": {"originality_score": 6}}))
        .await;
    assert_eq!(
        (again.status, again.json["id"].clone()),
        (200, first.json["id"].clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_a_submissions_files_takes_its_reports_out_of_reach() {
    let lms = lms().await;
    let r = lms
        .post(
            "/api/lti/assignments/7/submissions/20/originality_report",
            json!({"originality_report": {"file_id": 31, "originality_score": 9}}),
        )
        .await;
    assert_eq!(r.status, 201);
    let id = r.json["id"].as_i64().unwrap();
    let doc = json!({"submissions": [{"id": 20, "assignment_id": 7, "user_id": 12, "history": [
        {"attempt": 1, "submitted_at": "2027-01-10T10:00:00Z", "submission_type": "online_upload", "attachments": []},
        {"attempt": 2, "submitted_at": "2027-01-11T11:00:00Z", "submission_type": "online_upload", "attachments": []}
    ]}]});
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clear.json"), doc.to_string()).unwrap();
    lms.app
        .admin(&["import", dir.path().join("clear.json").to_str().unwrap()])
        .unwrap();
    standard_401(
        &lms.put(
            &format!("/api/lti/assignments/7/submissions/20/originality_report/{id}"),
            json!({"originality_report": {"originality_score": 1}}),
        )
        .await,
        "by id",
    );
    not_found(
        &lms.get("/api/lti/assignments/7/files/31/originality_report")
            .await,
        "by file: no association left",
    );
    helper_401(
        &lms.get("/api/lti/assignments/7/submissions/20/attachment/31")
            .await,
        "the file is no longer in the submission",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_reports_are_copied_to_every_member() {
    let lms = lms().await;
    let r = lms
        .post(
            "/api/lti/assignments/10/submissions/23/originality_report",
            json!({"originality_report": {"file_id": 33, "originality_score": 64}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mate = lms
        .app
        .store()
        .report_for(24, Some(33))
        .await
        .unwrap()
        .expect("copied to the group-mate");
    assert_eq!(mate.originality_score, Some(64.0));
    assert_eq!(mate.submission_time, None);
    assert_eq!(
        lti2::import::format_time(mate.updated_at),
        r.json["updated_at"].as_str().unwrap()
    );
    // An update is copied too, replacing the older copy.
    lms.app.clock.advance(10);
    let id = r.json["id"].as_i64().unwrap();
    lms.put(
        &format!("/api/lti/assignments/10/submissions/23/originality_report/{id}"),
        json!({"originality_report": {"originality_score": 70}}),
    )
    .await;
    let mate = lms
        .app
        .store()
        .report_for(24, Some(33))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mate.originality_score, Some(70.0));
    // Nothing outside the group.
    assert!(lms
        .app
        .store()
        .report_for(22, Some(33))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_that_may_not_see_the_assignment_are_refused() {
    let lms = lms().await;
    // Another product of the same vendor; a clone of this product not installed in the
    // course; a clone installed (it may: identity is not checked); and one without the
    // similarity-detection capability.
    let other = tool(
        &lms.app,
        "tool-other",
        "other-product",
        &[SIMILARITY],
        all_services(),
        course(5),
    )
    .await;
    lms.app
        .store()
        .create_course(6, 1, "Other", NOW)
        .await
        .unwrap();
    let elsewhere = tool(
        &lms.app,
        "tool-elsewhere",
        PRODUCT,
        &[SIMILARITY],
        all_services(),
        course(6),
    )
    .await;
    let clone = tool(
        &lms.app,
        "tool-clone",
        PRODUCT,
        &[SIMILARITY],
        all_services(),
        ContextRef {
            kind: ContextKind::Account,
            id: 1,
        },
    )
    .await;
    let no_cap = tool(
        &lms.app,
        "tool-nocap",
        PRODUCT,
        &[],
        all_services(),
        course(5),
    )
    .await;
    let no_services = tool(
        &lms.app,
        "tool-nosvc",
        PRODUCT,
        &[SIMILARITY],
        vec![],
        course(5),
    )
    .await;

    let report = "/api/lti/assignments/7/submissions/20/originality_report";
    let body = json!({"originality_report": {"file_id": 31, "originality_score": 1}});
    for (t, what) in [
        (&other, "other product"),
        (&elsewhere, "not installed here"),
        (&no_services, "no services"),
    ] {
        let r = lms
            .send_as(reqwest::Method::POST, report, body.clone(), t)
            .await;
        standard_401(&r, what);
        let r = lms.get_as("/api/lti/assignments/7/submissions/20", t).await;
        if what == "no services" {
            standard_401(&r, what)
        } else {
            helper_401(&r, what)
        }
    }
    let r = lms
        .send_as(reqwest::Method::POST, report, body.clone(), &clone)
        .await;
    assert_eq!(
        r.status, 201,
        "a clone with the same codes, installed on the account: {}",
        r.text
    );
    helper_401(
        &lms.get_as("/api/lti/assignments/7/submissions/20", &no_cap)
            .await,
        "no similarityDetection",
    );
    // The assignment without a tool.
    lms.app
        .admin(&[
            "submission",
            "create",
            "--assignment",
            "9",
            "--user",
            "12",
            "--body",
            "x",
            "--type",
            "online_upload",
        ])
        .unwrap();
    let sub = lms
        .app
        .store()
        .submission_for(9, 12)
        .await
        .unwrap()
        .unwrap();
    helper_401(
        &lms.get(&format!("/api/lti/assignments/9/submissions/{}", sub.id))
            .await,
        "assignment without the tool",
    );
    // S3: a file of another submission, an unknown file, an unknown submission.
    helper_401(
        &lms.get("/api/lti/assignments/7/submissions/20/attachment/32")
            .await,
        "another submission's file",
    );
    not_found(
        &lms.get("/api/lti/assignments/7/submissions/20/attachment/999")
            .await,
        "unknown file",
    );
    not_found(
        &lms.get("/api/lti/assignments/7/submissions/999").await,
        "unknown submission",
    );
    // No token; a developer-key token: 401, never 500.
    let resp = lms
        .app
        .http
        .get(lms.url("/api/lti/assignments/7/submissions/20"))
        .send()
        .await
        .unwrap();
    standard_401(&TestApp::reply(resp).await, "no token");
    lms.app
        .developer_key(10000000000009, "developer-key-secret-0123456789abcdef")
        .await;
    let dk = TokenClient::new(
        &format!("{}/api/lti/accounts/1/authorize", lms.app.addr),
        Credentials::developer_key(
            "10000000000009",
            b"developer-key-secret-0123456789abcdef".to_vec(),
            "rk",
        ),
    )
    .with_clock(Arc::new(lms.app.clock.clone()))
    .access_token()
    .await
    .unwrap();
    for path in [
        "/api/lti/assignments/7/submissions/20",
        "/api/lti/users/12",
        "/api/lti/assignments/7",
        "/api/lti/groups/3/users",
        "/api/lti/assignments/7/files/31/originality_report",
    ] {
        standard_401(&lms.get_as(path, &dk).await, path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_groups() {
    let lms = lms().await;
    let ann = json!({"id": 12, "name": "Ann Smith", "sortable_name": "Smith, Ann", "short_name": "Ann", "email": "ann@example.edu", "lti_id": "user-lti-12"});
    for id in ["user-lti-12", "old-lti-12", "12"] {
        let r = lms.get(&format!("/api/lti/users/{id}")).await;
        assert_eq!((r.status, r.json.clone()), (200, ann.clone()), "{id}");
    }
    let bob = lms.get("/api/lti/users/13").await;
    assert_eq!(
        bob.json,
        json!({"id": 13, "name": "Bob Jones", "sortable_name": "Jones, Bob", "short_name": "Bob", "lti_id": "user-lti-13"})
    );
    not_found(&lms.get("/api/lti/users/nobody").await, "unknown user");
    standard_401(
        &lms.get("/api/lti/users/15").await,
        "a user in no course of this tool",
    );
    let no_users = tool(
        &lms.app,
        "tool-nouser",
        PRODUCT,
        &[SIMILARITY],
        vec![],
        course(5),
    )
    .await;
    standard_401(
        &lms.get_as("/api/lti/users/12", &no_users).await,
        "empty contract",
    );

    let r = lms.get("/api/lti/groups/3/users").await;
    assert_eq!(r.status, 200);
    let ids: Vec<i64> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![12, 13]);
    assert_eq!(r.json[0], ann);
    let page = lms.get("/api/lti/groups/3/users?per_page=1").await;
    assert_eq!(page.json.as_array().unwrap().len(), 1);
    let link = page.headers["link"].to_str().unwrap();
    assert!(link.contains("page=2&per_page=1>; rel=\"next\""), "{link}");
    not_found(&lms.get("/api/lti/groups/99/users").await, "unknown group");
    let doc = json!({"groups": [{"id": 3, "course_id": 5, "name": "Lab group", "workflow_state": "deleted", "members": [12, 13]}]});
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.json"), doc.to_string()).unwrap();
    lms.app
        .admin(&["import", dir.path().join("g.json").to_str().unwrap()])
        .unwrap();
    standard_401(&lms.get("/api/lti/groups/3/users").await, "deleted group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_with_overrides() {
    let lms = lms().await;
    let want = json!({"id": 7, "name": "Essay", "description": "<p>Write.</p>", "due_at": "2027-01-15T23:59:00Z", "points_possible": 10.0, "lti_id": "asg-lti-7", "lti_course_id": "course-lti-5", "course_id": 5});
    for path in [
        "/api/lti/assignments/7",
        "/api/lti/assignments/asg-lti-7",
        "/api/lti/assignments/7?user_id=user-lti-13",
    ] {
        let r = lms.get(path).await;
        assert_eq!((r.status, r.json.clone()), (200, want.clone()), "{path}");
    }
    for user in ["user-lti-12", "old-lti-12", "12"] {
        let r = lms
            .get(&format!("/api/lti/assignments/7?user_id={user}"))
            .await;
        assert_eq!(
            r.json["due_at"], "2027-01-20T12:00:00Z",
            "the override for {user}"
        );
    }
    not_found(
        &lms.get("/api/lti/assignments/blah").await,
        "unknown assignment",
    );
    not_found(
        &lms.get("/api/lti/assignments/7?user_id=blah").await,
        "unknown user",
    );
    standard_401(
        &lms.get("/api/lti/assignments/7?user_id=14").await,
        "a teacher is not a student",
    );
    standard_401(
        &lms.get("/api/lti/assignments/9").await,
        "unrelated assignment",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_is_idempotent_and_all_or_nothing() {
    let app = TestApp::spawn_self_addressed(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lms.json");
    std::fs::write(&path, document(dir.path()).to_string()).unwrap();
    let first = app.admin(&["import", path.to_str().unwrap()]).unwrap();
    let before = app.store().submission(20).await.unwrap().unwrap();
    let second = app.admin(&["import", path.to_str().unwrap()]).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        app.store().submission(20).await.unwrap().unwrap(),
        before,
        "a second import changes nothing"
    );
    let files_dir = app.dir.path().join("files");
    let count_files = || walk(&files_dir);
    assert_eq!(count_files(), 4, "four distinct contents");

    // A bad reference deep in the document: refused with its path, nothing written (not the
    // new user, not the new file).
    let mut bad = document(dir.path());
    bad["users"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": 40, "lti_id": "new-user"}));
    bad["submissions"].as_array_mut().unwrap().push(json!({"id": 41, "assignment_id": 7, "user_id": 40, "history": [{"attempt": 1, "attachments": [{"id": 42, "content_base64": b64(b"brand new bytes")}]}]}));
    bad["submissions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": 43, "assignment_id": 7, "user_id": 99}));
    std::fs::write(&path, bad.to_string()).unwrap();
    let err = app.admin(&["import", path.to_str().unwrap()]).unwrap_err();
    assert!(
        err.contains("submissions[6].user_id: there is no user 99"),
        "{err}"
    );
    assert!(app.store().user(40).await.unwrap().is_none());
    assert!(app.store().attachment(42).await.unwrap().is_none());
    assert_eq!(count_files(), 4, "the new file was removed again");
    // Other refusals name their field.
    for (doc, needle) in [
        (
            json!({"users": [{"id": 1, "lti_id": "a", "nmae": "x"}]}),
            "users[0]",
        ),
        (
            json!({"submissions": [{"id": 20, "assignment_id": 7, "user_id": 12, "history": [{"attempt": 1, "attachments": [{"id": 30, "content_base64": b64(b"changed")}]}]}]}),
            "submissions[0].history[0].attachments[0]: attachment 30 is stored with other content",
        ),
        (
            json!({"submissions": [{"id": 20, "assignment_id": 7, "user_id": 12, "history": [{"attempt": 3, "attachments": [{"id": 77}]}]}]}),
            "attachment 77 is not stored yet",
        ),
        (
            json!({"submissions": [{"id": 20, "assignment_id": 7, "user_id": 12, "history": [{"attempt": 3, "attachments": [{"id": 78, "path": "missing.bin"}]}]}]}),
            "submissions[0].history[0].attachments[0].path",
        ),
        (
            json!({"submissions": [{"id": 50, "assignment_id": 7, "user_id": 12}]}),
            "submissions[0].id: this user's submission to this assignment is submission 20",
        ),
        (
            json!({"submissions": [{"id": 20, "assignment_id": 7, "user_id": 12, "history": [{"attempt": 3, "attachments": [{"id": 79, "path": "../../../../etc/hostname"}]}]}]}),
            "not a readable file inside the document's directory",
        ),
        (
            json!({"submissions": [{"id": 20, "assignment_id": 7, "user_id": 12, "history": [{"attempt": 3, "attachments": [{"id": 79, "path": "/etc/hostname"}]}]}]}),
            "not a readable file inside the document's directory",
        ),
        (
            json!({"accounts": [{"id": 2, "parent_account_id": 3}, {"id": 3, "parent_account_id": 2}]}),
            "accounts[0].parent_account_id: this parent makes a loop",
        ),
        (
            json!({"submissions": [{"id": 20, "assignment_id": 7, "user_id": 12, "eula_agreement_timestamp": "yesterday"}]}),
            "submissions[0].eula_agreement_timestamp",
        ),
        (
            json!({"assignments": [{"id": 7, "course_id": 5, "due_at": "tomorrow"}]}),
            "assignments[0].due_at",
        ),
    ] {
        std::fs::write(&path, doc.to_string()).unwrap();
        let err = app.admin(&["import", path.to_str().unwrap()]).unwrap_err();
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert_eq!(app.store().submission(20).await.unwrap().unwrap(), before);

    // An attachment may be listed before the record that gives its bytes.
    let later = json!({"users": [{"id": 60, "lti_id": "u60"}], "submissions": [
        {"id": 61, "assignment_id": 9, "user_id": 60, "history": [{"attempt": 1, "attachments": [{"id": 70}]}]},
        {"id": 62, "assignment_id": 10, "user_id": 60, "history": [{"attempt": 1, "attachments": [{"id": 70, "content_base64": b64(b"shared")}]}]}
    ]});
    std::fs::write(&path, later.to_string()).unwrap();
    app.admin(&["import", path.to_str().unwrap()]).unwrap();
    assert_eq!(
        app.store()
            .submission(61)
            .await
            .unwrap()
            .unwrap()
            .current_attachments()[0]
            .id,
        70
    );

    // `lti2 admin submission create` adds attempt 3 with a new file.
    let f = dir.path().join("third.txt");
    std::fs::write(&f, b"third attempt").unwrap();
    let out = app
        .admin(&[
            "submission",
            "create",
            "--assignment",
            "7",
            "--user",
            "12",
            "--file",
            f.to_str().unwrap(),
            "--content-type",
            "text/plain",
        ])
        .unwrap();
    assert_eq!(out["attempt"], 3);
    assert_eq!(out["attachments"][0]["size"], 13);
    let s = app.store().submission(20).await.unwrap().unwrap();
    assert_eq!(s.history.len(), 3);
    assert_eq!(s.current_attachments()[0].filename, "third.txt");
}

fn walk(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_http_api() {
    const TOKEN: &str = "admin-token-0123456789abcdef0123456789";
    // Off without a token.
    let off = TestApp::spawn_self_addressed(NOW).await;
    let resp = off
        .http
        .post(format!("{}/api/admin/import", off.addr))
        .bearer_auth(TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = lti2::config::Settings::resolve(lti2::config::Overrides {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(common::database_url(dir.path())),
        data_dir: Some(dir.path().to_path_buf()),
        cache_refresh_ms: Some(0),
        admin_token: Some(TOKEN.into()),
        ..Default::default()
    })
    .unwrap();
    settings.base_urls.clear();
    let app = TestApp::spawn_with(settings, dir, lti2::clock::ManualClock::new(NOW)).await;
    let url = format!("{}/api/admin/import", app.addr);
    let post = |token: Option<&str>, body: String| {
        let mut req = app
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { TestApp::reply(req.send().await.unwrap()).await }
    };
    assert_eq!(post(None, "{}".into()).await.status, 401);
    assert_eq!(
        post(Some("wrong-token-0123456789abcdef0123456789"), "{}".into())
            .await
            .status,
        401
    );
    // Files must come as content_base64 over HTTP.
    let files_dir = tempfile::tempdir().unwrap();
    let with_paths = document(files_dir.path()).to_string();
    let r = post(Some(TOKEN), with_paths).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["errors"][0]["path"],
        "submissions[0].history[0].attachments[0].path"
    );
    let mut doc = document(files_dir.path());
    for (i, bytes) in [(0usize, DRAFT), (1, FINAL)] {
        let a = &mut doc["submissions"][0]["history"][i]["attachments"][0];
        a.as_object_mut().unwrap().remove("path");
        a["content_base64"] = json!(b64(bytes));
    }
    let r = post(Some(TOKEN), doc.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["imported"]["users"], 4);
    let s = app.store().submission(20).await.unwrap().unwrap();
    assert_eq!(s.history[1].attachments[0].size, FINAL.len() as i64);
    let r = post(Some(TOKEN), "not json".into()).await;
    assert_eq!(r.status, 400);
}

/// Text with a NUL character (`\u0000` in JSON, `%00` in a URL) wherever a tool or the
/// administrator can send text: refused with the route's own 4xx error, nothing written, on
/// both backends (PostgreSQL cannot store NUL in text; SQLite could, but the answer must not
/// depend on the backend).
#[tokio::test]
async fn nul_characters_in_text_are_refused_everywhere() {
    let lms = lms().await;
    let create = "/api/lti/assignments/7/submissions/20/originality_report";
    for (what, body) in [
        (
            "error_message",
            json!({"originality_report": {"file_id": 31, "workflow_state": "error", "error_message": "bad\u{0}byte"}}),
        ),
        (
            "originality_report_url",
            json!({"originality_report": {"file_id": 31, "originality_score": 5, "originality_report_url": "https://tool.example/\u{0}"}}),
        ),
        (
            "tool_setting resource_url",
            json!({"originality_report": {"file_id": 31, "originality_score": 5, "tool_setting": {"resource_type_code": "x\u{0}", "resource_url": "https://t.example/\u{0}"}}}),
        ),
    ] {
        let r = lms.post(create, body).await;
        assert!(
            (400..500).contains(&r.status),
            "{what}: a 4xx, not {}: {}",
            r.status,
            r.text
        );
    }
    // Nothing was written: the file has no report yet.
    let r = lms
        .get("/api/lti/assignments/7/files/31/originality_report")
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    // Ids in paths.
    for path in [
        "/api/lti/users/user-lti%0012",
        "/api/lti/tool_proxy/tool%001",
        "/api/lti/subscriptions/a%00b",
    ] {
        let r = lms.get(path).await;
        assert!(
            (400..500).contains(&r.status),
            "{path}: a 4xx, not {}: {}",
            r.status,
            r.text
        );
    }

    // A subscription whose fields carry NUL.
    let r = lms
        .post(
            "/api/lti/subscriptions",
            json!({"subscription": {"ContextType": "root_account", "ContextId": "x\u{0}", "EventTypes": ["submission_created"], "Format": "live-event", "TransportType": "https", "TransportMetadata": {"Url": "https://hooks.example/\u{0}"}}}),
        )
        .await;
    assert!(
        (400..500).contains(&r.status),
        "subscription: {}: {}",
        r.status,
        r.text
    );

    // The admin import names the field.
    let docs = tempfile::tempdir().unwrap();
    let path = docs.path().join("nul.json");
    std::fs::write(
        &path,
        json!({"users": [{"id": 77, "lti_id": "u77", "name": "Ann\u{0}"}]}).to_string(),
    )
    .unwrap();
    let err = lms
        .app
        .admin(&["import", path.to_str().unwrap()])
        .unwrap_err();
    assert!(err.contains("users[0].name"), "{err}");
}

/// `lti2 admin submission create` run many times at once (as from several hosts): every run
/// gets ids of its own, so no student's submission is handed to another and no attempt is
/// overwritten. And an import that gives an existing submission another user is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submission_creates_never_share_ids() {
    let lms = lms().await;
    let files = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for user in [12, 13, 14, 15] {
        for round in 0..2 {
            let f = files.path().join(format!("u{user}-r{round}.txt"));
            std::fs::write(&f, format!("essay of user {user}, round {round}")).unwrap();
            let db = lms.app.database_url();
            let data = lms.app.dir.path().display().to_string();
            runs.push(std::thread::spawn(move || {
                common::process::admin(
                    &db,
                    &data,
                    &[
                        "submission",
                        "create",
                        "--assignment",
                        "9",
                        "--user",
                        &user.to_string(),
                        "--file",
                        f.to_str().unwrap(),
                    ],
                )
            }));
        }
    }
    let outs: Vec<Value> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    let mut by_user = std::collections::HashMap::<i64, Vec<i64>>::new();
    for out in &outs {
        assert_eq!(out["assignment_id"], 9, "{out}");
        by_user
            .entry(out["user_id"].as_i64().unwrap())
            .or_default()
            .push(out["submission_id"].as_i64().unwrap());
    }
    let mut ids: Vec<i64> = Vec::new();
    for (user, subs) in &by_user {
        assert_eq!(subs.len(), 2, "user {user}");
        assert_eq!(subs[0], subs[1], "one submission per user: {subs:?}");
        let sub = lms.app.store().submission(subs[0]).await.unwrap().unwrap();
        assert_eq!((sub.assignment_id, sub.user_id), (9, *user));
        let mut attempts: Vec<i64> = sub.history.iter().map(|v| v.attempt).collect();
        attempts.sort();
        assert_eq!(attempts, vec![1, 2], "user {user}: both attempts kept");
        ids.push(subs[0]);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "four distinct submissions");

    // An import that would hand submission 20 (user 12's) to user 14 is refused, by path.
    let docs = tempfile::tempdir().unwrap();
    let path = docs.path().join("steal.json");
    std::fs::write(
        &path,
        json!({"submissions": [{"id": 20, "assignment_id": 7, "user_id": 14, "history": []}]})
            .to_string(),
    )
    .unwrap();
    let err = lms
        .app
        .admin(&["import", path.to_str().unwrap()])
        .unwrap_err();
    assert!(
        err.contains("submissions[0].id") && err.contains("never change"),
        "{err}"
    );
    let s20 = lms.app.store().submission(20).await.unwrap().unwrap();
    assert_eq!(s20.user_id, 12);
}

/// Identifiers the stores key records by are at most 255 characters, refused by path (a 4xx
/// or a console error, never a database error, on either backend); 255 is accepted.
#[tokio::test]
async fn long_identifiers_are_refused_by_path() {
    let lms = lms().await;
    let docs = tempfile::tempdir().unwrap();
    let long = "x".repeat(256);
    for (what, doc) in [
        (
            "users[0].lti_id",
            json!({"users": [{"id": 90, "lti_id": long, "name": "L"}]}),
        ),
        (
            "users[0].past_lti_ids[0]",
            json!({"users": [{"id": 90, "lti_id": "u90", "past_lti_ids": [long], "name": "L"}]}),
        ),
        (
            "courses[0].lti_id",
            json!({"courses": [{"id": 90, "account_id": 1, "name": "C", "lti_id": long}]}),
        ),
        (
            "assignments[0].lti_id",
            json!({"assignments": [{"id": 90, "course_id": 5, "name": "A", "lti_id": long}]}),
        ),
        (
            "assignments[0].plagiarism_tool.vendor_code",
            json!({"assignments": [{"id": 90, "course_id": 5, "name": "A", "plagiarism_tool": {"vendor_code": long, "product_code": "p", "resource_type_code": "r"}}]}),
        ),
    ] {
        let path = docs.path().join("long.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        let err = lms
            .app
            .admin(&["import", path.to_str().unwrap()])
            .unwrap_err();
        assert!(
            err.contains(what) && err.contains("at most 255"),
            "{what}: {err}"
        );
    }
    let path = docs.path().join("ok.json");
    std::fs::write(
        &path,
        json!({"users": [{"id": 90, "lti_id": "y".repeat(255), "name": "L"}]}).to_string(),
    )
    .unwrap();
    lms.app.admin(&["import", path.to_str().unwrap()]).unwrap();
    let guid_args = [
        "tool-proxy",
        "create",
        "--guid",
        &long,
        "--secret",
        "s3cret-0123456789abcdef0123456789ab",
    ];
    let reg_args = [
        "registration",
        "create",
        "--course",
        "5",
        "--reg-key",
        &long,
        "--reg-password",
        "pw-0123456789abcdef0123456789abcdef",
    ];
    for args in [&guid_args[..], &reg_args[..]] {
        let err = lms.app.admin(args).unwrap_err();
        assert!(err.contains("at most 255"), "{args:?}: {err}");
    }
}
