//! The webhook Subscriptions API (Canvas `Lti::SubscriptionsApiController`, stored and
//! delivered by lti2 instead of Instructure's closed service):
//! W1 `GET /api/lti/subscriptions`, W2 `GET /api/lti/subscriptions/{id}`,
//! W3 `POST /api/lti/subscriptions`, W4 `PUT /api/lti/subscriptions/{id}`,
//! W5 `DELETE /api/lti/subscriptions/{id}`. Guarded by the bearer gate with
//! `vnd.Canvas.webhooksSubscription`; a tool sees and changes only its own subscriptions
//! (another tool's id is a 404).
#![allow(clippy::result_large_err)]

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::gate::{self, Refusal, Requirement};
use super::{no_store, not_found_response, AppState};
use crate::authority::Authority;
use crate::plagiarism::{active_in_course, matches_assignment};
use crate::store::webhooks::Subscription;
use crate::store::{ContextKind, ContextRef, StoreError, ToolProxyRecord};
use crate::webhooks::{check_url, may_subscribe, WebhookSettings};

/// The event types a subscription may name.
const KNOWN_EVENT_TYPES: &[&str] = &[
    "submission_created",
    "submission_updated",
    "plagiarism_resubmit",
    "assignment_created",
    "assignment_updated",
    "attachment_created",
    "quiz_submitted",
    "grade_change",
];

const SUBSCRIPTIONS: Requirement = Requirement::service(&["vnd.Canvas.webhooksSubscription"]);

/// Largest request body.
pub const MAX_SUBSCRIPTION_BODY_BYTES: usize = 64 * 1024;
/// Subscriptions per index page.
pub const PAGE: i64 = 100;

type Step<T> = Result<T, Response>;

fn error(status: StatusCode, body: Value) -> Response {
    no_store((status, Json(body)).into_response())
}

fn invalid(message: impl Into<String>) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        json!({"error": "Invalid subscription", "message": message.into()}),
    )
}

fn unauthorized_subscription() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        json!({"error": "Unauthorized subscription"}),
    )
}

fn store_err(e: StoreError) -> Response {
    gate::unavailable(&e)
}

/// The subscription object as the API shows it.
pub fn subscription_json(s: &Subscription) -> Value {
    let mut v = json!({
        "Id": s.id,
        "ContextType": s.context_type,
        "ContextId": s.context_id,
        "Format": s.format,
        "TransportType": s.transport_type,
        "TransportMetadata": {"Url": s.url},
        "State": s.state,
        "DeveloperKey": s.developer_key_id.map(|d| d.to_string()),
        "RootAccountId": s.root_account_id.to_string(),
    });
    if let Some(t) = &s.event_types {
        v["EventTypes"] = json!(t);
    }
    if let Some(t) = &s.system_event_types {
        v["SystemEventTypes"] = json!(t);
    }
    if let Some(t) = &s.user_event_types {
        v["UserEventTypes"] = json!(t);
    }
    if let Some(a) = &s.associated_integration_id {
        v["AssociatedIntegrationId"] = json!(a);
    }
    if let Some(r) = &s.deactivated_reason {
        v["DeactivatedReason"] = json!(r);
    }
    v
}

async fn authenticate(a: &Authority, parts: &Parts) -> Step<std::sync::Arc<ToolProxyRecord>> {
    let auth = gate::authenticate(a, parts, &[], &SUBSCRIPTIONS)
        .await
        .map_err(|e| gate::refusal(&e, Refusal::Standard))?;
    auth.tool_proxy()
        .cloned()
        .ok_or_else(|| gate::refusal(&crate::bearer::GateError::WrongSubject, Refusal::Standard))
}

async fn read_subscription(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
) -> Step<Map<String, Value>> {
    let bytes = super::read_body(headers, body, MAX_SUBSCRIPTION_BODY_BYTES)
        .await
        .map_err(|e| {
            e.response(|| {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": "Invalid subscription", "message": "the body is too large"}),
                )
            })
        })?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("the body must be JSON: {\"subscription\": {…}}"))?;
    match v.get("subscription") {
        Some(Value::Object(m)) => Ok(m.clone()),
        _ => Err(invalid("the 'subscription' object is missing")),
    }
}

fn strings(v: &Value, field: &str) -> Step<Vec<String>> {
    let items = v
        .as_array()
        .ok_or_else(|| invalid(format!("{field} must be a list of strings")))?;
    items
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_owned)
                .ok_or_else(|| invalid(format!("{field} must be a list of strings")))
        })
        .collect()
}

