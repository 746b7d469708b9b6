//! The plagiarism detection platform APIs (Canvas `Lti::OriginalityReportsApiController`,
//! `SubmissionsApiController`, `UsersApiController`, `PlagiarismAssignmentsApiController`):
//!
//! * O1 `POST /api/lti/assignments/{a}/submissions/{s}/originality_report`
//! * O2 `PUT  /api/lti/assignments/{a}/submissions/{s}/originality_report/{id}`
//! * O3 `PUT  /api/lti/assignments/{a}/files/{file}/originality_report`
//! * O4 `GET  /api/lti/assignments/{a}/submissions/{s}/originality_report/{id}`
//! * O5 `GET  /api/lti/assignments/{a}/files/{file}/originality_report`
//! * S1 `GET /api/lti/assignments/{a}/submissions/{s}`, S2 `…/history`,
//!   S3 `…/attachment/{attachment}`
//! * U1 `GET /api/lti/users/{id}`, U2 `GET /api/lti/groups/{g}/users`
//! * G1 `GET /api/lti/assignments/{a}[?user_id=…]`
//!
//! Every route runs the bearer gate with its service name first. The token gate and O/U/G
//! answer 401 with the standard body; S1–S3 answer their own checks with
//! `{"error":"unauthorized"}`, as Canvas does.
//!
//! The steps return `Result<T, Response>` so that each check can end the request with its own
//! answer; the `Err` is the response itself, built once and sent, so boxing it gains nothing.
#![allow(clippy::result_large_err)]

use axum::body::Body;
use axum::extract::Request;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::gate::{self, Refusal, Requirement};
use super::lti::{canonical_id, percent_decode};
use super::params::{body_params, query_params};
use super::{no_store, not_found_response, AppState};
use crate::authority::Authority;
use crate::bearer::Authenticated;
use crate::plagiarism::*;
use crate::store::lms::{AssignmentRecord, OriginalityReport, SubmissionRecord, ToolFacts};
use crate::store::{ContextKind, ContextRef, StoreError, ToolProxyRecord};

/// Largest originality report body.
pub const MAX_REPORT_BODY_BYTES: usize = 64 * 1024;

const REPORTS: Requirement = Requirement::service(&[ORIGINALITY_REPORT_SERVICE]);
const SUBMISSIONS: Requirement = Requirement::service(&[SUBMISSION_SERVICE]);
const USERS: Requirement = Requirement::service(&[USER_SERVICE]);
const ASSIGNMENTS: Requirement = Requirement::service(&[ASSIGNMENT_SERVICE]);

/// A response ready to send, or one to send instead.
type Step<T> = Result<T, Response>;

fn standard_401() -> Response {
    gate::unauthorized(
        json!({"status": "unauthenticated", "errors": [{"message": "user authorization required"}]}),
        true,
    )
}

fn helper_401() -> Response {
    gate::unauthorized(json!({"error": "unauthorized"}), true)
}

fn bad_request(body: Value) -> Response {
    no_store((StatusCode::BAD_REQUEST, Json(body)).into_response())
}

fn store_err(e: StoreError) -> Response {
    gate::unavailable(&e)
}

fn json_ok(status: StatusCode, v: Value) -> Response {
    no_store((status, Json(v)).into_response())
}

/// The `n`th segment of the raw path as a canonical id.
fn id_at(parts: &Parts, n: usize) -> Step<i64> {
    segment(parts, n)
        .and_then(canonical_id)
        .ok_or_else(not_found_response)
}

fn segment(parts: &Parts, n: usize) -> Option<&str> {
    super::lti::segment(parts.uri.path(), n)
}

async fn authenticate(
    a: &Authority,
    parts: &Parts,
    form: &[(String, String)],
    req: &Requirement,
) -> Step<Authenticated> {
    gate::authenticate(a, parts, form, req)
        .await
        .map_err(|e| gate::refusal(&e, Refusal::Standard))
}

fn tool(auth: &Authenticated) -> Step<&ToolProxyRecord> {
    // The gate admits only tool proxies on these routes; anything else is a 401, never a 500.
    auth.tool_proxy()
        .map(|t| t.as_ref())
        .ok_or_else(standard_401)
}

