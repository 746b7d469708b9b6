//! Webhook subscriptions, the event outbox and deliveries ([`WebhookStore`]).

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{json, Value};

use super::StoreError;
use crate::import::format_time;
use crate::webhooks::PLAGIARISM_EVENTS;

/// A subscription (Canvas's live-events subscription object, stored by lti2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscription {
    /// UUID.
    pub id: String,
    /// The tool proxy that owns it.
    pub tool_proxy_guid: String,
    /// Its developer key, if any.
    pub developer_key_id: Option<i64>,
    /// The root account of its context.
    pub root_account_id: i64,
    /// `root_account` or `assignment`.
    pub context_type: String,
    /// The root account's uuid, or the assignment id.
    pub context_id: String,
    /// The assignment, for an assignment context.
    pub assignment_id: Option<i64>,
    /// `EventTypes`.
    pub event_types: Option<Vec<String>>,
    /// `SystemEventTypes`.
    pub system_event_types: Option<Vec<String>>,
    /// `UserEventTypes`.
    pub user_event_types: Option<Vec<String>>,
    /// `live-event`.
    pub format: String,
    /// `https` (or `http` where allowed).
    pub transport_type: String,
    /// `TransportMetadata.Url`.
    pub url: String,
    /// Only events about this tool proxy's assignments are delivered.
    pub associated_integration_id: Option<String>,
    /// `Active`, `Deleted` or `Deactivated` (after persistent delivery failures).
    pub state: String,
    /// Created by lti2 for a similarity-detection tool proxy.
    pub automatic: bool,
    /// Deliveries that failed for good since the last success.
    pub consecutive_failures: i64,
    /// Why it was deactivated.
    pub deactivated_reason: Option<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch.
    pub updated_at: i64,
}

/// A delivery to attempt now.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// Its id.
    pub id: i64,
    /// The event's UUID.
    pub event_id: String,
    /// The event name.
    pub event_name: String,
    /// The JSON message.
    pub message: String,
    /// The subscription.
    pub subscription_id: String,
    /// Where to POST.
    pub url: String,
    /// The subscription's tool proxy (whose shared secret signs).
    pub tool_proxy_guid: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// When the delivery was created (seconds since the epoch).
    pub created_at: i64,
}

/// What a delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A 2xx.
    Delivered {
        /// The status.
        status: u16,
    },
    /// Failed; try again at `next_attempt_at`.
    Retry {
        /// The status, when there was a response.
        status: Option<u16>,
        /// What went wrong.
        error: String,
        /// Seconds since the epoch.
        next_attempt_at: i64,
    },
    /// Failed for good.
    Failed {
        /// The status, when there was a response.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
}

/// A delivery as `lti2 admin deliveries list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    /// Its id.
    pub id: i64,
    /// The event's UUID.
    pub event_id: String,
    /// The event name.
    pub event_name: String,
    /// The subscription.
    pub subscription_id: String,
    /// The target.
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last HTTP status.
    pub last_status: Option<i64>,
    /// The last error.
    pub last_error: Option<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch.
    pub updated_at: i64,
}

/// Webhook subscriptions, events and deliveries.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new subscription. Errors: `Conflict`.
    async fn create_subscription(&self, s: &Subscription) -> Result<(), StoreError>;
    /// Replaces a subscription's fields. Errors: `NotFound`.
    async fn update_subscription(&self, s: &Subscription) -> Result<(), StoreError>;
    /// A subscription by id, in any state.
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError>;
    /// A tool proxy's subscriptions that are not deleted, by id, after `after` (keyset
    /// pagination), at most `limit`.
    async fn subscriptions_of(
        &self,
        guid: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Subscription>, StoreError>;
    /// A root account (no parent) by uuid: its id.
    async fn root_account_by_uuid(&self, uuid: &str) -> Result<Option<i64>, StoreError>;
    /// Turns undispatched events into deliveries, one per matching active subscription, and
    /// marks them dispatched (one transaction). Returns how many deliveries were created.
    async fn dispatch_events(&self, now: i64) -> Result<usize, StoreError>;
    /// Pending deliveries of active subscriptions due at `now`, oldest first, skipping `busy`
    /// (this worker's deliveries in flight). The caller attempts every delivery returned.
    /// SQLite (one server): nothing else is marked. PostgreSQL (several instances): the
    /// deliveries returned are claimed for a lease (45 s) so no other instance's worker gets
    /// them until [`WebhookStore::record_delivery`] records the attempt, and only as many are
    /// returned as the worker's limits (`webhooks::PER_SUBSCRIPTION` per subscription,
    /// `webhooks::IN_FLIGHT` in all, counting `busy`) let it start.
    async fn due_deliveries(
        &self,
        now: i64,
        limit: i64,
        busy: &[i64],
    ) -> Result<Vec<DueDelivery>, StoreError>;
    /// Records an attempt. A final failure counts against the subscription, which is
    /// deactivated (and its pending deliveries failed) after `deactivate_after` final failures
    /// in a row; a success resets the count.
    async fn record_delivery(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
        now: i64,
        deactivate_after: i64,
    ) -> Result<(), StoreError>;
    /// Deliveries, newest first.
    async fn list_deliveries(
        &self,
        failed_only: bool,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError>;
    /// How many deliveries are in each state (`pending`, `delivered`, `failed`), and how many
    /// subscriptions in each state (`Active`, `Deactivated`, `Deleted`).
    async fn webhook_counts(&self) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>), StoreError>;
    /// Records a `plagiarism_resubmit` event for a submission. Errors: `NotFound`.
    async fn resubmit(&self, submission_id: i64, now: i64) -> Result<String, StoreError>;
}

