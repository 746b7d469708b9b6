//! LTI 2 registration end to end, played from outside with the client library against a real
//! server: registration launch → token → tool consumer profile → tool proxy → admin
//! acceptance → split-secret token → a guarded route. Plus the failure variants, the profile
//! cases, validation through HTTP, re-registration and concurrent use of one registration.

mod common;

use std::sync::{Arc, Mutex};

use common::{spawn_probe, TestApp};
use lti2::authority::AUTHORIZATION_CODE;
use lti2::client::{
    fetch_tool_consumer_profile, get_json, new_tp_half, register_tool_proxy, request_token,
    split_secret, AssertionBuilder, BodyEncoding, ClientError, Credentials, TokenClient,
};
use lti2::profile::DEFAULT_TCP_UUID;
use lti2::registration::Launch;
use lti2::secrets::Secret;
use lti2::store::{ContextKind, ContextRef, ToolConsumerProfileRecord};
use serde_json::{json, Value};

const NOW: i64 = 1_700_000_000;
const DEV_KEY: i64 = 10000000000003;
const DEV_SECRET: &str = "developer-key-secret-0123456789abcdef";
const CUSTOM_UUID: &str = "0b9e7bde-custom-tcp";
const VENDOR: &str = "acme.example";

fn course(id: i64) -> ContextRef {
    ContextRef {
        kind: ContextKind::Course,
        id,
    }
}

/// A self-addressed server with courses 5 and 6, developer key 10000000000003 (vendor
/// acme.example) and its custom profile.
async fn platform() -> TestApp {
    let app = TestApp::spawn_self_addressed(NOW).await;
    let store = app.store();
    store.create_course(5, 1, "Course 5", 0).await.unwrap();
    store.create_course(6, 1, "Course 6", 0).await.unwrap();
    store
        .create_developer_key(
            Some(DEV_KEY),
            &Secret::new(DEV_SECRET.as_bytes().to_vec()),
            Some("acme"),
            0,
        )
        .await
        .unwrap();
    store
        .set_developer_key_vendor_code(DEV_KEY, Some(VENDOR))
        .await
        .unwrap();
    store
        .create_tool_consumer_profile(&ToolConsumerProfileRecord {
            uuid: CUSTOM_UUID.into(),
            developer_key_id: DEV_KEY,
            services: lti2::profile::restricted_services()
                .map(str::to_owned)
                .collect(),
            capabilities: lti2::profile::restricted_capabilities()
                .map(str::to_owned)
                .collect(),
            created_at: 0,
        })
        .await
        .unwrap();
    app
}

/// `lti2 admin registration start --course N` (the library function it runs).
async fn start(app: &TestApp, ctx: ContextRef) -> Launch {
    lti2::registration::start(
        app.store().as_ref(),
        ctx,
        "https://tool.example/register",
        &app.public_base,
        app.now(),
    )
    .await
    .unwrap()
}

fn param(launch: &Launch, name: &str) -> String {
    launch
        .params
        .iter()
        .find(|(k, _)| *k == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1
        .clone()
}

/// A token from the authorize endpoint at `url` for `sub` signed with `secret`.
async fn token(
    app: &TestApp,
    url: &str,
    sub: &str,
    secret: &str,
    code: Option<&str>,
) -> Result<String, ClientError> {
    let assertion = AssertionBuilder::new(sub, url).sign(secret.as_bytes(), app.now());
    request_token(
        &app.http,
        url,
        AUTHORIZATION_CODE,
        &assertion,
        code,
        BodyEncoding::Form,
    )
    .await
    .map(|r| r.access_token)
}

/// The developer-key token of a launch (`code` = reg_key).
async fn dev_key_token(app: &TestApp, launch: &Launch) -> String {
    token(
        app,
        &param(launch, "oauth2_access_token_url"),
        &DEV_KEY.to_string(),
        DEV_SECRET,
        Some(&launch.reg_key),
    )
    .await
    .expect("developer key token")
}

/// The service `@id` the profile offers for `id`, else `id` itself.
fn offered(profile: &Value, id: &str) -> String {
    profile["service_offered"]
        .as_array()
        .and_then(|a| {
            a.iter().find(|s| {
                s["@id"]
                    .as_str()
                    .is_some_and(|x| x.ends_with(&format!("#{id}")))
            })
        })
        .map(|s| s["@id"].as_str().unwrap().to_string())
        .unwrap_or_else(|| id.to_string())
}

/// A ToolProxy document for `profile` with these contract services and capabilities.
fn tool_proxy_doc(
    profile: &Value,
    services: &[(&str, &[&str])],
    capabilities: &[&str],
    tp_half: &str,
    vendor: &str,
) -> Value {
    let tool_service: Vec<Value> = services
        .iter()
        .map(|(id, actions)| json!({"@type": "RestServiceProfile", "service": offered(profile, id), "action": actions}))
        .collect();
    json!({
        "@context": ["http://purl.imsglobal.org/ctx/lti/v2/ToolProxy"],
        "@type": "ToolProxy",
        "@id": "https://tool.example/tool_proxy/1",
        "lti_version": "LTI-2p0",
        "tool_consumer_profile": profile["@id"],
        "tool_profile": {
            "lti_version": "LTI-2p0",
            "product_instance": {
                "guid": "be42ae52-23fe-48f5-a783-40ecc7ef6d5c",
                "product_info": {
                    "product_name": {"default_value": "Similarity Checker"},
                    "product_version": "2.1",
                    "description": {"default_value": "Checks originality"},
                    "product_family": {
                        "code": "similarity-checker",
                        "vendor": {"code": vendor, "vendor_name": {"default_value": "Acme"}, "contact": {"email": "lti@acme.example"}}
                    }
                }
            },
            "base_url_choice": [{"default_base_url": "https://tool.example", "selector": {"applies_to": ["MessageHandler"]}}],
            "resource_handler": [{
                "resource_type": {"code": "originality_reports"},
                "resource_name": {"default_value": "Originality reports"},
                "message": [{
                    "message_type": "basic-lti-launch-request",
                    "path": "/launch",
                    "enabled_capability": capabilities.iter().filter(|c| c.starts_with("Canvas.placements")).collect::<Vec<_>>(),
                    "parameter": [{"name": "user_id", "variable": "Canvas.user.id"}, {"name": "mode", "fixed": "report"}]
                }]
            }],
            "service_offered": [{"@type": "RestService", "@id": "https://tool.example/tp#vnd.Canvas.SubmissionEvent", "endpoint": "https://tool.example/events", "action": ["POST"]}],
            "security_profile": [{"security_profile_name": "lti_jwt_ws_security", "digest_algorithm": "HS256"}]
        },
        "enabled_capability": capabilities,
        "security_contract": {"tp_half_shared_secret": tp_half, "tool_service": tool_service}
    })
}

const SPLIT: &[&str] = &["Security.splitSecret"];
const SIMILARITY: &[&str] = &[
    "Security.splitSecret",
    "Canvas.placements.similarityDetection",
];

fn full_services() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("ToolProxy.collection", &["POST"]),
        ("ToolProxy.item", &["GET"]),
        ("vnd.Canvas.OriginalityReport", &["GET", "POST", "PUT"]),
    ]
}

