//! Every case of `tests/vectors/seed-jwts.json` (a copy of shared/vectors/seed-jwts.json):
//! C01–C16 through real HTTP with the clock at the case's `now`, C17–C19 through the library
//! function that verifies access tokens, C20 through `lti2 jwt decode`.

mod common;

use common::{claims_of, sign, TestApp};
use lti2::access_token::{KeyRing, SigningKey};
use lti2::store::ToolService;
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/seed-jwts.json")).unwrap()
}

fn case<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
}

fn token(v: &Value, name: &str) -> String {
    if let Some(t) = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == name)
    {
        return t["jwt"].as_str().unwrap().to_owned();
    }
    // "A1 with 'Iat' renamed to 'iat', re-signed HS256 with 'secret'" (C14; C15 is "as C14").
    assert!(
        name.starts_with("A1 with 'Iat' renamed") || name == "as C14",
        "unknown token {name}"
    );
    let a1 = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "A1-devkey-assertion-Iat-typo")
        .unwrap();
    let mut p = a1["payload"].as_object().unwrap().clone();
    let iat = p.remove("Iat").unwrap();
    p.insert("iat".into(), iat);
    sign(&Value::Object(p), b"secret")
}

/// The setup object of a case, following "as CXX" references.
fn setup<'a>(v: &'a Value, c: &'a Value) -> &'a Value {
    match c["setup"].as_str() {
        Some(s) if s.starts_with("as ") => {
            let id = s[3..].split([',', ' ']).next().unwrap();
            setup(v, case(v, id))
        }
        _ => &c["setup"],
    }
}

async fn app_for(v: &Value, c: &Value) -> TestApp {
    let s = setup(v, c);
    let now = c["request"]["now"].as_i64().unwrap();
    let app = TestApp::spawn(s["base_url"].as_str().unwrap(), now).await;
    for tp in s["tool_proxies"].as_array().into_iter().flatten() {
        let caps: Vec<&str> = tp["enabled_capability"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        app.tool_proxy_with(
            tp["guid"].as_str().unwrap(),
            tp["shared_secret"].as_str().unwrap(),
            tp["workflow_state"].as_str().unwrap(),
            &caps,
            Vec::<ToolService>::new(),
            None,
        )
        .await;
    }
    for dk in s["developer_keys"].as_array().into_iter().flatten() {
        app.developer_key(
            dk["global_id"].as_i64().unwrap(),
            dk["api_key"].as_str().unwrap(),
        )
        .await;
    }
    app
}

async fn send(app: &TestApp, v: &Value, c: &Value) -> common::Reply {
    let r = &c["request"];
    app.clock.set(r["now"].as_i64().unwrap());
    let assertion = token(v, c["token"].as_str().unwrap());
    let mut pairs: Vec<(&str, &str)> = r["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    pairs.push(("assertion", &assertion));
    let path = r["path"].as_str().unwrap();
    match r["body"].as_str().unwrap() {
        "form" => app.post_form(path, &pairs).await,
        "multipart" => app.post_multipart(path, &pairs).await,
        other => panic!("body kind {other}"),
    }
}

fn check(c: &Value, reply: &common::Reply) {
    let id = c["id"].as_str().unwrap();
    let e = &c["expect"];
    assert_eq!(
        reply.status as i64,
        e["status"].as_i64().unwrap(),
        "{id}: {}",
        reply.text
    );
    for (k, want) in e["json"].as_object().into_iter().flatten() {
        assert_eq!(&reply.json[k], want, "{id}: body member {k}");
    }
    if reply.status == 200 {
        assert_eq!(reply.headers["cache-control"], "no-store", "{id}");
    } else {
        assert!(
            reply.json["error_description"].is_string(),
            "{id}: errors carry a description"
        );
    }
    if let Some(want) = e["access_token_claims"].as_object() {
        let claims = claims_of(reply.json["access_token"].as_str().unwrap());
        for (k, w) in want {
            match k.as_str() {
                "aud_contains" => assert!(
                    claims["aud"].as_array().unwrap().contains(w),
                    "{id}: aud {:?}",
                    claims["aud"]
                ),
                "jti" => assert_eq!(
                    uuid::Uuid::parse_str(claims["jti"].as_str().unwrap())
                        .unwrap()
                        .get_version_num(),
                    4
                ),
                _ => assert_eq!(&claims[k], w, "{id}: claim {k}"),
            }
        }
    }
}

#[tokio::test]
async fn authorize_cases_c01_to_c16() {
    let v = vectors();
    for id in [
        "C01", "C03", "C04", "C05", "C06", "C07", "C08", "C09", "C10", "C11", "C12", "C13", "C14",
        "C15", "C16",
    ] {
        let c = case(&v, id);
        let app = app_for(&v, c).await;
        if id == "C08" {
            // The case posts to account 2: it must exist, or the answer is a 404.
            app.store()
                .create_account(2, "Second", None, 0)
                .await
                .unwrap();
        }
        let reply = send(&app, &v, c).await;
        check(c, &reply);
        app.running.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn c02_replay_after_c01() {
    let v = vectors();
    let c01 = case(&v, "C01");
    let c02 = case(&v, "C02");
    let app = app_for(&v, c01).await;
    check(c01, &send(&app, &v, c01).await);
    let replay = send(&app, &v, c02).await;
    check(c02, &replay);
    assert_eq!(replay.description(), "the 'jti' is invalid");
}

#[tokio::test]
async fn c13_names_the_missing_iat_after_the_signature_verifies() {
    let v = vectors();
    let c = case(&v, "C13");
    let app = app_for(&v, c).await;
    let reply = send(&app, &v, c).await;
    assert_eq!(reply.description(), "the following claims are missing: iat");
}

fn seed_ring() -> KeyRing {
    KeyRing::new(vec![SigningKey::new("seed", b"secret".to_vec())]).unwrap()
}

#[test]
fn bearer_cases_c17_to_c19_through_the_library() {
    let v = vectors();
    for id in ["C17", "C18", "C19"] {
        let c = case(&v, id);
        let t = token(&v, c["token"].as_str().unwrap());
        let r = &c["request"];
        let result = seed_ring().verify(
            &t,
            "Canvas",
            r["host"].as_str().unwrap(),
            r["now"].as_i64().unwrap(),
        );
        assert_eq!(
            result.is_ok(),
            c["expect"]["accepted"].as_bool().unwrap(),
            "{id}: {result:?}"
        );
    }
}

#[test]
fn c20_decode_keeps_integer_sub() {
    let v = vectors();
    let t = token(&v, "T1-devkey-access-token");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lti2"))
        .args(["jwt", "decode", &t])
        .output()
        .unwrap();
    assert!(out.status.success());
    let decoded: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        decoded["claims"]["sub"],
        serde_json::json!(10000000000003u64)
    );
    assert!(decoded["claims"]["sub"].is_u64());
    assert_eq!(
        decoded["claims"]["reg_key"],
        "9359e0cd-6a69-4ca9-91b6-162cf0711a5b"
    );
    assert_eq!(decoded["header"]["alg"], "HS256");
    assert_eq!(decoded["signature"], "not verified");
}