async fn facts(a: &Authority, guid: &str) -> Step<ToolFacts> {
    a.store().tool_facts(guid).await.map_err(store_err)
}

/// Canvas `PermissionChecker.authorized_lti2_action?`: codes and resource handler match, and
/// the tool is active in the assignment's course.
async fn associated(a: &Authority, facts: &ToolFacts, assignment: &AssignmentRecord) -> Step<bool> {
    if !matches_assignment(facts, assignment) {
        return Ok(false);
    }
    let chain = a
        .store()
        .account_chain(assignment.course_id)
        .await
        .map_err(store_err)?;
    Ok(active_in_course(facts, assignment.course_id, &chain))
}

fn base_url<'a>(a: &'a Authority, parts: &Parts) -> &'a str {
    a.base_url_for(gate::host_header(parts))
        .unwrap_or(a.primary_base_url())
}

/// Reads a report request's body: JSON, or a urlencoded/multipart form with bracketed names.
/// Returns the body as JSON and the form pairs (for `access_token`).
async fn read_report_body(parts: &Parts, body: Body) -> Step<(Value, Vec<(String, String)>)> {
    let bytes = super::read_body(&parts.headers, body, MAX_REPORT_BODY_BYTES)
        .await
        .map_err(|e| {
            e.response(|| {
                no_store(
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Json(json!({"errors": [{"message": format!("the body is larger than {MAX_REPORT_BODY_BYTES} bytes")}]})),
                )
                    .into_response(),
            )
            })
        })?;
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if is_json {
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            bad_request(json!({"errors": [{"message": "the body is not valid JSON"}]}))
        })?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .map(|t| vec![("access_token".to_owned(), t.to_owned())])
            .unwrap_or_default();
        return Ok((v, token));
    }
    let pairs = body_params(&parts.headers, bytes)
        .await
        .map_err(|e| bad_request(json!({"errors": [{"message": e.description}]})))?;
    for (i, (k, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(k2, _)| k2 == k) {
            return Err(bad_request(
                json!({"errors": [{"message": format!("the '{k}' parameter is given more than once")}]}),
            ));
        }
    }
    Ok((nest_form(&pairs), pairs))
}

fn missing_report_param() -> Response {
    bad_request(
        json!({"errors": [{"message": "param is missing or the value is empty: originality_report"}]}),
    )
}

async fn live_submission(a: &Authority, id: i64) -> Step<SubmissionRecord> {
    match a.store().submission(id).await.map_err(store_err)? {
        Some(s) if s.active() => Ok(s),
        _ => Err(not_found_response()),
    }
}

async fn live_assignment(a: &Authority, id: i64) -> Step<AssignmentRecord> {
    match a.store().assignment(id).await.map_err(store_err)? {
        Some(x) if x.workflow_state != "deleted" => Ok(x),
        _ => Err(not_found_response()),
    }
}

async fn root_account_id(a: &Authority, course_id: i64) -> Step<Option<i64>> {
    Ok(a.store()
        .root_account(ContextRef {
            kind: ContextKind::Course,
            id: course_id,
        })
        .await
        .map_err(store_err)?
        .map(|r| r.id))
}

fn codes_of(facts: &ToolFacts) -> ToolCodes {
    ToolCodes {
        vendor_code: facts.vendor_code.clone().unwrap_or_default(),
        product_code: facts.product_code.clone().unwrap_or_default(),
    }
}

/// Saves and answers: 201 for a new report, 200 for an updated one.
async fn save(
    a: &Authority,
    mut report: OriginalityReport,
    params: &ReportParams,
    facts: &ToolFacts,
    submission: &SubmissionRecord,
) -> Response {
    let created = report.id == 0;
    if let Err(e) = apply(&mut report, params, &codes_of(facts), a.now()) {
        return bad_request(e.body());
    }
    let group = submission.group_id.map(|g| (submission.assignment_id, g));
    match a.store().save_originality_report(&report, group).await {
        Ok(saved) => json_ok(
            if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            report_json(&saved),
        ),
        Err(e) => store_err(e),
    }
}

/// O1.
pub async fn create_report(State(s): State<AppState>, req: Request) -> Response {
    create_report_inner(&s.authority, req)
        .await
        .unwrap_or_else(|r| r)
}