// Backend-independent helpers shared by the SQLite and PostgreSQL stores.

/// The columns of `subscriptions`, in the order the backends read a [`Subscription`].
pub(super) const SUBSCRIPTION_COLUMNS: &str = "id, tool_proxy_guid, developer_key_id, root_account_id, context_type, context_id, assignment_id, event_types, system_event_types, user_event_types, format, transport_type, url, associated_integration_id, state, automatic, consecutive_failures, deactivated_reason, created_at, updated_at";

/// A stored JSON list of strings (`None` when absent or not a list of strings).
pub(super) fn parse_list(v: Option<String>) -> Option<Vec<String>> {
    v.and_then(|s| serde_json::from_str(&s).ok())
}

/// A list of strings as stored (JSON), `None` for `None`.
pub(super) fn list_json(v: &Option<Vec<String>>) -> Option<String> {
    v.as_ref()
        .map(|l| serde_json::to_string(l).expect("strings serialise"))
}

/// `event_time`: RFC 3339 UTC with milliseconds (Canvas's metadata format).
pub(super) fn event_time(now: i64) -> String {
    let t = format_time(now);
    match t.strip_suffix('Z') {
        Some(base) => format!("{base}.000Z"),
        None => t,
    }
}

/// An id as a JSON string, or `null`.
pub(super) fn id_str(v: Option<i64>) -> Value {
    v.map(|i| Value::String(i.to_string()))
        .unwrap_or(Value::Null)
}

/// A time (seconds since the epoch) as an RFC 3339 JSON string, or `null`.
pub(super) fn time_or_null(t: Option<i64>) -> Value {
    t.map(|t| Value::String(format_time(t)))
        .unwrap_or(Value::Null)
}

/// A text as a JSON string of at most 8192 characters, or `null`.
pub(super) fn truncate(s: Option<String>) -> Value {
    match s {
        Some(s) if s.chars().count() > 8192 => Value::String(s.chars().take(8192).collect()),
        Some(s) => Value::String(s),
        None => Value::Null,
    }
}

/// An event to write into the outbox.
pub(super) struct Written {
    /// The event name.
    pub(super) name: String,
    /// The root account of its course.
    pub(super) root_account_id: i64,
    /// Its assignment.
    pub(super) assignment_id: i64,
    /// The tool proxy whose assignment it is about, if any.
    pub(super) associated_integration_id: Option<String>,
    /// The message `{"metadata", "body"}`.
    pub(super) message: Value,
}

/// A live event's `metadata`; `root` is (root account id, its uuid, the course's account id).
pub(super) fn metadata(
    name: &str,
    now: i64,
    root: &(i64, String, i64),
    course_id: i64,
    job: &str,
) -> Value {
    json!({
        "event_name": name,
        "event_time": event_time(now),
        "producer": "canvas",
        "root_account_id": root.0.to_string(),
        "root_account_uuid": root.1,
        "root_account_lti_guid": root.1,
        "context_type": "Course",
        "context_id": course_id.to_string(),
        "context_account_id": root.2.to_string(),
        "job_id": job,
        "job_tag": "lti2 import",
    })
}

