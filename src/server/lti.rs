//! LTI 2 registration routes:
//! * `GET /api/lti/{accounts|courses}/{id}/tool_consumer_profile[/{uuid}]` (T1): the tool
//!   consumer profile, with a developer key's custom profile when its token is given;
//! * `POST /api/lti/{accounts|courses}/{id}/tool_proxy` (P1): tool proxy registration, or a
//!   re-registration (P2) when the `VND-IMS-CONFIRM-URL` header is present;
//! * `GET /api/lti/tool_proxy/{guid}` (P3): the tool proxy's own document;
//! * `GET /{accounts|courses}/{id}/lti/registration_return`: the page a tool sends the
//!   browser back to after registering.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::gate::{self, Identity, Refusal, Requirement};
use super::params::query_params;
use super::{no_store, not_found_response, AppState};
use crate::authority::Authority;
use crate::bearer::GateError;
use crate::profile::{self, Profile};
use crate::registration::html_escape;
use crate::store::{ContextKind, ContextRef, RegisteredToolProxy, StoreError};
use crate::tool_proxy::{self, ToolProxyError};

/// Largest ToolProxy document accepted.
pub const MAX_TOOL_PROXY_BYTES: usize = 256 * 1024;

/// The re-registration header (Canvas `Lti::ReRegConstraint`).
pub const CONFIRM_URL_HEADER: &str = "vnd-ims-confirm-url";

const TOOL_PROXY_ID_CONTEXT: &str = "http://purl.imsglobal.org/ctx/lti/v2/ToolProxyId";

/// The tool consumer profile route's requirement: any valid token; only its developer key
/// matters (Canvas reads nothing else here).
const PROFILE_READER: Requirement = Requirement {
    services: &[],
    tool_proxy: true,
    developer_key: true,
    unregistered: true,
};

/// Registration: a developer-key token (with `code` = reg_key) or a reg_key token.
const REGISTRANT: Requirement = Requirement {
    services: &[],
    tool_proxy: false,
    developer_key: true,
    unregistered: true,
};

/// Re-registration: the tool proxy's own token, with `ToolProxy.collection` or
/// `ToolProxy.item` and POST in its contract.
const REREGISTRANT: Requirement = Requirement::service(&["ToolProxy.collection", "ToolProxy.item"]);

/// Reading one's own tool proxy: `ToolProxy.item` with GET.
const TOOL_PROXY_READER: Requirement = Requirement::service(&["ToolProxy.item"]);

/// A positive integer id in canonical decimal (no sign, leading zero or encoding).
pub fn canonical_id(s: &str) -> Option<i64> {
    let ok = !s.is_empty()
        && s.len() <= 18
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0');
    ok.then(|| s.parse().ok()).flatten()
}

/// A path segment with its percent-escapes decoded (`+` stays a plus).
pub fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The `n`th segment of the raw path (`/api/lti/courses/5/…` has `api` at 0).
pub fn segment(path: &str, n: usize) -> Option<&str> {
    path.trim_start_matches('/').split('/').nth(n)
}