async fn post_tool_proxy(
    app: &TestApp,
    url: &str,
    token: Option<&str>,
    body: &str,
) -> common::Reply {
    let mut req = app
        .http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    TestApp::reply(req.send().await.unwrap()).await
}

/// Registers, accepts and returns (guid, split secret).
async fn register_accepted(
    app: &TestApp,
    launch: &Launch,
    services: &[(&str, &[&str])],
) -> (String, Vec<u8>) {
    let token = dev_key_token(app, launch).await;
    let profile =
        fetch_tool_consumer_profile(&app.http, &param(launch, "tc_profile_url"), Some(&token))
            .await
            .unwrap();
    let tp_half = new_tp_half();
    let doc = tool_proxy_doc(&profile, services, SIMILARITY, &tp_half, VENDOR);
    let id = register_tool_proxy(&app.http, &param(launch, "tool_proxy_url"), &token, &doc)
        .await
        .unwrap();
    app.admin(&["tool-proxy", "accept", &id.tool_proxy_guid])
        .unwrap();
    let secret = split_secret(id.tc_half_shared_secret.as_deref().unwrap(), &tp_half);
    (id.tool_proxy_guid, secret)
}

fn tool_client(app: &TestApp, url: &str, guid: &str, secret: Vec<u8>) -> TokenClient {
    TokenClient::new(url, Credentials::tool_proxy(guid, secret))
        .with_clock(Arc::new(app.clock.clone()))
}