async fn create_report_inner(a: &Authority, req: Request) -> Step<Response> {
    let (parts, body) = req.into_parts();
    let assignment_id = id_at(&parts, 3)?;
    let submission_id = id_at(&parts, 5)?;
    let (input, form) = read_report_body(&parts, body).await?;
    let auth = authenticate(a, &parts, &form, &REPORTS).await?;
    let tp = tool(&auth)?;
    let params = ReportParams::from_body(&input)
        .map_err(|e| bad_request(e.body()))?
        .ok_or_else(missing_report_param)?;
    let store = a.store();
    let attachment = match params.file_id {
        Some(id) => Some(
            store
                .attachment(id)
                .await
                .map_err(store_err)?
                .ok_or_else(not_found_response)?,
        ),
        None => None,
    };
    let submission = live_submission(a, submission_id).await?;
    let path_assignment = live_assignment(a, assignment_id).await?;
    let own_assignment = if submission.assignment_id == path_assignment.id {
        path_assignment.clone()
    } else {
        live_assignment(a, submission.assignment_id).await?
    };
    let required = own_assignment.attachment_required();
    if required && attachment.is_none() {
        return Err(not_found_response());
    }
    if submission.assignment_id != path_assignment.id {
        return Err(standard_401());
    }
    if let Some(att) = &attachment {
        if required && !submission.has_attachment(att.id) {
            return Err(standard_401());
        }
    }
    let (existing, submission_time) = match &attachment {
        Some(att) => (
            store
                .report_for(submission.id, Some(att.id))
                .await
                .map_err(store_err)?,
            submission.submitted_at,
        ),
        None => match params.attempt {
            Some(attempt) => {
                let version = submission
                    .history
                    .iter()
                    .find(|v| v.attempt == attempt)
                    .ok_or_else(not_found_response)?;
                (
                    store
                        .report_at_time(submission.id, version.submitted_at)
                        .await
                        .map_err(store_err)?,
                    version.submitted_at,
                )
            }
            None => (
                store
                    .report_for(submission.id, None)
                    .await
                    .map_err(store_err)?,
                submission.submitted_at,
            ),
        },
    };
    let facts = facts(a, &tp.guid).await?;
    if !associated(a, &facts, &path_assignment).await? {
        return Err(standard_401());
    }
    let report = match existing {
        Some(r) => r,
        None => OriginalityReport {
            id: 0,
            submission_id: submission.id,
            attachment_id: attachment.as_ref().map(|x| x.id),
            originality_score: None,
            originality_report_attachment_id: None,
            originality_report_url: None,
            workflow_state: String::new(),
            error_message: None,
            submission_time,
            root_account_id: root_account_id(a, path_assignment.course_id).await?,
            link: None,
            created_at: 0,
            updated_at: 0,
        },
    };
    Ok(save(a, report, &params, &facts, &submission).await)
}

/// How O2–O5 name the report.
enum ReportRoute {
    /// `…/submissions/{s}/originality_report/{id}`
    ById { submission_id: i64, report_id: i64 },
    /// `…/files/{file}/originality_report`
    ByFile { attachment_id: i64 },
}

fn report_route(parts: &Parts) -> Step<(i64, ReportRoute)> {
    let assignment_id = id_at(parts, 3)?;
    match segment(parts, 4) {
        Some("submissions") => Ok((
            assignment_id,
            ReportRoute::ById {
                submission_id: id_at(parts, 5)?,
                report_id: id_at(parts, 7)?,
            },
        )),
        Some("files") => Ok((
            assignment_id,
            ReportRoute::ByFile {
                attachment_id: id_at(parts, 5)?,
            },
        )),
        _ => Err(not_found_response()),
    }
}

