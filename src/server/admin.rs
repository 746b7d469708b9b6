//! The admin HTTP API, for a host LMS that pushes its records as they change:
//! `POST /api/admin/import` takes the import document of `lti2 admin import` (files as
//! `content_base64`) and answers `{"imported": {…counts…}}`.
//!
//! It is off (404) unless `LTI2_ADMIN_TOKEN` is set, and then needs
//! `Authorization: Bearer <that token>` (compared in constant time). A refused document is a
//! 400 `{"errors":[{"path":…, "message":…}]}` and writes nothing.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::gate;
use super::{no_store, not_found_response, AppState};
use crate::bearer::token_from_authorization;
use crate::import::{self, ImportError, MAX_IMPORT_BYTES};

/// Whether the request carries the admin token.
fn authorized(expected: &str, req: &Request) -> bool {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_from_authorization);
    match given {
        // Comparing digests keeps the comparison independent of where the strings differ.
        Some(g) => Sha256::digest(g.as_bytes()) == Sha256::digest(expected.as_bytes()),
        None => false,
    }
}

/// `POST /api/admin/import`.
pub async fn import(State(s): State<AppState>, req: Request) -> Response {
    let Some(expected) = s.admin_token.as_deref() else {
        return not_found_response();
    };
    if !authorized(expected, &req) {
        tracing::info!("admin API request without the admin token");
        return gate::unauthorized(
            json!({"errors": [{"message": "the admin token is required"}]}),
            req.headers().contains_key(header::AUTHORIZATION),
        );
    }
    let (parts, body) = req.into_parts();
    let bytes = match super::read_body(&parts.headers, body, MAX_IMPORT_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return e.response(|| {
                no_store(
                    (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Json(json!({"errors": [{"message": format!("the document is larger than {MAX_IMPORT_BYTES} bytes")}]})),
                    )
                        .into_response(),
                )
            })
        }
    };
    let a = &s.authority;
    let result = match import::parse(&bytes) {
        Ok(doc) => import::run(a.store().as_ref(), &s.files, doc, None, a.now()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(summary) => {
            tracing::info!(?summary, "records imported over the admin API");
            no_store(Json(json!({"imported": summary})).into_response())
        }
        Err(ImportError::Invalid { path, message }) => no_store(
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"errors": [{"path": path, "message": message}]})),
            )
                .into_response(),
        ),
        Err(ImportError::Store(e)) => gate::unavailable(&e),
    }
}
