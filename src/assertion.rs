//! The JWT assertion a tool trades for an access token (RFC 7523 §3, Canvas's
//! `Lti::OAuth2::AuthorizationValidator` and `Canvas::Security::JwtValidator`).
//!
//! Validation is split in two pure steps around the one lookup the caller must make:
//!
//! 1. [`parse`]: bound the size, parse the compact JWS, apply the algorithm allow-list and read
//!    the **unverified** `sub`, which picks the secret (tool proxy, developer key or
//!    registration, as Canvas does).
//! 2. [`ParsedAssertion::verify`]: check the HMAC with that secret, then every claim against the
//!    [`AssertionPolicy`] and the injected `now`. Only a [`VerifiedAssertion`] can be offered to
//!    the nonce store, so a `jti` is never stored for an assertion that fails any other check.
//!
//! Errors are typed ([`AssertionError`]); all of them map to `invalid_grant` (RFC 6749 §5.2).
//! Faults found before the signature is verified name only the token's own structure; an
//! unknown `sub` and a bad signature share one message ([`AssertionError::Unverifiable`]).

use serde_json::{Map, Value};

use crate::jose::{self, Alg, JoseError, UnverifiedJws};

/// The claims an assertion must carry (Canvas `JwtValidator`), in the order they are reported.
pub const REQUIRED_CLAIMS: [&str; 5] = ["sub", "aud", "exp", "iat", "jti"];

/// Limits applied to every assertion. Times are in seconds.
#[derive(Debug, Clone)]
pub struct AssertionPolicy {
    /// Algorithms accepted (default HS256 only).
    pub allowed_algs: Vec<Alg>,
    /// How far ahead of `now` `exp` may be; 0 means no bound (Canvas has none). Default 300.
    pub max_lifetime: i64,
    /// How old `iat` may be (Canvas: 300).
    pub iat_max_age: i64,
    /// How far in the future `iat` may be (Canvas: 30).
    pub iat_future_grace: i64,
    /// Assertions longer than this many bytes are refused before any decoding (default 8192).
    pub max_bytes: usize,
    /// How long after `exp` the `jti` is remembered (Canvas: 60).
    pub nonce_padding: i64,
}

impl Default for AssertionPolicy {
    fn default() -> Self {
        Self {
            allowed_algs: vec![Alg::HS256],
            max_lifetime: 300,
            iat_max_age: 300,
            iat_future_grace: 30,
            max_bytes: 8192,
            nonce_padding: 60,
        }
    }
}

/// Why an assertion was refused. `Display` is the `error_description` sent to the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AssertionError {
    /// Longer than [`AssertionPolicy::max_bytes`].
    #[error("the assertion is longer than {0} bytes")]
    TooLarge(usize),
    /// Not a well-formed compact JWS, or its algorithm is not allowed.
    #[error("{0}")]
    Malformed(#[from] JoseError),
    /// One or more of the required claims is absent (names in [`REQUIRED_CLAIMS`] order).
    #[error("the following claims are missing: {}", .0.join(", "))]
    MissingClaims(Vec<&'static str>),
    /// `sub` is neither a string nor a non-negative integer.
    #[error("the 'sub' must be a string or an integer")]
    BadSub,
    /// No usable credential for `sub`, or the signature does not match it. One message for
    /// both, so neither can be told from the other.
    #[error("the assertion could not be verified")]
    Unverifiable,
    /// `aud` does not contain this endpoint's URL, or is not a string or array of strings.
    #[error("the 'aud' is invalid")]
    InvalidAud,
    /// `exp` or `iat` is not a JSON number.
    #[error("the '{0}' must be a number")]
    NotNumber(&'static str),
    /// `exp` is not after `now`.
    #[error("the JWT has expired")]
    Expired,
    /// `exp` is further ahead than the policy allows.
    #[error("the 'exp' must be at most {0} seconds in the future")]
    LifetimeTooLong(i64),
    /// `iat` is older than the policy allows.
    #[error("the 'iat' must be less than {0} seconds old")]
    IatTooOld(i64),
    /// `iat` is further in the future than the grace allows.
    #[error("the 'iat' must not be in the future")]
    IatInFuture,
    /// `jti` is not a non-empty string (at most 255 bytes) or an integer.
    #[error("the 'jti' must be a non-empty string of at most 255 bytes, or an integer")]
    BadJti,
    /// This `jti` was already used by this `sub` (checked by the caller's nonce store).
    #[error("the 'jti' is invalid")]
    Replayed,
}

impl AssertionError {
    /// A short stable name for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AssertionError::TooLarge(_) => "too_large",
            AssertionError::Malformed(JoseError::AlgNotAllowed(_)) => "alg_not_allowed",
            AssertionError::Malformed(_) => "malformed",
            AssertionError::MissingClaims(_) => "missing_claims",
            AssertionError::BadSub => "bad_sub",
            AssertionError::Unverifiable => "unverifiable",
            AssertionError::InvalidAud => "aud",
            AssertionError::NotNumber(_) => "not_number",
            AssertionError::Expired => "expired",
            AssertionError::LifetimeTooLong(_) => "lifetime",
            AssertionError::IatTooOld(_) => "iat_old",
            AssertionError::IatInFuture => "iat_future",
            AssertionError::BadJti => "jti",
            AssertionError::Replayed => "replay",
        }
    }
}

