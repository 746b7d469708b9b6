//! [`WebhookStore`] for PostgreSQL, the live-event messages written into the outbox, and the
//! automatic subscription of similarity-detection tool proxies.

use sqlx::{Postgres, Transaction};

/// Writes a submission event in the caller's transaction (see the SQLite version).
pub(super) async fn emit_submission_event(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    submission_id: i64,
    attempt: Option<i64>,
    job: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let _ = (tx, name, submission_id, attempt, job, now);
    todo!("helper C")
}

/// Writes `assignment_created` or `assignment_updated` in the caller's transaction.
pub(super) async fn emit_assignment_event(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    assignment_id: i64,
    job: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let _ = (tx, name, assignment_id, job, now);
    todo!("helper C")
}

/// Keeps a tool proxy's automatic subscription in step with its state.
pub(super) async fn sync_auto_subscription(
    tx: &mut Transaction<'_, Postgres>,
    guid: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let _ = (tx, guid, now);
    todo!("helper C")
}