#[tokio::test]
async fn developer_key_registration_end_to_end() {
    let app = platform().await;
    let launch = start(&app, course(5)).await;
    assert_eq!(
        param(&launch, "lti_message_type"),
        "ToolProxyRegistrationRequest"
    );
    assert_eq!(param(&launch, "tool_proxy_guid"), launch.reg_key);
    let oauth_url = param(&launch, "oauth2_access_token_url");
    assert_eq!(
        oauth_url,
        format!("{}/api/lti/courses/5/authorize", app.addr)
    );

    // authorization_code token signed with the developer key, code = reg_key.
    let token = dev_key_token(&app, &launch).await;

    // The custom profile comes with the developer key's token.
    let profile =
        fetch_tool_consumer_profile(&app.http, &param(&launch, "tc_profile_url"), Some(&token))
            .await
            .unwrap();
    assert_eq!(profile["guid"], CUSTOM_UUID);
    assert!(profile["capability_offered"]
        .as_array()
        .unwrap()
        .contains(&json!("Canvas.placements.similarityDetection")));
    assert_eq!(
        offered(&profile, "vnd.Canvas.OriginalityReport"),
        format!(
            "{}/api/lti/courses/5/tool_consumer_profile/{CUSTOM_UUID}#vnd.Canvas.OriginalityReport",
            app.addr
        )
    );

    // The tool proxy, with a split secret.
    let tp_half = new_tp_half();
    let doc = tool_proxy_doc(&profile, &full_services(), SIMILARITY, &tp_half, VENDOR);
    let id = register_tool_proxy(&app.http, &param(&launch, "tool_proxy_url"), &token, &doc)
        .await
        .unwrap();
    assert_eq!(id.tool_proxy_guid, launch.reg_key, "guid = reg_key");
    let tc_half = id.tc_half_shared_secret.clone().unwrap();
    assert_eq!(tc_half.len(), 128);
    assert!(tc_half
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let secret = split_secret(&tc_half, &tp_half);

    // Disabled until the admin accepts it: no token yet.
    let client = tool_client(&app, &oauth_url, &id.tool_proxy_guid, secret.clone());
    match client.access_token().await {
        Err(ClientError::Refused { status: 400, .. }) => {}
        other => panic!("a disabled tool proxy got {other:?}"),
    }
    let shown = app
        .admin(&["tool-proxy", "show", &id.tool_proxy_guid])
        .unwrap();
    assert_eq!(shown["workflow_state"], "disabled");
    assert_eq!(shown["vendor_code"], VENDOR);
    assert_eq!(shown["developer_key_id"], DEV_KEY);
    assert_eq!(shown["contexts"], json!([{"kind": "course", "id": 5}]));
    assert!(
        !shown.to_string().contains(&tp_half),
        "no secret half is stored in the document"
    );
    let accepted = app
        .admin(&["tool-proxy", "accept", &id.tool_proxy_guid])
        .unwrap();
    assert_eq!(accepted["workflow_state"], "active");

    // jwt-bearer with tc_half + tp_half, then a guarded route.
    let access = client.access_token().await.unwrap();
    let mine = get_json(
        &app.http,
        &format!("{}/api/lti/tool_proxy/{}", app.addr, id.tool_proxy_guid),
        &access,
    )
    .await
    .unwrap();
    assert_eq!(mine["@id"], doc["@id"]);
    assert_eq!(mine["tool_profile"], doc["tool_profile"]);
    assert!(mine["security_contract"]
        .get("tp_half_shared_secret")
        .is_none());
    let probe = spawn_probe(app.running.authority.clone()).await;
    let r = app
        .get_with(
            &format!("{probe}/probe"),
            &app.public_host(),
            &[("authorization", &format!("Bearer {access}"))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The registration is used up.
    let again = post_tool_proxy(
        &app,
        &param(&launch, "tool_proxy_url"),
        Some(&token),
        &doc.to_string(),
    )
    .await;
    assert_eq!(
        (again.status, again.json.clone()),
        (401, json!({"error": "unauthorized"}))
    );
}

#[tokio::test]
async fn reg_password_registration_end_to_end() {
    let app = platform().await;
    let launch = start(&app, course(5)).await;
    let oauth_url = param(&launch, "oauth2_access_token_url");
    // Signed with reg_password, sub = reg_key.
    let token = token(
        &app,
        &oauth_url,
        &launch.reg_key,
        &launch.reg_password,
        None,
    )
    .await
    .unwrap();
    let claims = common::claims_of(&token);
    assert_eq!(claims["sub"], json!(launch.reg_key));
    assert_eq!(claims["reg_key"], json!(launch.reg_key));

    // No developer key: the default profile.
    let profile =
        fetch_tool_consumer_profile(&app.http, &param(&launch, "tc_profile_url"), Some(&token))
            .await
            .unwrap();
    assert_eq!(profile["guid"], DEFAULT_TCP_UUID);
    assert_no_restricted_items(&profile);

    let tp_half = new_tp_half();
    let doc = tool_proxy_doc(
        &profile,
        &[("ToolProxy.item", &["GET"])],
        SPLIT,
        &tp_half,
        "independent.example",
    );
    let id = register_tool_proxy(&app.http, &param(&launch, "tool_proxy_url"), &token, &doc)
        .await
        .unwrap();
    assert_eq!(id.tool_proxy_guid, launch.reg_key);
    app.admin(&["tool-proxy", "accept", &id.tool_proxy_guid])
        .unwrap();
    let secret = split_secret(id.tc_half_shared_secret.as_deref().unwrap(), &tp_half);
    let access = tool_client(&app, &oauth_url, &id.tool_proxy_guid, secret)
        .access_token()
        .await
        .unwrap();
    let mine = get_json(
        &app.http,
        &format!("{}/api/lti/tool_proxy/{}", app.addr, id.tool_proxy_guid),
        &access,
    )
    .await
    .unwrap();
    assert_eq!(mine["tool_profile"], doc["tool_profile"]);

    // The reg_password stops working once the registration is used.
    match self::token(
        &app,
        &oauth_url,
        &launch.reg_key,
        &launch.reg_password,
        None,
    )
    .await
    {
        Err(ClientError::Refused { status: 400, .. }) => {}
        other => panic!("a used registration's reg_password still works: {other:?}"),
    }
}

#[tokio::test]
async fn failure_variants() {
    let app = platform().await;
    let probe = spawn_probe(app.running.authority.clone()).await;

    // Expired registration: the developer-key token is fine, the registration is not.
    let launch = start(&app, course(5)).await;
    let token = dev_key_token(&app, &launch).await;
    let profile =
        fetch_tool_consumer_profile(&app.http, &param(&launch, "tc_profile_url"), Some(&token))
            .await
            .unwrap();
    let tp_half = new_tp_half();
    let doc = tool_proxy_doc(&profile, &full_services(), SIMILARITY, &tp_half, VENDOR);
    app.clock.advance(3600);
    let r = post_tool_proxy(
        &app,
        &param(&launch, "tool_proxy_url"),
        Some(&token),
        &doc.to_string(),
    )
    .await;
    assert_eq!(
        (r.status, r.json.clone()),
        (401, json!({"error": "unauthorized"})),
        "expired"
    );
    match self::token(
        &app,
        &param(&launch, "oauth2_access_token_url"),
        &launch.reg_key,
        &launch.reg_password,
        None,
    )
    .await
    {
        Err(ClientError::Refused { status: 400, .. }) => {}
        other => panic!("an expired reg_password still works: {other:?}"),
    }

    // Another context: a course 5 registration posted to course 6.
    let launch = start(&app, course(5)).await;
    let token = self::token(
        &app,
        &format!("{}/api/lti/courses/6/authorize", app.addr),
        &DEV_KEY.to_string(),
        DEV_SECRET,
        Some(&launch.reg_key),
    )
    .await
    .unwrap();
    let r = post_tool_proxy(
        &app,
        &format!("{}/api/lti/courses/6/tool_proxy", app.addr),
        Some(&token),
        &doc.to_string(),
    )
    .await;
    assert_eq!(
        (r.status, r.json.clone()),
        (401, json!({"error": "unauthorized"})),
        "another context"
    );
    // …and its reg_password does not sign for course 6 either.
    match self::token(
        &app,
        &format!("{}/api/lti/courses/6/authorize", app.addr),
        &launch.reg_key,
        &launch.reg_password,
        None,
    )
    .await
    {
        Err(ClientError::Refused { status: 400, .. }) => {}
        other => panic!("reg_password used in another context: {other:?}"),
    }
    // The registration was not consumed by those refusals: course 5 still takes it.
    let r = post_tool_proxy(
        &app,
        &param(&launch, "tool_proxy_url"),
        Some(&token),
        &doc.to_string(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let tc_half = r.json["tc_half_shared_secret"]
        .as_str()
        .unwrap()
        .to_string();
    // Used twice.
    let r = post_tool_proxy(
        &app,
        &param(&launch, "tool_proxy_url"),
        Some(&token),
        &doc.to_string(),
    )
    .await;
    assert_eq!(
        (r.status, r.json.clone()),
        (401, json!({"error": "unauthorized"})),
        "used twice"
    );
    // Still disabled: no token for it, even with the right secret.
    let disabled = tool_client(
        &app,
        &param(&launch, "oauth2_access_token_url"),
        &launch.reg_key,
        split_secret(&tc_half, &tp_half),
    );
    assert!(matches!(
        disabled.access_token().await,
        Err(ClientError::Refused { status: 400, .. })
    ));
    app.admin(&["tool-proxy", "accept", &launch.reg_key])
        .unwrap();
    disabled
        .access_token()
        .await
        .expect("accepted: now it gets a token");

    // Service missing from the contract, and a method the contract does not list.
    let launch = start(&app, course(5)).await;
    let (guid, secret) =
        register_accepted(&app, &launch, &[("vnd.Canvas.OriginalityReport", &["GET"])]).await;
    let access = tool_client(
        &app,
        &param(&launch, "oauth2_access_token_url"),
        &guid,
        secret,
    )
    .access_token()
    .await
    .unwrap();
    let host = app.public_host();
    let r = app
        .get_with(
            &format!("{}/api/lti/tool_proxy/{guid}", app.addr),
            &host,
            &[("authorization", &format!("Bearer {access}"))],
        )
        .await;
    assert_eq!(
        (r.status, r.json.clone()),
        (401, json!({"error": "unauthorized"})),
        "ToolProxy.item missing"
    );
    let r = app
        .get_with(
            &format!("{probe}/probe"),
            &host,
            &[("authorization", &format!("Bearer {access}"))],
        )
        .await;
    assert_eq!(r.status, 200, "GET is in the contract: {}", r.text);
    let resp = app
        .http
        .post(format!("{probe}/probe"))
        .header("host", &host)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let r = TestApp::reply(resp).await;
    assert_eq!(r.status, 401, "POST is not in the contract");
    assert_eq!(r.json["status"], "unauthenticated");
}

#[tokio::test]
async fn validation_errors_through_http_change_nothing() {
    let app = platform().await;
    let launch = start(&app, course(5)).await;
    let url = param(&launch, "tool_proxy_url");
    let oauth_url = param(&launch, "oauth2_access_token_url");
    let reg_token = token(
        &app,
        &oauth_url,
        &launch.reg_key,
        &launch.reg_password,
        None,
    )
    .await
    .unwrap();
    let profile = fetch_tool_consumer_profile(&app.http, &param(&launch, "tc_profile_url"), None)
        .await
        .unwrap();
    let tp_half = new_tp_half();

    // No token.
    let good = tool_proxy_doc(
        &profile,
        &[("ToolProxy.item", &["GET"])],
        SPLIT,
        &tp_half,
        "solo.example",
    );
    let r = post_tool_proxy(&app, &url, None, &good.to_string()).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (401, json!({"error": "unauthorized"}))
    );

    // Not JSON.
    let r = post_tool_proxy(&app, &url, Some(&reg_token), "sad times").await;
    assert_eq!(
        (r.status, r.json.clone()),
        (400, json!({"error": "Invalid request"}))
    );

    // JSON without a tool profile.
    let r = post_tool_proxy(&app, &url, Some(&reg_token), "{}").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"], "Invalid request");
    assert!(r.json["message"].as_str().unwrap().contains("tool_profile"));

    // A capability the profile does not offer: Canvas's exact body.
    let extra = tool_proxy_doc(
        &profile,
        &[("ToolProxy.item", &["GET"])],
        &["Security.splitSecret", "extra_capability"],
        &tp_half,
        "solo.example",
    );
    let r = post_tool_proxy(&app, &url, Some(&reg_token), &extra.to_string()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json,
        json!({"invalid_capabilities": ["extra_capability"], "error": "Invalid Capabilities"})
    );

    // Restricted items without the custom profile, and several categories at once.
    let mut restricted = tool_proxy_doc(
        &profile,
        &[
            ("vnd.Canvas.OriginalityReport", &["GET"]),
            ("ToolProxy.item", &["GET", "DELETE"]),
        ],
        &["Canvas.placements.similarityDetection"],
        &tp_half,
        "solo.example",
    );
    restricted["security_contract"]
        .as_object_mut()
        .unwrap()
        .remove("tp_half_shared_secret");
    let r = post_tool_proxy(&app, &url, Some(&reg_token), &restricted.to_string()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["error"],
        "Invalid Capabilities, Invalid Services, Invalid SecurityContract, Restricted SecurityProfiles"
    );
    assert_eq!(
        r.json["invalid_capabilities"],
        json!(["Canvas.placements.similarityDetection"])
    );
    assert_eq!(r.json["invalid_services"].as_array().unwrap().len(), 2);
    assert_eq!(r.json["invalid_services"][1]["actions"], json!(["DELETE"]));

    // A vendor with developer keys must register with one of them.
    let theirs = tool_proxy_doc(
        &profile,
        &[("ToolProxy.item", &["GET"])],
        SPLIT,
        &tp_half,
        VENDOR,
    );
    let r = post_tool_proxy(&app, &url, Some(&reg_token), &theirs.to_string()).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (400, json!({"error": "Developer key mismatch"}))
    );
    let blank = tool_proxy_doc(
        &profile,
        &[("ToolProxy.item", &["GET"])],
        SPLIT,
        &tp_half,
        " ",
    );
    let r = post_tool_proxy(&app, &url, Some(&reg_token), &blank.to_string()).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (400, json!({"error": "Developer key mismatch"}))
    );

    // Unknown context.
    let r = post_tool_proxy(
        &app,
        &format!("{}/api/lti/courses/99/tool_proxy", app.addr),
        Some(&reg_token),
        &good.to_string(),
    )
    .await;
    assert_eq!(r.status, 404);

    // Codes the platform keys records by are at most 255 characters: a 400 on both backends,
    // not a database error.
    let long = "c".repeat(256);
    for (what, pointer) in [
        (
            "product code",
            "/tool_profile/product_instance/product_info/product_family/code",
        ),
        (
            "vendor code",
            "/tool_profile/product_instance/product_info/product_family/vendor/code",
        ),
        (
            "resource type code",
            "/tool_profile/resource_handler/0/resource_type/code",
        ),
    ] {
        let mut doc = good.clone();
        *doc.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = json!(long);
        let r = post_tool_proxy(&app, &url, Some(&reg_token), &doc.to_string()).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text);
        assert_eq!(r.json["error"], "Invalid request", "{what}");
        assert!(
            r.json["message"].as_str().unwrap().contains("at most 255"),
            "{what}: {}",
            r.text
        );
    }

    // Nothing was written by any of those: no tool proxy, and the registration still works.
    assert!(app
        .store()
        .tool_proxy(&launch.reg_key)
        .await
        .unwrap()
        .is_none());
    assert!(app
        .store()
        .tool_proxy_detail(&launch.reg_key)
        .await
        .unwrap()
        .is_none());
    let r = post_tool_proxy(&app, &url, Some(&reg_token), &good.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.headers["content-type"],
        "application/vnd.ims.lti.v2.toolproxy.id+json"
    );
    let keys: Vec<&String> = r.json.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        vec![
            "@context",
            "@id",
            "@type",
            "tc_half_shared_secret",
            "tool_proxy_guid"
        ]
    );
}

