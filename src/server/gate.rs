//! The bearer gate over HTTP: every guarded route calls [`authenticate`] with its
//! [`Requirement`], and renders a refusal with [`GateError`]'s response.
//!
//! Two refusal bodies, as Canvas has them: the standard one,
//! `{"status":"unauthenticated","errors":[{"message":"user authorization required"}]}`
//! ([`Refusal::Standard`], the plagiarism APIs), and `{"error":"unauthorized"}`
//! ([`Refusal::Unauthorized`], tool proxy registration and lookup). Both are 401 with
//! `WWW-Authenticate: Bearer realm="lti2", error="invalid_token"` (without the error when the
//! request carried no token, RFC 6750 §3.1). A store failure is a 503 JSON error: the gate
//! fails closed.

use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::no_store;
use super::params::query_params;
use crate::authority::Authority;
use crate::bearer::{extract_token, token_from_authorization, Authenticated, GateError};
pub use crate::bearer::{Identity, Requirement};

/// Which 401 body a route answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Canvas `render_unauthorized_action`.
    Standard,
    /// Canvas `render_unauthorized`: `{"error":"unauthorized"}`.
    Unauthorized,
}

/// The `Host` the request was addressed to (`Host` header, else the URI's authority).
pub fn host_header(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
}

/// The `Authorization` header's Bearer token, if it has one.
pub fn header_token(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_from_authorization)
}

/// Runs the gate for a request: the token from the `Authorization` header, else the
/// `access_token` query parameter, else the `access_token` form parameter in `form` (for
/// routes that read a form body).
pub async fn authenticate(
    authority: &Authority,
    parts: &Parts,
    form: &[(String, String)],
    req: &Requirement,
) -> Result<Authenticated, GateError> {
    let query = query_params(parts.uri.query());
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = extract_token(
        authorization,
        query
            .iter()
            .chain(form.iter())
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    authority
        .authenticate(token, host_header(parts), parts.method.as_str(), req)
        .await
}

/// The response to a refused request.
pub fn refusal(e: &GateError, style: Refusal) -> Response {
    if let GateError::Store(err) = e {
        return unavailable(err);
    }
    tracing::info!(reason = e.reason(), detail = %e, "bearer token refused");
    let body = match style {
        Refusal::Standard => json!({
            "status": "unauthenticated",
            "errors": [{"message": "user authorization required"}]
        }),
        Refusal::Unauthorized => json!({"error": "unauthorized"}),
    };
    unauthorized(body, !matches!(e, GateError::NoToken))
}

/// 503 with a JSON error, for a store that cannot be read or written; nothing was done.
pub fn unavailable(err: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %err, "store failure");
    no_store(
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"errors": [{"message": "the service is unavailable right now; try again"}]}),
            ),
        )
            .into_response(),
    )
}

/// A 401 with `body` and the RFC 6750 challenge.
pub fn unauthorized(body: serde_json::Value, invalid_token: bool) -> Response {
    let challenge = if invalid_token {
        r#"Bearer realm="lti2", error="invalid_token""#
    } else {
        r#"Bearer realm="lti2""#
    };
    let mut resp = no_store((StatusCode::UNAUTHORIZED, Json(body)).into_response());
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    resp
}
