//! The bearer gate through real HTTP: rows Y01–Y08 of `bad-inputs.md` and cases C17–C19 of
//! `seed-jwts.json`. Guarded routes used: `GET /api/lti/tool_proxy/{guid}` (`ToolProxy.item`,
//! answers `{"error":"unauthorized"}`) and a probe route guarded as a plagiarism API
//! (`vnd.Canvas.OriginalityReport`, the standard 401 body).

mod common;

use common::{sign, spawn_probe, Reply, TestApp};
use lti2::access_token::{KeyRing, MintRequest, SigningKey};
use lti2::assertion::Subject;
use lti2::store::ToolService;
use serde_json::{json, Value};

const NOW: i64 = 1_700_000_000;
const BASE: &str = "https://lms.example.edu";
const HOST: &str = "lms.example.edu";
const SECRET: &str = "tool-proxy-shared-secret-0123456789abcdef";

fn services(list: &[(&str, &[&str])]) -> Vec<ToolService> {
    list.iter()
        .map(|(s, a)| ToolService {
            service: s.to_string(),
            action: a.iter().map(|x| x.to_string()).collect(),
        })
        .collect()
}

fn full_contract() -> Vec<ToolService> {
    services(&[
        ("ToolProxy.item", &["GET"]),
        (
            "https://lms.example.edu/api/lti/accounts/1/tool_consumer_profile/u#vnd.Canvas.OriginalityReport",
            &["get", "POST", "PUT"],
        ),
    ])
}

/// A tool proxy with `contract`, and an access token for it from the authorize endpoint.
async fn proxy_token(app: &TestApp, guid: &str, contract: Vec<ToolService>) -> String {
    app.tool_proxy_with(
        guid,
        SECRET,
        "active",
        &["Security.splitSecret"],
        contract,
        None,
    )
    .await;
    token_for(app, guid, SECRET, None).await
}

async fn token_for(app: &TestApp, sub: &str, secret: &str, code: Option<&str>) -> String {
    let aud = app.aud("/api/lti/accounts/1/authorize");
    let sub_json: Value = match sub.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(sub),
    };
    let assertion = sign(
        &json!({"sub": sub_json, "aud": aud, "exp": app.now() + 60, "iat": app.now(), "jti": uuid::Uuid::new_v4().to_string()}),
        secret.as_bytes(),
    );
    let mut form = vec![
        ("grant_type", lti2::authority::JWT_BEARER),
        ("assertion", assertion.as_str()),
    ];
    if let Some(c) = code {
        form[0].1 = lti2::authority::AUTHORIZATION_CODE;
        form.push(("code", c));
    }
    let r = app.post_form("/api/lti/accounts/1/authorize", &form).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["access_token"].as_str().unwrap().to_string()
}

fn assert_unauthorized(r: &Reply, body: Value, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text);
    assert_eq!(r.json, body, "{what}");
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"lti2\""),
        "{what}: {challenge}"
    );
}

fn standard() -> Value {
    json!({"status":"unauthenticated","errors":[{"message":"user authorization required"}]})
}

fn helper() -> Value {
    json!({"error":"unauthorized"})
}

#[tokio::test]
async fn y01_bearer_scheme_in_any_case_and_with_extra_spaces() {
    let app = TestApp::spawn(BASE, NOW).await;
    let token = proxy_token(&app, "tp-1", full_contract()).await;
    let url = format!("{}/api/lti/tool_proxy/tp-1", app.addr);
    for scheme in ["Bearer ", "bearer ", "BEARER ", "Bearer  ", "bEaReR "] {
        let r = app
            .get_with(
                &url,
                HOST,
                &[("authorization", &format!("{scheme}{token}"))],
            )
            .await;
        assert_eq!(r.status, 200, "{scheme:?}: {}", r.text);
        assert_eq!(
            r.headers["content-type"],
            "application/vnd.ims.lti.v2.toolproxy+json"
        );
        assert_eq!(r.json["tool_proxy_guid"], "tp-1");
    }
}

#[tokio::test]
async fn y02_no_token_or_another_scheme_is_401_with_a_challenge() {
    let app = TestApp::spawn(BASE, NOW).await;
    let token = proxy_token(&app, "tp-1", full_contract()).await;
    let probe = spawn_probe(app.running.authority.clone()).await;
    let url = format!("{}/api/lti/tool_proxy/tp-1", app.addr);
    let basic = format!("Basic {token}");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("Bearer with no token", vec![("authorization", "Bearer")]),
        ("Bearer and a space", vec![("authorization", "Bearer ")]),
        ("Basic", vec![("authorization", basic.as_str())]),
        ("nothing", vec![]),
    ];
    for (what, headers) in &cases {
        let r = app.get_with(&url, HOST, headers).await;
        assert_unauthorized(&r, helper(), what);
        let r = app.get_with(&format!("{probe}/probe"), HOST, headers).await;
        assert_unauthorized(&r, standard(), what);
    }
    // Without any token the challenge carries no error code (RFC 6750 §3.1); with a bad one it
    // says invalid_token.
    let r = app.get_with(&url, HOST, &[]).await;
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"lti2\"");
    let r = app
        .get_with(&url, HOST, &[("authorization", "Bearer not.a.token")])
        .await;
    assert_eq!(
        r.headers["www-authenticate"],
        "Bearer realm=\"lti2\", error=\"invalid_token\""
    );
}