/// A tool proxy bound somewhere that may be the `associated_integration_id` of an assignment.
pub(super) struct IntegrationCandidate {
    /// The tool proxy.
    pub(super) guid: String,
    /// The binding's context type (`account` or `course`).
    pub(super) context_type: String,
    /// The binding's context id.
    pub(super) context_id: i64,
    /// Whether the binding is enabled.
    pub(super) enabled: bool,
    /// The binding's id (higher: installed later).
    pub(super) binding_id: i64,
}

/// Canvas `ToolProxy.proxies_in_order_by_codes`: the course, then each account of `chain` (the
/// course's account first, upwards); at the first level with a binding of a candidate, the most
/// recently installed enabled one (a disabled binding there hides the proxies above).
pub(super) fn nearest_integration(
    candidates: &[IntegrationCandidate],
    course_id: i64,
    chain: Vec<i64>,
) -> Option<String> {
    let levels =
        std::iter::once(("course", course_id)).chain(chain.into_iter().map(|a| ("account", a)));
    for (kind, id) in levels {
        let mut here: Vec<(i64, String, bool)> = candidates
            .iter()
            .filter(|c| c.context_type == kind && c.context_id == id)
            .map(|c| (c.binding_id, c.guid.clone(), c.enabled))
            .collect();
        if here.is_empty() {
            continue;
        }
        here.sort_by_key(|b| std::cmp::Reverse(b.0));
        return here
            .into_iter()
            .find(|(_, _, enabled)| *enabled)
            .map(|(_, g, _)| g);
    }
    None
}

/// What a submission event shows: the submission, its assignment, and the version shown.
pub(super) struct SubmissionFacts {
    /// The submission.
    pub(super) submission_id: i64,
    /// Its assignment.
    pub(super) assignment_id: i64,
    /// Its user.
    pub(super) user_id: i64,
    /// Its group.
    pub(super) group_id: Option<i64>,
    /// The submission's `updated_at`.
    pub(super) updated_at: i64,
    /// The user's LTI id.
    pub(super) lti_user_id: String,
    /// The assignment's LTI id.
    pub(super) lti_assignment_id: String,
    /// The attempt shown.
    pub(super) attempt: Option<i64>,
    /// The version's `submitted_at`.
    pub(super) submitted_at: Option<i64>,
    /// The version's `submission_type`.
    pub(super) submission_type: Option<String>,
    /// The version's body.
    pub(super) body: Option<String>,
    /// The version's URL.
    pub(super) url: Option<String>,
    /// The version's state (the submission's when there is no such version).
    pub(super) workflow_state: String,
}

/// The `body` of a submission event.
pub(super) fn submission_body(f: SubmissionFacts, aii: Option<&str>) -> Value {
    let mut b = json!({
        "submission_id": f.submission_id.to_string(),
        "assignment_id": f.assignment_id.to_string(),
        "user_id": f.user_id.to_string(),
        "lti_user_id": f.lti_user_id,
        "lti_assignment_id": f.lti_assignment_id,
        "submitted_at": time_or_null(f.submitted_at),
        "graded_at": null,
        "updated_at": format_time(f.updated_at),
        "posted_at": null,
        "score": null,
        "grade": null,
        "submission_type": f.submission_type,
        "body": truncate(f.body),
        "url": f.url,
        "attempt": f.attempt,
        "late": false,
        "missing": false,
        "group_id": id_str(f.group_id),
        "workflow_state": f.workflow_state,
    });
    if let Some(a) = aii {
        b["associated_integration_id"] = Value::String(a.to_owned());
    }
    b
}

/// What an assignment event shows.
pub(super) struct AssignmentFacts {
    /// The assignment.
    pub(super) assignment_id: i64,
    /// Its course.
    pub(super) course_id: i64,
    /// The course's LTI id.
    pub(super) course_lti_id: Option<String>,
    /// Its name.
    pub(super) name: Option<String>,
    /// Its description.
    pub(super) description: Option<String>,
    /// Due, seconds since the epoch.
    pub(super) due_at: Option<i64>,
    /// Updated, seconds since the epoch.
    pub(super) updated_at: i64,
    /// Points possible.
    pub(super) points_possible: Option<f64>,
    /// Its state.
    pub(super) workflow_state: String,
    /// Its submission types as stored (a JSON list).
    pub(super) submission_types: String,
    /// Its LTI id.
    pub(super) lti_assignment_id: String,
}

