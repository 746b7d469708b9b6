mod common;

// Rows X01–X35 of shared/vectors/bad-inputs.md, through real HTTP against a real server.
//
// Baseline (every row changes it): the clock at NOW = 1767225600; public base URL
// https://lms.example.edu, so the authorize URL T (the `aud`) is
// https://lms.example.edu/api/lti/accounts/1/authorize; an active split-secret tool proxy
// `tp-1` with the shared secret KEY; header {"alg":"HS256","typ":"JWT"}; claims
// {"sub":"tp-1","aud":T,"exp":NOW+50,"iat":NOW,"jti":"j-1"}; a urlencoded POST of
// grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=…
//
// Every refusal is checked for its exact status and `error`, a JSON `error_description` and
// `Cache-Control: no-store` (so never a 5xx), and then, on the same server, the correct
// assertion with the same `jti` still gets 200: the refused request stored no nonce.

use std::process::{Command, Output};
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use common::{claims_of, settings_for, sign, sign_raw, Reply, TestApp};
use lti2::authority::{AUTHORIZATION_CODE, JWT_BEARER};
use lti2::clock::ManualClock;
use lti2::jose::Alg;
use serde_json::{json, Map, Value};

const NOW: i64 = 1_767_225_600;
const BASE: &str = "https://lms.example.edu";
const PATH: &str = "/api/lti/accounts/1/authorize";
const T: &str = "https://lms.example.edu/api/lti/accounts/1/authorize";
const TP: &str = "tp-1";
const KEY: &str = "k3y-0123456789abcdef0123456789ab";
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
const FORM: &str = "application/x-www-form-urlencoded";
const UNVERIFIABLE: &str = "the assertion could not be verified";

/// The baseline claims.
fn claims() -> Value {
    json!({"sub": TP, "aud": T, "exp": NOW + 50, "iat": NOW, "jti": "j-1"})
}

/// The baseline claims with some members set (added or replaced).
fn with(changes: &[(&str, Value)]) -> Value {
    let mut c = claims();
    for (k, v) in changes {
        c[*k] = v.clone();
    }
    c
}

/// The baseline claims without some members.
fn without(names: &[&str]) -> Value {
    let mut c = claims();
    for n in names {
        c.as_object_mut().unwrap().remove(*n);
    }
    c
}

/// The baseline assertion (signed with KEY).
fn baseline() -> String {
    sign(&claims(), KEY.as_bytes())
}

