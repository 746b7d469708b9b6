//! Compact JWS (RFC 7515) with HMAC algorithms, parsed strictly.
//!
//! This is the layer under assertions and access tokens. It owns the structural rules:
//!
//! * exactly three segments (five, a JWE, is refused by name; RFC 7516 is not supported);
//! * each segment is base64url **without padding** and with canonical trailing bits
//!   (RFC 7515 §2): `=`, `+`, `/`, whitespace and newlines are refused;
//! * header and claims are JSON objects without repeated member names (RFC 7519 §4), nested
//!   at most serde_json's 128 levels;
//! * the header's `alg` must be on the caller's allow-list before anything else is looked at,
//!   so `none`, RS*/ES*/PS* and unknown names never reach a signature check; a `crit` header is
//!   refused (we understand no extensions, RFC 7515 §4.1.11).
//!
//! MACs come from the `hmac` crate and are compared in constant time
//! ([`hmac::Mac::verify_slice`]).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

/// A JSON object (a JWT header or claims set).
pub type JsonObject = Map<String, Value>;

/// An HMAC JWS algorithm (RFC 7518 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Alg {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
}

impl Alg {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }

    /// Parses an exact (case-sensitive) `alg` value.
    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "HS256" => Some(Alg::HS256),
            "HS384" => Some(Alg::HS384),
            "HS512" => Some(Alg::HS512),
            _ => None,
        }
    }

    /// The MAC of `input` under `key`.
    pub fn mac(self, key: &[u8], input: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8]) -> Vec<u8> {
            let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Alg::HS256 => run::<Hmac<Sha256>>(key, input),
            Alg::HS384 => run::<Hmac<Sha384>>(key, input),
            Alg::HS512 => run::<Hmac<Sha512>>(key, input),
        }
    }

    /// Whether `sig` is the MAC of `input` under `key`, compared in constant time.
    pub fn verify(self, key: &[u8], input: &[u8], sig: &[u8]) -> bool {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8], sig: &[u8]) -> bool {
            let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            m.update(input);
            m.verify_slice(sig).is_ok()
        }
        match self {
            Alg::HS256 => run::<Hmac<Sha256>>(key, input, sig),
            Alg::HS384 => run::<Hmac<Sha384>>(key, input, sig),
            Alg::HS512 => run::<Hmac<Sha512>>(key, input, sig),
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a compact JWS could not be parsed. Every variant is a structural fault of the token
/// itself, so its message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// Not `header.payload.signature`.
    #[error("the assertion is not a JWT: it must have 3 dot-separated segments")]
    Segments,
    /// Five segments: an encrypted JWT.
    #[error("encrypted JWTs (JWE) are not accepted")]
    Encrypted,
    /// A segment is empty or not unpadded base64url.
    #[error("the JWT's {0} segment is not unpadded base64url")]
    Base64(&'static str),
    /// A segment is not a JSON object, or repeats a member name.
    #[error("the JWT's {0} is not a JSON object with unique member names")]
    Json(&'static str),
    /// `alg` is missing or not a string.
    #[error("the JWT header has no 'alg'")]
    NoAlg,
    /// `alg` is not on the allow-list.
    #[error("the algorithm '{0}' is not allowed")]
    AlgNotAllowed(String),
    /// The header carries `crit`.
    #[error("the JWT header's 'crit' extensions are not supported")]
    Crit,
}

/// A compact JWS whose structure is valid and whose algorithm is allowed, but whose signature
/// has not been checked yet.
#[derive(Debug, Clone)]
pub struct UnverifiedJws<'a> {
    /// The header object.
    pub header: Map<String, Value>,
    /// The claims object.
    pub claims: Map<String, Value>,
    /// The algorithm named by the header (on the allow-list).
    pub alg: Alg,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl UnverifiedJws<'_> {
    /// Whether the signature is the MAC of `header.payload` under `key` (constant-time).
    pub fn verify(&self, key: &[u8]) -> bool {
        self.alg
            .verify(key, self.signing_input.as_bytes(), &self.signature)
    }

    /// The header's `kid`, when it is a string.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }
}

fn is_b64url(seg: &str) -> bool {
    seg.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode_segment(seg: &str, what: &'static str) -> Result<Vec<u8>, JoseError> {
    if seg.is_empty() || !is_b64url(seg) {
        return Err(JoseError::Base64(what));
    }
    URL_SAFE_NO_PAD
        .decode(seg)
        .map_err(|_| JoseError::Base64(what))
}

/// Parses a compact JWS, checking its structure and that its `alg` is in `allowed`.
///
/// The caller bounds the token's length first; this function decodes whatever it is given.
pub fn parse<'a>(token: &'a str, allowed: &[Alg]) -> Result<UnverifiedJws<'a>, JoseError> {
    let mut parts = token.split('.');
    let (h, p, s) = match (parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s)) => (h, p, s),
        _ => return Err(JoseError::Segments),
    };
    let rest = parts.count();
    if rest == 2 {
        return Err(JoseError::Encrypted);
    }
    if rest != 0 {
        return Err(JoseError::Segments);
    }
    let header = parse_object(&decode_segment(h, "header")?).ok_or(JoseError::Json("header"))?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JoseError::NoAlg)?;
    let alg = Alg::parse(alg_name)
        .filter(|a| allowed.contains(a))
        .ok_or_else(|| JoseError::AlgNotAllowed(truncate(alg_name, 32)))?;
    if header.contains_key("crit") {
        return Err(JoseError::Crit);
    }
    let claims = parse_object(&decode_segment(p, "payload")?).ok_or(JoseError::Json("payload"))?;
    let signature = decode_segment(s, "signature")?;
    Ok(UnverifiedJws {
        header,
        claims,
        alg,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature,
    })
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// Encodes and signs a compact JWS. `header` must already name `alg`.
pub fn sign(
    header: &impl serde::Serialize,
    claims: &impl serde::Serialize,
    alg: Alg,
    key: &[u8],
) -> String {
    let h = serde_json::to_vec(header).expect("header serialises");
    let c = serde_json::to_vec(claims).expect("claims serialise");
    let mut out = String::with_capacity((h.len() + c.len()) * 4 / 3 + 90);
    URL_SAFE_NO_PAD.encode_string(&h, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&c, &mut out);
    let mac = alg.mac(key, out.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&mac, &mut out);
    out
}

