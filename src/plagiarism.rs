//! The plagiarism-platform rules that do not depend on HTTP: whether a tool is associated with
//! an assignment (Canvas `Lti::PermissionChecker`), originality report parameters and how a
//! save changes a report (Canvas `OriginalityReport` callbacks and the API controller), and the
//! JSON shapes of reports, submissions, users and assignments.

use serde_json::{json, Map, Value};

use crate::import::format_time;
use crate::store::lms::{
    AssignmentRecord, AttachmentRecord, OriginalityReport, ReportLink, SubmissionRecord, ToolFacts,
    UserRecord,
};
use crate::store::{ContextKind, ContextRef};

/// The service name each API checks (Canvas `lti2_service_name`).
pub const ORIGINALITY_REPORT_SERVICE: &str = "vnd.Canvas.OriginalityReport";
/// S1–S3.
pub const SUBMISSION_SERVICE: &str = "vnd.Canvas.submission";
/// U1, U2.
pub const USER_SERVICE: &str = "vnd.Canvas.User";
/// G1.
pub const ASSIGNMENT_SERVICE: &str = "vnd.Canvas.Assignment";
/// The capability S1–S3 require on the tool proxy.
pub const SIMILARITY_DETECTION: &str = "Canvas.placements.similarityDetection";

/// Whether the tool's vendor and product codes and one of its resource handlers match the
/// assignment's plagiarism tool (Canvas `PermissionChecker`, the code part; G1 uses only
/// this).
pub fn matches_assignment(facts: &ToolFacts, assignment: &AssignmentRecord) -> bool {
    let Some(lookup) = &assignment.tool else {
        return false;
    };
    assignment.workflow_state != "deleted"
        && facts.vendor_code.as_deref() == Some(lookup.vendor_code.as_str())
        && facts.product_code.as_deref() == Some(lookup.product_code.as_str())
        && facts
            .resource_type_codes
            .contains(&lookup.resource_type_code)
}

/// Whether the tool is active in a course: the nearest of its bindings on the course, then on
/// each account above it (`account_chain`, nearest first), must exist and be enabled (Canvas
/// `ToolProxy.find_active_proxies_for_context`). The tool proxy's own state is checked by the
/// bearer gate.
pub fn active_in_course(facts: &ToolFacts, course_id: i64, account_chain: &[i64]) -> bool {
    let chain = std::iter::once(ContextRef {
        kind: ContextKind::Course,
        id: course_id,
    })
    .chain(account_chain.iter().map(|id| ContextRef {
        kind: ContextKind::Account,
        id: *id,
    }));
    for ctx in chain {
        if let Some((_, enabled)) = facts.bindings.iter().find(|(c, _)| *c == ctx) {
            return *enabled;
        }
    }
    false
}

/// A field of a request body: absent, null, or a value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field<T> {
    /// Not sent.
    #[default]
    Absent,
    /// Sent as null (or as an empty form value).
    Null,
    /// Sent.
    Value(T),
}

impl<T: Clone> Field<T> {
    /// The value, or `current` when absent.
    pub fn or_keep(&self, current: Option<T>) -> Option<T> {
        match self {
            Field::Absent => current,
            Field::Null => None,
            Field::Value(v) => Some(v.clone()),
        }
    }