/// The baseline assertion with another `jti`.
fn baseline_jti(jti: &str) -> String {
    sign(&with(&[("jti", json!(jti))]), KEY.as_bytes())
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Appends the HMAC of `signing_input` (its exact bytes) as an unpadded base64url segment.
fn seal(signing_input: &str, alg: Alg, key: &[u8]) -> String {
    format!(
        "{signing_input}.{}",
        b64(alg.mac(key, signing_input.as_bytes()))
    )
}

/// Signs exactly these header and claims texts (which need not be valid JSON).
fn sign_text(header: &str, claims: &str, alg: Alg, key: &[u8]) -> String {
    seal(&format!("{}.{}", b64(header), b64(claims)), alg, key)
}

/// A urlencoded body.
fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

/// A server at the baseline: clock at NOW, tool proxy tp-1.
async fn spawn_app() -> TestApp {
    let app = TestApp::spawn(BASE, NOW).await;
    app.tool_proxy(TP, KEY).await;
    app
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A 200 with an access token; returns the access token's claims.
fn assert_ok(what: &str, r: &Reply) -> Map<String, Value> {
    assert_eq!(r.status, 200, "{what}: want 200, got {}", r.text);
    assert_eq!(r.json["token_type"], "bearer", "{what}: token_type");
    assert_eq!(r.json["expires_in"], "3600", "{what}: expires_in");
    assert_eq!(
        header(r, "cache-control"),
        "no-store",
        "{what}: Cache-Control"
    );
    let token = r.json["access_token"].as_str();
    claims_of(token.unwrap_or_else(|| panic!("{what}: no access_token in {}", r.text)))
}

/// A JSON error with this status and `error`, a description and `Cache-Control: no-store`.
fn assert_refused(what: &str, r: &Reply, status: u16, error: &str) {
    assert_eq!(r.status, status, "{what}: status; body {}", r.text);
    assert_eq!(r.error(), error, "{what}: error; body {}", r.text);
    assert!(
        !r.description().is_empty(),
        "{what}: error_description; body {}",
        r.text
    );
    assert_eq!(
        header(r, "cache-control"),
        "no-store",
        "{what}: Cache-Control"
    );
}

/// On a fresh baseline server: `assertion` gets 400 invalid_grant, then the baseline
/// assertion (same `jti` j-1) still gets 200. Returns the refusal.
async fn refused(what: &str, assertion: &str) -> Reply {
    let app = spawn_app().await;
    let r = app.exchange(PATH, assertion).await;
    assert_refused(what, &r, 400, "invalid_grant");
    let after = app.exchange(PATH, &baseline()).await;
    assert_ok(
        &format!("{what}: then the baseline with the same jti (nothing stored)"),
        &after,
    );
    r
}

/// On a fresh baseline server: `assertion` gets 200, and a replay of it 400 invalid_grant.
async fn accepted(what: &str, assertion: &str) -> Map<String, Value> {
    let app = spawn_app().await;
    let claims = assert_ok(what, &app.exchange(PATH, assertion).await);
    let again = app.exchange(PATH, assertion).await;
    assert_refused(&format!("{what}: its replay"), &again, 400, "invalid_grant");
    claims
}

// X01–X04, X15, X16, X20–X22: exp and iat.
#[tokio::test]
async fn time_claims_x01_x04_x15_x16_x20_x21_x22() {
    let key = KEY.as_bytes();

    // X01: the tool's clock slightly ahead.
    let x01 = with(&[("iat", json!(NOW + 2)), ("exp", json!(NOW + 62))]);
    accepted("X01 iat=now+2 exp=now+62", &sign(&x01, key)).await;

    // X02: iat more than 30 s ahead; the neighbour at exactly 30 s is fine.
    let r = refused(
        "X02 iat=now+31",
        &sign(&with(&[("iat", json!(NOW + 31))]), key),
    )
    .await;
    assert!(
        r.description().contains("'iat'"),
        "X02: description names iat: {}",
        r.description()
    );
    accepted(
        "X02 neighbour iat=now+30",
        &sign(&with(&[("iat", json!(NOW + 30))]), key),
    )
    .await;

    // X03: expired 30 s ago; no leeway on exp.
    let x03 = with(&[("exp", json!(NOW - 30)), ("iat", json!(NOW - 60))]);
    let r = refused("X03 exp=now-30", &sign(&x03, key)).await;
    assert_eq!(r.description(), "the JWT has expired", "X03");

    // X04, decided: `exp` must be strictly after `now` (RFC 7519 §4.1.4: the current time
    // MUST be before the expiration time), with no leeway. So exp = now is expired and
    // exp = now + 1 is the first accepted value.
    let r = refused("X04 exp=now", &sign(&with(&[("exp", json!(NOW))]), key)).await;
    assert!(
        r.description().contains("expired"),
        "X04 exp=now: {}",
        r.description()
    );
    accepted(
        "X04 exp=now+1",
        &sign(&with(&[("exp", json!(NOW + 1))]), key),
    )
    .await;

    // X15: lifetime over the configured maximum (300 s); neighbours at the bound.
    let year = with(&[("exp", json!(NOW + 365 * 86_400))]);
    let r = refused("X15 exp=now+1y", &sign(&year, key)).await;
    assert!(
        r.description().contains("'exp'"),
        "X15: {}",
        r.description()
    );
    refused(
        "X15 neighbour exp=now+301",
        &sign(&with(&[("exp", json!(NOW + 301))]), key),
    )
    .await;
    accepted(
        "X15 neighbour exp=now+300",
        &sign(&with(&[("exp", json!(NOW + 300))]), key),
    )
    .await;

    // X16: iat older than 300 s; the neighbour at exactly 300 s is fine.
    let r = refused(
        "X16 iat=now-301",
        &sign(&with(&[("iat", json!(NOW - 301))]), key),
    )
    .await;
    assert!(
        r.description().contains("'iat'"),
        "X16: {}",
        r.description()
    );
    accepted(
        "X16 neighbour iat=now-300",
        &sign(&with(&[("iat", json!(NOW - 300))]), key),
    )
    .await;

    // X20: fractional NumericDates.
    let x20 = with(&[
        ("exp", json!(1_767_225_650.5)),
        ("iat", json!(1_767_225_600.25)),
    ]);
    accepted("X20 exp=…650.5 iat=…600.25", &sign(&x20, key)).await;
    accepted(
        "X20 neighbour exp=now+0.5",
        &sign(&with(&[("exp", json!(NOW as f64 + 0.5))]), key),
    )
    .await;

    // X21: a fraction of a second in the past.
    let r = refused(
        "X21 exp=…599.9",
        &sign(&with(&[("exp", json!(1_767_225_599.9))]), key),
    )
    .await;
    assert!(
        r.description().contains("expired"),
        "X21: {}",
        r.description()
    );

    // X22: exp and iat of the wrong JSON type, each naming the claim.
    for claim in ["exp", "iat"] {
        let as_string = json!(if claim == "exp" {
            "1767225650"
        } else {
            "1767225600"
        });
        for bad in [
            as_string,
            Value::Null,
            json!(true),
            json!({}),
            json!([NOW + 50]),
        ] {
            let what = format!("X22 {claim}={bad}");
            let r = refused(&what, &sign(&with(&[(claim, bad.clone())]), key)).await;
            assert_eq!(
                r.description(),
                format!("the '{claim}' must be a number"),
                "{what}"
            );
        }
    }
}

// X05–X09: aud.
#[tokio::test]
async fn aud_x05_to_x09() {
    let key = KEY.as_bytes();
    let aud = |v: Value| sign(&with(&[("aud", v)]), key);

    // X05: exact match; only scheme/host case and a default port are normalised.
    let x05 = [
        ("X05 T + '/'", format!("{T}/")),
        (
            "X05 neighbour path case",
            "https://lms.example.edu/api/lti/accounts/1/Authorize".into(),
        ),
        (
            "X05 neighbour percent-encoded path",
            "https://lms.example.edu/api/lti/accounts/1/%61uthorize".into(),
        ),
        ("X05 neighbour T + '?'", format!("{T}?")),
        ("X05 neighbour T + '#'", format!("{T}#")),
        (
            "X05 neighbour other port",
            "https://lms.example.edu:8443/api/lti/accounts/1/authorize".into(),
        ),
        (
            "X05 neighbour host + '.'",
            "https://lms.example.edu./api/lti/accounts/1/authorize".into(),
        ),
        (
            "X05 neighbour userinfo",
            "https://u@lms.example.edu/api/lti/accounts/1/authorize".into(),
        ),
        (
            "X05 neighbour other account",
            "https://lms.example.edu/api/lti/accounts/2/authorize".into(),
        ),
        (
            "X05 neighbour course route",
            "https://lms.example.edu/api/lti/courses/1/authorize".into(),
        ),
    ];
    for (what, a) in x05 {
        let r = refused(what, &aud(json!(a))).await;
        assert_eq!(r.description(), "the 'aud' is invalid", "{what}");
    }

    // X06: host case and the default port are normalised.
    let x06 = [
        (
            "X06 LMS.example.edu:443",
            "https://LMS.example.edu:443/api/lti/accounts/1/authorize",
        ),
        (
            "X06 neighbour upper-case scheme and host",
            "HTTPS://LMS.EXAMPLE.EDU/api/lti/accounts/1/authorize",
        ),
        (
            "X06 neighbour :443 only",
            "https://lms.example.edu:443/api/lti/accounts/1/authorize",
        ),
    ];
    for (what, a) in x06 {
        accepted(what, &aud(json!(a))).await;
    }

    // X07: another scheme.
    for (what, a) in [
        (
            "X07 http",
            "http://lms.example.edu/api/lti/accounts/1/authorize",
        ),
        (
            "X07 neighbour http on :443",
            "http://lms.example.edu:443/api/lti/accounts/1/authorize",
        ),
        (
            "X07 neighbour https on :80",
            "https://lms.example.edu:80/api/lti/accounts/1/authorize",
        ),
    ] {
        let r = refused(what, &aud(json!(a))).await;
        assert_eq!(r.description(), "the 'aud' is invalid", "{what}");
    }

    // X08: arrays that contain T.
    accepted("X08 [T]", &aud(json!([T]))).await;
    accepted("X08 [T, other]", &aud(json!([T, "https://other.example"]))).await;
    accepted(
        "X08 neighbour [other, T]",
        &aud(json!(["https://other.example", T])),
    )
    .await;

    // X09: shapes that do not contain T.
    let x09 = [
        ("X09 []", json!([])),
        ("X09 [42]", json!([42])),
        ("X09 host only", json!("https://lms.example.edu")),
        ("X09 neighbour [42, T]", json!([42, T])),
        ("X09 neighbour [[T]]", json!([[T]])),
        ("X09 neighbour {}", json!({})),
        ("X09 neighbour null", Value::Null),
        ("X09 neighbour empty string", json!("")),
        ("X09 neighbour [other]", json!(["https://other.example"])),
    ];
    for (what, a) in x09 {
        let r = refused(what, &aud(a)).await;
        assert_eq!(r.description(), "the 'aud' is invalid", "{what}");
    }
    let r = refused("X09 aud absent", &sign(&without(&["aud"]), key)).await;
    assert_eq!(
        r.description(),
        "the following claims are missing: aud",
        "X09 aud absent"
    );
}

// X10: missing claims, each alone and several at once.
#[tokio::test]
async fn missing_claims_x10() {
    for claim in ["sub", "exp", "iat", "jti"] {
        let what = format!("X10 {claim} absent");
        let r = refused(&what, &sign(&without(&[claim]), KEY.as_bytes())).await;
        assert_eq!(
            r.description(),
            format!("the following claims are missing: {claim}"),
            "{what}"
        );
    }
    let r = refused(
        "X10 exp and jti absent",
        &sign(&without(&["exp", "jti"]), KEY.as_bytes()),
    )
    .await;
    assert_eq!(
        r.description(),
        "the following claims are missing: exp, jti",
        "X10 exp+jti"
    );
    let all = without(&["sub", "exp", "iat", "jti"]);
    let r = refused(
        "X10 sub, exp, iat and jti absent",
        &sign(&all, KEY.as_bytes()),
    )
    .await;
    assert_eq!(
        r.description(),
        "the following claims are missing: sub, exp, iat, jti",
        "X10 all four"
    );
    let r = refused(
        "X10 neighbour: every claim absent",
        &sign(&json!({}), KEY.as_bytes()),
    )
    .await;
    assert_eq!(
        r.description(),
        "the following claims are missing: sub, aud, exp, iat, jti",
        "X10 empty claims"
    );
}

// X11, X13, X14: replays, a wrong key, and nonces per sub.
#[tokio::test]
async fn replay_x11_x13_x14() {
    // X11: the same request twice.
    let app = spawn_app().await;
    assert_ok("X11 first", &app.exchange(PATH, &baseline()).await);
    let r = app.exchange(PATH, &baseline()).await;
    assert_refused("X11 second", &r, 400, "invalid_grant");
    assert_eq!(r.description(), "the 'jti' is invalid", "X11 second");
    assert_ok(
        "X11 neighbour: another jti",
        &app.exchange(PATH, &baseline_jti("j-2")).await,
    );

    // X13: a wrong key, then the right one with the same jti.
    let app = spawn_app().await;
    let wrong = sign(&claims(), b"not-the-key-0123456789abcdef0123");
    let r = app.exchange(PATH, &wrong).await;
    assert_refused("X13 wrong key", &r, 400, "invalid_grant");
    assert_eq!(r.description(), UNVERIFIABLE, "X13 wrong key");
    // Neighbour: the right key with one byte of the signature flipped.
    let good = baseline();
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut mac = URL_SAFE_NO_PAD.decode(sig).unwrap();
    mac[0] ^= 1;
    let flipped = format!("{input}.{}", b64(&mac));
    let r = app.exchange(PATH, &flipped).await;
    assert_refused(
        "X13 neighbour flipped signature bit",
        &r,
        400,
        "invalid_grant",
    );
    assert_eq!(r.description(), UNVERIFIABLE, "X13 flipped bit");
    // Neighbour: the right key as a prefix of the wrong one, and a truncated key.
    for k in [format!("{KEY}x"), KEY[..KEY.len() - 1].to_string()] {
        let r = app.exchange(PATH, &sign(&claims(), k.as_bytes())).await;
        assert_refused("X13 neighbour near-miss key", &r, 400, "invalid_grant");
    }
    assert_ok(
        "X13 then the right key, same jti",
        &app.exchange(PATH, &good).await,
    );

    // X14: nonces are per sub.
    let app = spawn_app().await;
    let k2 = "tp2-secret-0123456789abcdef01234";
    app.tool_proxy("tp-2", k2).await;
    assert_ok("X14 tp-1 j-1", &app.exchange(PATH, &baseline()).await);
    let tp2 = sign(&with(&[("sub", json!("tp-2"))]), k2.as_bytes());
    let claims = assert_ok("X14 tp-2 reuses j-1", &app.exchange(PATH, &tp2).await);
    assert_eq!(claims["sub"], "tp-2", "X14 token sub");
    let r = app.exchange(PATH, &tp2).await;
    assert_refused("X14 tp-2 replays its own j-1", &r, 400, "invalid_grant");
    let r = app.exchange(PATH, &baseline()).await;
    assert_refused("X14 tp-1 replays j-1", &r, 400, "invalid_grant");
}

// X12: 20 identical requests at once on one instance give exactly one 200. (The row's
// "later: two instances on one database" is not covered: the SQLite store serves one instance
// per database file, and the shared PostgreSQL store does not exist yet.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_requests_x12() {
    let app = spawn_app().await;
    for round in 0..3 {
        let a = if round == 0 {
            baseline()
        } else {
            baseline_jti(&format!("j-race-{round}"))
        };
        let replies = race(&app, &vec![a.clone(); 20]).await;
        check_race(&format!("X12 round {round}"), &replies);
        let r = app.exchange(PATH, &a).await;
        assert_refused(
            &format!("X12 round {round}: replay afterwards"),
            &r,
            400,
            "invalid_grant",
        );
    }
    // Neighbour: 20 different jtis at once are all accepted (no false replays).
    let distinct: Vec<String> = (0..20)
        .map(|i| baseline_jti(&format!("j-many-{i}")))
        .collect();
    for (i, (status, _, text)) in race(&app, &distinct).await.iter().enumerate() {
        assert_eq!(*status, 200, "X12 neighbour: distinct jti {i}: {text}");
    }
}

/// Sends one request per assertion, all at once; returns (status, error, body) of each.
async fn race(app: &TestApp, assertions: &[String]) -> Vec<(u16, String, String)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(assertions.len()));
    let mut tasks = Vec::new();
    for a in assertions {
        let body = form(&[("grant_type", JWT_BEARER), ("assertion", a)]);
        let (http, url, barrier) = (
            app.http.clone(),
            format!("{}{PATH}", app.addr),
            barrier.clone(),
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let resp = http
                .post(url)
                .header("content-type", FORM)
                .body(body)
                .send()
                .await
                .expect("request");
            let r = TestApp::reply(resp).await;
            (r.status, r.error().to_owned(), r.text)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

fn check_race(what: &str, replies: &[(u16, String, String)]) {
    let ok = replies.iter().filter(|r| r.0 == 200).count();
    assert_eq!(
        ok,
        1,
        "{what}: exactly one 200 of {}: {:?}",
        replies.len(),
        replies.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    for (status, error, text) in replies.iter().filter(|r| r.0 != 200) {
        assert_eq!(
            (*status, error.as_str()),
            (400, "invalid_grant"),
            "{what}: the others are replays: {text}"
        );
        assert!(text.contains("the 'jti' is invalid"), "{what}: {text}");
    }
}

// X17–X19: algorithms.
#[tokio::test]
async fn algorithms_x17_x18_x19() {
    let key = KEY.as_bytes();
    let body = serde_json::to_string(&claims()).unwrap();
    let unsigned = |alg: &str| {
        format!(
            "{}.{}.",
            b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
            b64(&body)
        )
    };

    // X17: alg none, in any case, without and with a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let what = format!("X17 alg={alg}, empty signature");
        let r = refused(&what, &unsigned(alg)).await;
        assert!(
            r.description().contains("not allowed"),
            "{what}: {}",
            r.description()
        );
    }
    let none_hdr = r#"{"alg":"none","typ":"JWT"}"#;
    let r = refused(
        "X17 alg=none with an HS256 signature",
        &sign_text(none_hdr, &body, Alg::HS256, key),
    )
    .await;
    assert!(
        r.description().contains("not allowed"),
        "X17 signed none: {}",
        r.description()
    );

    // X18: asymmetric and unknown algorithms (the HMAC of the secret as a fake signature,
    // the classic confusion).
    for alg in [
        "RS256", "ES256", "PS256", "EdDSA", "hs256", "HS256 ", "HS1", "dir",
    ] {
        let what = format!("X18 alg={alg:?}");
        let hdr = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let r = refused(&what, &sign_text(&hdr, &body, Alg::HS256, key)).await;
        assert!(
            r.description().contains("not allowed"),
            "{what}: {}",
            r.description()
        );
    }
    // Neighbours of X17/X18: no alg, a non-string alg, and a `crit` header.
    for (what, hdr) in [
        ("X18 neighbour: no alg", r#"{"typ":"JWT"}"#),
        (
            "X18 neighbour: alg array",
            r#"{"alg":["HS256"],"typ":"JWT"}"#,
        ),
        ("X18 neighbour: alg null", r#"{"alg":null}"#),
        (
            "X18 neighbour: crit",
            r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
        ),
    ] {
        refused(what, &sign_text(hdr, &body, Alg::HS256, key)).await;
    }
    // A JWE (five segments) is refused by name.
    let jwe = format!(
        "{}.{}.x.y.z",
        b64(r#"{"alg":"dir","enc":"A256GCM"}"#),
        b64(&body)
    );
    let r = refused("X18 neighbour: JWE", &jwe).await;
    assert!(
        r.description().contains("JWE"),
        "X18 JWE: {}",
        r.description()
    );

    // X19: HS512 and HS384 with the right key, refused by the default policy.
    for alg in [Alg::HS512, Alg::HS384] {
        let what = format!("X19 {alg} by default");
        let t = sign_raw(
            &json!({"alg": alg.as_str(), "typ": "JWT"}),
            &claims(),
            alg,
            key,
        );
        let r = refused(&what, &t).await;
        assert_eq!(
            r.description(),
            format!("the algorithm '{alg}' is not allowed"),
            "{what}"
        );
    }
}

// X19: a policy that allows HS512 accepts it (and still refuses what it does not list).
#[tokio::test]
async fn hs512_when_enabled_x19() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_for(dir.path(), BASE);
    settings.policy.allowed_algs = vec![Alg::HS256, Alg::HS512];
    let app = TestApp::spawn_with(settings, Arc::new(dir), ManualClock::new(NOW)).await;
    app.tool_proxy(TP, KEY).await;
    let key = KEY.as_bytes();

    let hs384 = sign_raw(
        &json!({"alg":"HS384","typ":"JWT"}),
        &claims(),
        Alg::HS384,
        key,
    );
    let r = app.exchange(PATH, &hs384).await;
    assert_refused("X19 HS384 still refused", &r, 400, "invalid_grant");
    // HS512 header, HS256 MAC: the header names the algorithm that is checked.
    let mixed = sign_raw(
        &json!({"alg":"HS512","typ":"JWT"}),
        &claims(),
        Alg::HS256,
        key,
    );
    let r = app.exchange(PATH, &mixed).await;
    assert_refused(
        "X19 HS512 header over an HS256 MAC",
        &r,
        400,
        "invalid_grant",
    );
    assert_eq!(r.description(), UNVERIFIABLE, "X19 mixed");

    let hs512 = sign_raw(
        &json!({"alg":"HS512","typ":"JWT"}),
        &claims(),
        Alg::HS512,
        key,
    );
    assert_ok("X19 HS512 when enabled", &app.exchange(PATH, &hs512).await);
    let r = app.exchange(PATH, &hs512).await;
    assert_refused("X19 HS512 replay", &r, 400, "invalid_grant");
    assert_ok(
        "X19 HS256 still accepted",
        &app.exchange(PATH, &baseline_jti("j-2")).await,
    );
}

// X23, X24, X34: developer-key subjects and `code`.
#[tokio::test]
async fn developer_key_subjects_x23_x24_x34() {
    const DK: i64 = 10_000_000_000_003;
    const DK_ROUND: i64 = 10_000_000_000_000; // what 1.0e13 would name if it were cast
    const DK_SECRET: &str = "dk-secret-0123456789abcdef0123456789";
    let app = TestApp::spawn(BASE, NOW).await;
    app.developer_key(DK, DK_SECRET).await;
    app.developer_key(DK_ROUND, DK_SECRET).await;
    let dk = |sub: Value, jti: &str| {
        sign(
            &with(&[("sub", sub), ("jti", json!(jti))]),
            DK_SECRET.as_bytes(),
        )
    };

    // X24: a sub that is neither a string nor a non-negative JSON integer.
    for (what, sub) in [
        ("X24 sub=1.0e13", json!(1.0e13)),
        ("X24 sub={\"id\":1}", json!({"id": 1})),
        ("X24 neighbour sub=-10000000000003", json!(-DK)),
        ("X24 neighbour sub=10000000000003.0", json!(DK as f64)),
        ("X24 neighbour sub=true", json!(true)),
        ("X24 neighbour sub=[10000000000003]", json!([DK])),
        ("X24 neighbour sub=\"\"", json!("")),
        ("X24 neighbour sub=null", Value::Null),
    ] {
        let r = with_code(&app, &dk(sub, "j-dk-1")).await;
        assert_refused(what, &r, 400, "invalid_grant");
        assert_eq!(
            r.description(),
            "the 'sub' must be a string or an integer",
            "{what}"
        );
    }
    // Strings that only look like the id name no developer key.
    for s in [
        "10000000000003.0",
        " 10000000000003",
        "+10000000000003",
        "1e13",
        "10000000000003x",
        "0x9184E72A003",
    ] {
        let what = format!("X24 neighbour sub={s:?}");
        let r = with_code(&app, &dk(json!(s), "j-dk-1")).await;
        assert_refused(&what, &r, 400, "invalid_grant");
        assert_eq!(r.description(), UNVERIFIABLE, "{what}");
    }

    // X34 (decided: invalid_request, since the request lacks a parameter; checked after the
    // signature and claims, before the nonce): a developer-key assertion without `code`.
    let a = dk(json!(DK), "j-dk-1");
    for (what, pairs) in [
        (
            "X34 authorization_code, no code",
            vec![
                ("grant_type", AUTHORIZATION_CODE),
                ("assertion", a.as_str()),
            ],
        ),
        (
            "X34 neighbour: jwt-bearer, no code",
            vec![("grant_type", JWT_BEARER), ("assertion", a.as_str())],
        ),
        (
            "X34 neighbour: blank code",
            vec![
                ("grant_type", AUTHORIZATION_CODE),
                ("assertion", a.as_str()),
                ("code", " "),
            ],
        ),
    ] {
        let r = app.post_form(PATH, &pairs).await;
        assert_refused(what, &r, 400, "invalid_request");
        assert!(
            r.description().contains("'code'"),
            "{what}: description mentions 'code': {}",
            r.description()
        );
    }

    // X23 (and X34, X24 nothing stored): the same jti, integer sub, with code → 200.
    let first = assert_ok(
        "X23 integer sub with code (same jti as X24/X34)",
        &with_code(&app, &a).await,
    );
    assert_eq!(first["sub"], json!(DK), "X23 integer sub: access-token sub");
    assert!(
        first["sub"].is_u64(),
        "X23 integer sub: access-token sub is a JSON integer"
    );
    assert_eq!(
        first["reg_key"], "rk-1",
        "X23 integer sub: reg_key is the code"
    );
    let r = with_code(&app, &a).await;
    assert_refused("X23 integer sub: replay", &r, 400, "invalid_grant");

    let second = assert_ok(
        "X23 string sub with code",
        &with_code(&app, &dk(json!("10000000000003"), "j-dk-2")).await,
    );
    assert_eq!(second["sub"], json!(DK), "X23 string sub: access-token sub");
    assert!(
        second["sub"].is_u64(),
        "X23 string sub: access-token sub is a JSON integer"
    );
    // The string and integer forms name the same key, so they share its nonces.
    let r = with_code(&app, &dk(json!("10000000000003"), "j-dk-1")).await;
    assert_refused(
        "X23 string sub replays the integer sub's jti",
        &r,
        400,
        "invalid_grant",
    );

    // X24 nothing stored for the id 1.0e13 would have named either.
    let round = assert_ok(
        "X24 then sub=10000000000000, same jti",
        &with_code(&app, &dk(json!(DK_ROUND), "j-dk-1")).await,
    );
    assert_eq!(round["sub"], json!(DK_ROUND), "X24 round");
}

// X25–X27: the compact serialisation.
#[tokio::test]
async fn token_structure_x25_x26_x27() {
    let key = KEY.as_bytes();
    let h = b64(HEADER);

    // X25: a payload with `==` padding, MAC over the padded text.
    let text = (0..3)
        .map(|n| serde_json::to_string(&with(&[("x", json!("y".repeat(n)))])).unwrap())
        .find(|t| t.len() % 3 == 1)
        .unwrap();
    let padded = URL_SAFE.encode(&text);
    assert!(padded.ends_with("=="), "X25 setup: {padded}");
    let r = refused(
        "X25 payload with '==' padding",
        &seal(&format!("{h}.{padded}"), Alg::HS256, key),
    )
    .await;
    assert!(
        r.description().contains("base64url"),
        "X25 padded: {}",
        r.description()
    );
    // Control: the same claims unpadded are fine.
    accepted(
        "X25 control: the same claims unpadded",
        &sign_text(HEADER, &text, Alg::HS256, key),
    )
    .await;
    // Neighbour: a padded header, and a padded signature.
    let hp = URL_SAFE.encode(r#"{"alg":"HS256","typ":"JWT" }"#);
    assert!(hp.ends_with('='), "X25 setup: {hp}");
    refused(
        "X25 neighbour: padded header",
        &seal(&format!("{hp}.{}", b64(&text)), Alg::HS256, key),
    )
    .await;
    refused(
        "X25 neighbour: padded signature",
        &format!("{}=", sign_text(HEADER, &text, Alg::HS256, key)),
    )
    .await;

    // X25: a payload in the standard alphabet ('+' or '/'), MAC over that text.
    let qs = serde_json::to_string(&with(&[("x", json!("??????~~~~~~"))])).unwrap();
    let std_p = STANDARD_NO_PAD.encode(&qs);
    assert!(std_p.contains(['+', '/']), "X25 setup: {std_p}");
    let r = refused(
        "X25 payload with '+' or '/'",
        &seal(&format!("{h}.{std_p}"), Alg::HS256, key),
    )
    .await;
    assert!(
        r.description().contains("base64url"),
        "X25 +/: {}",
        r.description()
    );
    accepted(
        "X25 control: the same claims in base64url",
        &sign_text(HEADER, &qs, Alg::HS256, key),
    )
    .await;
    // Neighbour: the signature in the standard alphabet.
    let t = (0..200)
        .map(|n| sign(&with(&[("x", json!(n))]), key))
        .find(|t| t.rsplit('.').next().unwrap().contains(['-', '_']))
        .unwrap();
    let (input, sig) = t.rsplit_once('.').unwrap();
    let std_sig = format!("{input}.{}", sig.replace('-', "+").replace('_', "/"));
    refused("X25 neighbour: signature with '+' or '/'", &std_sig).await;

    // X26: extra, missing or empty segments and stray characters around a good token.
    let jwt = baseline();
    let parts: Vec<&str> = jwt.split('.').collect();
    let (hh, p, s) = (parts[0], parts[1], parts[2]);
    let x26 = [
        ("X26 <jwt>X", format!("{jwt}X")),
        ("X26 <jwt>.", format!("{jwt}.")),
        ("X26 <jwt>.x", format!("{jwt}.x")),
        ("X26 <h>.<p>", format!("{hh}.{p}")),
        ("X26 ..", "..".to_string()),
        ("X26 <h>..<sig>", format!("{hh}..{s}")),
        ("X26 trailing newline", format!("{jwt}\n")),
        ("X26 neighbour: leading newline", format!("\n{jwt}")),
        ("X26 neighbour: trailing space", format!("{jwt} ")),
        ("X26 neighbour: trailing CRLF", format!("{jwt}\r\n")),
        ("X26 neighbour: <h>.<p>.", format!("{hh}.{p}.")),
        ("X26 neighbour: .<p>.<sig>", format!(".{p}.{s}")),
        (
            "X26 neighbour: truncated signature",
            format!("{hh}.{p}.{}", &s[..s.len() - 1]),
        ),
        ("X26 neighbour: <jwt>.x.y", format!("{jwt}.x.y")),
        ("X26 neighbour: space inside", format!("{hh}. {p}.{s}")),
        ("X26 neighbour: ...", "...".to_string()),
        ("X26 neighbour: .", ".".to_string()),
    ];
    for (what, t) in x26 {
        refused(what, &t).await;
    }

    // X27: things that are not JWTs, or whose segments are not JSON objects.
    let body = serde_json::to_string(&claims()).unwrap();
    let x27 = [
        ("X27 f3afae3", "f3afae3".to_string()),
        ("X27 a.b.c", "a.b.c".to_string()),
        ("X27 eyJ.eyJ.x", "eyJ.eyJ.x".to_string()),
        ("X27 header []", sign_text("[]", &body, Alg::HS256, key)),
        (
            "X27 payload \"tp-1\"",
            sign_text(HEADER, "\"tp-1\"", Alg::HS256, key),
        ),
        (
            "X27 payload null",
            sign_text(HEADER, "null", Alg::HS256, key),
        ),
        (
            "X27 neighbour: header {}",
            sign_text("{}", &body, Alg::HS256, key),
        ),
        (
            "X27 neighbour: header \"HS256\"",
            sign_text("\"HS256\"", &body, Alg::HS256, key),
        ),
        (
            "X27 neighbour: payload []",
            sign_text(HEADER, "[]", Alg::HS256, key),
        ),
        (
            "X27 neighbour: payload 42",
            sign_text(HEADER, "42", Alg::HS256, key),
        ),
        (
            "X27 neighbour: payload empty",
            sign_text(HEADER, "", Alg::HS256, key),
        ),
        (
            "X27 neighbour: payload with trailing data",
            sign_text(HEADER, &format!("{body} {{}}"), Alg::HS256, key),
        ),
        (
            "X27 neighbour: payload not UTF-8",
            seal(
                &format!("{}.{}", b64(HEADER), b64([0xff, 0xfe, b'{', b'}'])),
                Alg::HS256,
                key,
            ),
        ),
        (
            "X27 neighbour: duplicate claim",
            sign_text(
                HEADER,
                &body.replacen('{', r#"{"sub":"tp-other","#, 1),
                Alg::HS256,
                key,
            ),
        ),
        (
            "X27 neighbour: duplicate header member",
            sign_text(r#"{"alg":"HS256","alg":"HS256"}"#, &body, Alg::HS256, key),
        ),
        (
            "X27 neighbour: a UUID",
            "688700c2-4bc1-40b7-83e5-7cbf54f93305".to_string(),
        ),
    ];
    for (what, t) in x27 {
        refused(what, &t).await;
    }
}

// X28: oversized inputs are answered with 400 or 413 and a JSON body; the server goes on.
#[tokio::test]
async fn oversized_inputs_x28() {
    let app = spawn_app().await;
    let key = KEY.as_bytes();
    let claims_with = |extra: &str| {
        format!(
            r#"{{"sub":"tp-1","aud":"{T}","exp":{},"iat":{NOW},"jti":"j-1","x":{extra}}}"#,
            NOW + 50
        )
    };
    let too_big = |what: &str, r: &Reply| {
        assert!(
            matches!(r.status, 400 | 413),
            "{what}: want 400 or 413, got {} {}",
            r.status,
            r.text
        );
        assert!(
            matches!(r.error(), "invalid_request" | "invalid_grant"),
            "{what}: JSON error: {}",
            r.text
        );
        assert!(!r.description().is_empty(), "{what}: error_description");
        assert_eq!(
            header(r, "cache-control"),
            "no-store",
            "{what}: Cache-Control"
        );
    };

    let claim = sign_text(
        HEADER,
        &claims_with(&format!("\"{}\"", "a".repeat(5_000_000))),
        Alg::HS256,
        key,
    );
    too_big(
        "X28 5,000,000-character claim",
        &app.exchange(PATH, &claim).await,
    );

    let big_header = format!(
        r#"{{"alg":"HS256","typ":"JWT","x":"{}"}}"#,
        "h".repeat(2 * 1024 * 1024)
    );
    let hdr = sign_text(&big_header, &claims_with("1"), Alg::HS256, key);
    too_big("X28 2 MB header", &app.exchange(PATH, &hdr).await);

    let deep = |n: usize| claims_with(&format!("{}{}", "[".repeat(n), "]".repeat(n)));
    let nested = sign_text(HEADER, &deep(10_000), Alg::HS256, key);
    assert!(
        nested.len() < 64 * 1024,
        "X28 setup: the nested token fits in the body limit"
    );
    let r = app.exchange(PATH, &nested).await;
    too_big("X28 claims nested 10,000 arrays deep", &r);
    assert_eq!(
        r.error(),
        "invalid_grant",
        "X28 nested: past the body limit, refused as an assertion"
    );
    // Neighbour: nested 2,900 deep, under the 8 KiB assertion limit: refused by the parser's
    // depth limit, not by a stack overflow.
    let nested = sign_text(HEADER, &deep(2_900), Alg::HS256, key);
    assert!(nested.len() < 8192, "X28 setup: {} bytes", nested.len());
    let r = app.exchange(PATH, &nested).await;
    assert_refused(
        "X28 neighbour: nested 2,900 deep under 8 KiB",
        &r,
        400,
        "invalid_grant",
    );
    assert!(
        r.description().contains("payload"),
        "X28 nested 2,900: {}",
        r.description()
    );

    let mut body = form(&[("grant_type", JWT_BEARER), ("assertion", "")]);
    body.resize(body.len() + 20 * 1024 * 1024, b'a');
    too_big(
        "X28 20 MB body",
        &app.post_raw(PATH, Some(FORM), body).await,
    );
    // Neighbour: a body just over the 64 KiB limit.
    let mut body = form(&[("grant_type", JWT_BEARER), ("assertion", "")]);
    body.resize(64 * 1024 + 1, b'a');
    let r = app.post_raw(PATH, Some(FORM), body).await;
    assert_refused("X28 neighbour: 64 KiB + 1 body", &r, 413, "invalid_request");

    assert_eq!(
        health(&app).await,
        200,
        "X28: the server still answers /health"
    );
    assert_ok(
        "X28: then the baseline, same jti",
        &app.exchange(PATH, &baseline()).await,
    );
}

async fn health(app: &TestApp) -> u16 {
    let resp = app
        .http
        .get(format!("{}/health", app.addr))
        .send()
        .await
        .expect("request");
    resp.status().as_u16()
}

// X29, X30: body encodings.
#[tokio::test]
async fn body_encodings_x29_x30() {
    let app = spawn_app().await;

    // X29: every encoding Canvas reads, each with its own jti.
    let a = baseline_jti("j-29-multipart");
    assert_ok(
        "X29 multipart/form-data",
        &app.post_multipart(
            PATH,
            &[("grant_type", JWT_BEARER), ("assertion", a.as_str())],
        )
        .await,
    );
    for (i, ct) in [
        "application/x-www-form-urlencoded; charset=UTF-8",
        "APPLICATION/X-WWW-FORM-URLENCODED",
        "Application/X-Www-Form-Urlencoded ; charset=utf-8",
    ]
    .into_iter()
    .enumerate()
    {
        let a = baseline_jti(&format!("j-29-form-{i}"));
        let r = app
            .post_raw(
                PATH,
                Some(ct),
                form(&[("grant_type", JWT_BEARER), ("assertion", a.as_str())]),
            )
            .await;
        assert_ok(&format!("X29 Content-Type {ct:?}"), &r);
    }
    for (i, ct) in [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
    ]
    .into_iter()
    .enumerate()
    {
        let a = baseline_jti(&format!("j-29-json-{i}"));
        let body = serde_json::to_vec(&json!({"grant_type": JWT_BEARER, "assertion": a})).unwrap();
        assert_ok(
            &format!("X29 JSON body, Content-Type {ct:?}"),
            &app.post_raw(PATH, Some(ct), body).await,
        );
    }

    // X30: bodies that cannot be read; all with the baseline assertion (j-1).
    let good = form(&[("grant_type", JWT_BEARER), ("assertion", &baseline())]);
    let json_body =
        serde_json::to_vec(&json!({"grant_type": JWT_BEARER, "assertion": baseline()})).unwrap();
    let x30: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        (
            "X30 Content-Type 'application/json, application/x-www-form-urlencoded'",
            Some("application/json, application/x-www-form-urlencoded"),
            good.clone(),
        ),
        (
            "X30 same, with a JSON body",
            Some("application/json, application/x-www-form-urlencoded"),
            json_body.clone(),
        ),
        ("X30 no Content-Type with a body", None, good.clone()),
        ("X30 empty body, no Content-Type", None, Vec::new()),
        ("X30 empty body, urlencoded", Some(FORM), Vec::new()),
        ("X30 empty body, JSON", Some("application/json"), Vec::new()),
        (
            "X30 neighbour: text/plain",
            Some("text/plain"),
            good.clone(),
        ),
        (
            "X30 neighbour: form body labelled JSON",
            Some("application/json"),
            good.clone(),
        ),
        (
            "X30 neighbour: JSON body labelled form",
            Some(FORM),
            json_body.clone(),
        ),
        (
            "X30 neighbour: multipart without a boundary",
            Some("multipart/form-data"),
            good.clone(),
        ),
        (
            "X30 neighbour: JSON array",
            Some("application/json"),
            b"[1,2]".to_vec(),
        ),
        (
            "X30 neighbour: JSON assertion not a string",
            Some("application/json"),
            serde_json::to_vec(&json!({"grant_type": JWT_BEARER, "assertion": 1})).unwrap(),
        ),
        (
            "X30 neighbour: JSON with a repeated member",
            Some("application/json"),
            format!(
                r#"{{"grant_type":"{JWT_BEARER}","assertion":"{}","assertion":"x"}}"#,
                baseline()
            )
            .into_bytes(),
        ),
    ];
    for (what, ct, body) in x30 {
        let r = app.post_raw(PATH, ct, body).await;
        assert_refused(what, &r, 400, "invalid_request");
    }
    assert_ok(
        "X30: then the baseline, same jti (nothing stored)",
        &app.exchange(PATH, &baseline()).await,
    );
}

// X31–X33: the request's parameters.
#[tokio::test]
async fn parameters_x31_x32_x33() {
    let app = spawn_app().await;
    let a = baseline();

    // X31: no grant_type (and neighbours: blank grant_type, no or blank assertion).
    for (what, pairs) in [
        ("X31 grant_type absent", vec![("assertion", a.as_str())]),
        (
            "X31 neighbour: grant_type empty",
            vec![("grant_type", ""), ("assertion", a.as_str())],
        ),
        (
            "X31 neighbour: assertion absent",
            vec![("grant_type", JWT_BEARER)],
        ),
        (
            "X31 neighbour: assertion blank",
            vec![("grant_type", JWT_BEARER), ("assertion", " ")],
        ),
        (
            "X31 neighbour: GRANT_TYPE",
            vec![("GRANT_TYPE", JWT_BEARER), ("assertion", a.as_str())],
        ),
    ] {
        let r = app.post_form(PATH, &pairs).await;
        assert_refused(what, &r, 400, "invalid_request");
    }

    // X32: near-miss grant types.
    let upper = JWT_BEARER.to_ascii_uppercase();
    let trailing = format!("{JWT_BEARER} ");
    let leading = format!(" {JWT_BEARER}");
    for (what, gt) in [
        (
            "X32 jwt_bearer",
            "urn:ietf:params:oauth:grant-type:jwt_bearer",
        ),
        ("X32 upper-cased", upper.as_str()),
        ("X32 trailing space", trailing.as_str()),
        ("X32 neighbour: leading space", leading.as_str()),
        ("X32 neighbour: AUTHORIZATION_CODE", "AUTHORIZATION_CODE"),
        ("X32 neighbour: client_credentials", "client_credentials"),
        ("X32 neighbour: jwt-bearer", "jwt-bearer"),
    ] {
        let r = app
            .post_form(PATH, &[("grant_type", gt), ("assertion", a.as_str())])
            .await;
        assert_refused(what, &r, 400, "unsupported_grant_type");
    }

    // X33: a parameter given twice, in the body or in the query and the body.
    for (what, pairs) in [
        (
            "X33 grant_type twice in the body",
            vec![
                ("grant_type", JWT_BEARER),
                ("grant_type", JWT_BEARER),
                ("assertion", a.as_str()),
            ],
        ),
        (
            "X33 grant_type twice, different",
            vec![
                ("grant_type", AUTHORIZATION_CODE),
                ("grant_type", JWT_BEARER),
                ("assertion", a.as_str()),
            ],
        ),
        (
            "X33 assertion twice in the body",
            vec![
                ("grant_type", JWT_BEARER),
                ("assertion", a.as_str()),
                ("assertion", a.as_str()),
            ],
        ),
        (
            "X33 assertion twice, second empty",
            vec![
                ("grant_type", JWT_BEARER),
                ("assertion", a.as_str()),
                ("assertion", ""),
            ],
        ),
        (
            "X33 neighbour: code twice",
            vec![
                ("grant_type", JWT_BEARER),
                ("assertion", a.as_str()),
                ("code", "x"),
                ("code", "x"),
            ],
        ),
    ] {
        let r = app.post_form(PATH, &pairs).await;
        assert_refused(what, &r, 400, "invalid_request");
        assert!(
            r.description().contains("more than once"),
            "{what}: {}",
            r.description()
        );
    }
    let q = |k: &str, v: &str| format!("{PATH}?{}", String::from_utf8(form(&[(k, v)])).unwrap());
    for (what, path, pairs) in [
        (
            "X33 grant_type in the query and the body",
            q("grant_type", JWT_BEARER),
            vec![("grant_type", JWT_BEARER), ("assertion", a.as_str())],
        ),
        (
            "X33 assertion in the query and the body",
            q("assertion", a.as_str()),
            vec![("grant_type", JWT_BEARER), ("assertion", a.as_str())],
        ),
    ] {
        let r = app.post_form(&path, &pairs).await;
        assert_refused(what, &r, 400, "invalid_request");
        assert!(
            r.description().contains("more than once"),
            "{what}: {}",
            r.description()
        );
    }
    let r = app
        .post_multipart(
            &q("grant_type", JWT_BEARER),
            &[("grant_type", JWT_BEARER), ("assertion", a.as_str())],
        )
        .await;
    assert_refused(
        "X33 neighbour: query and multipart body",
        &r,
        400,
        "invalid_request",
    );
    let json_body = serde_json::to_vec(&json!({"grant_type": JWT_BEARER, "assertion": a})).unwrap();
    let r = app
        .post_raw(
            &q("assertion", a.as_str()),
            Some("application/json"),
            json_body,
        )
        .await;
    assert_refused(
        "X33 neighbour: query and JSON body",
        &r,
        400,
        "invalid_request",
    );

    assert_ok(
        "X31–X33: then the baseline, same jti (nothing stored)",
        &app.exchange(PATH, &a).await,
    );
    // The query and the body together are one parameter set (Rails): split across both is fine.
    let path = q("grant_type", JWT_BEARER);
    let r = app
        .post_form(&path, &[("assertion", &baseline_jti("j-2"))])
        .await;
    assert_ok(
        "X33 control: grant_type in the query, assertion in the body",
        &r,
    );
}

// X35: short secrets are refused by the console and never usable.
#[tokio::test]
async fn short_tool_proxy_secrets_x35() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::database_url(dir.path());
    let data = dir.path().display().to_string();
    let admin = |args: &[&str]| admin_on(&db, &data, args);

    for (what, secret, extra) in [
        ("X35 8-byte secret", "12345678", None),
        ("X35 empty secret", "", None),
        (
            "X35 neighbour: 31-byte secret",
            "0123456789abcdef0123456789abcde",
            None,
        ),
        (
            "X35 neighbour: empty secret with --allow-short-secret",
            "",
            Some("--allow-short-secret"),
        ),
    ] {
        let mut args = vec![
            "tool-proxy",
            "create",
            "--guid",
            "tp-short",
            "--secret",
            secret,
        ];
        args.extend(extra);
        let out = admin(&args);
        assert!(
            !out.status.success(),
            "{what}: refused with a non-zero exit; stdout {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("secret"),
            "{what}: stderr names the secret: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Control: a 32-byte secret is accepted, so `list` shows what was created.
    let out = admin(&["tool-proxy", "create", "--guid", "tp-ok", "--secret", KEY]);
    assert!(
        out.status.success(),
        "X35 control: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = admin(&["tool-proxy", "list"]);
    assert!(
        list.status.success(),
        "X35 list: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains("tp-ok"), "X35 control listed: {listed}");
    assert!(
        !listed.contains("tp-short"),
        "X35: tp-short was not created: {listed}"
    );

    // Never usable: on a live server's database, the refused tool proxy does not sign.
    let app = spawn_app().await;
    let db = app.database_url();
    let data = app.dir.path().display().to_string();
    for (what, secret) in [
        ("X35 8-byte secret (live)", "12345678"),
        ("X35 empty secret (live)", ""),
    ] {
        let out = admin_on(
            &db,
            &data,
            &[
                "tool-proxy",
                "create",
                "--guid",
                "tp-short",
                "--secret",
                secret,
            ],
        );
        assert!(!out.status.success(), "{what}: refused");
        let a = sign(&with(&[("sub", json!("tp-short"))]), secret.as_bytes());
        let r = app.exchange(PATH, &a).await;
        assert_refused(what, &r, 400, "invalid_grant");
        assert_eq!(r.description(), UNVERIFIABLE, "{what}");
    }
    // Control: the server does see what the console creates.
    let out = admin_on(
        &db,
        &data,
        &["tool-proxy", "create", "--guid", "tp-ok", "--secret", KEY],
    );
    assert!(
        out.status.success(),
        "X35 live control: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = sign(&with(&[("sub", json!("tp-ok"))]), KEY.as_bytes());
    assert_ok(
        "X35 live control: a 32-byte secret works",
        &app.exchange(PATH, &a).await,
    );
}

/// A developer-key style request: grant_type=authorization_code with code=rk-1.
async fn with_code(app: &TestApp, assertion: &str) -> Reply {
    let pairs = [
        ("grant_type", AUTHORIZATION_CODE),
        ("assertion", assertion),
        ("code", "rk-1"),
    ];
    app.post_form(PATH, &pairs).await
}

fn admin_on(db: &str, data: &str, args: &[&str]) -> Output {
    let mut all = vec!["admin", "--database-url", db, "--data-dir", data];
    all.extend_from_slice(args);
    Command::new(env!("CARGO_BIN_EXE_lti2"))
        .args(&all)
        .env_remove("LTI2_MASTER_KEY")
        .output()
        .expect("lti2 runs")
}

// SPEC §2: errors carry no-store; an unknown sub and a bad signature cannot be told apart.
#[tokio::test]
async fn errors_are_no_store_and_unknown_sub_looks_like_bad_signature() {
    let app = spawn_app().await;
    let caps = ["Security.splitSecret"];
    app.tool_proxy_with("tp-disabled", KEY, "disabled", &caps, vec![], None)
        .await;
    app.tool_proxy_with("tp-nosplit", KEY, "active", &[], vec![], None)
        .await;
    let key = KEY.as_bytes();

    let unknown = app
        .exchange(PATH, &sign(&with(&[("sub", json!("tp-unknown"))]), key))
        .await;
    let bad_sig = app
        .exchange(PATH, &sign(&claims(), b"wrong-0123456789abcdef0123456789"))
        .await;
    assert_refused("unknown sub", &unknown, 400, "invalid_grant");
    assert_refused("bad signature", &bad_sig, 400, "invalid_grant");
    assert_eq!(unknown.description(), UNVERIFIABLE, "unknown sub");
    assert_eq!(
        unknown.text, bad_sig.text,
        "unknown sub and bad signature: the same body"
    );
    for sub in [
        json!("tp-disabled"),
        json!("tp-nosplit"),
        json!("99999"),
        json!(99999),
    ] {
        let r = app
            .exchange(PATH, &sign(&with(&[("sub", sub.clone())]), key))
            .await;
        assert_refused(&format!("sub {sub}"), &r, 400, "invalid_grant");
        assert_eq!(
            r.text, bad_sig.text,
            "sub {sub}: the same body as a bad signature"
        );
    }

    // Every kind of error response is no-store (assert_refused checks the header).
    let r = app.post_form(PATH, &[("assertion", &baseline())]).await;
    assert_refused("no-store on invalid_request", &r, 400, "invalid_request");
    let r = app
        .post_form(
            PATH,
            &[("grant_type", "password"), ("assertion", &baseline())],
        )
        .await;
    assert_refused(
        "no-store on unsupported_grant_type",
        &r,
        400,
        "unsupported_grant_type",
    );
    let r = app.exchange(PATH, "a.b.c").await;
    assert_refused(
        "no-store on a malformed assertion",
        &r,
        400,
        "invalid_grant",
    );
    let r = app.post_raw(PATH, Some(FORM), vec![b'a'; 100 * 1024]).await;
    assert_refused("no-store on 413", &r, 413, "invalid_request");
    assert_eq!(header(&r, "pragma"), "no-cache", "Pragma on 413");

    assert_ok(
        "then the baseline, same jti",
        &app.exchange(PATH, &baseline()).await,
    );
}

// NUL characters (`\u0000`, `%00`) on the token endpoint: refused with RFC 6749 §5.2 errors,
// never a 5xx (PostgreSQL text cannot hold NUL; the answer must not depend on the backend),
// and nothing is claimed.
#[tokio::test]
async fn nul_characters_on_the_token_endpoint() {
    let app = spawn_app().await;
    let r = app
        .exchange(
            PATH,
            &sign(&with(&[("sub", json!("tp-1\u{0}"))]), KEY.as_bytes()),
        )
        .await;
    assert_refused("sub with NUL", &r, 400, "invalid_grant");
    let jti_nul = sign(&with(&[("jti", json!("j\u{0}1"))]), KEY.as_bytes());
    let r = app
        .post_form(
            &format!("{PATH}?code=reg%00key"),
            &[("grant_type", JWT_BEARER), ("assertion", &jti_nul)],
        )
        .await;
    assert_refused("query with %00", &r, 400, "invalid_request");
    let r = app
        .post_form(
            PATH,
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &jti_nul),
                ("code", "reg\u{0}key"),
            ],
        )
        .await;
    assert_refused("form field with NUL", &r, 400, "invalid_request");
    let r = app
        .post_form(&format!("{PATH}%00"), &[("grant_type", JWT_BEARER)])
        .await;
    assert_eq!(r.status, 404, "path with %00: {}", r.text);
    // A NUL inside the signed jti is only text to hash: the assertion is good, once.
    assert_ok("control: jti with NUL", &app.exchange(PATH, &jti_nul).await);
    assert_refused(
        "control: its replay",
        &app.exchange(PATH, &jti_nul).await,
        400,
        "invalid_grant",
    );
}