fn text(m: &Map<String, Value>, k: &str) -> Option<String> {
    match m.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Applies the request's fields to `s` and validates the result in Canvas's order:
/// capabilities (401 "Unauthorized subscription"), context type (400 "Invalid subscription"),
/// context (400 "… context not found.", or 401 when the tool is not active there), then
/// format, transport and URL (400).
async fn apply_and_validate(
    a: &Authority,
    settings: &WebhookSettings,
    tp: &ToolProxyRecord,
    req: &Map<String, Value>,
    s: &mut Subscription,
) -> Step<()> {
    if let Some(v) = req.get("EventTypes") {
        let types = strings(v, "EventTypes")?;
        if types.is_empty() {
            return Err(invalid("EventTypes must name at least one event type"));
        }
        s.event_types = Some(types);
    }
    let Some(types) = s.event_types.clone() else {
        if s.automatic {
            return Ok(());
        }
        return Err(invalid("EventTypes is required"));
    };
    if !may_subscribe(&tp.enabled_capability, &types) {
        return Err(unauthorized_subscription());
    }
    if let Some(unknown) = types
        .iter()
        .find(|t| !KNOWN_EVENT_TYPES.contains(&t.as_str()))
    {
        return Err(invalid(format!("'{unknown}' is not an event type")));
    }
    if let Some(t) = text(req, "ContextType") {
        s.context_type = t;
    }
    if let Some(c) = text(req, "ContextId") {
        s.context_id = c;
    }
    let store = a.store();
    let facts = store.tool_facts(&tp.guid).await.map_err(store_err)?;
    let not_found = || {
        error(
            StatusCode::BAD_REQUEST,
            json!({"error": "Invalid context for subscription - context not found."}),
        )
    };
    match s.context_type.as_str() {
        "root_account" => {
            let root = store
                .root_account_by_uuid(&s.context_id)
                .await
                .map_err(store_err)?
                .ok_or_else(not_found)?;
            let active = facts.bindings.iter().any(|(c, enabled)| {
                *enabled
                    && *c
                        == ContextRef {
                            kind: ContextKind::Account,
                            id: root,
                        }
            });
            if !active {
                return Err(unauthorized_subscription());
            }
            s.root_account_id = root;
            s.assignment_id = None;
        }
        "assignment" => {
            let id = s.context_id.parse::<i64>().map_err(|_| not_found())?;
            let assignment = store
                .assignment(id)
                .await
                .map_err(store_err)?
                .filter(|x| x.workflow_state != "deleted")
                .ok_or_else(not_found)?;
            let chain = store
                .account_chain(assignment.course_id)
                .await
                .map_err(store_err)?;
            // Canvas only asks that the tool be active there; lti2 also asks that the
            // assignment use it, so a tool cannot watch assignments it may not read.
            if !active_in_course(&facts, assignment.course_id, &chain)
                || !matches_assignment(&facts, &assignment)
            {
                return Err(unauthorized_subscription());
            }
            s.root_account_id = *chain.last().unwrap_or(&1);
            s.assignment_id = Some(id);
        }
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                json!({"error": "Invalid subscription"}),
            ))
        }
    }
    if let Some(f) = text(req, "Format") {
        s.format = f;
    }
    if s.format != "live-event" {
        return Err(invalid(format!(
            "Format '{}' is not supported: lti2 delivers live-event messages",
            s.format
        )));
    }
    if let Some(t) = text(req, "TransportType") {
        s.transport_type = t;
    }
    match s.transport_type.as_str() {
        "https" => {}
        "http" if settings.allow_http => {}
        "sqs" => {
            return Err(invalid(
                "TransportType 'sqs' is not supported: lti2 delivers over https",
            ))
        }
        other => {
            return Err(invalid(format!(
                "TransportType '{other}' is not supported: use https"
            )))
        }
    }
    if let Some(m) = req.get("TransportMetadata") {
        let url = m
            .get("Url")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("TransportMetadata.Url is required"))?;
        s.url = url.to_owned();
    }
    if s.url.is_empty() {
        return Err(invalid("TransportMetadata.Url is required"));
    }
    check_url(&s.url, &s.transport_type, settings).map_err(invalid)?;
    Ok(())
}

