//! Access tokens: minting (Canvas `Lti::OAuth2::AccessToken.create_jwt`) and verification
//! (Canvas `AccessToken.from_jwt` + `validate!`), with a key ring of HS256 keys.
//!
//! A minted token's claims, in Canvas's order: `iss`, `sub` (a JSON integer for developer
//! keys, a string otherwise), `exp` = now + lifetime, `aud` (an array of the platform's public
//! hosts), `iat` = now, `nbf` = now − 30, `jti` (UUID v4), `reg_key`. The header is
//! `{"typ":"JWT","alg":"HS256","kid":…}`. All times are seconds since the epoch.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::assertion::Subject;
use crate::jose::{self, Alg};

/// How far before `iat` a token is already valid (`nbf` = iat − 30 s, Canvas).
pub const NBF_SKEW: i64 = 30;
/// Canvas's clock-skew rule on decode: an `iat` up to this far ahead stands in for `now`.
pub const DECODE_IAT_SKEW: i64 = 300;
/// How far ahead of `now` a token's `iat` may be (for instances whose clocks differ a little).
pub const IAT_FUTURE_GRACE: i64 = 30;

/// One HMAC key of the ring, named by its `kid`.
#[derive(Clone)]
pub struct SigningKey {
    /// The key id carried in the token header.
    pub kid: String,
    key: Arc<Zeroizing<Vec<u8>>>,
}

impl SigningKey {
    /// A key from its id and raw bytes.
    pub fn new(kid: impl Into<String>, key: Vec<u8>) -> Self {
        Self {
            kid: kid.into(),
            key: Arc::new(Zeroizing::new(key)),
        }
    }

    /// The raw key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.key
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, <redacted>)", self.kid)
    }
}

/// The signing keys: the first signs, all verify (a rotated-out key stays valid until it is
/// removed from the ring).
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer (default "Canvas").
    pub iss: String,
    /// The tool proxy guid, the reg_key, or the developer key's global id (an integer).
    pub sub: Subject,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// The platform's public hosts.
    pub aud: Audience,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Not before, seconds since the epoch.
    pub nbf: i64,
    /// Unique token id (UUID v4).
    pub jti: String,
    /// The registration key (`code`, else the sub).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reg_key: Option<String>,
}

/// An `aud` claim: Canvas issues an array, older tokens carry one string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One host.
    One(String),
    /// Several hosts.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `host` (no port) is one of the audience's hosts, compared case-insensitively.
    pub fn contains_host(&self, host: &str) -> bool {
        match self {
            Audience::One(h) => h.eq_ignore_ascii_case(host),
            Audience::Many(hs) => hs.iter().any(|h| h.eq_ignore_ascii_case(host)),
        }
    }
}

/// Why an access token was refused. Every variant becomes a 401 on the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    /// Not a well-formed HS256 compact JWS.
    #[error("malformed token: {0}")]
    Malformed(#[from] jose::JoseError),
    /// No key of the ring verifies it.
    #[error("signature does not verify with any key")]
    Signature,
    /// A required claim is missing or mistyped.
    #[error("claims missing or mistyped: {0}")]
    Claims(String),
    /// Past `exp`.
    #[error("token has expired")]
    Expired,
    /// Before `nbf`.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not this platform's issuer.
    #[error("invalid iss")]
    Issuer,
    /// The request host is not in `aud`.
    #[error("invalid aud")]
    Audience,
    /// `iat` is in the future.
    #[error("iat must be in the past")]
    IatInFuture,
}

/// What is needed to mint a token.
#[derive(Debug, Clone)]
pub struct MintRequest<'a> {
    /// The resolved subject.
    pub sub: &'a Subject,
    /// The reg_key claim.
    pub reg_key: &'a str,
    /// The audience hosts.
    pub aud: &'a [String],
    /// The issuer.
    pub iss: &'a str,
    /// Seconds since the epoch.
    pub now: i64,
    /// Seconds until `exp`.
    pub lifetime: i64,
}

#[derive(Serialize)]
struct Header<'a> {
    typ: &'static str,
    alg: &'static str,
    kid: &'a str,
}

#[derive(Serialize)]
struct MintClaims<'a> {
    iss: &'a str,
    sub: &'a Subject,
    exp: i64,
    aud: &'a [String],
    iat: i64,
    nbf: i64,
    jti: String,
    reg_key: &'a str,
}