    /// The value (None when absent or null).
    pub fn value(&self) -> Option<T> {
        match self {
            Field::Value(v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// `originality_report[tool_setting]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolSetting {
    /// `resource_type_code`; None (missing or null) deletes the link.
    pub resource_type_code: Option<String>,
    /// `resource_url`.
    pub resource_url: Option<String>,
}

/// The `originality_report` parameters (Canvas `create_report_params`/`update_report_params`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReportParams {
    /// `file_id` (create only).
    pub file_id: Option<i64>,
    /// `originality_score`.
    pub originality_score: Field<f64>,
    /// `originality_report_url`.
    pub originality_report_url: Field<String>,
    /// `originality_report_file_id`.
    pub originality_report_file_id: Field<i64>,
    /// `workflow_state` (advisory: recomputed).
    pub workflow_state: Option<String>,
    /// `error_message`.
    pub error_message: Field<String>,
    /// `attempt` (create, text-entry assignments).
    pub attempt: Option<i64>,
    /// `tool_setting`: absent keeps the link.
    pub tool_setting: Option<ToolSetting>,
}

/// A parameter that cannot be read: a 400 with Canvas's validation body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The attribute.
    pub attribute: &'static str,
    /// What is wrong.
    pub message: String,
}

impl ParamError {
    /// `{"errors":{"<attr>":[{"attribute","type","message"}]}}` (Canvas model errors).
    pub fn body(&self) -> Value {
        validation_body(self.attribute, &self.message)
    }
}

/// Canvas's model-validation error body for one attribute.
pub fn validation_body(attribute: &str, message: &str) -> Value {
    json!({"errors": {attribute: [{"attribute": attribute, "type": message, "message": message}]}})
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

fn is_blank(v: &Value) -> bool {
    v.is_null() || v.as_str().is_some_and(|s| s.is_empty())
}

fn text_field(o: &Map<String, Value>, k: &'static str) -> Result<Field<String>, ParamError> {
    match o.get(k) {
        None => Ok(Field::Absent),
        Some(v) if v.is_null() => Ok(Field::Null),
        Some(Value::String(s)) => Ok(Field::Value(s.clone())),
        Some(_) => Err(ParamError {
            attribute: k,
            message: "must be a string".into(),
        }),
    }
}

impl ReportParams {
    /// Reads the `originality_report` object. `Ok(None)` when it is missing or empty (Canvas's
    /// `params.require` → 400).
    pub fn from_body(body: &Value) -> Result<Option<Self>, ParamError> {
        let Some(o) = body.get("originality_report").and_then(Value::as_object) else {
            return Ok(None);
        };
        if o.is_empty() {
            return Ok(None);
        }
        let int = |k: &'static str| -> Result<Field<i64>, ParamError> {
            match o.get(k) {
                None => Ok(Field::Absent),
                Some(v) if is_blank(v) => Ok(Field::Null),
                Some(v) => integer(v).map(Field::Value).ok_or(ParamError {
                    attribute: k,
                    message: "is not an integer".into(),
                }),
            }
        };
        let originality_score = match o.get("originality_score") {
            None => Field::Absent,
            Some(v) if is_blank(v) => Field::Null,
            Some(v) => Field::Value(number(v).ok_or(ParamError {
                attribute: "originality_score",
                message: "is not a number".into(),
            })?),
        };
        let tool_setting = match o.get("tool_setting") {
            None => None,
            Some(Value::Object(ts)) => Some(ToolSetting {
                resource_type_code: ts.get("resource_type_code").filter(|v| !is_blank(v)).map(
                    |v| {
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    },
                ),
                resource_url: ts.get("resource_url").filter(|v| !is_blank(v)).map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                }),
            }),
            Some(_) => Some(ToolSetting::default()),
        };
        Ok(Some(Self {
            file_id: int("file_id")?.value(),
            originality_score,
            originality_report_url: text_field(o, "originality_report_url")?,
            originality_report_file_id: int("originality_report_file_id")?,
            workflow_state: o
                .get("workflow_state")
                .and_then(Value::as_str)
                .map(str::to_owned),
            error_message: text_field(o, "error_message")?,
            attempt: int("attempt")?.value(),
            tool_setting,
        }))
    }
}

/// The state a report gets on save (Canvas `OriginalityReport#infer_workflow_state`): an error
/// message forces `error`; `error` (sent, else stored) stays; else `scored` with a score, else
/// `pending`.
pub fn infer_workflow_state(
    sent: Option<&str>,
    stored: Option<&str>,
    error_message: Option<&str>,
    score: Option<f64>,
) -> &'static str {
    if error_message.is_some_and(|m| !m.is_empty()) {
        return "error";
    }
    if sent.or(stored) == Some("error") {
        return "error";
    }
    if score.is_some() {
        "scored"
    } else {
        "pending"
    }
}

/// The tool proxy's codes, for a report's link.
#[derive(Debug, Clone)]
pub struct ToolCodes {
    /// Vendor code.
    pub vendor_code: String,
    /// Product code.
    pub product_code: String,
}