#[tokio::test]
async fn a_plain_shared_secret_is_kept_and_needs_32_bytes() {
    let app = platform().await;
    let launch = start(&app, course(5)).await;
    let token = dev_key_token(&app, &launch).await;
    let profile =
        fetch_tool_consumer_profile(&app.http, &param(&launch, "tc_profile_url"), Some(&token))
            .await
            .unwrap();
    let mut doc = tool_proxy_doc(&profile, &[("ToolProxy.item", &["GET"])], &[], "", VENDOR);
    doc["tool_profile"]["security_profile"] = json!([]);
    doc["security_contract"] = json!({"shared_secret": "short", "tool_service": []});
    let r = post_tool_proxy(
        &app,
        &param(&launch, "tool_proxy_url"),
        Some(&token),
        &doc.to_string(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"], "Invalid SecurityContract");
    doc["security_contract"]["shared_secret"] = json!("a-plain-shared-secret-of-32-bytes!!");
    let r = post_tool_proxy(
        &app,
        &param(&launch, "tool_proxy_url"),
        Some(&token),
        &doc.to_string(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.json.get("tc_half_shared_secret").is_none());
    let tp = app
        .store()
        .tool_proxy(&launch.reg_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        tp.shared_secret.expose(),
        b"a-plain-shared-secret-of-32-bytes!!"
    );
}

#[tokio::test]
async fn one_registration_registers_one_tool_proxy_under_concurrency() {
    let app = platform().await;
    let launch = start(&app, course(5)).await;
    let token = dev_key_token(&app, &launch).await;
    let profile =
        fetch_tool_consumer_profile(&app.http, &param(&launch, "tc_profile_url"), Some(&token))
            .await
            .unwrap();
    let doc = tool_proxy_doc(
        &profile,
        &full_services(),
        SIMILARITY,
        &new_tp_half(),
        VENDOR,
    )
    .to_string();
    let url = param(&launch, "tool_proxy_url");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, url, token, doc) = (app.http.clone(), url.clone(), token.clone(), doc.clone());
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .body(doc)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 401),
        "{statuses:?}"
    );
}