fn with_type(mut resp: Response, content_type: &'static str) -> Response {
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn bad_request(body: Value) -> Response {
    no_store((StatusCode::BAD_REQUEST, Json(body)).into_response())
}

fn unavailable(e: &StoreError) -> Response {
    gate::unavailable(e)
}

/// The context of an `/api/lti/{plural}/{id}/…` path, if it exists.
async fn api_context(
    authority: &Authority,
    kind: ContextKind,
    path: &str,
) -> Result<ContextRef, Response> {
    let Some(id) = segment(path, 3).and_then(canonical_id) else {
        return Err(not_found_response());
    };
    let ctx = ContextRef { kind, id };
    match authority.context_exists(ctx).await {
        Ok(true) => Ok(ctx),
        Ok(false) => Err(not_found_response()),
        Err(e) => Err(unavailable(&e)),
    }
}

/// T1 on an account.
pub async fn account_profile(State(s): State<AppState>, req: Request) -> Response {
    tool_consumer_profile(&s.authority, ContextKind::Account, req).await
}

/// T1 on a course.
pub async fn course_profile(State(s): State<AppState>, req: Request) -> Response {
    tool_consumer_profile(&s.authority, ContextKind::Course, req).await
}

async fn tool_consumer_profile(authority: &Authority, kind: ContextKind, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let ctx = match api_context(authority, kind, parts.uri.path()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let path_uuid = segment(parts.uri.path(), 5).filter(|u| !u.is_empty());
    // Only an `Authorization: Bearer` header counts here (Canvas `oauth2_request?`); an invalid
    // token is a 401 (Canvas would answer 500).
    let bearer_scheme = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("bearer")));
    let developer_key = if bearer_scheme || gate::header_token(&parts).is_some() {
        match gate::authenticate(authority, &parts, &[], &PROFILE_READER).await {
            Ok(a) => a.developer_key_id(),
            Err(e) => return gate::refusal(&e, Refusal::Standard),
        }
    } else {
        None
    };
    let store = authority.store();
    let custom = match developer_key {
        Some(id) => match store.tool_consumer_profile_for_developer_key(id).await {
            Ok(c) => c,
            Err(e) => return unavailable(&e),
        },
        None => None,
    };
    let root = match store.root_account(ctx).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found_response(),
        Err(e) => return unavailable(&e),
    };
    let profile = Profile::choose(path_uuid, custom);
    let base = authority
        .base_url_for(gate::host_header(&parts))
        .unwrap_or(authority.primary_base_url())
        .to_owned();
    let mut resp = with_type(
        no_store(Json(profile.document(&base, ctx, &root)).into_response()),
        profile::CONTENT_TYPE,
    );
    // The document depends on the token.
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Authorization"));
    resp
}

/// P1/P2 on an account.
pub async fn account_tool_proxy(State(s): State<AppState>, req: Request) -> Response {
    create_tool_proxy(&s.authority, ContextKind::Account, req).await
}

/// P1/P2 on a course.
pub async fn course_tool_proxy(State(s): State<AppState>, req: Request) -> Response {
    create_tool_proxy(&s.authority, ContextKind::Course, req).await
}

fn unauthorized() -> Response {
    gate::unauthorized(json!({"error": "unauthorized"}), true)
}

async fn read_body(
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<bytes::Bytes, Response> {
    let too_large = || {
        no_store(
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(json!({"error": "Invalid request", "message": format!("the body is larger than {MAX_TOOL_PROXY_BYTES} bytes")})),
            )
                .into_response(),
        )
    };
    super::read_body(&parts.headers, body, MAX_TOOL_PROXY_BYTES)
        .await
        .map_err(|e| e.response(too_large))
}