/// Finds the report of O2–O5 and runs Canvas's checks on it: the report exists (404); its
/// submission belongs to the path assignment (401); on file-upload assignments its file is in
/// the submission's history (401); the tool is associated with the path assignment (401).
async fn find_report(
    a: &Authority,
    parts: &Parts,
    facts: &ToolFacts,
    params: Option<&ReportParams>,
) -> Step<(OriginalityReport, SubmissionRecord)> {
    let (assignment_id, route) = report_route(parts)?;
    let store = a.store();
    let (report, submission) = match route {
        ReportRoute::ById {
            submission_id,
            report_id,
        } => {
            let submission = live_submission(a, submission_id).await?;
            let report = match store
                .originality_report(report_id)
                .await
                .map_err(store_err)?
            {
                Some(r) => Some(r),
                // Canvas falls back to the report of the file named in the body.
                None => match params.and_then(|p| p.file_id) {
                    Some(f) => store
                        .report_for(submission.id, Some(f))
                        .await
                        .map_err(store_err)?,
                    None => None,
                },
            };
            (report.ok_or_else(not_found_response)?, submission)
        }
        ReportRoute::ByFile { attachment_id } => {
            store
                .attachment(attachment_id)
                .await
                .map_err(store_err)?
                .ok_or_else(not_found_response)?;
            let sid = store
                .submission_with_attachment(attachment_id)
                .await
                .map_err(store_err)?
                .ok_or_else(not_found_response)?;
            let submission = live_submission(a, sid).await?;
            let report = match store
                .report_for(submission.id, Some(attachment_id))
                .await
                .map_err(store_err)?
            {
                Some(r) => r,
                None => store
                    .report_for_attachment(attachment_id)
                    .await
                    .map_err(store_err)?
                    .ok_or_else(not_found_response)?,
            };
            (report, submission)
        }
    };
    let path_assignment = live_assignment(a, assignment_id).await?;
    let report_submission = if report.submission_id == submission.id {
        submission.clone()
    } else {
        live_submission(a, report.submission_id).await?
    };
    if report_submission.assignment_id != path_assignment.id {
        return Err(standard_401());
    }
    if path_assignment.attachment_required() {
        let in_history = report
            .attachment_id
            .is_some_and(|att| submission.has_attachment(att));
        if !in_history {
            return Err(standard_401());
        }
    }
    if !associated(a, facts, &path_assignment).await? {
        return Err(standard_401());
    }
    Ok((report, report_submission))
}

/// O2, O3.
pub async fn update_report(State(s): State<AppState>, req: Request) -> Response {
    update_report_inner(&s.authority, req)
        .await
        .unwrap_or_else(|r| r)
}

async fn update_report_inner(a: &Authority, req: Request) -> Step<Response> {
    let (parts, body) = req.into_parts();
    report_route(&parts)?;
    let (input, form) = read_report_body(&parts, body).await?;
    let auth = authenticate(a, &parts, &form, &REPORTS).await?;
    let tp = tool(&auth)?;
    let params = ReportParams::from_body(&input)
        .map_err(|e| bad_request(e.body()))?
        .ok_or_else(missing_report_param)?;
    let facts = facts(a, &tp.guid).await?;
    let (report, submission) = find_report(a, &parts, &facts, Some(&params)).await?;
    Ok(save(a, report, &params, &facts, &submission).await)
}

/// O4, O5.
pub async fn show_report(State(s): State<AppState>, req: Request) -> Response {
    show_report_inner(&s.authority, req)
        .await
        .unwrap_or_else(|r| r)
}

async fn show_report_inner(a: &Authority, req: Request) -> Step<Response> {
    let (parts, _) = req.into_parts();
    report_route(&parts)?;
    let auth = authenticate(a, &parts, &[], &REPORTS).await?;
    let tp = tool(&auth)?;
    let facts = facts(a, &tp.guid).await?;
    let (report, _) = find_report(a, &parts, &facts, None).await?;
    Ok(json_ok(StatusCode::OK, report_json(&report)))
}

/// S1–S3's chain: the gate with `vnd.Canvas.submission`; the active submission (404); the
/// tool associated with the submission's own assignment and holding the similarity-detection
/// capability (401 `{"error":"unauthorized"}`).
async fn submission_access(a: &Authority, parts: &Parts) -> Step<SubmissionRecord> {
    let submission_id = id_at(parts, 5)?;
    id_at(parts, 3)?;
    let auth = authenticate(a, parts, &[], &SUBMISSIONS).await?;
    let tp = tool(&auth)?;
    let submission = live_submission(a, submission_id).await?;
    let Some(assignment) = a
        .store()
        .assignment(submission.assignment_id)
        .await
        .map_err(store_err)?
    else {
        return Err(not_found_response());
    };
    let facts = facts(a, &tp.guid).await?;
    if !tp
        .enabled_capability
        .iter()
        .any(|c| c == SIMILARITY_DETECTION)
        || !associated(a, &facts, &assignment).await?
    {
        return Err(helper_401());
    }
    Ok(submission)
}