/// The unverified subject of an assertion: what picks the secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Subject {
    /// A JSON string (a tool proxy guid, a reg_key, or an all-digit developer key id).
    Str(String),
    /// A JSON integer (a developer key's global id, as in the seed's template).
    Int(u64),
}

impl Subject {
    /// The subject as text (integers in decimal), as a tool proxy guid or reg_key is compared.
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Subject::Str(s) => s.as_str().into(),
            Subject::Int(n) => n.to_string().into(),
        }
    }

    /// The developer key id this subject can name: a JSON integer or an all-digit string
    /// (at most 18 digits), nothing else. Canvas's loose casting of `"9359e0cd-…"` to 9359 is
    /// deliberately not reproduced.
    pub fn developer_key_id(&self) -> Option<i64> {
        match self {
            Subject::Int(n) => i64::try_from(*n).ok(),
            Subject::Str(s)
                if !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                s.parse().ok()
            }
            Subject::Str(_) => None,
        }
    }
}

/// An assertion whose structure is valid, whose signature is not yet checked.
#[derive(Debug)]
pub struct ParsedAssertion<'a> {
    jws: UnverifiedJws<'a>,
    sub: Subject,
}

/// An assertion that passed every check but the nonce.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedAssertion {
    /// The `jti`, as text (integers in decimal).
    pub jti: String,
    /// `exp`, seconds since the epoch (may be fractional).
    pub exp: f64,
    /// `iat`, seconds since the epoch (may be fractional).
    pub iat: f64,
    /// Until when (seconds since the epoch) the nonce must be remembered: `ceil(exp)` plus the
    /// policy's padding.
    pub nonce_expires_at: i64,
}

/// Bounds the size, parses the compact JWS and reads the unverified `sub`.
pub fn parse<'a>(
    raw: &'a str,
    policy: &AssertionPolicy,
) -> Result<ParsedAssertion<'a>, AssertionError> {
    if raw.len() > policy.max_bytes {
        return Err(AssertionError::TooLarge(policy.max_bytes));
    }
    let jws = jose::parse(raw, &policy.allowed_algs)?;
    let sub = match jws.claims.get("sub") {
        None => return Err(AssertionError::MissingClaims(missing_claims(&jws.claims))),
        // A NUL cannot name a credential (and PostgreSQL text cannot hold one).
        Some(Value::String(s)) if !s.is_empty() && !s.contains('\0') => Subject::Str(s.clone()),
        Some(Value::Number(n)) => Subject::Int(n.as_u64().ok_or(AssertionError::BadSub)?),
        Some(_) => return Err(AssertionError::BadSub),
    };
    Ok(ParsedAssertion { jws, sub })
}

fn missing_claims(claims: &Map<String, Value>) -> Vec<&'static str> {
    REQUIRED_CLAIMS
        .iter()
        .copied()
        .filter(|c| !claims.contains_key(*c))
        .collect()
}

impl ParsedAssertion<'_> {
    /// The unverified subject.
    pub fn sub(&self) -> &Subject {
        &self.sub
    }

    /// The algorithm the assertion is signed with.
    pub fn alg(&self) -> Alg {
        self.jws.alg
    }

    /// Checks the signature with `secret`, then every claim:
    /// required claims, `aud` contains one of `expected_aud` (the authorize URL under each
    /// configured base URL, already passed through [`normalize_url`]),
    /// `exp` after `now` and within the policy's lifetime, `iat` within its age and grace,
    /// and `jti` well-formed. `now` is seconds since the epoch.
    pub fn verify(
        &self,
        secret: &[u8],
        expected_aud: &[String],
        policy: &AssertionPolicy,
        now: i64,
    ) -> Result<VerifiedAssertion, AssertionError> {
        if !self.jws.verify(secret) {
            return Err(AssertionError::Unverifiable);
        }
        check_claims(&self.jws.claims, expected_aud, policy, now)
    }
}