async fn create_tool_proxy(authority: &Authority, kind: ContextKind, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = match api_context(authority, kind, parts.uri.path()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if parts.headers.contains_key(CONFIRM_URL_HEADER) {
        return reregister(authority, ctx, parts, body).await;
    }
    // Only a Bearer header authenticates here (OAuth 1.0a signatures are not supported).
    if gate::header_token(&parts).is_none() {
        return gate::refusal(&GateError::NoToken, Refusal::Unauthorized);
    }
    let auth = match gate::authenticate(authority, &parts, &[], &REGISTRANT).await {
        Ok(a) => a,
        Err(e) => return gate::refusal(&e, Refusal::Unauthorized),
    };
    let now = authority.now();
    let store = authority.store();
    let reg_key = auth
        .claims
        .reg_key
        .clone()
        .unwrap_or_else(|| auth.claims.sub.as_text().into_owned());
    let registration = match store.registration(&reg_key).await {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    let live = registration
        .as_ref()
        .is_some_and(|r| r.context == ctx && r.expires_at > now && r.consumed_at.is_none());
    if !live {
        tracing::info!(
            reason = "registration_not_live",
            "tool proxy registration refused"
        );
        return unauthorized();
    }
    let registration = registration.expect("checked live");
    let bytes = match read_body(&parts, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let parsed = match tool_proxy::parse(&bytes) {
        Ok(p) => p,
        Err(e) => return bad_request(e.body()),
    };
    let developer_key = match auth.identity {
        Identity::DeveloperKey(id) => Some(id),
        _ => None,
    };
    let custom = match developer_key {
        Some(id) => match store.tool_consumer_profile_for_developer_key(id).await {
            Ok(c) => c,
            Err(e) => return unavailable(&e),
        },
        None => None,
    };
    let profile = Profile::choose(parsed.tcp_uuid.as_deref(), custom);
    if let Err(errors) = parsed.validate(&profile) {
        return bad_request(errors.body());
    }
    // Canvas `ToolProxyService#validate_developer_key!`.
    let vendor_code = parsed.product_family.vendor_code.trim();
    if vendor_code.is_empty() {
        return bad_request(ToolProxyError::DeveloperKeyMismatch.body());
    }
    match store.developer_keys_with_vendor_code(vendor_code).await {
        Ok(keys) if !keys.is_empty() && !developer_key.is_some_and(|k| keys.contains(&k)) => {
            return bad_request(ToolProxyError::DeveloperKeyMismatch.body())
        }
        Ok(_) => {}
        Err(e) => return unavailable(&e),
    }
    let (secret, tc_half) = parsed.make_secret();
    let result = store
        .register_tool_proxy(RegisteredToolProxy {
            guid: reg_key.clone(),
            context: ctx,
            developer_key_id: developer_key,
            product_family: parsed.product_family.clone(),
            registration_url: registration.tool_url.clone(),
            shared_secret: secret,
            content: parsed.content.clone(),
            now,
        })
        .await;
    match result {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            tracing::info!(
                reason = "registration_used",
                "tool proxy registration refused"
            );
            return unauthorized();
        }
        Err(e) => return unavailable(&e),
    }
    tracing::info!(guid = %reg_key, context = ?ctx, "tool proxy registered (disabled until accepted)");
    tool_proxy_id(Value::Null, &reg_key, tc_half)
}

/// 201 with the IMS `ToolProxyId` document.
fn tool_proxy_id(id: Value, guid: &str, tc_half: Option<String>) -> Response {
    let mut body = json!({
        "@context": TOOL_PROXY_ID_CONTEXT,
        "@type": "ToolProxy",
        "@id": id,
        "tool_proxy_guid": guid,
    });
    if let Some(tc_half) = tc_half {
        body["tc_half_shared_secret"] = Value::String(tc_half);
    }
    with_type(
        no_store((StatusCode::CREATED, Json(body)).into_response()),
        tool_proxy::ID_CONTENT_TYPE,
    )
}

async fn reregister(
    authority: &Authority,
    ctx: ContextRef,
    parts: axum::http::request::Parts,
    body: Body,
) -> Response {
    if gate::header_token(&parts).is_none() {
        return gate::refusal(&GateError::NoToken, Refusal::Unauthorized);
    }
    let auth = match gate::authenticate(authority, &parts, &[], &REREGISTRANT).await {
        Ok(a) => a,
        Err(e) => return gate::refusal(&e, Refusal::Unauthorized),
    };
    let Some(tp) = auth.tool_proxy().cloned() else {
        return unauthorized();
    };
    let store = authority.store();
    let detail = match store.tool_proxy_detail(&tp.guid).await {
        Ok(Some(d)) => d,
        Ok(None) => return unauthorized(),
        Err(e) => return unavailable(&e),
    };
    if !detail.contexts.contains(&ctx) {
        tracing::info!(reason = "other_context", "re-registration refused");
        return unauthorized();
    }
    let ack = parts
        .headers
        .get(CONFIRM_URL_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if crate::registration::check_tool_url(ack).is_err() {
        return bad_request(
            json!({"error": "Invalid request", "message": "VND-IMS-CONFIRM-URL must be an absolute http or https URL"}),
        );
    }
    let bytes = match read_body(&parts, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let parsed = match tool_proxy::parse(&bytes) {
        Ok(p) => p,
        Err(e) => return bad_request(e.body()),
    };
    let custom = match tp.developer_key_id {
        Some(id) => match store.tool_consumer_profile_for_developer_key(id).await {
            Ok(c) => c,
            Err(e) => return unavailable(&e),
        },
        None => None,
    };
    let profile = Profile::choose(parsed.tcp_uuid.as_deref(), custom);
    if let Err(errors) = parsed.validate(&profile) {
        let mut body = errors.body();
        body["error"] = Value::String("Invalid Tool Proxy".into());
        return bad_request(body);
    }
    let (secret, tc_half) = parsed.make_secret();
    let payload = json!({"acknowledgement_url": ack, "payload": parsed.doc});
    let staged = store
        .stage_tool_proxy_update(
            &tp.guid,
            &payload.to_string(),
            Some(&secret),
            authority.now(),
        )
        .await;
    if let Err(e) = staged {
        return unavailable(&e);
    }
    tracing::info!(guid = %tp.guid, "re-registration stored (waiting for acceptance)");
    let existing_id = detail
        .raw_data
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|v| v.get("@id").cloned())
        .unwrap_or(Value::Null);
    tool_proxy_id(existing_id, &tp.guid, tc_half)
}

/// P3: `GET /api/lti/tool_proxy/{guid}` with that tool proxy's own token.
pub async fn show_tool_proxy(State(s): State<AppState>, req: Request) -> Response {
    let authority = &s.authority;
    let (parts, _) = req.into_parts();
    let Some(guid) = segment(parts.uri.path(), 3).map(percent_decode) else {
        return not_found_response();
    };
    let auth = match gate::authenticate(authority, &parts, &[], &TOOL_PROXY_READER).await {
        Ok(a) => a,
        Err(e) => return gate::refusal(&e, Refusal::Unauthorized),
    };
    if auth.claims.sub.as_text() != guid {
        return unauthorized();
    }
    let detail = match authority.store().tool_proxy_detail(&guid).await {
        Ok(Some(d)) => d,
        Ok(None) => return unauthorized(),
        Err(e) => return unavailable(&e),
    };
    let body = match detail.raw_data {
        Some(raw) => raw,
        None => {
            // Created by `lti2 admin tool-proxy create`, not by registration.
            let tp = auth
                .tool_proxy()
                .expect("the gate admits only tool proxies here");
            json!({
                "@context": "http://purl.imsglobal.org/ctx/lti/v2/ToolProxy",
                "@type": "ToolProxy",
                "tool_proxy_guid": tp.guid,
                "enabled_capability": tp.enabled_capability,
                "security_contract": {"tool_service": tp.tool_service},
            })
            .to_string()
        }
    };
    with_type(
        no_store((StatusCode::OK, body).into_response()),
        tool_proxy::CONTENT_TYPE,
    )
}

/// The page a tool returns the browser to after registration
/// (`launch_presentation_return_url`), showing `status`, `tool_proxy_guid`, `lti_msg` and
/// `lti_errormsg`.
pub async fn registration_return(State(s): State<AppState>, req: Request) -> Response {
    let kind = match segment(req.uri().path(), 0) {
        Some("accounts") => ContextKind::Account,
        _ => ContextKind::Course,
    };
    let exists = match segment(req.uri().path(), 1).and_then(canonical_id) {
        Some(id) => s
            .authority
            .context_exists(ContextRef { kind, id })
            .await
            .unwrap_or(false),
        None => false,
    };
    if !exists {
        return not_found_response();
    }
    let params = query_params(req.uri().query());
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| html_escape(v))
            .unwrap_or_default()
    };
    let status = get("status");
    let page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Tool registration</title></head><body>\n<h1>Tool registration: {}</h1>\n<p>Tool proxy: <code>{}</code></p>\n<p>{}</p>\n<p>{}</p>\n<p>A new tool proxy stays disabled until an administrator runs <code>lti2 admin tool-proxy accept GUID</code>.</p>\n</body></html>\n",
        if status.is_empty() { "returned".to_owned() } else { status },
        get("tool_proxy_guid"),
        get("lti_msg"),
        get("lti_errormsg"),
    );
    Html(page).into_response()
}