impl KeyRing {
    /// A ring from its keys, the signing key first. `None` when empty.
    pub fn new(keys: Vec<SigningKey>) -> Option<Self> {
        (!keys.is_empty()).then_some(Self { keys })
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// Every key, the signing key first.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// Mints an HS256 access token with the active key.
    pub fn mint(&self, req: &MintRequest<'_>) -> String {
        let key = self.active();
        let claims = MintClaims {
            iss: req.iss,
            sub: req.sub,
            exp: req.now + req.lifetime,
            aud: req.aud,
            iat: req.now,
            nbf: req.now - NBF_SKEW,
            jti: uuid::Uuid::new_v4().to_string(),
            reg_key: req.reg_key,
        };
        let header = Header {
            typ: "JWT",
            alg: "HS256",
            kid: &key.kid,
        };
        jose::sign(&header, &claims, Alg::HS256, key.bytes())
    }

    /// Verifies an access token as Canvas's bearer helper does, for a request addressed to
    /// `host` (no port) at `now` (seconds since the epoch):
    /// the HS256 signature with the header's `kid` (or, without one, any key of the ring);
    /// `exp`/`nbf` against `now`, or against `iat` when `iat` is up to 300 s ahead (Canvas's
    /// skew rule); the claims `iss sub exp aud iat nbf jti` present; `iss` equal to `issuer`;
    /// `aud` containing `host`; `iat` at most 30 s ahead.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        host: &str,
        now: i64,
    ) -> Result<AccessTokenClaims, AccessTokenError> {
        if token.len() > 8192 {
            return Err(AccessTokenError::Malformed(jose::JoseError::Segments));
        }
        let jws = jose::parse(token, &[Alg::HS256])?;
        let verified = match jws.kid() {
            Some(kid) => self
                .keys
                .iter()
                .any(|k| k.kid == kid && jws.verify(k.bytes())),
            None => self.keys.iter().any(|k| jws.verify(k.bytes())),
        };
        if !verified {
            return Err(AccessTokenError::Signature);
        }
        let c = &jws.claims;
        let missing: Vec<&str> = ["iss", "sub", "exp", "aud", "iat", "nbf", "jti"]
            .into_iter()
            .filter(|k| !c.contains_key(*k))
            .collect();
        if !missing.is_empty() {
            return Err(AccessTokenError::Claims(missing.join(",")));
        }
        let num = |k: &str| {
            c[k].as_f64()
                .ok_or_else(|| AccessTokenError::Claims(k.to_string()))
        };
        let (exp, nbf, iat) = (num("exp")?, num("nbf")?, num("iat")?);
        let nowf = now as f64;
        let t = if iat > nowf && iat < nowf + DECODE_IAT_SKEW as f64 {
            iat
        } else {
            nowf
        };
        if exp < t {
            return Err(AccessTokenError::Expired);
        }
        if nbf > t {
            return Err(AccessTokenError::NotYetValid);
        }
        let claims: AccessTokenClaims = serde_json::from_value(Value::Object(c.clone()))
            .map_err(|e| AccessTokenError::Claims(e.to_string()))?;
        if claims.iss != issuer {
            return Err(AccessTokenError::Issuer);
        }
        if !claims.aud.contains_host(host) {
            return Err(AccessTokenError::Audience);
        }
        if iat > nowf + IAT_FUTURE_GRACE as f64 {
            return Err(AccessTokenError::IatInFuture);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(vec![
            SigningKey::new("k2", b"new-key".to_vec()),
            SigningKey::new("k1", b"old-key".to_vec()),
        ])
        .unwrap()
    }

    fn mint(ring: &KeyRing, now: i64) -> String {
        ring.mint(&MintRequest {
            sub: &Subject::Int(10000000000003),
            reg_key: "rk",
            aud: &["lms.example.edu".to_string()],
            iss: "Canvas",
            now,
            lifetime: 3600,
        })
    }

    #[test]
    fn minted_claims_follow_canvas() {
        let r = ring();
        let t = mint(&r, 1000);
        let (h, c) = jose::decode_unchecked(&t).unwrap();
        assert_eq!(h["kid"], "k2");
        assert_eq!(c["sub"], serde_json::json!(10000000000003u64));
        assert_eq!(c["exp"], 4600);
        assert_eq!(c["nbf"], 970);
        assert_eq!(c["aud"], serde_json::json!(["lms.example.edu"]));
        let keys: Vec<_> = c.keys().cloned().collect();
        // serde_json's Map is sorted, so check the raw order instead.
        assert_eq!(keys.len(), 8);
        let raw = jose::payload_text(&t).unwrap();
        assert!(raw.starts_with(r#"{"iss":"Canvas","sub":10000000000003,"exp":4600,"aud":["lms.example.edu"],"iat":1000,"nbf":970,"jti":""#));
        assert!(raw.ends_with(r#","reg_key":"rk"}"#));
        assert!(
            uuid::Uuid::parse_str(c["jti"].as_str().unwrap())
                .unwrap()
                .get_version_num()
                == 4
        );
    }

    #[test]
    fn verify_checks_time_host_issuer_and_keys() {
        let r = ring();
        let t = mint(&r, 1000);
        assert!(r.verify(&t, "Canvas", "lms.example.edu", 1000).is_ok());
        assert!(r.verify(&t, "Canvas", "LMS.example.edu", 4600).is_ok());
        assert_eq!(
            r.verify(&t, "Canvas", "lms.example.edu", 4601),
            Err(AccessTokenError::Expired)
        );
        assert_eq!(
            r.verify(&t, "Canvas", "other.example", 1000),
            Err(AccessTokenError::Audience)
        );
        assert_eq!(
            r.verify(&t, "Other", "lms.example.edu", 1000),
            Err(AccessTokenError::Issuer)
        );
        assert_eq!(
            r.verify(&t, "Canvas", "lms.example.edu", 960),
            Err(AccessTokenError::IatInFuture)
        );
        let retired = KeyRing::new(vec![
            SigningKey::new("k3", b"newest".to_vec()),
            SigningKey::new("k2", b"new-key".to_vec()),
        ])
        .unwrap();
        assert!(retired
            .verify(&t, "Canvas", "lms.example.edu", 1000)
            .is_ok());
        let removed = KeyRing::new(vec![SigningKey::new("k3", b"newest".to_vec())]).unwrap();
        assert_eq!(
            removed.verify(&t, "Canvas", "lms.example.edu", 1000),
            Err(AccessTokenError::Signature)
        );
    }
}