/// The claim checks of [`ParsedAssertion::verify`], after the signature (pure).
pub fn check_claims(
    claims: &Map<String, Value>,
    expected_aud: &[String],
    policy: &AssertionPolicy,
    now: i64,
) -> Result<VerifiedAssertion, AssertionError> {
    let missing = missing_claims(claims);
    if !missing.is_empty() {
        return Err(AssertionError::MissingClaims(missing));
    }
    if !aud_contains(&claims["aud"], expected_aud) {
        return Err(AssertionError::InvalidAud);
    }
    let exp = claims["exp"]
        .as_f64()
        .ok_or(AssertionError::NotNumber("exp"))?;
    let iat = claims["iat"]
        .as_f64()
        .ok_or(AssertionError::NotNumber("iat"))?;
    let nowf = now as f64;
    if exp <= nowf {
        return Err(AssertionError::Expired);
    }
    if policy.max_lifetime > 0 && exp - nowf > policy.max_lifetime as f64 {
        return Err(AssertionError::LifetimeTooLong(policy.max_lifetime));
    }
    if iat < nowf - policy.iat_max_age as f64 {
        return Err(AssertionError::IatTooOld(policy.iat_max_age));
    }
    if iat > nowf + policy.iat_future_grace as f64 {
        return Err(AssertionError::IatInFuture);
    }
    let jti = match &claims["jti"] {
        Value::String(s) if !s.is_empty() && s.len() <= 255 => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return Err(AssertionError::BadJti),
    };
    // exp is bounded above by the lifetime check, or by f64 → i64 saturation when unbounded.
    let nonce_expires_at = (exp.ceil() as i64).saturating_add(policy.nonce_padding);
    Ok(VerifiedAssertion {
        jti,
        exp,
        iat,
        nonce_expires_at,
    })
}

/// Whether an `aud` claim (a string, or a non-empty array of strings) contains one of
/// `expected` (URLs already passed through [`normalize_url`]). Each claimed value is normalised
/// the same way before comparing. Any other shape is invalid.
pub fn aud_contains(aud: &Value, expected: &[String]) -> bool {
    let matches = |v: &str| {
        expected.iter().any(|e| e == v) || normalize_url(v).is_some_and(|n| expected.contains(&n))
    };
    match aud {
        Value::String(s) => matches(s),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).any(matches)
        }
        _ => false,
    }
}