/// No restricted service (e.g. `#vnd.Canvas.OriginalityReport`) and no restricted
/// capability (e.g. `vnd.Canvas.OriginalityReport.url`) is offered.
fn assert_no_restricted_items(profile: &Value) {
    for s in profile["service_offered"].as_array().unwrap() {
        let id = s["@id"].as_str().unwrap();
        assert!(
            !lti2::profile::restricted_services().any(|r| id.ends_with(&format!("#{r}"))),
            "restricted service offered: {id}"
        );
    }
    for c in profile["capability_offered"].as_array().unwrap() {
        assert!(
            !lti2::profile::is_restricted_capability(c.as_str().unwrap()),
            "restricted capability offered: {c}"
        );
    }
    assert!(!profile
        .to_string()
        .contains("#vnd.Canvas.OriginalityReport"));
}

#[tokio::test]
async fn tool_consumer_profile_cases() {
    let app = platform().await;
    let launch = start(&app, course(5)).await;
    let token = dev_key_token(&app, &launch).await;
    let base = format!("{}/api/lti/courses/5/tool_consumer_profile", app.addr);

    // No token, a made-up uuid: the default profile under that URL.
    let r = app
        .get_with(&format!("{base}/made-up-uuid"), &app.public_host(), &[])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"],
        "application/vnd.ims.lti.v2.toolconsumerprofile+json"
    );
    assert_eq!(r.json["@type"], "ToolConsumerProfile");
    assert_eq!(r.json["guid"], DEFAULT_TCP_UUID);
    assert_eq!(r.json["@id"], format!("{base}/made-up-uuid"));
    assert_no_restricted_items(&r.json);
    assert_eq!(r.json["lti_version"], "LTI-2p0");
    let root_uuid = app
        .store()
        .root_account(course(5))
        .await
        .unwrap()
        .unwrap()
        .uuid;
    assert_eq!(r.json["product_instance"]["guid"], root_uuid);
    let ids: Vec<&str> = r.json["service_offered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["@id"].as_str().unwrap())
        .collect();
    assert!(ids.iter().any(|i| i.ends_with("#vnd.Canvas.authorization")));
    let auth = r.json["service_offered"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["@id"]
                .as_str()
                .unwrap()
                .ends_with("#vnd.Canvas.authorization")
        })
        .unwrap();
    assert_eq!(
        auth["endpoint"],
        format!("{}/api/lti/courses/5/authorize", app.addr)
    );
    let profiles: Vec<&str> = r.json["security_profile"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["security_profile_name"].as_str().unwrap())
        .collect();
    assert!(
        profiles.contains(&"lti_jwt_ws_security")
            && profiles.contains(&"oauth2_access_token_ws_security")
    );

    // A developer key's token, no uuid: its custom profile.
    let bearer = format!("Bearer {token}");
    let r = app
        .get_with(&base, &app.public_host(), &[("authorization", &bearer)])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["guid"], CUSTOM_UUID);
    // …and with the custom uuid: the restricted service and capability.
    let r = app
        .get_with(
            &format!("{base}/{CUSTOM_UUID}"),
            &app.public_host(),
            &[("authorization", &bearer)],
        )
        .await;
    assert!(r
        .text
        .contains(&format!("{CUSTOM_UUID}#vnd.Canvas.OriginalityReport")));
    assert!(r.json["capability_offered"]
        .as_array()
        .unwrap()
        .contains(&json!("vnd.Canvas.OriginalityReport.url")));
    // The custom uuid without the token: no restricted items.
    let r = app
        .get_with(&format!("{base}/{CUSTOM_UUID}"), &app.public_host(), &[])
        .await;
    assert_eq!(r.json["guid"], DEFAULT_TCP_UUID);
    assert_no_restricted_items(&r.json);
    // An invalid token is a 401, not a 500.
    let r = app
        .get_with(
            &base,
            &app.public_host(),
            &[("authorization", "Bearer not.a.token")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json["status"], "unauthenticated");
    // The account route; an unknown context.
    let r = app
        .get_with(
            &format!("{}/api/lti/accounts/1/tool_consumer_profile", app.addr),
            &app.public_host(),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json["@id"],
        format!(
            "{}/api/lti/accounts/1/tool_consumer_profile/{DEFAULT_TCP_UUID}",
            app.addr
        )
    );
    let r = app
        .get_with(
            &format!("{}/api/lti/courses/77/tool_consumer_profile", app.addr),
            &app.public_host(),
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
}

/// A receiver for VND-IMS-CONFIRM-URL that records the methods it was called with.
async fn ack_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let router = axum::Router::new().route(
        "/confirm",
        axum::routing::any(move |req: axum::extract::Request| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(req.method().to_string());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/confirm"), seen)
}

// Multi-threaded: `lti2 admin tool-proxy accept-update` runs as a blocking child process that
// calls the confirm receiver served by this runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_registration_waits_for_the_admin_then_swaps_the_secret() {
    let app = platform().await;
    let launch = start(&app, course(5)).await;
    let oauth_url = param(&launch, "oauth2_access_token_url");
    let (guid, old_secret) = register_accepted(&app, &launch, &full_services()).await;
    let old_client = tool_client(&app, &oauth_url, &guid, old_secret.clone());
    let access = old_client.access_token().await.unwrap();
    let (confirm_url, seen) = ack_receiver().await;
    let profile = fetch_tool_consumer_profile(&app.http, &param(&launch, "tc_profile_url"), None)
        .await
        .unwrap();
    let url = param(&launch, "tool_proxy_url");

    let rereg = |body: String, token: String, url: String| {
        let http = app.http.clone();
        let confirm = confirm_url.clone();
        async move {
            let resp = http
                .post(url)
                .bearer_auth(token)
                .header("VND-IMS-CONFIRM-URL", confirm)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            TestApp::reply(resp).await
        }
    };

    // Not JSON: 400, nothing stored.
    let r = rereg("sad times".into(), access.clone(), url.clone()).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (400, json!({"error": "Invalid request"}))
    );
    assert!(app
        .store()
        .tool_proxy_detail(&guid)
        .await
        .unwrap()
        .unwrap()
        .update_payload
        .is_none());

    // A valid update (now with the custom profile's items dropped).
    let tp_half2 = new_tp_half();
    let mut doc2 = tool_proxy_doc(
        &profile,
        &[
            ("ToolProxy.collection", &["POST"]),
            ("ToolProxy.item", &["GET"]),
        ],
        SPLIT,
        &tp_half2,
        VENDOR,
    );
    doc2["tool_profile"]["product_instance"]["product_info"]["product_version"] = json!("3.0");
    let r = rereg(doc2.to_string(), access.clone(), url.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.json["@id"], "https://tool.example/tool_proxy/1",
        "the existing @id"
    );
    assert_eq!(r.json["tool_proxy_guid"], guid);
    let tc_half2 = r.json["tc_half_shared_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let new_secret = split_secret(&tc_half2, &tp_half2);
    assert!(app
        .store()
        .tool_proxy_detail(&guid)
        .await
        .unwrap()
        .unwrap()
        .update_payload
        .is_some());

    // Until the admin accepts, the old secret signs and the new one does not.
    let fresh_old = tool_client(&app, &oauth_url, &guid, old_secret.clone());
    fresh_old.access_token().await.unwrap();
    let new_client = tool_client(&app, &oauth_url, &guid, new_secret.clone());
    assert!(new_client.access_token().await.is_err());

    let out = app.admin(&["tool-proxy", "accept-update", &guid]).unwrap();
    assert_eq!(out["update_applied"], true);
    assert_eq!(out["acknowledgement"]["ok"], true, "{out}");
    assert_eq!(*seen.lock().unwrap(), vec!["PUT".to_string()]);
    let detail = app.store().tool_proxy_detail(&guid).await.unwrap().unwrap();
    assert!(detail.update_payload.is_none());
    let raw: Value = serde_json::from_str(detail.raw_data.as_deref().unwrap()).unwrap();
    assert_eq!(
        raw["tool_profile"]["product_instance"]["product_info"]["product_version"],
        "3.0"
    );
    let tp = app.store().tool_proxy(&guid).await.unwrap().unwrap();
    assert_eq!(tp.shared_secret.expose(), new_secret.as_slice());
    let new_client = tool_client(&app, &oauth_url, &guid, new_secret);
    new_client.access_token().await.unwrap();
    let stale = tool_client(&app, &oauth_url, &guid, old_secret);
    assert!(
        stale.access_token().await.is_err(),
        "the old secret is gone"
    );
    assert!(app
        .admin(&["tool-proxy", "accept-update", &guid])
        .unwrap_err()
        .contains("no re-registration waiting"));

    // Re-registration needs ToolProxy.collection or ToolProxy.item with POST in the contract,
    // and the tool proxy's own context.
    let launch_b = start(&app, course(6)).await;
    let (guid_b, secret_b) =
        register_accepted(&app, &launch_b, &[("ToolProxy.item", &["GET"])]).await;
    let access_b = tool_client(
        &app,
        &param(&launch_b, "oauth2_access_token_url"),
        &guid_b,
        secret_b,
    )
    .access_token()
    .await
    .unwrap();
    let r = rereg(
        doc2.to_string(),
        access_b,
        param(&launch_b, "tool_proxy_url"),
    )
    .await;
    assert_eq!(
        (r.status, r.json.clone()),
        (401, json!({"error": "unauthorized"})),
        "no POST in the contract"
    );
    let access = new_client.access_token().await.unwrap();
    let r = rereg(doc2.to_string(), access, param(&launch_b, "tool_proxy_url")).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (401, json!({"error": "unauthorized"})),
        "another context"
    );
}

