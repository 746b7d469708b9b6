//! The client library against a real server: the token client signs, exchanges, and caches the
//! access token until shortly before it expires. Server and client share one manual clock.

mod common;

use std::sync::Arc;

use common::{claims_of, TestApp};
use lti2::client::{ClientError, Credentials, TokenClient};

const NOW: i64 = 1_767_225_600;
const SECRET: &str = "k3y-0123456789abcdef0123456789ab";

async fn app_without_base() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = common::settings_for(dir.path(), "http://unused.example");
    settings.base_urls = vec![];
    TestApp::spawn_with(settings, dir, lti2::clock::ManualClock::new(NOW)).await
}

#[tokio::test]
async fn token_client_caches_until_shortly_before_expiry() {
    let app = app_without_base().await;
    app.tool_proxy("tp-lib", SECRET).await;
    let url = format!("{}/api/lti/accounts/1/authorize", app.addr);
    let client = TokenClient::new(
        &url,
        Credentials::tool_proxy("tp-lib", SECRET.as_bytes().to_vec()),
    )
    .with_clock(Arc::new(app.clock.clone()));
    let first = client.access_token().await.unwrap();
    assert_eq!(claims_of(&first)["sub"], "tp-lib");
    app.clock.advance(3600 - 61);
    assert_eq!(
        client.access_token().await.unwrap(),
        first,
        "still cached 61 s before expiry"
    );
    app.clock.advance(1);
    let second = client.access_token().await.unwrap();
    assert_ne!(second, first, "renewed 60 s before expiry");
    assert_eq!(claims_of(&second)["iat"].as_i64(), Some(NOW + 3600 - 60));
}

#[tokio::test]
async fn token_client_reports_refusals_and_developer_keys_work() {
    let app = app_without_base().await;
    app.developer_key(10000000000005, "d3v-0123456789abcdef0123456789abcd")
        .await;
    let url = format!("{}/api/lti/accounts/1/authorize", app.addr);
    let dk = TokenClient::new(
        &url,
        Credentials::developer_key(
            "10000000000005",
            b"d3v-0123456789abcdef0123456789abcd".to_vec(),
            "rk-1",
        ),
    )
    .with_clock(Arc::new(app.clock.clone()));
    let token = dk.access_token().await.unwrap();
    assert_eq!(
        claims_of(&token)["sub"],
        serde_json::json!(10000000000005u64)
    );
    assert_eq!(claims_of(&token)["reg_key"], "rk-1");

    let wrong = TokenClient::new(&url, Credentials::tool_proxy("nobody", b"x".to_vec()))
        .with_clock(Arc::new(app.clock.clone()));
    match wrong.access_token().await {
        Err(ClientError::Refused { status, body }) => {
            assert_eq!(status, 400);
            assert!(body.contains("invalid_grant"), "{body}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
