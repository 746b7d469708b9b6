//! The tool side: build and sign assertions, and trade them for access tokens.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lti2::client::ClientError> {
//! use lti2::client::{Credentials, TokenClient};
//! let client = TokenClient::new(
//!     "https://lms.example.edu/api/lti/accounts/1/authorize",
//!     Credentials::tool_proxy("my-tool-proxy-guid", b"tc_half+tp_half".to_vec()),
//! );
//! let token = client.access_token().await?; // cached until shortly before it expires
//! # let _ = token; Ok(()) }
//! ```

use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use crate::authority::{TokenResponse, AUTHORIZATION_CODE, JWT_BEARER};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::jose::{self, Alg};

/// Builds an assertion (RFC 7523 §3) as the seed document's templates do.
#[derive(Debug, Clone)]
pub struct AssertionBuilder {
    sub: Value,
    aud: String,
    lifetime: i64,
    iat_offset: i64,
    jti: Option<String>,
    alg: Alg,
    extra: Map<String, Value>,
}

impl AssertionBuilder {
    /// An assertion for `sub` and the authorize URL `aud`. An all-digit `sub` (a developer
    /// key's global id) is sent as a JSON integer, like the seed's template; use
    /// [`string_sub`](Self::string_sub) to keep it a string.
    pub fn new(sub: &str, aud: &str) -> Self {
        let sub = match sub.parse::<u64>() {
            Ok(n) if !sub.starts_with('0') || sub == "0" => json!(n),
            _ => json!(sub),
        };
        Self {
            sub,
            aud: aud.to_owned(),
            lifetime: 60,
            iat_offset: 0,
            jti: None,
            alg: Alg::HS256,
            extra: Map::new(),
        }
    }

    /// Sends `sub` as a JSON string even when it is all digits.
    pub fn string_sub(mut self) -> Self {
        if let Value::Number(n) = &self.sub {
            self.sub = json!(n.to_string());
        }
        self
    }

    /// Seconds from `iat` to `exp` (default 60).
    pub fn lifetime(mut self, secs: i64) -> Self {
        self.lifetime = secs;
        self
    }

    /// Shifts `iat` (and so `exp`) by `secs` from now.
    pub fn iat_offset(mut self, secs: i64) -> Self {
        self.iat_offset = secs;
        self
    }

    /// A fixed `jti` (default: a random UUID v4).
    pub fn jti(mut self, jti: &str) -> Self {
        self.jti = Some(jti.to_owned());
        self
    }

    /// The signing algorithm (default HS256).
    pub fn alg(mut self, alg: Alg) -> Self {
        self.alg = alg;
        self
    }

    /// An extra claim.
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.extra.insert(name.to_owned(), value);
        self
    }

    /// The claims for `now` (seconds since the epoch).
    pub fn claims(&self, now: i64) -> Map<String, Value> {
        let iat = now + self.iat_offset;
        let mut c = Map::new();
        c.insert("sub".into(), self.sub.clone());
        c.insert("aud".into(), json!(self.aud));
        c.insert("exp".into(), json!(iat + self.lifetime));
        c.insert("iat".into(), json!(iat));
        c.insert(
            "jti".into(),
            json!(self
                .jti
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())),
        );
        for (k, v) in &self.extra {
            c.insert(k.clone(), v.clone());
        }
        c
    }

    /// Signs the claims for `now` with `secret`: header `{"typ":"JWT","alg":…}`.
    pub fn sign(&self, secret: &[u8], now: i64) -> String {
        let header = json!({"typ": "JWT", "alg": self.alg.as_str()});
        // Keep the template's member order: sub, aud, exp, iat, jti.
        let claims = self.claims(now);
        let ordered: Vec<(&String, &Value)> = ["sub", "aud", "exp", "iat", "jti"]
            .iter()
            .filter_map(|k| claims.get_key_value(*k))
            .chain(
                claims
                    .iter()
                    .filter(|(k, _)| !["sub", "aud", "exp", "iat", "jti"].contains(&k.as_str())),
            )
            .collect();
        jose::sign(&header, &OrderedClaims(ordered), self.alg, secret)
    }
}

struct OrderedClaims<'a>(Vec<(&'a String, &'a Value)>);