/// An ack receiver that answers `status`.
async fn ack_receiver_with(status: u16) -> String {
    let router = axum::Router::new().route(
        "/confirm",
        axum::routing::any(
            move || async move { axum::http::StatusCode::from_u16(status).unwrap() },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/confirm")
}

// Multi-threaded: the admin command is a blocking child process calling a receiver served here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_update_changes_nothing_and_any_contract_order_works() {
    let app = platform().await;
    let launch = start(&app, course(5)).await;
    let oauth_url = param(&launch, "oauth2_access_token_url");
    // ToolProxy.item (GET) listed before ToolProxy.collection (POST).
    let (guid, old_secret) = register_accepted(
        &app,
        &launch,
        &[
            ("ToolProxy.item", &["GET"]),
            ("ToolProxy.collection", &["POST"]),
        ],
    )
    .await;
    let access = tool_client(&app, &oauth_url, &guid, old_secret.clone())
        .access_token()
        .await
        .unwrap();
    let profile = fetch_tool_consumer_profile(&app.http, &param(&launch, "tc_profile_url"), None)
        .await
        .unwrap();
    // The update switches to a plain shared secret.
    let mut doc = tool_proxy_doc(&profile, &[("ToolProxy.item", &["GET"])], SPLIT, "", VENDOR);
    doc["security_contract"] =
        json!({"shared_secret": "a-new-plain-shared-secret-of-40-bytes!!!", "tool_service": []});
    doc["tool_profile"]["security_profile"] =
        json!([{"security_profile_name": "lti_jwt_ws_security", "digest_algorithm": "HS256"}]);
    let failing = ack_receiver_with(500).await;
    let resp = app
        .http
        .post(param(&launch, "tool_proxy_url"))
        .bearer_auth(&access)
        .header("VND-IMS-CONFIRM-URL", &failing)
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        201,
        "the contract lists ToolProxy.collection with POST"
    );
    let err = app
        .admin(&["tool-proxy", "accept-update", &guid])
        .unwrap_err();
    assert!(err.contains("answered 500"), "{err}");
    tool_client(&app, &oauth_url, &guid, old_secret.clone())
        .access_token()
        .await
        .expect("the old secret still works");
    assert!(app
        .store()
        .tool_proxy_detail(&guid)
        .await
        .unwrap()
        .unwrap()
        .update_payload
        .is_some());
    // Re-registered with a confirm URL that answers 204: applied, and the plain secret is used.
    let ok = ack_receiver_with(204).await;
    let resp = app
        .http
        .post(param(&launch, "tool_proxy_url"))
        .bearer_auth(&access)
        .header("VND-IMS-CONFIRM-URL", &ok)
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let out = app.admin(&["tool-proxy", "accept-update", &guid]).unwrap();
    assert_eq!(out["acknowledgement"]["status"], 204);
    let tp = app.store().tool_proxy(&guid).await.unwrap().unwrap();
    assert_eq!(
        tp.shared_secret.expose(),
        b"a-new-plain-shared-secret-of-40-bytes!!!"
    );
    tool_client(
        &app,
        &oauth_url,
        &guid,
        b"a-new-plain-shared-secret-of-40-bytes!!!".to_vec(),
    )
    .access_token()
    .await
    .expect("the new secret works");
}