/// Applies the parameters to a report (new or stored), as Canvas's create and update do:
/// every sent field replaces the stored one; `error_message` is cleared unless it is sent
/// (update); the link is kept without `tool_setting`, deleted with a `tool_setting` without
/// `resource_type_code`, and created or updated otherwise; the state is recomputed; the score
/// must be null or within 0–100. `now` is seconds since the epoch.
pub fn apply(
    report: &mut OriginalityReport,
    params: &ReportParams,
    codes: &ToolCodes,
    now: i64,
) -> Result<(), ParamError> {
    report.originality_score = params.originality_score.or_keep(report.originality_score);
    report.originality_report_url = params
        .originality_report_url
        .or_keep(report.originality_report_url.take());
    report.originality_report_attachment_id = params
        .originality_report_file_id
        .or_keep(report.originality_report_attachment_id);
    report.error_message = params.error_message.value();
    match &params.tool_setting {
        None => {}
        Some(ToolSetting {
            resource_type_code: None,
            ..
        }) => report.link = None,
        Some(ToolSetting {
            resource_type_code: Some(code),
            resource_url,
        }) => {
            let resource_link_id = report
                .link
                .as_ref()
                .map(|l| l.resource_link_id.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            report.link = Some(ReportLink {
                resource_type_code: code.clone(),
                resource_url: resource_url.clone(),
                vendor_code: codes.vendor_code.clone(),
                product_code: codes.product_code.clone(),
                resource_link_id,
            });
        }
    }
    let stored = (!report.workflow_state.is_empty()).then_some(report.workflow_state.as_str());
    report.workflow_state = infer_workflow_state(
        params.workflow_state.as_deref(),
        stored,
        report.error_message.as_deref(),
        report.originality_score,
    )
    .to_owned();
    if report
        .originality_score
        .is_some_and(|s| !(0.0..=100.0).contains(&s))
    {
        return Err(ParamError {
            attribute: "originality_score",
            message: "score must be between 0 and 100".into(),
        });
    }
    report.updated_at = now;
    if report.id == 0 {
        report.created_at = now;
    }
    Ok(())
}

fn time_or_null(t: Option<i64>) -> Value {
    t.map(|t| Value::String(format_time(t)))
        .unwrap_or(Value::Null)
}

/// A report's JSON: the 14 keys Canvas always sends, plus `tool_setting` when it has a link.
pub fn report_json(r: &OriginalityReport) -> Value {
    let mut v = json!({
        "id": r.id,
        "file_id": r.attachment_id,
        "originality_score": r.originality_score,
        "originality_report_file_id": r.originality_report_attachment_id,
        "originality_report_url": r.originality_report_url,
        "originality_report_lti_url": null,
        "created_at": format_time(r.created_at),
        "updated_at": format_time(r.updated_at),
        "submission_id": r.submission_id,
        "workflow_state": r.workflow_state,
        "link_id": null,
        "error_message": r.error_message,
        "submission_time": time_or_null(r.submission_time),
        "root_account_id": r.root_account_id,
    });
    if let Some(link) = &r.link {
        v["tool_setting"] = json!({
            "resource_url": link.resource_url,
            "resource_type_code": link.resource_type_code,
        });
    }
    v
}

/// What a submission's JSON needs besides the submission.
#[derive(Debug, Clone)]
pub struct SubmissionContext<'a> {
    /// The platform base URL for download links.
    pub base_url: &'a str,
    /// The user's opaque LTI id (`user_id` in the JSON).
    pub user_lti_id: &'a str,
    /// The course id.
    pub course_id: i64,
    /// The course's LTI id.
    pub lti_course_id: &'a str,
}

fn attachment_json(
    a: &AttachmentRecord,
    s: &SubmissionRecord,
    ctx: &SubmissionContext<'_>,
) -> Value {
    // Canvas never emits the content type here (its whitelist names `content-type`).
    json!({
        "id": a.id,
        "size": a.size,
        "filename": a.filename,
        "display_name": a.display_name,
        "created_at": format_time(a.created_at),
        "updated_at": format_time(a.updated_at),
        "url": format!("{}/api/lti/assignments/{}/submissions/{}/attachment/{}", ctx.base_url, s.assignment_id, s.id, a.id),
    })
}

/// The fields of one version as S1/S2 show them.
struct VersionFields<'a> {
    body: Option<&'a str>,
    url: Option<&'a str>,
    submitted_at: Option<i64>,
    submission_type: Option<&'a str>,
    workflow_state: &'a str,
    attempt: Option<i64>,
}

