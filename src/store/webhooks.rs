//! Webhook subscriptions, the event outbox and deliveries ([`WebhookStore`]).

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;

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
    /// Pending deliveries of active subscriptions due at `now`, oldest first, skipping `busy`.
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
