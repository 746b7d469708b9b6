//! The `lti2` binary: `admin` commands on a live server's database, `token` against a spawned
//! server for both grant types, and `jwt decode|verify`.
//!
//! `lti2 token` is a separate process that signs with the system clock, so the server's manual
//! clock is set to the system time once at the start of those tests (no sleeping).

mod common;

use std::process::{Command, Output};

use common::{claims_of, TestApp};
use lti2::clock::Clock;
use serde_json::Value;

const BASE: &str = "https://lms.example.edu";

fn lti2(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lti2"))
        .args(args)
        .env_remove("LTI2_MASTER_KEY")
        .output()
        .expect("lti2 runs")
}

fn json_out(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "lti2 failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn admin(app: &TestApp, args: &[&str]) -> Output {
    let db = app.database_url();
    let dir = app.dir.path().display().to_string();
    let mut all = vec!["admin", "--database-url", &db, "--data-dir", &dir];
    all.extend_from_slice(args);
    lti2(&all)
}

async fn live_app() -> TestApp {
    TestApp::spawn(BASE, lti2::clock::SystemClock.now()).await
}

#[tokio::test]
async fn admin_commands_work_on_the_live_database() {
    let app = live_app().await;
    json_out(&admin(
        &app,
        &[
            "account", "create", "--id", "2", "--name", "Sub", "--parent", "1",
        ],
    ));
    json_out(&admin(
        &app,
        &["course", "create", "--id", "3", "--account", "2"],
    ));
    assert!(
        !admin(&app, &["course", "create", "--id", "4", "--account", "99"])
            .status
            .success(),
        "unknown account"
    );
    assert!(
        !admin(&app, &["account", "create", "--id", "2"])
            .status
            .success(),
        "duplicate account"
    );
    assert!(
        !admin(&app, &["account", "create", "--id", "0"])
            .status
            .success(),
        "ids are positive"
    );

    let dk = json_out(&admin(
        &app,
        &["developer-key", "create", "--name", "vendor"],
    ));
    let secret = dk["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.len() >= 64,
        "generated secrets are 32 random bytes in hex"
    );
    assert_eq!(dk["id"], 10000000000001u64);
    let list = admin(&app, &["developer-key", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        listed.contains("10000000000001") && !listed.contains(&secret),
        "secrets are never printed again"
    );
    assert!(
        !admin(&app, &["developer-key", "create", "--secret", "short"])
            .status
            .success()
    );
    json_out(&admin(
        &app,
        &[
            "developer-key",
            "create",
            "--id",
            "10000000000003",
            "--secret",
            "short",
            "--allow-short-secret",
        ],
    ));
    json_out(&admin(
        &app,
        &["developer-key", "deactivate", "10000000000003"],
    ));
    let keys = json_out(&admin(&app, &["developer-key", "list"]));
    assert_eq!(keys[1]["workflow_state"], "inactive");

    let tp = json_out(&admin(
        &app,
        &[
            "tool-proxy",
            "create",
            "--guid",
            "tp-cli",
            "--secret",
            "s3cret-0123456789abcdef0123456789",
            "--service",
            "vnd.Canvas.OriginalityReport=get,post",
            "--state",
            "disabled",
        ],
    ));
    assert_eq!(
        tp["enabled_capability"],
        serde_json::json!(["Security.splitSecret"])
    );
    assert_eq!(
        tp["tool_service"][0]["action"],
        serde_json::json!(["GET", "POST"])
    );
    json_out(&admin(
        &app,
        &["tool-proxy", "set-state", "tp-cli", "active"],
    ));
    let tps = json_out(&admin(&app, &["tool-proxy", "list"]));
    assert_eq!(tps[0]["workflow_state"], "active");
    assert!(
        !String::from_utf8_lossy(&admin(&app, &["tool-proxy", "list"]).stdout).contains("s3cret")
    );
    assert!(!admin(&app, &["tool-proxy", "set-state", "nope", "active"])
        .status
        .success());

    json_out(&admin(
        &app,
        &[
            "registration",
            "create",
            "--course",
            "3",
            "--reg-key",
            "rk-1",
            "--reg-password",
            "pw-0123456789abcdef0123456789abcdef",
        ],
    ));
    assert!(!admin(
        &app,
        &[
            "registration",
            "create",
            "--course",
            "42",
            "--reg-key",
            "rk-2",
            "--reg-password",
            "pw-0123456789abcdef0123456789abcdef"
        ]
    )
    .status
    .success());

    let rotated = json_out(&admin(&app, &["signing-key", "rotate"]));
    let keys = json_out(&admin(&app, &["signing-key", "list"]));
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert_eq!(keys[0]["kid"], rotated["kid"]);
    assert_eq!(keys[0]["active"], true);
    let old = keys[1]["kid"].as_str().unwrap();
    json_out(&admin(&app, &["signing-key", "remove", old]));
    assert!(
        !admin(
            &app,
            &["signing-key", "remove", rotated["kid"].as_str().unwrap()]
        )
        .status
        .success(),
        "last key stays"
    );

    // Secrets are encrypted at rest: none of them appears in the database files.
    let mut raw = Vec::new();
    if common::postgres() {
        let dump = Command::new("pg_dump")
            .args(["--data-only", &app.database_url()])
            .output()
            .expect("pg_dump runs");
        assert!(
            dump.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&dump.stderr)
        );
        raw = dump.stdout;
        assert!(!raw.is_empty());
    }
    for f in ["lti2.db", "lti2.db-wal"] {
        raw.extend(std::fs::read(app.dir.path().join(f)).unwrap_or_default());
    }
    for s in [
        secret.as_bytes(),
        b"s3cret-0123456789abcdef0123456789".as_slice(),
        b"pw-0123456789abcdef0123456789abcdef".as_slice(),
    ] {
        assert!(
            !raw.windows(s.len()).any(|w| w == s),
            "a secret is stored in clear"
        );
        // pg_dump prints bytea in hex.
        let h = hex::encode(s).into_bytes();
        assert!(
            !raw.windows(h.len()).any(|w| w == h.as_slice()),
            "a secret is stored in clear (hex)"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(app.dir.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

// Multi-threaded: the blocking `lti2 token` child process waits on this process's server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_command_gets_tokens_for_both_grant_types() {
    // No base URL configured: the default is http:// + the bound address, which is what the
    // CLI posts to and puts in aud.
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut settings = common::settings_for(dir.path(), "http://unused.example");
    settings.base_urls = vec![];
    let app = TestApp::spawn_with(
        settings,
        dir,
        lti2::clock::ManualClock::new(lti2::clock::SystemClock.now()),
    )
    .await;
    let url = format!("{}/api/lti/accounts/1/authorize", app.addr);
    assert_eq!(app.public_base, app.addr);
    json_out(&admin(
        &app,
        &[
            "tool-proxy",
            "create",
            "--guid",
            "tp-cli",
            "--secret",
            "s3cret-0123456789abcdef0123456789",
        ],
    ));
    let dk = json_out(&admin(&app, &["developer-key", "create"]));
    let dk_id = dk["id"].to_string();
    let dk_secret = dk["secret"].as_str().unwrap();

    let out = lti2(&[
        "token",
        "--url",
        &url,
        "--sub",
        "tp-cli",
        "--secret",
        "s3cret-0123456789abcdef0123456789",
    ]);
    let resp = json_out(&out);
    assert_eq!(resp["token_type"], "bearer");
    assert_eq!(
        claims_of(resp["access_token"].as_str().unwrap())["sub"],
        "tp-cli"
    );

    let out = lti2(&[
        "token",
        "--url",
        &url,
        "--sub",
        "tp-cli",
        "--secret",
        "s3cret-0123456789abcdef0123456789",
        "--multipart",
    ]);
    json_out(&out);

    let out = lti2(&[
        "token",
        "--url",
        &url,
        "--sub",
        &dk_id,
        "--secret",
        dk_secret,
        "--code",
        "reg-key-9",
        "--multipart",
    ]);
    let resp = json_out(&out);
    let claims = claims_of(resp["access_token"].as_str().unwrap());
    assert!(
        claims["sub"].is_u64(),
        "developer key sub is a JSON integer"
    );
    assert_eq!(claims["reg_key"], "reg-key-9");

    let out = lti2(&[
        "token",
        "--url",
        &url,
        "--sub",
        &dk_id,
        "--secret",
        dk_secret,
        "--code",
        "reg-key-9",
        "--grant",
        "jwt-bearer",
        "--string-sub",
    ]);
    json_out(&out);

    // A refusal exits non-zero and shows the error.
    let out = lti2(&[
        "token",
        "--url",
        &url,
        "--sub",
        "tp-cli",
        "--secret",
        "wrong-secret",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid_grant") && err.contains("400"),
        "{err}"
    );
    let out = lti2(&[
        "token", "--url", &url, "--sub", &dk_id, "--secret", dk_secret,
    ]);
    assert_eq!(out.status.code(), Some(1), "developer key without --code");
}

#[test]
fn jwt_verify_checks_the_hmac() {
    let t = common::sign(&serde_json::json!({"sub": "x"}), b"right");
    let ok = lti2(&["jwt", "verify", &t, "--secret", "right"]);
    assert!(ok.status.success());
    assert_eq!(json_out(&ok)["valid"], true);
    let bad = lti2(&["jwt", "verify", &t, "--secret", "wrong"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(!lti2(&["jwt", "decode", "not-a-jwt"]).status.success());
}

#[tokio::test]
async fn a_closed_stdout_pipe_is_not_a_crash() {
    let app = live_app().await;
    let db = app.database_url();
    let dir = app.dir.path().display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lti2"))
        .args([
            "admin",
            "--database-url",
            &db,
            "--data-dir",
            &dir,
            "signing-key",
            "list",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // like `| head -0`
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
}

#[tokio::test]
async fn the_active_signing_key_cannot_be_removed() {
    let app = live_app().await;
    let rotated = json_out(&admin(&app, &["signing-key", "rotate"]));
    let kid = rotated["kid"].as_str().unwrap();
    let out = admin(&app, &["signing-key", "remove", kid]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rotate first"));
}

#[tokio::test]
async fn registration_start_prints_the_launch_and_stores_the_registration() {
    let app = live_app().await;
    json_out(&admin(
        &app,
        &["course", "create", "--id", "5", "--account", "1"],
    ));
    let out = json_out(&admin(
        &app,
        &[
            "registration",
            "start",
            "--course",
            "5",
            "--tool-url",
            "https://tool.example/register",
            "--base-url",
            "https://LMS.example.edu:443",
        ],
    ));
    let p = &out["launch_params"];
    let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "lti_message_type",
        "lti_version",
        "reg_key",
        "reg_password",
        "tool_proxy_guid",
        "tool_proxy_url",
        "tc_profile_url",
        "oauth2_access_token_url",
        "launch_presentation_return_url",
        "launch_presentation_document_target",
        "ext_tool_consumer_instance_guid",
        "ext_api_domain",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert_eq!(p["lti_message_type"], "ToolProxyRegistrationRequest");
    assert_eq!(p["lti_version"], "LTI-2p0");
    assert_eq!(p["tool_proxy_guid"], p["reg_key"]);
    assert_eq!(
        p["oauth2_access_token_url"],
        "https://lms.example.edu/api/lti/courses/5/authorize"
    );
    assert_eq!(
        p["tc_profile_url"],
        "https://lms.example.edu/api/lti/courses/5/tool_consumer_profile"
    );
    assert_eq!(p["ext_api_domain"], "lms.example.edu");
    let root = app
        .store()
        .root_account(lti2::store::ContextRef {
            kind: lti2::store::ContextKind::Course,
            id: 5,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p["ext_tool_consumer_instance_guid"], root.uuid);
    let reg = app
        .store()
        .registration(p["reg_key"].as_str().unwrap())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        reg.reg_password.expose(),
        p["reg_password"].as_str().unwrap().as_bytes()
    );
    assert_eq!(reg.context.id, 5);
    assert_eq!(reg.expires_at, out["expires_at"].as_i64().unwrap());
    assert_eq!(
        reg.tool_url.as_deref(),
        Some("https://tool.example/register")
    );
    assert!(reg.consumed_at.is_none());

    // --html: an auto-submitting form to the tool, every parameter escaped.
    let html = admin(
        &app,
        &[
            "registration",
            "start",
            "--account",
            "1",
            "--tool-url",
            "https://tool.example/register?a=1&b=2",
            "--html",
        ],
    );
    assert!(html.status.success());
    let page = String::from_utf8(html.stdout).unwrap();
    assert!(
        page.contains("<form method=\"post\" action=\"https://tool.example/register?a=1&amp;b=2\"")
    );
    assert!(page.contains("name=\"lti_message_type\" value=\"ToolProxyRegistrationRequest\""));
    assert!(page.contains("document.forms[0].submit()"));
    // Without --base-url or a configured one: the default listen address.
    assert!(page.contains("value=\"http://127.0.0.1:3000/api/lti/accounts/1/authorize\""));

    // Refusals: a tool URL that is not http(s); an unknown context; both contexts.
    for (args, needle) in [
        (
            vec!["--course", "5", "--tool-url", "javascript:alert(1)"],
            "http",
        ),
        (
            vec!["--course", "5", "--tool-url", "ftp://tool.example/"],
            "http",
        ),
        (
            vec!["--course", "77", "--tool-url", "https://tool.example/"],
            "course 77",
        ),
        (
            vec![
                "--course",
                "5",
                "--account",
                "1",
                "--tool-url",
                "https://t.example/",
            ],
            "cannot be used with",
        ),
    ] {
        let mut all = vec!["registration", "start"];
        all.extend(args);
        let out = admin(&app, &all);
        assert!(!out.status.success(), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{all:?}: {err}");
    }
}

#[tokio::test]
async fn custom_tool_consumer_profiles_and_vendor_codes() {
    let app = live_app().await;
    let key = json_out(&admin(
        &app,
        &["developer-key", "create", "--vendor-code", "acme.example"],
    ));
    assert_eq!(key["vendor_code"], "acme.example");
    let id = key["id"].as_i64().unwrap();
    assert_eq!(
        app.store()
            .developer_keys_with_vendor_code("acme.example")
            .await
            .unwrap(),
        vec![id]
    );
    let id_s = id.to_string();
    let tcp = json_out(&admin(
        &app,
        &[
            "tcp",
            "create",
            "--developer-key",
            &id_s,
            "--uuid",
            "custom-1",
            "--service",
            "vnd.Canvas.OriginalityReport",
            "--capability",
            "Canvas.placements.similarityDetection",
        ],
    ));
    assert_eq!(tcp["uuid"], "custom-1");
    assert_eq!(
        tcp["services"],
        serde_json::json!(["vnd.Canvas.OriginalityReport"])
    );
    let stored = app
        .store()
        .tool_consumer_profile_for_developer_key(id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.capabilities,
        vec!["Canvas.placements.similarityDetection"]
    );
    let list = json_out(&admin(&app, &["tcp", "list"]));
    assert_eq!(list.as_array().unwrap().len(), 1);

    // One profile per key; only restricted items; the key must exist.
    for (args, needle) in [
        (vec!["--developer-key", id_s.as_str()], "already exists"),
        (
            vec!["--developer-key", "42", "--service", "vnd.Canvas.User"],
            "developer key 42",
        ),
        (
            vec![
                "--developer-key",
                id_s.as_str(),
                "--service",
                "ToolProxy.item",
            ],
            "not a restricted service",
        ),
        (
            vec![
                "--developer-key",
                id_s.as_str(),
                "--capability",
                "basic-lti-launch-request",
            ],
            "not a restricted capability",
        ),
    ] {
        let mut all = vec!["tcp", "create"];
        all.extend(args);
        let out = admin(&app, &all);
        assert!(!out.status.success(), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{all:?}: {err}");
    }
    // Accepting a tool proxy that does not exist is an error, not a silent no-op.
    let out = admin(&app, &["tool-proxy", "accept", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tool proxy nope"));
}