/// Normalises an absolute URL for comparison as SPEC.md decides (RFC 3986 §6.2.2.1 and
/// §6.2.3, nothing more): the scheme and host are lower-cased and a default port (`:80` for
/// http, `:443` for https) is dropped. Path, query and fragment are kept byte for byte: no
/// trailing-slash, percent-decoding or dot-segment normalisation. `None` when `s` is not
/// `scheme://authority…` or carries userinfo.
pub fn normalize_url(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
    {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let mut authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => Some(":443"),
        "http" => Some(":80"),
        _ => None,
    };
    if let Some(port) = default_port {
        if authority.ends_with(port) {
            authority.truncate(authority.len() - port.len());
        }
    }
    Some(format!("{scheme}://{authority}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: &str = "https://lms.example.edu/api/lti/accounts/1/authorize";
    const NOW: i64 = 1_767_225_600;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn base() -> Value {
        json!({"sub":"tp-1","aud":T,"exp":NOW+50,"iat":NOW,"jti":"j-1"})
    }

    fn check(v: Value) -> Result<VerifiedAssertion, AssertionError> {
        check_claims(
            &claims(v),
            &[T.to_string()],
            &AssertionPolicy::default(),
            NOW,
        )
    }

    fn with(k: &str, val: Value) -> Value {
        let mut b = base();
        b[k] = val;
        b
    }

    #[test]
    fn baseline_passes_and_nonce_outlives_exp_by_60s() {
        let v = check(base()).unwrap();
        assert_eq!(v.jti, "j-1");
        assert_eq!(v.nonce_expires_at, NOW + 50 + 60);
    }

    #[test]
    fn exp_boundaries() {
        assert_eq!(check(with("exp", json!(NOW))), Err(AssertionError::Expired));
        assert!(check(with("exp", json!(NOW + 1))).is_ok());
        assert!(check(with("exp", json!(NOW as f64 + 50.5))).is_ok());
        assert_eq!(
            check(with("exp", json!(NOW as f64 - 0.1))),
            Err(AssertionError::Expired)
        );
        assert!(check(with("exp", json!(NOW + 300))).is_ok());
        assert_eq!(
            check(with("exp", json!(NOW + 301))),
            Err(AssertionError::LifetimeTooLong(300))
        );
    }

    #[test]
    fn iat_boundaries() {
        assert!(check(with("iat", json!(NOW + 30))).is_ok());
        assert_eq!(
            check(with("iat", json!(NOW + 31))),
            Err(AssertionError::IatInFuture)
        );
        assert!(check(with("iat", json!(NOW - 300))).is_ok());
        assert_eq!(
            check(with("iat", json!(NOW - 301))),
            Err(AssertionError::IatTooOld(300))
        );
    }

    #[test]
    fn mistyped_times_name_the_claim() {
        for bad in [json!("1767225650"), Value::Null, json!(true), json!({})] {
            assert_eq!(
                check(with("exp", bad.clone())),
                Err(AssertionError::NotNumber("exp"))
            );
            assert_eq!(
                check(with("iat", bad)),
                Err(AssertionError::NotNumber("iat"))
            );
        }
    }

    #[test]
    fn missing_claims_are_all_listed() {
        let mut b = base();
        b.as_object_mut().unwrap().remove("exp");
        b.as_object_mut().unwrap().remove("jti");
        let e = check(b).unwrap_err();
        assert_eq!(e, AssertionError::MissingClaims(vec!["exp", "jti"]));
        assert_eq!(e.to_string(), "the following claims are missing: exp, jti");
    }

    #[test]
    fn aud_shapes() {
        let aud_contains =
            |v: &Value, t: &str| super::aud_contains(v, &[normalize_url(t).unwrap()]);
        assert!(aud_contains(&json!(T), T));
        assert!(aud_contains(&json!([T, "https://other.example"]), T));
        assert!(aud_contains(
            &json!("https://LMS.example.edu:443/api/lti/accounts/1/authorize"),
            T
        ));
        assert!(!aud_contains(&json!(format!("{T}/")), T));
        assert!(!aud_contains(
            &json!("http://lms.example.edu/api/lti/accounts/1/authorize"),
            T
        ));
        assert!(!aud_contains(
            &json!("https://lms.example.edu/api/lti/accounts/1/Authorize"),
            T
        ));
        assert!(!aud_contains(&json!([]), T));
        assert!(!aud_contains(&json!([42]), T));
        assert!(!aud_contains(&json!([42, T]), T));
        assert!(!aud_contains(&json!("https://lms.example.edu"), T));
        assert!(!aud_contains(
            &json!("https://u@lms.example.edu/api/lti/accounts/1/authorize"),
            T
        ));
    }

    #[test]
    fn developer_key_subjects_are_exact() {
        assert_eq!(
            Subject::Int(10000000000003).developer_key_id(),
            Some(10000000000003)
        );
        assert_eq!(
            Subject::Str("10000000000003".into()).developer_key_id(),
            Some(10000000000003)
        );
        assert_eq!(
            Subject::Str("9359e0cd-6a69".into()).developer_key_id(),
            None
        );
        assert_eq!(Subject::Str("".into()).developer_key_id(), None);
        assert_eq!(Subject::Str("+12".into()).developer_key_id(), None);
    }

    #[test]
    fn jti_shapes() {
        assert_eq!(check(with("jti", json!(7))).unwrap().jti, "7");
        assert_eq!(check(with("jti", json!(""))), Err(AssertionError::BadJti));
        assert_eq!(check(with("jti", json!({}))), Err(AssertionError::BadJti));
        assert_eq!(
            check(with("jti", json!("x".repeat(256)))),
            Err(AssertionError::BadJti)
        );
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,40}".prop_map(Value::from),
            Just(json!(T)),
            (NOW - 400..NOW + 400).prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// No claims object, however shaped, makes the checks panic; and an assertion signed
        /// with the right key either passes or names a check.
        #[test]
        fn assertion_checks_never_panic(
            sub in arb_json(), aud in arb_json(), exp in arb_json(), iat in arb_json(), jti in arb_json(),
            drop_mask in 0u8..32,
        ) {
            let mut c = Map::new();
            for (i, (k, v)) in [("sub", sub), ("aud", aud), ("exp", exp), ("iat", iat), ("jti", jti)].into_iter().enumerate() {
                if drop_mask & (1 << i) == 0 {
                    c.insert(k.to_string(), v);
                }
            }
            let policy = AssertionPolicy::default();
            let _ = check_claims(&c, &[T.to_string()], &policy, NOW);
            let token = jose::sign(&json!({"alg":"HS256"}), &Value::Object(c), Alg::HS256, b"k");
            if let Ok(parsed) = parse(&token, &policy) {
                let _ = parsed.sub().developer_key_id();
                let _ = parsed.verify(b"k", &[T.to_string()], &policy, NOW);
                proptest::prop_assert_eq!(
                    parsed.verify(b"other", &[T.to_string()], &policy, NOW),
                    Err(AssertionError::Unverifiable)
                );
            }
        }
    }
}