fn submission_shape(
    s: &SubmissionRecord,
    ctx: &SubmissionContext<'_>,
    f: VersionFields<'_>,
    attachments: &[AttachmentRecord],
) -> Value {
    let mut v = json!({
        "id": s.id,
        "body": f.body,
        "url": f.url,
        "submitted_at": time_or_null(f.submitted_at),
        "assignment_id": s.assignment_id,
        "user_id": ctx.user_lti_id,
        "submission_type": f.submission_type,
        "workflow_state": f.workflow_state,
        "attempt": f.attempt,
    });
    if let Some(eula) = &s.eula_agreement_timestamp {
        v["eula_agreement_timestamp"] = Value::String(eula.clone());
    }
    v["attachments"] = Value::Array(
        attachments
            .iter()
            .map(|a| attachment_json(a, s, ctx))
            .collect(),
    );
    v["course_id"] = json!(ctx.course_id);
    v["lti_course_id"] = json!(ctx.lti_course_id);
    v
}

/// S1's JSON: the submission's current state and files.
pub fn submission_json(s: &SubmissionRecord, ctx: &SubmissionContext<'_>) -> Value {
    submission_shape(
        s,
        ctx,
        VersionFields {
            body: s.body.as_deref(),
            url: s.url.as_deref(),
            submitted_at: s.submitted_at,
            submission_type: s.submission_type.as_deref(),
            workflow_state: &s.workflow_state,
            attempt: s.attempt,
        },
        s.current_attachments(),
    )
}

/// S2's JSON: one S1-shaped object per version, oldest first.
pub fn history_json(s: &SubmissionRecord, ctx: &SubmissionContext<'_>) -> Value {
    Value::Array(
        s.history
            .iter()
            .map(|v| {
                submission_shape(
                    s,
                    ctx,
                    VersionFields {
                        body: v.body.as_deref(),
                        url: v.url.as_deref(),
                        submitted_at: v.submitted_at,
                        submission_type: v.submission_type.as_deref(),
                        workflow_state: &v.workflow_state,
                        attempt: Some(v.attempt),
                    },
                    &v.attachments,
                )
            })
            .collect(),
    )
}

/// A user's JSON (Canvas `user_json` with `email` and `lti_id`): `email` only when known.
pub fn user_json(u: &UserRecord) -> Value {
    let mut v = json!({
        "id": u.id,
        "name": u.name,
        "sortable_name": u.sortable_name,
        "short_name": u.short_name,
    });
    if let Some(e) = &u.email {
        v["email"] = Value::String(e.clone());
    }
    v["lti_id"] = Value::String(u.lti_id.clone());
    v
}

/// G1's JSON, with `due_at` already chosen (the user's override, if any).
pub fn assignment_json(a: &AssignmentRecord, due_at: Option<i64>, lti_course_id: &str) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "description": a.description,
        "due_at": time_or_null(due_at),
        "points_possible": a.points_possible,
        "lti_id": a.lti_id,
        "lti_course_id": lti_course_id,
        "course_id": a.course_id,
    })
}