impl serde::Serialize for OrderedClaims<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Who the tool is at the platform.
#[derive(Clone)]
pub struct Credentials {
    /// The assertion's `sub`.
    pub sub: String,
    /// The HMAC key.
    pub secret: Vec<u8>,
    /// `code` (the reg_key), required with a developer key.
    pub code: Option<String>,
    /// Which grant type to send.
    pub grant_type: &'static str,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("sub", &self.sub)
            .field("secret", &"<redacted>")
            .field("code", &self.code)
            .field("grant_type", &self.grant_type)
            .finish()
    }
}

impl Credentials {
    /// A split-secret tool proxy (jwt-bearer grant).
    pub fn tool_proxy(guid: &str, shared_secret: Vec<u8>) -> Self {
        Self {
            sub: guid.into(),
            secret: shared_secret,
            code: None,
            grant_type: JWT_BEARER,
        }
    }

    /// A developer key with the registration's reg_key (authorization_code grant).
    pub fn developer_key(global_id: &str, secret: Vec<u8>, reg_key: &str) -> Self {
        Self {
            sub: global_id.into(),
            secret,
            code: Some(reg_key.into()),
            grant_type: AUTHORIZATION_CODE,
        }
    }
}

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request did not complete.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The platform answered with an error.
    #[error("{status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The response body (the RFC 6749 §5.2 JSON).
        body: String,
    },
}

/// How the request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `multipart/form-data` (the seed's `curl -F`).
    Multipart,
}

/// Posts one token request and returns the platform's answer.
pub async fn request_token(
    http: &reqwest::Client,
    url: &str,
    grant_type: &str,
    assertion: &str,
    code: Option<&str>,
    encoding: BodyEncoding,
) -> Result<TokenResponse, ClientError> {
    let mut fields = vec![
        ("grant_type", grant_type.to_owned()),
        ("assertion", assertion.to_owned()),
    ];
    if let Some(c) = code {
        fields.push(("code", c.to_owned()));
    }
    let req = http.post(url);
    let req = match encoding {
        BodyEncoding::Form => req.form(&fields),
        BodyEncoding::Multipart => {
            let mut form = reqwest::multipart::Form::new();
            for (k, v) in fields {
                form = form.text(k, v);
            }
            req.multipart(form)
        }
    };
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let body = resp.text().await?;
    if status != 200 {
        return Err(ClientError::Refused { status, body });
    }
    serde_json::from_str(&body).map_err(|_| ClientError::Refused { status, body })
}

struct Cached {
    token: String,
    expires_at: i64,
}

/// A token client that caches the access token until `refresh_margin` seconds before it
/// expires (default 60), then gets a new one with a fresh assertion.
pub struct TokenClient {
    http: reqwest::Client,
    url: String,
    creds: Credentials,
    clock: SharedClock,
    refresh_margin: i64,
    cached: Mutex<Option<Cached>>,
}

impl TokenClient {
    /// A client for the authorize URL `url` (also the assertion's `aud`).
    pub fn new(url: &str, creds: Credentials) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            creds,
            clock: Arc::new(SystemClock),
            refresh_margin: 60,
            cached: Mutex::new(None),
        }
    }

    /// Uses another clock (tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// A valid access token, from the cache or from the platform.
    pub async fn access_token(&self) -> Result<String, ClientError> {
        let mut cached = self.cached.lock().await;
        let now = self.clock.now();
        if let Some(c) = cached
            .as_ref()
            .filter(|c| now < c.expires_at - self.refresh_margin)
        {
            return Ok(c.token.clone());
        }
        let assertion =
            AssertionBuilder::new(&self.creds.sub, &self.url).sign(&self.creds.secret, now);
        let resp = request_token(
            &self.http,
            &self.url,
            self.creds.grant_type,
            &assertion,
            self.creds.code.as_deref(),
            BodyEncoding::Form,
        )
        .await?;
        let lifetime = resp.expires_in.parse::<i64>().unwrap_or(3600);
        *cached = Some(Cached {
            token: resp.access_token.clone(),
            expires_at: now + lifetime,
        });
        Ok(resp.access_token)
    }
}