async fn submission_context(a: &Authority, s: &SubmissionRecord) -> Step<(String, i64, String)> {
    let store = a.store();
    let user = store.user(s.user_id).await.map_err(store_err)?;
    let assignment = store
        .assignment(s.assignment_id)
        .await
        .map_err(store_err)?
        .ok_or_else(not_found_response)?;
    let course = store
        .course(assignment.course_id)
        .await
        .map_err(store_err)?
        .ok_or_else(not_found_response)?;
    Ok((
        user.map(|u| u.lti_id).unwrap_or_default(),
        course.id,
        course.lti_id,
    ))
}

/// S1 and S2: the submission checked by [`submission_access`], rendered by `render`.
async fn submission_view(
    a: &Authority,
    req: Request,
    render: fn(&SubmissionRecord, &SubmissionContext<'_>) -> Value,
) -> Response {
    let (parts, _) = req.into_parts();
    let run = async {
        let sub = submission_access(a, &parts).await?;
        let (user_lti_id, course_id, lti_course_id) = submission_context(a, &sub).await?;
        let ctx = SubmissionContext {
            base_url: base_url(a, &parts),
            user_lti_id: &user_lti_id,
            course_id,
            lti_course_id: &lti_course_id,
        };
        Ok::<_, Response>(json_ok(StatusCode::OK, render(&sub, &ctx)))
    };
    run.await.unwrap_or_else(|r| r)
}

/// S1: the submission's current attempt.
pub async fn show_submission(State(s): State<AppState>, req: Request) -> Response {
    submission_view(&s.authority, req, submission_json).await
}

/// S2: every attempt.
pub async fn submission_history(State(s): State<AppState>, req: Request) -> Response {
    submission_view(&s.authority, req, history_json).await
}

/// S3: streams the file with its content type and length.
pub async fn submission_attachment(State(s): State<AppState>, req: Request) -> Response {
    let a = &s.authority;
    let (parts, _) = req.into_parts();
    let run = async {
        let attachment_id = id_at(&parts, 7)?;
        let sub = submission_access(a, &parts).await?;
        let att = a
            .store()
            .attachment(attachment_id)
            .await
            .map_err(store_err)?
            .ok_or_else(not_found_response)?;
        if !sub.has_attachment(att.id) {
            return Err(helper_401());
        }
        let path = s.files.path_of(&att.sha256);
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            tracing::error!(attachment = att.id, error = %e, "a stored file is missing");
            gate::unavailable(&"the file store")
        })?;
        let stream = tokio_util::io::ReaderStream::new(file);
        let mut resp = Response::new(Body::from_stream(stream));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&att.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(att.size as u64));
        let safe: String = att
            .display_name
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok::<_, Response>(resp)
    };
    run.await.unwrap_or_else(|r| r)
}

/// U1.
pub async fn show_user(State(s): State<AppState>, req: Request) -> Response {
    let a = &s.authority;
    let (parts, _) = req.into_parts();
    let run = async {
        let raw = segment(&parts, 3).unwrap_or("");
        let id = percent_decode(raw);
        let auth = authenticate(a, &parts, &[], &USERS).await?;
        let tp = tool(&auth)?;
        let user = a
            .store()
            .user_by_any_id(&id)
            .await
            .map_err(store_err)?
            .ok_or_else(not_found_response)?;
        let facts = facts(a, &tp.guid).await?;
        let allowed = match (&facts.vendor_code, &facts.product_code) {
            (Some(v), Some(p)) if !facts.similarity_resource_type_codes.is_empty() => a
                .store()
                .user_has_tool_assignment(user.id, v, p, &facts.similarity_resource_type_codes)
                .await
                .map_err(store_err)?,
            _ => false,
        };
        if !allowed {
            return Err(standard_401());
        }
        Ok::<_, Response>(json_ok(StatusCode::OK, user_json(&user)))
    };
    run.await.unwrap_or_else(|r| r)
}