/// Turns form pairs with bracketed names (`originality_report[tool_setting][resource_url]`)
/// into nested JSON objects of strings (Rack's nested parameters).
pub fn nest_form(pairs: &[(String, String)]) -> Value {
    let mut root = Map::new();
    for (k, v) in pairs {
        let mut parts: Vec<&str> = Vec::new();
        let (head, rest) = match k.find('[') {
            Some(i) => (&k[..i], &k[i..]),
            None => (k.as_str(), ""),
        };
        parts.push(head);
        let mut rest = rest;
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            parts.push(&stripped[..end]);
            rest = &stripped[end + 1..];
        }
        let mut node = &mut root;
        for (i, p) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                node.insert((*p).to_owned(), Value::String(v.clone()));
            } else {
                let entry = node
                    .entry((*p).to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                node = entry.as_object_mut().expect("an object");
            }
        }
    }
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> OriginalityReport {
        OriginalityReport {
            id: 0,
            submission_id: 1,
            attachment_id: Some(2),
            originality_score: None,
            originality_report_attachment_id: None,
            originality_report_url: None,
            workflow_state: String::new(),
            error_message: None,
            submission_time: None,
            root_account_id: Some(1),
            link: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn params(v: Value) -> ReportParams {
        ReportParams::from_body(&json!({ "originality_report": v }))
            .unwrap()
            .unwrap()
    }

    fn codes() -> ToolCodes {
        ToolCodes {
            vendor_code: "v".into(),
            product_code: "p".into(),
        }
    }

    #[test]
    fn workflow_state_is_recomputed_as_canvas_does() {
        assert_eq!(
            infer_workflow_state(Some("scored"), None, None, None),
            "pending"
        );
        assert_eq!(
            infer_workflow_state(Some("invalid_state"), None, None, Some(1.0)),
            "scored"
        );
        assert_eq!(
            infer_workflow_state(None, Some("error"), None, Some(50.0)),
            "error"
        );
        assert_eq!(
            infer_workflow_state(Some("pending"), Some("error"), None, None),
            "pending"
        );
        assert_eq!(
            infer_workflow_state(None, None, Some("boom"), Some(5.0)),
            "error"
        );
        assert_eq!(infer_workflow_state(None, None, Some(""), None), "pending");
    }

    #[test]
    fn scores_are_checked_and_error_messages_cleared_on_update() {
        let mut r = blank();
        for bad in [json!(101), json!(-1), json!("150")] {
            let e = apply(
                &mut r.clone(),
                &params(json!({"originality_score": bad})),
                &codes(),
                5,
            )
            .unwrap_err();
            assert_eq!(
                e.body(),
                validation_body("originality_score", "score must be between 0 and 100")
            );
        }
        assert!(ReportParams::from_body(
            &json!({"originality_report": {"originality_score": "abc"}})
        )
        .is_err());
        apply(
            &mut r,
            &params(json!({"originality_score": 0.3, "error_message": "x"})),
            &codes(),
            5,
        )
        .unwrap();
        assert_eq!(
            (r.workflow_state.as_str(), r.error_message.as_deref()),
            ("error", Some("x"))
        );
        apply(
            &mut r,
            &params(json!({"originality_score": 50})),
            &codes(),
            6,
        )
        .unwrap();
        assert_eq!(r.error_message, None, "cleared unless sent");
        assert_eq!(r.workflow_state, "error", "error is sticky");
        apply(
            &mut r,
            &params(json!({"workflow_state": "pending", "originality_score": null})),
            &codes(),
            7,
        )
        .unwrap();
        assert_eq!(
            (r.workflow_state.as_str(), r.originality_score),
            ("pending", None)
        );
        assert_eq!(r.updated_at, 7);
    }

    #[test]
    fn tool_setting_keeps_updates_or_deletes_the_link() {
        let mut r = blank();
        apply(&mut r, &params(json!({"tool_setting": {"resource_type_code": "rt", "resource_url": "https://t/r"}})), &codes(), 1).unwrap();
        let link = r.link.clone().unwrap();
        assert_eq!(
            (link.vendor_code.as_str(), link.resource_url.as_deref()),
            ("v", Some("https://t/r"))
        );
        apply(
            &mut r,
            &params(json!({"originality_score": 1})),
            &codes(),
            2,
        )
        .unwrap();
        assert_eq!(
            r.link.as_ref().unwrap().resource_link_id,
            link.resource_link_id,
            "kept"
        );
        apply(
            &mut r,
            &params(json!({"tool_setting": {"resource_type_code": null}})),
            &codes(),
            3,
        )
        .unwrap();
        assert!(r.link.is_none(), "deleted");
        let j = report_json(&r);
        assert_eq!(j.as_object().unwrap().len(), 14);
    }

    #[test]
    fn form_names_nest() {
        let pairs = vec![
            (
                "originality_report[originality_score]".to_string(),
                "5".to_string(),
            ),
            (
                "originality_report[tool_setting][resource_type_code]".to_string(),
                "rt".to_string(),
            ),
            ("access_token".to_string(), "t".to_string()),
        ];
        assert_eq!(
            nest_form(&pairs),
            json!({"originality_report": {"originality_score": "5", "tool_setting": {"resource_type_code": "rt"}}, "access_token": "t"})
        );
        let p = ReportParams::from_body(&nest_form(&pairs))
            .unwrap()
            .unwrap();
        assert_eq!(p.originality_score, Field::Value(5.0));
    }
}
