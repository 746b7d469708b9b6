//! `POST /api/lti/{accounts|courses}/{id}/authorize`: the token endpoint.
//!
//! Reads the parameters (query + form, multipart or JSON body, at most
//! [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES)), hands them to [`Authority::authorize`], and
//! renders the RFC 6749 §5.1 response or the §5.2 error, both with `Cache-Control: no-store`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::params::{body_params, query_params};
use super::{no_store, not_found_response, AppState, MAX_BODY_BYTES};
use crate::authority::{Authority, OAuthError, TokenRequest};
use crate::store::{ContextKind, ContextRef};

/// The account route.
pub async fn account(State(s): State<AppState>, req: Request) -> Response {
    handle(&s.authority, ContextKind::Account, req).await
}

/// The course route.
pub async fn course(State(s): State<AppState>, req: Request) -> Response {
    handle(&s.authority, ContextKind::Course, req).await
}

/// The context id of `/api/lti/{plural}/{id}/authorize`, read from the raw path: a positive
/// integer in canonical decimal (no sign, no leading zero, no percent-encoding), so that the
/// URL a tool posts to is exactly the one its `aud` must name.
fn context_id(path: &str, kind: ContextKind) -> Option<i64> {
    let id = path
        .strip_prefix("/api/lti/")?
        .strip_prefix(kind.plural())?
        .strip_prefix('/')?
        .strip_suffix("/authorize")?;
    let canonical = !id.is_empty()
        && id.len() <= 18
        && id.bytes().all(|b| b.is_ascii_digit())
        && !id.starts_with('0');
    canonical.then(|| id.parse().ok()).flatten()
}

/// 400 `invalid_request` for a request that carries a NUL character (in its body, or in the
/// query string: see `refuse_nul`).
pub fn nul_error() -> OAuthError {
    OAuthError {
        reason: "nul_character",
        ..OAuthError::invalid_request(super::NUL_MESSAGE)
    }
}

/// Renders an OAuth error: Canvas's generic body for 404, RFC 6749 §5.2 JSON otherwise.
pub fn error_response(e: &OAuthError) -> Response {
    if e.status == 404 {
        return not_found_response();
    }
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    no_store(
        (
            status,
            Json(serde_json::json!({"error": e.error, "error_description": e.description})),
        )
            .into_response(),
    )
}

async fn handle(authority: &Authority, kind: ContextKind, req: Request) -> Response {
    let Some(id) = context_id(req.uri().path(), kind) else {
        return not_found_response();
    };
    let ctx = ContextRef { kind, id };
    match exchange(authority, ctx, req).await {
        Ok(resp) => resp,
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(status = e.status, reason = e.reason, "token request failed");
            } else {
                tracing::info!(status = e.status, reason = e.reason, detail = %e.description, "token request refused");
            }
            error_response(&e)
        }
    }
}

async fn exchange(
    authority: &Authority,
    ctx: ContextRef,
    req: Request,
) -> Result<Response, OAuthError> {
    let (parts, body) = req.into_parts();
    let too_large = || OAuthError {
        status: 413,
        error: "invalid_request",
        description: format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        reason: "body_too_large",
    };
    let bytes = super::read_body(&parts.headers, Body::new(body), MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            super::BodyError::TooLarge => too_large(),
            super::BodyError::TimedOut => OAuthError {
                status: 408,
                error: "invalid_request",
                description: "the request body did not arrive in time".into(),
                reason: "body_timeout",
            },
            super::BodyError::Nul => nul_error(),
        })?;
    let mut params = query_params(parts.uri.query());
    params.extend(body_params(&parts.headers, bytes).await?);
    let request = TokenRequest::from_params(&params)?;
    let (resp, kind) = authority.authorize(ctx, &request).await?;
    tracing::debug!(credential = ?kind, "access token issued");
    Ok(no_store(Json(resp).into_response()))
}