/// U2: the group's users, paginated (`page`, `per_page` ≤ 100, default 10) with `Link` headers.
pub async fn group_users(State(s): State<AppState>, req: Request) -> Response {
    let a = &s.authority;
    let (parts, _) = req.into_parts();
    let run = async {
        let group_id = id_at(&parts, 3)?;
        let auth = authenticate(a, &parts, &[], &USERS).await?;
        let tp = tool(&auth)?;
        let group = a
            .store()
            .group(group_id)
            .await
            .map_err(store_err)?
            .ok_or_else(not_found_response)?;
        let facts = facts(a, &tp.guid).await?;
        let chain = a
            .store()
            .account_chain(group.course_id)
            .await
            .map_err(store_err)?;
        if group.workflow_state != "available" || !active_in_course(&facts, group.course_id, &chain)
        {
            return Err(standard_401());
        }
        let q = query_params(parts.uri.query());
        let get = |k: &str| {
            q.iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.parse::<i64>().ok())
        };
        let per_page = get("per_page").unwrap_or(10).clamp(1, 100);
        let page = get("page").unwrap_or(1).max(1);
        // A page beyond any possible offset is simply empty (no wrap-around).
        let offset = (page - 1).checked_mul(per_page).unwrap_or(i64::MAX);
        let (users, total) = a
            .store()
            .group_users(group.id, offset, per_page)
            .await
            .map_err(store_err)?;
        let last = ((total + per_page - 1) / per_page).max(1);
        let url = |p: i64| {
            format!(
                "<{}/api/lti/groups/{}/users?page={p}&per_page={per_page}>",
                base_url(a, &parts),
                group.id
            )
        };
        let mut links = vec![format!("{}; rel=\"current\"", url(page))];
        if page < last {
            links.push(format!("{}; rel=\"next\"", url(page + 1)));
        }
        if page > 1 {
            links.push(format!("{}; rel=\"prev\"", url(page - 1)));
        }
        links.push(format!("{}; rel=\"first\"", url(1)));
        links.push(format!("{}; rel=\"last\"", url(last)));
        let mut resp = json_ok(
            StatusCode::OK,
            Value::Array(users.iter().map(user_json).collect()),
        );
        if let Ok(v) = HeaderValue::from_str(&links.join(",")) {
            resp.headers_mut().insert(header::LINK, v);
        }
        Ok::<_, Response>(resp)
    };
    run.await.unwrap_or_else(|r| r)
}

/// G1.
pub async fn show_assignment(State(s): State<AppState>, req: Request) -> Response {
    let a = &s.authority;
    let (parts, _) = req.into_parts();
    let run = async {
        let raw = percent_decode(segment(&parts, 3).unwrap_or(""));
        let auth = authenticate(a, &parts, &[], &ASSIGNMENTS).await?;
        let tp = tool(&auth)?;
        let store = a.store();
        let assignment = match store.assignment_by_lti_id(&raw).await.map_err(store_err)? {
            Some(x) => Some(x),
            None => match canonical_id(&raw) {
                Some(id) => store.assignment(id).await.map_err(store_err)?,
                None => None,
            },
        }
        .filter(|x| x.workflow_state != "deleted")
        .ok_or_else(not_found_response)?;
        let facts = facts(a, &tp.guid).await?;
        if !matches_assignment(&facts, &assignment) {
            return Err(standard_401());
        }
        let q = query_params(parts.uri.query());
        let mut due_at = assignment.due_at;
        if let Some((_, uid)) = q.iter().find(|(k, _)| k == "user_id") {
            let user = store
                .user_by_any_id(uid)
                .await
                .map_err(store_err)?
                .ok_or_else(not_found_response)?;
            if !store
                .is_student(user.id, assignment.course_id)
                .await
                .map_err(store_err)?
            {
                return Err(standard_401());
            }
            if let Some(o) = store
                .due_at_override(assignment.id, user.id)
                .await
                .map_err(store_err)?
            {
                due_at = o;
            }
        }
        let course = store
            .course(assignment.course_id)
            .await
            .map_err(store_err)?
            .ok_or_else(not_found_response)?;
        Ok::<_, Response>(json_ok(
            StatusCode::OK,
            assignment_json(&assignment, due_at, &course.lti_id),
        ))
    };
    run.await.unwrap_or_else(|r| r)
}