/// Decodes a compact JWS's header and claims without any check beyond structure (for
/// inspection tools: `lti2 jwt decode`). Any `alg` is accepted here.
pub fn decode_unchecked(token: &str) -> Result<(JsonObject, JsonObject), JoseError> {
    let mut parts = token.trim().split('.');
    let (h, p) = match (parts.next(), parts.next()) {
        (Some(h), Some(p)) => (h, p),
        _ => return Err(JoseError::Segments),
    };
    let header = parse_object(&decode_segment(h, "header")?).ok_or(JoseError::Json("header"))?;
    let claims = parse_object(&decode_segment(p, "payload")?).ok_or(JoseError::Json("payload"))?;
    Ok((header, claims))
}

/// The claims segment of a compact JWS as the exact text that was signed (member order kept),
/// or `None` when it is not unpadded base64url of UTF-8.
pub fn payload_text(token: &str) -> Option<String> {
    let segment = token.split('.').nth(1)?;
    String::from_utf8(decode_segment(segment, "payload").ok()?).ok()
}

/// Parses a JSON object, refusing repeated member names at the top level and any trailing
/// data. Integers stay integers (serde_json keeps `u64`/`i64`), other numbers are `f64`.
pub fn parse_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let map = de.deserialize_map(UniqueMap).ok()?;
    de.end().ok()?;
    Some(map)
}

struct UniqueMap;

impl<'de> Visitor<'de> for UniqueMap {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with unique member names")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if map.insert(key, value).is_some() {
                return Err(serde::de::Error::custom("duplicate member name"));
            }
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEED_A2: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMxMjMtYWQxMy1hYzIzMyIsImF1ZCI6Imh0dHBzOi8vbXkuY2FudmFzLWRvbWFpbi5jb20vYXBpL2x0aS9hY2NvdW50cy8xL2F1dGhvcml6ZSIsImV4cCI6MTQ4NjM5Mzg2OCwiaWF0IjoxNDg2MzkzODAwLCJqdGkiOiI2ODg3MDBjMi00YmMxLTQwYjctODNlNS03Y2JmNTRmOTMzMDUifQ.IJ4ROoH8GxwWr_a-YNSvWGd3NeYLg0q9fOZCCLUaa4Q";

    #[test]
    fn seed_token_verifies_with_its_key_only() {
        let jws = parse(SEED_A2, &[Alg::HS256]).unwrap();
        assert!(jws.verify(b"secret"));
        assert!(!jws.verify(b"tool-proxy-shared-secret"));
        assert_eq!(jws.claims["sub"], "123123-ad13-ac233");
    }

    #[test]
    fn sign_then_parse_round_trips() {
        let t = sign(
            &serde_json::json!({"alg":"HS384"}),
            &serde_json::json!({"a":1}),
            Alg::HS384,
            b"k",
        );
        assert_eq!(
            parse(&t, &[Alg::HS256]).unwrap_err(),
            JoseError::AlgNotAllowed("HS384".into())
        );
        assert!(parse(&t, &[Alg::HS384]).unwrap().verify(b"k"));
    }

    #[test]
    fn structural_faults_are_named() {
        assert_eq!(
            parse("a.b", &[Alg::HS256]).unwrap_err(),
            JoseError::Segments
        );
        assert_eq!(
            parse("a.b.c.d.e", &[Alg::HS256]).unwrap_err(),
            JoseError::Encrypted
        );
        assert_eq!(
            parse("a.b.c.d", &[Alg::HS256]).unwrap_err(),
            JoseError::Segments
        );
        let dup = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","alg":"none"}"#);
        assert_eq!(
            parse(&format!("{dup}.e30.AA"), &[Alg::HS256]).unwrap_err(),
            JoseError::Json("header")
        );
        let padded = format!("{}==", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#));
        assert!(matches!(
            parse(&format!("{padded}.e30.AA"), &[Alg::HS256]),
            Err(JoseError::Base64(_))
        ));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_object(deep.as_bytes()).is_none());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = parse(&s, &[Alg::HS256, Alg::HS512]);
            let _ = decode_unchecked(&s);
        }

        #[test]
        fn parse_never_panics_on_jwt_like_input(h in "[A-Za-z0-9_=+/-]{0,60}", p in "[A-Za-z0-9_=+/.-]{0,80}", s in "[A-Za-z0-9_-]{0,50}") {
            let _ = parse(&format!("{h}.{p}.{s}"), &[Alg::HS256]);
        }

        #[test]
        fn parse_never_panics_on_json_segments(hj in "\\PC{0,60}", pj in "\\PC{0,80}") {
            let t = format!("{}.{}.AA", URL_SAFE_NO_PAD.encode(hj), URL_SAFE_NO_PAD.encode(pj));
            let _ = parse(&t, &[Alg::HS256]);
        }
    }
}