#[tokio::test]
async fn y03_token_in_the_access_token_query_or_form_parameter() {
    let app = TestApp::spawn(BASE, NOW).await;
    let token = proxy_token(&app, "tp-1", full_contract()).await;
    let probe = spawn_probe(app.running.authority.clone()).await;
    let r = app
        .get_with(
            &format!("{}/api/lti/tool_proxy/tp-1?access_token={token}", app.addr),
            HOST,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .get_with(&format!("{probe}/probe?access_token={token}"), HOST, &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["sub"], "tp-1");
    // Form body, with another Authorization scheme beside it (Canvas falls back to the param).
    let resp = app
        .http
        .post(format!("{probe}/probe"))
        .header("host", HOST)
        .header("authorization", "Basic dXNlcjpwYXNz")
        .form(&[("access_token", token.as_str())])
        .send()
        .await
        .unwrap();
    let r = TestApp::reply(resp).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn y04_a_retired_key_verifies_until_it_is_removed() {
    let app = TestApp::spawn(BASE, NOW).await;
    let token = proxy_token(&app, "tp-1", full_contract()).await;
    let old_kid = lti2::jose::decode_unchecked(&token).unwrap().0["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("{}/api/lti/tool_proxy/tp-1", app.addr);
    let bearer = format!("Bearer {token}");
    app.store()
        .add_signing_key(&lti2::authority::new_signing_key(), NOW)
        .await
        .unwrap();
    let r = app
        .get_with(&url, HOST, &[("authorization", &bearer)])
        .await;
    assert_eq!(r.status, 200, "retired but still in the ring: {}", r.text);
    let fresh = token_for(&app, "tp-1", SECRET, None).await;
    let new_kid = lti2::jose::decode_unchecked(&fresh).unwrap().0["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_kid, old_kid, "new tokens are signed by the new key");
    app.store().remove_signing_key(&old_kid).await.unwrap();
    let r = app
        .get_with(&url, HOST, &[("authorization", &bearer)])
        .await;
    assert_unauthorized(&r, helper(), "removed key");
    let r = app
        .get_with(&url, HOST, &[("authorization", &format!("Bearer {fresh}"))])
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn y05_aud_must_contain_the_host_judged_against_the_configured_base_url() {
    let app = TestApp::spawn(BASE, NOW).await;
    let token = proxy_token(&app, "tp-1", full_contract()).await;
    let probe = spawn_probe(app.running.authority.clone()).await;
    let url = format!("{probe}/probe");
    let bearer = format!("Bearer {token}");
    // Addressed to a host that is not configured: refused, whatever X-Forwarded-Host says.
    for (host, fwd) in [
        ("evil.example", None),
        ("127.0.0.1", None),
        ("evil.example", Some(HOST)),
    ] {
        let mut headers = vec![("authorization", bearer.as_str())];
        if let Some(f) = fwd {
            headers.push(("x-forwarded-host", f));
        }
        let r = app.get_with(&url, host, &headers).await;
        assert_unauthorized(&r, standard(), host);
    }
    // The configured host, with a port and in upper case, is the same host.
    for host in [HOST, "LMS.example.edu", "lms.example.edu:443"] {
        let r = app
            .get_with(&url, host, &[("authorization", bearer.as_str())])
            .await;
        assert_eq!(r.status, 200, "{host}: {}", r.text);
    }
    // A token signed by the platform's own key whose aud names another host.
    let keys = app.store().signing_keys().await.unwrap();
    let ring = KeyRing::new(keys).unwrap();
    let other = ring.mint(&MintRequest {
        sub: &Subject::Str("tp-1".into()),
        reg_key: "tp-1",
        aud: &["other.example".to_string()],
        iss: "Canvas",
        now: NOW,
        lifetime: 3600,
    });
    let r = app
        .get_with(&url, HOST, &[("authorization", &format!("Bearer {other}"))])
        .await;
    assert_unauthorized(&r, standard(), "aud of another host");
    // And one with another issuer.
    let wrong_iss = ring.mint(&MintRequest {
        sub: &Subject::Str("tp-1".into()),
        reg_key: "tp-1",
        aud: &[HOST.to_string()],
        iss: "Somebody",
        now: NOW,
        lifetime: 3600,
    });
    let r = app
        .get_with(
            &url,
            HOST,
            &[("authorization", &format!("Bearer {wrong_iss}"))],
        )
        .await;
    assert_unauthorized(&r, standard(), "iss");
}

#[tokio::test]
async fn y06_a_tool_proxy_disabled_after_issue_is_refused_at_once() {
    let app = TestApp::spawn(BASE, NOW).await;
    let token = proxy_token(&app, "tp-1", full_contract()).await;
    let url = format!("{}/api/lti/tool_proxy/tp-1", app.addr);
    let bearer = format!("Bearer {token}");
    let r = app
        .get_with(&url, HOST, &[("authorization", &bearer)])
        .await;
    assert_eq!(r.status, 200);
    app.store()
        .set_tool_proxy_state("tp-1", "disabled", NOW)
        .await
        .unwrap();
    let r = app
        .get_with(&url, HOST, &[("authorization", &bearer)])
        .await;
    assert_unauthorized(&r, helper(), "disabled");
    app.store()
        .set_tool_proxy_state("tp-1", "active", NOW)
        .await
        .unwrap();
    let r = app
        .get_with(&url, HOST, &[("authorization", &bearer)])
        .await;
    assert_eq!(r.status, 200, "re-enabled");
}

#[tokio::test]
async fn y06_a_tool_proxy_whose_developer_key_is_deactivated_is_refused() {
    let app = TestApp::spawn(BASE, NOW).await;
    app.developer_key(10000000000007, "developer-key-secret-0123456789abcdef")
        .await;
    app.tool_proxy_with(
        "tp-dk",
        SECRET,
        "active",
        &["Security.splitSecret"],
        full_contract(),
        Some(10000000000007),
    )
    .await;
    let token = token_for(&app, "tp-dk", SECRET, None).await;
    let url = format!("{}/api/lti/tool_proxy/tp-dk", app.addr);
    let bearer = format!("Bearer {token}");
    assert_eq!(
        app.get_with(&url, HOST, &[("authorization", &bearer)])
            .await
            .status,
        200
    );
    app.store()
        .set_developer_key_state(10000000000007, "inactive")
        .await
        .unwrap();
    let r = app
        .get_with(&url, HOST, &[("authorization", &bearer)])
        .await;
    assert_unauthorized(&r, helper(), "developer key deactivated");
}

#[tokio::test]
async fn y07_the_contract_must_list_the_service_with_the_method() {
    let app = TestApp::spawn(BASE, NOW).await;
    let probe = format!("{}/probe", spawn_probe(app.running.authority.clone()).await);
    let no_service = proxy_token(&app, "tp-a", services(&[("ToolProxy.item", &["GET"])])).await;
    let get_only = proxy_token(
        &app,
        "tp-b",
        services(&[
            ("vnd.Canvas.OriginalityReport", &["GET"]),
            ("ToolProxy.item", &["POST"]),
        ]),
    )
    .await;
    let similar_name = proxy_token(
        &app,
        "tp-c",
        services(&[("vnd.Canvas.OriginalityReports", &["GET", "POST"])]),
    )
    .await;

    let r = app
        .get_with(
            &probe,
            HOST,
            &[("authorization", &format!("Bearer {no_service}"))],
        )
        .await;
    assert_unauthorized(&r, standard(), "service missing");
    let r = app
        .get_with(
            &probe,
            HOST,
            &[("authorization", &format!("Bearer {similar_name}"))],
        )
        .await;
    assert_unauthorized(&r, standard(), "a longer name is another service");
    let r = app
        .get_with(
            &probe,
            HOST,
            &[("authorization", &format!("Bearer {get_only}"))],
        )
        .await;
    assert_eq!(r.status, 200, "GET is listed: {}", r.text);
    let resp = app
        .http
        .post(&probe)
        .header("host", HOST)
        .bearer_auth(&get_only)
        .send()
        .await
        .unwrap();
    assert_unauthorized(
        &TestApp::reply(resp).await,
        standard(),
        "POST is not listed",
    );
    // ToolProxy.item listed with POST only: GET of the tool proxy is refused.
    let r = app
        .get_with(
            &format!("{}/api/lti/tool_proxy/tp-b", app.addr),
            HOST,
            &[("authorization", &format!("Bearer {get_only}"))],
        )
        .await;
    assert_unauthorized(&r, helper(), "method missing on ToolProxy.item");
    // A tool proxy may read only its own document.
    let r = app
        .get_with(
            &format!("{}/api/lti/tool_proxy/tp-a", app.addr),
            HOST,
            &[("authorization", &format!("Bearer {get_only}"))],
        )
        .await;
    assert_unauthorized(&r, helper(), "another tool proxy's document");
}

#[tokio::test]
async fn y08_a_developer_key_token_on_a_tool_route_is_401_never_500() {
    let app = TestApp::spawn(BASE, NOW).await;
    let probe = format!("{}/probe", spawn_probe(app.running.authority.clone()).await);
    app.developer_key(10000000000003, "developer-key-secret-0123456789abcdef")
        .await;
    let token = token_for(
        &app,
        "10000000000003",
        "developer-key-secret-0123456789abcdef",
        Some("some-reg-key"),
    )
    .await;
    let bearer = format!("Bearer {token}");
    let r = app
        .get_with(&probe, HOST, &[("authorization", &bearer)])
        .await;
    assert_unauthorized(&r, standard(), "developer key on a plagiarism route");
    let r = app
        .get_with(
            &format!("{}/api/lti/tool_proxy/10000000000003", app.addr),
            HOST,
            &[("authorization", &bearer)],
        )
        .await;
    assert_unauthorized(&r, helper(), "developer key on the tool proxy route");
    // A reg_key (unregistered sub) token is refused on tool routes too.
    app.store()
        .create_registration(lti2::store::NewRegistration {
            reg_key: "rk-1".into(),
            reg_password: lti2::secrets::Secret::new(b"reg-password-0123456789abcdef0123".to_vec()),
            context: lti2::store::ContextRef {
                kind: lti2::store::ContextKind::Account,
                id: 1,
            },
            tool_url: None,
            now: NOW,
            expires_at: NOW + 3600,
        })
        .await
        .unwrap();
    let reg_token = token_for(&app, "rk-1", "reg-password-0123456789abcdef0123", None).await;
    let r = app
        .get_with(
            &probe,
            HOST,
            &[("authorization", &format!("Bearer {reg_token}"))],
        )
        .await;
    assert_unauthorized(&r, standard(), "reg_key token on a plagiarism route");
}

#[tokio::test]
async fn malformed_and_oversized_tokens_are_401() {
    let app = TestApp::spawn(BASE, NOW).await;
    let token = proxy_token(&app, "tp-1", full_contract()).await;
    let probe = format!("{}/probe", spawn_probe(app.running.authority.clone()).await);
    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let huge = "a".repeat(9000);
    let parts: Vec<&str> = token.split('.').collect();
    let none_alg = format!("eyJhbGciOiJub25lIn0.{}.", parts[1]);
    for (what, t) in [
        ("bad signature", flipped.as_str()),
        ("garbage", "abc"),
        ("huge", huge.as_str()),
        ("alg none", none_alg.as_str()),
        ("two segments", &token[..token.rfind('.').unwrap()]),
    ] {
        let r = app
            .get_with(&probe, HOST, &[("authorization", &format!("Bearer {t}"))])
            .await;
        assert_unauthorized(&r, standard(), what);
    }
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/seed-jwts.json")).unwrap()
}

#[tokio::test]
async fn c17_c18_c19_canvas_shaped_access_token_through_http() {
    let v = vectors();
    let case = |id: &str| {
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone()
    };
    let c17 = case("C17");
    let setup = &c17["setup"];
    let token = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == c17["token"])
        .unwrap()["jwt"]
        .as_str()
        .unwrap()
        .to_string();
    for id in ["C17", "C18", "C19"] {
        let c = case(id);
        let req = &c["request"];
        let app = TestApp::spawn(
            setup["base_url"].as_str().unwrap(),
            req["now"].as_i64().unwrap(),
        )
        .await;
        for (i, key) in setup["access_token_signing_keys"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            app.store()
                .add_signing_key(
                    &SigningKey::new(
                        format!("seed-{i}"),
                        key.as_str().unwrap().as_bytes().to_vec(),
                    ),
                    0,
                )
                .await
                .unwrap();
        }
        let tp = &setup["tool_proxies"][0];
        let contract: Vec<ToolService> = serde_json::from_value(tp["services"].clone()).unwrap();
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
            contract,
            None,
        )
        .await;
        let probe = format!("{}/probe", spawn_probe(app.running.authority.clone()).await);
        let r = app
            .get_with(
                &probe,
                req["host"].as_str().unwrap(),
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await;
        if c["expect"]["accepted"].as_bool().unwrap() {
            assert_eq!(r.status, 200, "{id}: {}", r.text);
            assert_eq!(r.json["sub"], tp["guid"]);
        } else {
            assert_eq!(
                r.status,
                c["expect"]["status"].as_u64().unwrap() as u16,
                "{id}"
            );
            assert_unauthorized(&r, standard(), id);
        }
    }
}