/// W3.
pub async fn create(State(st): State<AppState>, req: Request) -> Response {
    let a = &st.authority;
    let (parts, body) = req.into_parts();
    let run = async {
        let tp = authenticate(a, &parts).await?;
        let fields = read_subscription(&parts.headers, body).await?;
        let now = a.now();
        let mut s = Subscription {
            id: uuid::Uuid::new_v4().to_string(),
            tool_proxy_guid: tp.guid.clone(),
            developer_key_id: tp.developer_key_id,
            root_account_id: 0,
            context_type: String::new(),
            context_id: String::new(),
            assignment_id: None,
            event_types: None,
            system_event_types: None,
            user_event_types: None,
            format: "live-event".into(),
            transport_type: "https".into(),
            url: String::new(),
            associated_integration_id: None,
            state: "Active".into(),
            automatic: false,
            consecutive_failures: 0,
            deactivated_reason: None,
            created_at: now,
            updated_at: now,
        };
        apply_and_validate(a, &st.webhooks, &tp, &fields, &mut s).await?;
        a.store().create_subscription(&s).await.map_err(store_err)?;
        tracing::info!(subscription = %s.id, guid = %tp.guid, "webhook subscription created");
        Ok::<_, Response>(error(StatusCode::CREATED, subscription_json(&s)))
    };
    run.await.unwrap_or_else(|r| r)
}

async fn own(a: &Authority, parts: &Parts, tp: &ToolProxyRecord) -> Step<Subscription> {
    let id = parts
        .uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .nth(3)
        .unwrap_or("");
    match a.store().subscription(id).await.map_err(store_err)? {
        Some(s) if s.tool_proxy_guid == tp.guid && s.state != "Deleted" => Ok(s),
        _ => Err(not_found_response()),
    }
}

/// W2.
pub async fn show(State(st): State<AppState>, req: Request) -> Response {
    let a = &st.authority;
    let (parts, _) = req.into_parts();
    let run = async {
        let tp = authenticate(a, &parts).await?;
        let s = own(a, &parts, &tp).await?;
        Ok::<_, Response>(error(StatusCode::OK, subscription_json(&s)))
    };
    run.await.unwrap_or_else(|r| r)
}

/// W4.
pub async fn update(State(st): State<AppState>, req: Request) -> Response {
    let a = &st.authority;
    let (parts, body) = req.into_parts();
    let run = async {
        let tp = authenticate(a, &parts).await?;
        let fields = read_subscription(&parts.headers, body).await?;
        let mut s = own(a, &parts, &tp).await?;
        apply_and_validate(a, &st.webhooks, &tp, &fields, &mut s).await?;
        s.updated_at = a.now();
        // A successful update re-activates a subscription deactivated by failed deliveries.
        s.state = "Active".into();
        s.consecutive_failures = 0;
        s.deactivated_reason = None;
        a.store().update_subscription(&s).await.map_err(store_err)?;
        Ok::<_, Response>(error(StatusCode::OK, subscription_json(&s)))
    };
    run.await.unwrap_or_else(|r| r)
}

/// W5.
pub async fn destroy(State(st): State<AppState>, req: Request) -> Response {
    let a = &st.authority;
    let (parts, _) = req.into_parts();
    let run = async {
        let tp = authenticate(a, &parts).await?;
        let mut s = own(a, &parts, &tp).await?;
        s.state = "Deleted".into();
        s.updated_at = a.now();
        a.store().update_subscription(&s).await.map_err(store_err)?;
        Ok::<_, Response>(error(StatusCode::OK, subscription_json(&s)))
    };
    run.await.unwrap_or_else(|r| r)
}

/// W1: a bare JSON array, 100 per page; `StartKey` request header and `EndKey` response
/// header (JSON objects, `{"Id": …}`) page through.
pub async fn index(State(st): State<AppState>, req: Request) -> Response {
    let a = &st.authority;
    let (parts, _) = req.into_parts();
    let run = async {
        let tp = authenticate(a, &parts).await?;
        let after = match parts.headers.get("startkey") {
            None => None,
            Some(h) => {
                let key: Value = h
                    .to_str()
                    .ok()
                    .and_then(|t| serde_json::from_str(t).ok())
                    .ok_or_else(|| invalid("StartKey must be the JSON object of an EndKey"))?;
                Some(
                    key.get("Id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            invalid("StartKey needs the Id (a string) of the EndKey it came from")
                        })?
                        .to_owned(),
                )
            }
        };
        let mut page = a
            .store()
            .subscriptions_of(&tp.guid, after.as_deref(), PAGE + 1)
            .await
            .map_err(store_err)?;
        let more = page.len() as i64 > PAGE;
        page.truncate(PAGE as usize);
        let mut resp = error(
            StatusCode::OK,
            Value::Array(page.iter().map(subscription_json).collect()),
        );
        if more {
            if let Some(last) = page.last() {
                let key = json!({"Id": last.id, "DeveloperKey": last.developer_key_id.map(|d| d.to_string())});
                if let Ok(v) = HeaderValue::from_str(&key.to_string()) {
                    resp.headers_mut().insert("EndKey", v);
                }
            }
        }
        Ok::<_, Response>(resp)
    };
    run.await.unwrap_or_else(|r| r)
}
