//! Request parameters as Rails gives them to Canvas: the query string merged with a body that is
//! `application/x-www-form-urlencoded`, `multipart/form-data` or `application/json`.
//! Repeats are kept, so the caller can refuse them (RFC 6749 §3.2).

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::Value;

use crate::authority::OAuthError;
use crate::jose::parse_object;

/// Whether request bytes (a body, a path or a query string) carry a NUL character in any of the
/// forms the service decodes: a raw 0x00 byte, `%00` (URL and form encoding, where a literal
/// `%00` is written `%2500`), or the JSON escape `\u0000` (not when its backslash is itself
/// escaped, as in `\\u0000`). No field may hold NUL: PostgreSQL text cannot store it, and
/// refusing it on both backends keeps the answer independent of the store.
pub fn carries_nul(bytes: &[u8]) -> bool {
    // One pass that jumps (SIMD) from one candidate byte to the next: this runs on every
    // request body of the token endpoint.
    let mut i = 0;
    while let Some(at) = memchr::memchr3(0, b'%', b'\\', &bytes[i..]) {
        let at = i + at;
        match bytes[at] {
            0 => return true,
            b'%' => {
                if bytes[at + 1..].starts_with(b"00") {
                    return true;
                }
                i = at + 1;
            }
            _ => {
                // A run of backslashes: an odd run escapes the next character.
                let run = bytes[at..].iter().take_while(|&&b| b == b'\\').count();
                let next = at + run;
                if run % 2 == 1 && bytes[next..].starts_with(b"u0000") {
                    return true;
                }
                i = next;
            }
        }
    }
    false
}

/// The most parameters read from one request.
const MAX_PARAMS: usize = 64;

/// Parameters of the query string (`None` = no query).
pub fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .take(MAX_PARAMS)
                .collect()
        })
        .unwrap_or_default()
}

/// Parameters of the body, by its media type (compared case-insensitively; parameters such as
/// `charset` are ignored). Errors (`invalid_request`): a body without a Content-Type, a media
/// type that is not one of the three, a multipart body that does not parse, a JSON body that is
/// not an object with unique member names, or a known parameter that is not a JSON string.
pub async fn body_params(
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Vec<(String, String)>, OAuthError> {
    let content_type = headers.get(axum::http::header::CONTENT_TYPE);
    let Some(ct) = content_type else {
        if body.is_empty() {
            return Ok(Vec::new());
        }
        return Err(OAuthError::invalid_request(
            "the request body needs a Content-Type: application/x-www-form-urlencoded, multipart/form-data or application/json",
        ));
    };
    if headers
        .get_all(axum::http::header::CONTENT_TYPE)
        .iter()
        .count()
        > 1
    {
        return Err(OAuthError::invalid_request(
            "the Content-Type header is given more than once",
        ));
    }
    let ct = ct
        .to_str()
        .map_err(|_| OAuthError::invalid_request("the Content-Type header is not text"))?;
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-www-form-urlencoded" => Ok(form_urlencoded::parse(&body).into_owned().take(MAX_PARAMS).collect()),
        "multipart/form-data" => multipart(ct, body).await,
        "application/json" => json(&body),
        _ => Err(OAuthError::invalid_request(
            "unsupported Content-Type: use application/x-www-form-urlencoded, multipart/form-data or application/json",
        )),
    }
}

async fn multipart(ct: &str, body: Bytes) -> Result<Vec<(String, String)>, OAuthError> {
    let bad = || OAuthError::invalid_request("the multipart/form-data body is malformed");
    let boundary = multer::parse_boundary(ct).map_err(|_| bad())?;
    let stream =
        futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = mp.next_field().await.map_err(|_| bad())? {
        if out.len() >= MAX_PARAMS {
            return Err(OAuthError::invalid_request("too many parameters"));
        }
        let name = field.name().ok_or_else(bad)?.to_owned();
        let bytes = field.bytes().await.map_err(|_| bad())?;
        let value = String::from_utf8(bytes.to_vec()).map_err(|_| {
            OAuthError::invalid_request(format!("the '{name}' parameter is not UTF-8 text"))
        })?;
        out.push((name, value));
    }
    Ok(out)
}

fn json(body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let obj = parse_object(body).ok_or_else(|| {
        OAuthError::invalid_request("the JSON body is not an object with unique member names")
    })?;
    let mut out = Vec::with_capacity(obj.len());
    for (k, v) in obj.into_iter().take(MAX_PARAMS) {
        match v {
            Value::String(s) => out.push((k, s)),
            _ if matches!(k.as_str(), "grant_type" | "assertion" | "code") => {
                return Err(OAuthError::invalid_request(format!(
                    "the '{k}' parameter must be a string"
                )));
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod nul_tests {
    use super::carries_nul;
    use proptest::prelude::*;

    /// The definition, byte by byte: a 0x00, a `%00`, or `u0000` after an odd run of
    /// backslashes.
    fn naive(bytes: &[u8]) -> bool {
        (0..bytes.len()).any(|i| {
            bytes[i] == 0
                || bytes[i..].starts_with(b"%00")
                || (bytes[i..].starts_with(b"u0000")
                    && bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1)
        })
    }

    proptest! {
        #[test]
        fn agrees_with_the_definition(bytes in proptest::collection::vec(
            prop::sample::select(vec![0u8, b'%', b'0', b'\\', b'u', b'a']), 0..40)) {
            prop_assert_eq!(carries_nul(&bytes), naive(&bytes));
        }
    }

    #[test]
    fn every_encoding_of_nul_is_found() {
        for bytes in [
            &b"a\x00b"[..],
            b"name=a%00b",
            br#"{"a":"x\u0000y"}"#,
            br#"{"a":"\\\u0000"}"#,
            br#"{"a":"\u00001"}"#,
            b"%00",
        ] {
            assert!(carries_nul(bytes), "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn look_alikes_are_not_nul() {
        for bytes in [
            &b"name=a%2500b"[..],
            br#"{"a":"x\\u0000y"}"#,
            br#"{"a":"\u0001"}"#,
            b"plain text 100%0",
            b"",
        ] {
            assert!(!carries_nul(bytes), "{}", String::from_utf8_lossy(bytes));
        }
    }
}