/// What the platform answers a tool proxy registration with (IMS `ToolProxyId`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ToolProxyId {
    /// The tool proxy's guid (the registration's reg_key).
    pub tool_proxy_guid: String,
    /// The platform's half of a split secret (128 hex characters), when the tool asked for one.
    pub tc_half_shared_secret: Option<String>,
}

/// A new `tp_half_shared_secret`: 64 random bytes as 128 lowercase hex characters.
pub fn new_tp_half() -> String {
    hex::encode(crate::secrets::random_bytes(64))
}

/// The shared secret of a split-secret tool proxy: `tc_half` followed by `tp_half` (IMS LTI 2.0
/// `Security.splitSecret`), the HMAC key of its assertions.
pub fn split_secret(tc_half: &str, tp_half: &str) -> Vec<u8> {
    format!("{tc_half}{tp_half}").into_bytes()
}

async fn json_reply(resp: reqwest::Response, ok: u16) -> Result<Value, ClientError> {
    let status = resp.status().as_u16();
    let body = resp.text().await?;
    if status != ok {
        return Err(ClientError::Refused { status, body });
    }
    serde_json::from_str(&body).map_err(|_| ClientError::Refused { status, body })
}

/// `GET` a tool consumer profile (`tc_profile_url`), with an access token when given (a
/// developer key's token unlocks its custom profile).
pub async fn fetch_tool_consumer_profile(
    http: &reqwest::Client,
    url: &str,
    access_token: Option<&str>,
) -> Result<Value, ClientError> {
    let mut req = http.get(url);
    if let Some(t) = access_token {
        req = req.bearer_auth(t);
    }
    json_reply(req.send().await?, 200).await
}

/// `POST`s a ToolProxy document to the platform's `ToolProxy.collection` endpoint
/// (`tool_proxy_url`) with the registration's access token; 201 gives the guid and, for a
/// split secret, the platform's half.
pub async fn register_tool_proxy(
    http: &reqwest::Client,
    url: &str,
    access_token: &str,
    tool_proxy: &Value,
) -> Result<ToolProxyId, ClientError> {
    let resp = http
        .post(url)
        .bearer_auth(access_token)
        .header(
            reqwest::header::CONTENT_TYPE,
            crate::tool_proxy::CONTENT_TYPE,
        )
        .body(tool_proxy.to_string())
        .send()
        .await?;
    let v = json_reply(resp, 201).await?;
    serde_json::from_value(v.clone()).map_err(|_| ClientError::Refused {
        status: 201,
        body: v.to_string(),
    })
}

/// `GET`s a guarded API URL with an access token; the JSON body of a 200.
pub async fn get_json(
    http: &reqwest::Client,
    url: &str,
    access_token: &str,
) -> Result<Value, ClientError> {
    json_reply(http.get(url).bearer_auth(access_token).send().await?, 200).await
}

/// The current time from the system clock (for the CLI).
pub fn system_now() -> i64 {
    SystemClock.now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_become_integers_unless_asked() {
        let b = AssertionBuilder::new("10000000000003", "https://x/api/lti/accounts/1/authorize");
        assert_eq!(b.claims(100)["sub"], json!(10000000000003u64));
        assert_eq!(
            b.clone().string_sub().claims(100)["sub"],
            json!("10000000000003")
        );
        assert_eq!(
            AssertionBuilder::new("0123", "a").claims(1)["sub"],
            json!("0123")
        );
        let c = b.lifetime(30).claims(100);
        assert_eq!(
            (c["iat"].as_i64(), c["exp"].as_i64()),
            (Some(100), Some(130))
        );
    }

    #[test]
    fn signed_assertion_keeps_template_order_and_verifies() {
        let t = AssertionBuilder::new("tp", "https://x/api/lti/accounts/1/authorize")
            .jti("j")
            .sign(b"k", 5);
        let jws = jose::parse(&t, &[Alg::HS256]).unwrap();
        assert!(jws.verify(b"k"));
        let raw = jose::payload_text(&t).unwrap();
        assert_eq!(
            raw,
            r#"{"sub":"tp","aud":"https://x/api/lti/accounts/1/authorize","exp":65,"iat":5,"jti":"j"}"#
        );
    }
}