/// The `body` of an assignment event.
pub(super) fn assignment_body(f: AssignmentFacts, aii: Option<&str>) -> Value {
    let types: Vec<String> = serde_json::from_str(&f.submission_types).unwrap_or_default();
    let mut b = json!({
        "assignment_id": f.assignment_id.to_string(),
        "context_id": f.course_id.to_string(),
        "context_type": "Course",
        "context_uuid": f.course_lti_id,
        "assignment_group_id": null,
        "title": truncate(f.name),
        "description": truncate(f.description.clone()),
        "lti_assignment_description": truncate(f.description),
        "due_at": time_or_null(f.due_at),
        "unlock_at": null,
        "lock_at": null,
        "updated_at": format_time(f.updated_at),
        "points_possible": f.points_possible,
        "workflow_state": f.workflow_state,
        "submission_types": types.join(","),
        "lti_assignment_id": f.lti_assignment_id,
        "lti_resource_link_id": null,
    });
    if let Some(x) = aii {
        b["associated_integration_id"] = Value::String(x.to_owned());
    }
    b
}

/// Whether a tool proxy in `workflow_state` with `enabled_capability` (stored JSON) gets an
/// automatic subscription: active with `Canvas.placements.similarityDetection`.
pub(super) fn wants_automatic_subscription(workflow_state: &str, enabled_capability: &str) -> bool {
    let caps: Vec<String> = serde_json::from_str(enabled_capability).unwrap_or_default();
    workflow_state == "active"
        && caps
            .iter()
            .any(|c| c == "Canvas.placements.similarityDetection")
}

/// The endpoint of the tool's `vnd.Canvas.SubmissionEvent` service (POST) in its ToolProxy
/// document (Canvas `PlagiarismSubscriptionsHelper#submission_event_endpoint`).
pub(super) fn submission_event_endpoint(raw_data: &str) -> Option<String> {
    let doc: Value = serde_json::from_str(raw_data).ok()?;
    doc.get("tool_profile")?
        .get("service_offered")?
        .as_array()?
        .iter()
        .find(|s| {
            s.get("@id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.contains("vnd.Canvas.SubmissionEvent"))
                && s.get("action").is_some_and(|a| match a {
                    Value::String(x) => x.eq_ignore_ascii_case("POST"),
                    Value::Array(xs) => xs
                        .iter()
                        .any(|x| x.as_str().is_some_and(|x| x.eq_ignore_ascii_case("POST"))),
                    _ => false,
                })
        })?
        .get("endpoint")?
        .as_str()
        .map(str::to_owned)
}

/// The automatic subscription of a similarity-detection tool proxy (a new UUID): the
/// plagiarism events of its root account, delivered to `url`, only about its own assignments.
pub(super) fn automatic_subscription(
    guid: &str,
    developer_key_id: Option<i64>,
    root_account_id: i64,
    root_account_uuid: String,
    url: String,
    now: i64,
) -> Subscription {
    let events: Vec<String> = PLAGIARISM_EVENTS.iter().map(|s| s.to_string()).collect();
    Subscription {
        id: uuid::Uuid::new_v4().to_string(),
        tool_proxy_guid: guid.to_owned(),
        developer_key_id,
        root_account_id,
        context_type: "root_account".into(),
        context_id: root_account_uuid,
        assignment_id: None,
        event_types: None,
        system_event_types: Some(events.clone()),
        user_event_types: Some(events),
        format: "live-event".into(),
        transport_type: "https".into(),
        url,
        associated_integration_id: Some(guid.to_owned()),
        state: "Active".into(),
        automatic: true,
        consecutive_failures: 0,
        deactivated_reason: None,
        created_at: now,
        updated_at: now,
    }
}

/// What an attempt writes into its delivery: (state, last status, last error, next attempt at
/// or `None` to keep it).
pub(super) fn outcome_columns(
    outcome: &DeliveryOutcome,
) -> (&'static str, Option<u16>, Option<&str>, Option<i64>) {
    match outcome {
        DeliveryOutcome::Delivered { status } => ("delivered", Some(*status), None, None),
        DeliveryOutcome::Retry {
            status,
            error,
            next_attempt_at,
        } => ("pending", *status, Some(error), Some(*next_attempt_at)),
        DeliveryOutcome::Failed { status, error } => ("failed", *status, Some(error), None),
    }
}

/// Why a subscription was deactivated after `failures` failed deliveries in a row.
pub(super) fn deactivation_reason(failures: i64, last_error: Option<&str>) -> String {
    format!(
        "{failures} deliveries in a row failed; the last: {}",
        last_error.unwrap_or("")
    )
}