#[tokio::test]
async fn a_tool_proxy_is_usable_at_once_even_with_a_long_cache_refresh() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let settings = lti2::config::Settings::resolve(lti2::config::Overrides {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(common::database_url(dir.path())),
        data_dir: Some(dir.path().to_path_buf()),
        cache_refresh_ms: Some(3_600_000),
        ..Default::default()
    })
    .unwrap();
    let app = TestApp::spawn_with(settings, dir, lti2::clock::ManualClock::new(NOW)).await;
    app.store()
        .create_course(5, 1, "Course 5", 0)
        .await
        .unwrap();
    let launch = start(&app, course(5)).await;
    let oauth_url = param(&launch, "oauth2_access_token_url");
    // The reg_password token makes the server look up (and miss) the tool proxy guid first.
    let token = token(
        &app,
        &oauth_url,
        &launch.reg_key,
        &launch.reg_password,
        None,
    )
    .await
    .unwrap();
    let profile =
        fetch_tool_consumer_profile(&app.http, &param(&launch, "tc_profile_url"), Some(&token))
            .await
            .unwrap();
    let tp_half = new_tp_half();
    let doc = tool_proxy_doc(
        &profile,
        &[("ToolProxy.item", &["GET"])],
        SPLIT,
        &tp_half,
        "solo.example",
    );
    let id = register_tool_proxy(&app.http, &param(&launch, "tool_proxy_url"), &token, &doc)
        .await
        .unwrap();
    let secret = split_secret(id.tc_half_shared_secret.as_deref().unwrap(), &tp_half);
    let client = tool_client(&app, &oauth_url, &id.tool_proxy_guid, secret.clone());
    assert!(client.access_token().await.is_err(), "disabled");
    app.admin(&["tool-proxy", "accept", &id.tool_proxy_guid])
        .unwrap();
    client
        .access_token()
        .await
        .expect("accepted a moment ago: usable at once");
}

#[tokio::test]
async fn review_findings_stay_fixed() {
    let app = platform().await;
    let launch = start(&app, course(5)).await;
    let host = app.public_host();
    // A message type that is not offered is refused.
    let token = dev_key_token(&app, &launch).await;
    let profile =
        fetch_tool_consumer_profile(&app.http, &param(&launch, "tc_profile_url"), Some(&token))
            .await
            .unwrap();
    let mut doc = tool_proxy_doc(
        &profile,
        &[("ToolProxy.item", &["GET"])],
        SIMILARITY,
        &new_tp_half(),
        VENDOR,
    );
    doc["tool_profile"]["resource_handler"][0]["message"][0]["message_type"] = json!("xxx");
    let r = post_tool_proxy(
        &app,
        &param(&launch, "tool_proxy_url"),
        Some(&token),
        &doc.to_string(),
    )
    .await;
    assert_eq!(
        (r.status, r.json["invalid_capabilities"].clone()),
        (400, json!(["xxx"]))
    );

    // The profile varies with the token: not cacheable by shared caches.
    let r = app
        .get_with(&param(&launch, "tc_profile_url"), &host, &[])
        .await;
    assert_eq!(r.headers["vary"], "Authorization");
    assert_eq!(r.headers["cache-control"], "no-store");
    // A malformed Bearer header is a 401, not the default profile.
    for h in ["Bearer a b", "Bearer", "bearer\tx"] {
        let r = app
            .get_with(
                &param(&launch, "tc_profile_url"),
                &host,
                &[("authorization", h)],
            )
            .await;
        assert_eq!(r.status, 401, "{h:?}");
    }

    // A guid that needs percent-encoding reads its own document; HEAD counts as GET.
    let secret = "guid-with-space-secret-0123456789abcdef";
    app.tool_proxy_with(
        "tp é/2",
        secret,
        "active",
        &["Security.splitSecret"],
        vec![lti2::store::ToolService {
            service: "ToolProxy.item".into(),
            action: vec!["GET".into()],
        }],
        None,
    )
    .await;
    let access = tool_client(
        &app,
        &format!("{}/api/lti/accounts/1/authorize", app.addr),
        "tp é/2",
        secret.as_bytes().to_vec(),
    )
    .access_token()
    .await
    .unwrap();
    let url = format!("{}/api/lti/tool_proxy/tp%20%C3%A9%2F2", app.addr);
    let r = app
        .get_with(
            &url,
            &host,
            &[("authorization", &format!("Bearer {access}"))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = app
        .http
        .head(&url)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The return page exists only for real contexts.
    let r = app
        .get_with(
            &format!(
                "{}/courses/5/lti/registration_return?status=success",
                app.addr
            ),
            &host,
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("success"));
    for bad in [
        "/courses/999/lti/registration_return",
        "/courses/abc/lti/registration_return",
    ] {
        assert_eq!(
            app.get_with(&format!("{}{bad}", app.addr), &host, &[])
                .await
                .status,
            404,
            "{bad}"
        );
    }
    // reg_keys that can never work are refused by the console.
    for key in ["", "10000000000001"] {
        let err = app
            .admin(&[
                "registration",
                "create",
                "--course",
                "5",
                "--reg-key",
                key,
                "--reg-password",
                "reg-password-0123456789abcdef0123",
            ])
            .unwrap_err();
        assert!(err.contains("reg_key"), "{key:?}: {err}");
    }
}
