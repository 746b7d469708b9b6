//! [`WebhookStore`] for PostgreSQL, the live-event messages written into the outbox, and the
//! automatic subscription of similarity-detection tool proxies.
//!
//! The same behaviour as the SQLite store (`sqlite_webhooks.rs`), with one addition that
//! several `lti2 serve` instances sharing the database need: a delivery handed out by
//! [`WebhookStore::due_deliveries`] is *claimed* (its `next_attempt_at` moved
//! [`CLAIM_LEASE`] seconds ahead, under `FOR UPDATE SKIP LOCKED`), so no other instance's
//! worker gets it while this one attempts it. The attempt's [`WebhookStore::record_delivery`]
//! then sets the real state (and, for a retry, the real next attempt). Events become
//! deliveries under the store-wide write lock, so each event is dispatched exactly once.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::postgres::{PgStore, CHAIN_FROM_ACCOUNT, CHAIN_FROM_COURSE};
use super::webhooks::*;
use super::StoreError;
use crate::webhooks::{matches, EventFacts, IN_FLIGHT, PER_SUBSCRIPTION};

/// How long a delivery handed to a worker stays claimed, in seconds: three times the longest
/// attempt (the 15 s HTTP timeout, which covers name resolution and the request). A claim ends
/// when the attempt is recorded; if the worker's process dies first, the delivery becomes due
/// again (for any instance) when the lease has passed, so a crash delays it by at most this.
pub(super) const CLAIM_LEASE: i64 = 45;

fn subscription_row(r: &PgRow) -> Subscription {
    Subscription {
        id: r.get(0),
        tool_proxy_guid: r.get(1),
        developer_key_id: r.get(2),
        root_account_id: r.get(3),
        context_type: r.get(4),
        context_id: r.get(5),
        assignment_id: r.get(6),
        event_types: parse_list(r.get(7)),
        system_event_types: parse_list(r.get(8)),
        user_event_types: parse_list(r.get(9)),
        format: r.get(10),
        transport_type: r.get(11),
        url: r.get(12),
        associated_integration_id: r.get(13),
        state: r.get(14),
        automatic: r.get::<bool, _>(15),
        consecutive_failures: r.get(16),
        deactivated_reason: r.get(17),
        created_at: r.get(18),
        updated_at: r.get(19),
    }
}

async fn insert_subscription(
    tx: &mut Transaction<'_, Postgres>,
    s: &Subscription,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"))
        .bind(&s.id)
        .bind(&s.tool_proxy_guid)
        .bind(s.developer_key_id)
        .bind(s.root_account_id)
        .bind(&s.context_type)
        .bind(&s.context_id)
        .bind(s.assignment_id)
        .bind(list_json(&s.event_types))
        .bind(list_json(&s.system_event_types))
        .bind(list_json(&s.user_event_types))
        .bind(&s.format)
        .bind(&s.transport_type)
        .bind(&s.url)
        .bind(&s.associated_integration_id)
        .bind(&s.state)
        .bind(s.automatic)
        .bind(s.consecutive_failures)
        .bind(&s.deactivated_reason)
        .bind(s.created_at)
        .bind(s.updated_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Fails the pending deliveries of a subscription that is no longer active.
async fn fail_pending<'e, E: sqlx::Executor<'e, Database = Postgres>>(
    db: E,
    subscription_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE deliveries SET state = 'failed', last_error = 'the subscription is no longer active', updated_at = $1 WHERE subscription_id = $2 AND state = 'pending'")
        .bind(now)
        .bind(subscription_id)
        .execute(db)
        .await?;
    Ok(())
}

/// The guid of the nearest active tool proxy with these codes installed above a course (see
/// [`nearest_integration`]).
async fn associated_integration_id(
    tx: &mut Transaction<'_, Postgres>,
    course_id: i64,
    vendor: &str,
    product: &str,
    resource_type_code: &str,
) -> Result<Option<String>, sqlx::Error> {
    let candidates = sqlx::query(
        "SELECT DISTINCT tp.guid, b.context_type, b.context_id, b.enabled, b.id FROM tool_proxies tp JOIN product_families pf ON pf.id = tp.product_family_id JOIN resource_handlers rh ON rh.tool_proxy_guid = tp.guid JOIN tool_proxy_bindings b ON b.tool_proxy_guid = tp.guid WHERE tp.workflow_state = 'active' AND pf.vendor_code = $1 AND pf.product_code = $2 AND rh.resource_type_code = $3",
    )
    .bind(vendor)
    .bind(product)
    .bind(resource_type_code)
    .fetch_all(&mut **tx)
    .await?;
    if candidates.is_empty() {
        return Ok(None);
    }
    let chain: Vec<i64> = sqlx::query_scalar(&format!(
        "{CHAIN_FROM_COURSE}SELECT id FROM chain ORDER BY depth"
    ))
    .bind(course_id)
    .fetch_all(&mut **tx)
    .await?;
    let candidates: Vec<IntegrationCandidate> = candidates
        .iter()
        .map(|c| IntegrationCandidate {
            guid: c.get(0),
            context_type: c.get(1),
            context_id: c.get(2),
            enabled: c.get(3),
            binding_id: c.get(4),
        })
        .collect();
    Ok(nearest_integration(&candidates, course_id, chain))
}

/// (root account id, its uuid, the course's account id) of a course.
async fn course_accounts(
    tx: &mut Transaction<'_, Postgres>,
    course_id: i64,
) -> Result<Option<(i64, String, i64)>, sqlx::Error> {
    let row = sqlx::query(
        &format!("{CHAIN_FROM_COURSE}SELECT a.id, a.uuid, (SELECT account_id FROM courses WHERE id = $1) FROM chain ch JOIN accounts a ON a.id = ch.id ORDER BY ch.depth DESC LIMIT 1"),
    )
    .bind(course_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}

async fn insert_event(
    tx: &mut Transaction<'_, Postgres>,
    w: Written,
    now: i64,
) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query("INSERT INTO events (id, event_name, system, root_account_id, assignment_id, associated_integration_id, message, created_at) VALUES ($1, $2, true, $3, $4, $5, $6, $7)")
        .bind(&id)
        .bind(&w.name)
        .bind(w.root_account_id)
        .bind(w.assignment_id)
        .bind(&w.associated_integration_id)
        .bind(w.message.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

/// Writes a submission event (`submission_created`, `submission_updated`,
/// `plagiarism_resubmit`) for a submission, showing `attempt`'s version (default: the current
/// one), in the caller's transaction. Returns the event id; `None` when the submission (or its
/// course's account chain) does not exist.
pub(super) async fn emit_submission_event(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    submission_id: i64,
    attempt: Option<i64>,
    job: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let Some(s) = sqlx::query("SELECT s.id, s.assignment_id, s.user_id, s.group_id, s.workflow_state, s.attempt, s.updated_at, u.lti_id, a.lti_id, a.course_id, a.tool_vendor_code, a.tool_product_code, a.tool_resource_type_code FROM submissions s JOIN users u ON u.id = s.user_id JOIN assignments a ON a.id = s.assignment_id WHERE s.id = $1")
        .bind(submission_id)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    let attempt = attempt.or(s.get::<Option<i64>, _>(5));
    let v = sqlx::query("SELECT attempt, submitted_at, submission_type, body, url, workflow_state FROM submission_versions WHERE submission_id = $1 AND attempt IS NOT DISTINCT FROM $2")
        .bind(submission_id)
        .bind(attempt)
        .fetch_optional(&mut **tx)
        .await?;
    let course_id: i64 = s.get(9);
    let Some(root) = course_accounts(tx, course_id).await? else {
        return Ok(None);
    };
    let aii = match (
        s.get::<Option<String>, _>(10),
        s.get::<Option<String>, _>(11),
        s.get::<Option<String>, _>(12),
    ) {
        (Some(v), Some(p), Some(r)) => associated_integration_id(tx, course_id, &v, &p, &r).await?,
        _ => None,
    };
    let (submitted_at, submission_type, body, url, state): (
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    ) = match &v {
        Some(v) => (v.get(1), v.get(2), v.get(3), v.get(4), v.get(5)),
        None => (None, None, None, None, s.get(4)),
    };
    let b = submission_body(
        SubmissionFacts {
            submission_id,
            assignment_id: s.get(1),
            user_id: s.get(2),
            group_id: s.get(3),
            updated_at: s.get(6),
            lti_user_id: s.get(7),
            lti_assignment_id: s.get(8),
            attempt,
            submitted_at,
            submission_type,
            body,
            url,
            workflow_state: state,
        },
        aii.as_deref(),
    );
    let message = json!({"metadata": metadata(name, now, &root, course_id, job), "body": b});
    let id = insert_event(
        tx,
        Written {
            name: name.into(),
            root_account_id: root.0,
            assignment_id: s.get(1),
            associated_integration_id: aii,
            message,
        },
        now,
    )
    .await?;
    Ok(Some(id))
}

/// Writes `assignment_created` or `assignment_updated` in the caller's transaction (nothing
/// when the assignment or its course's account chain does not exist).
pub(super) async fn emit_assignment_event(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    assignment_id: i64,
    job: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let Some(a) = sqlx::query("SELECT a.id, a.course_id, a.lti_id, a.name, a.description, a.due_at, a.points_possible, a.submission_types, a.workflow_state, a.updated_at, a.tool_vendor_code, a.tool_product_code, a.tool_resource_type_code, c.lti_id FROM assignments a JOIN courses c ON c.id = a.course_id WHERE a.id = $1")
        .bind(assignment_id)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(());
    };
    let course_id: i64 = a.get(1);
    let Some(root) = course_accounts(tx, course_id).await? else {
        return Ok(());
    };
    let aii = match (
        a.get::<Option<String>, _>(10),
        a.get::<Option<String>, _>(11),
        a.get::<Option<String>, _>(12),
    ) {
        (Some(v), Some(p), Some(r)) => associated_integration_id(tx, course_id, &v, &p, &r).await?,
        _ => None,
    };
    let b = assignment_body(
        AssignmentFacts {
            assignment_id,
            course_id,
            course_lti_id: a.get(13),
            name: a.get(3),
            description: a.get(4),
            due_at: a.get(5),
            updated_at: a.get(9),
            points_possible: a.get(6),
            workflow_state: a.get(8),
            submission_types: a.get(7),
            lti_assignment_id: a.get(2),
        },
        aii.as_deref(),
    );
    let message = json!({"metadata": metadata(name, now, &root, course_id, job), "body": b});
    insert_event(
        tx,
        Written {
            name: name.into(),
            root_account_id: root.0,
            assignment_id,
            associated_integration_id: aii,
            message,
        },
        now,
    )
    .await?;
    Ok(())
}

/// Keeps a tool proxy's automatic subscription in step with its state (Canvas
/// `ToolProxy#manage_subscription`), in the caller's transaction: created when it is active
/// with `Canvas.placements.similarityDetection` and a submission event endpoint; deleted (and
/// its pending deliveries failed) when it is not. The caller's transaction should come from
/// `PgStore::begin_write` (the check for an existing subscription and the insert must not
/// interleave with another instance's).
pub(super) async fn sync_auto_subscription(
    tx: &mut Transaction<'_, Postgres>,
    guid: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let Some(tp) = sqlx::query("SELECT workflow_state, enabled_capability, raw_data, developer_key_id FROM tool_proxies WHERE guid = $1")
        .bind(guid)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(());
    };
    let wants = wants_automatic_subscription(&tp.get::<String, _>(0), &tp.get::<String, _>(1));
    if !wants {
        let gone: Vec<String> = sqlx::query_scalar("UPDATE subscriptions SET state = 'Deleted', updated_at = $1 WHERE tool_proxy_guid = $2 AND automatic AND state <> 'Deleted' RETURNING id")
            .bind(now)
            .bind(guid)
            .fetch_all(&mut **tx)
            .await?;
        for id in gone {
            fail_pending(&mut **tx, &id, now).await?;
        }
        return Ok(());
    }
    let existing: Option<String> = sqlx::query_scalar("SELECT id FROM subscriptions WHERE tool_proxy_guid = $1 AND automatic AND state = 'Active'")
        .bind(guid)
        .fetch_optional(&mut **tx)
        .await?;
    if existing.is_some() {
        return Ok(());
    }
    let Some(url) = tp
        .get::<Option<String>, _>(2)
        .as_deref()
        .and_then(submission_event_endpoint)
    else {
        tracing::warn!(guid, "the similarity-detection tool has no vnd.Canvas.SubmissionEvent service: no automatic subscription");
        return Ok(());
    };
    // The root account of the context the tool proxy is installed in.
    let binding = sqlx::query("SELECT context_type, context_id FROM tool_proxy_bindings WHERE tool_proxy_guid = $1 ORDER BY id LIMIT 1")
        .bind(guid)
        .fetch_optional(&mut **tx)
        .await?;
    let root = match binding {
        Some(b) => {
            let kind: String = b.get(0);
            let id: i64 = b.get(1);
            let start: Option<i64> = if kind == "course" {
                sqlx::query_scalar("SELECT account_id FROM courses WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?
            } else {
                Some(id)
            };
            match start {
                Some(start) => sqlx::query(&format!("{CHAIN_FROM_ACCOUNT}SELECT a.id, a.uuid FROM chain c JOIN accounts a ON a.id = c.id ORDER BY c.depth DESC LIMIT 1"))
                    .bind(start)
                    .fetch_optional(&mut **tx)
                    .await?
                    .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1))),
                None => None,
            }
        }
        None => sqlx::query("SELECT id, uuid FROM accounts WHERE id = 1")
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1))),
    };
    let Some((root_id, root_uuid)) = root else {
        return Ok(());
    };
    insert_subscription(
        tx,
        &automatic_subscription(guid, tp.get(3), root_id, root_uuid, url, now),
    )
    .await?;
    tracing::info!(guid, "automatic plagiarism subscription created");
    Ok(())
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn create_subscription(&self, s: &Subscription) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_subscription(&mut tx, s).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_subscription(&self, s: &Subscription) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE subscriptions SET root_account_id = $1, context_type = $2, context_id = $3, assignment_id = $4, event_types = $5, system_event_types = $6, user_event_types = $7, format = $8, transport_type = $9, url = $10, associated_integration_id = $11, state = $12, consecutive_failures = $13, deactivated_reason = $14, updated_at = $15 WHERE id = $16")
            .bind(s.root_account_id)
            .bind(&s.context_type)
            .bind(&s.context_id)
            .bind(s.assignment_id)
            .bind(list_json(&s.event_types))
            .bind(list_json(&s.system_event_types))
            .bind(list_json(&s.user_event_types))
            .bind(&s.format)
            .bind(&s.transport_type)
            .bind(&s.url)
            .bind(&s.associated_integration_id)
            .bind(&s.state)
            .bind(s.consecutive_failures)
            .bind(&s.deactivated_reason)
            .bind(s.updated_at)
            .bind(&s.id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("subscription {}", s.id)));
        }
        if s.state != "Active" {
            fail_pending(self.pool(), &s.id, s.updated_at).await?;
        }
        Ok(())
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(subscription_row))
    }

    async fn subscriptions_of(
        &self,
        guid: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Subscription>, StoreError> {
        // `id` is COLLATE "C": byte order, as in SQLite.
        let rows = sqlx::query(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE tool_proxy_guid = $1 AND state <> 'Deleted' AND id > $2 ORDER BY id LIMIT $3"))
            .bind(guid)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(subscription_row).collect())
    }

    async fn root_account_by_uuid(&self, uuid: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM accounts WHERE uuid = $1 AND parent_account_id IS NULL",
        )
        .bind(uuid)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Under the store-wide write lock (`PgStore::begin_write`), so that of several instances
    /// dispatching at once each event is turned into deliveries by exactly one (the unique
    /// `(event_seq, subscription_id)` with `ON CONFLICT DO NOTHING` backs this up). When no
    /// event is waiting, the lock is not taken.
    async fn dispatch_events(&self, now: i64) -> Result<usize, StoreError> {
        let waiting: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE NOT dispatched)")
                .fetch_one(self.pool())
                .await?;
        if !waiting {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let events = sqlx::query("SELECT seq, event_name, system, root_account_id, assignment_id, associated_integration_id FROM events WHERE NOT dispatched ORDER BY seq LIMIT 500")
            .fetch_all(&mut *tx)
            .await?;
        if events.is_empty() {
            return Ok(0);
        }
        let subs: Vec<Subscription> = sqlx::query(&format!("SELECT {} FROM subscriptions s JOIN tool_proxies tp ON tp.guid = s.tool_proxy_guid WHERE s.state = 'Active' AND tp.workflow_state = 'active' ORDER BY s.created_at, s.id", SUBSCRIPTION_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ")))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(subscription_row)
            .collect();
        // Every (event, subscription) pair, in event order, written by one statement.
        let (mut seqs, mut sub_ids, mut dispatched) = (Vec::new(), Vec::new(), Vec::new());
        for e in &events {
            let seq: i64 = e.get(0);
            let name: String = e.get(1);
            let aii: Option<String> = e.get(5);
            let facts = EventFacts {
                event_name: &name,
                system: e.get::<bool, _>(2),
                root_account_id: e.get(3),
                assignment_id: e.get(4),
                associated_integration_id: aii.as_deref(),
            };
            for s in subs.iter().filter(|s| matches(s, &facts)) {
                seqs.push(seq);
                sub_ids.push(s.id.clone());
            }
            dispatched.push(seq);
        }
        let mut created = 0;
        if !seqs.is_empty() {
            created = sqlx::query("INSERT INTO deliveries (event_seq, subscription_id, state, attempts, next_attempt_at, created_at, updated_at) SELECT p.seq, p.sub, 'pending', 0, $3, $3, $3 FROM UNNEST($1::BIGINT[], $2::TEXT[]) WITH ORDINALITY AS p(seq, sub, n) ORDER BY p.n ON CONFLICT DO NOTHING")
                .bind(&seqs)
                .bind(&sub_ids)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected() as usize;
        }
        sqlx::query("UPDATE events SET dispatched = true WHERE seq = ANY($1)")
            .bind(&dispatched)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Claims the deliveries it returns (see [`CLAIM_LEASE`]): in one transaction the due rows
    /// are locked with `FOR UPDATE SKIP LOCKED` (so two instances never pick the same row) and
    /// their `next_attempt_at` moved to `now + CLAIM_LEASE` (so they are not due for anyone
    /// else once it commits). Because a claimed delivery is not due again until its attempt is
    /// recorded, only the deliveries the worker will start are claimed: of the oldest `limit`
    /// due ones, at most [`PER_SUBSCRIPTION`] per subscription (counting this worker's `busy`
    /// ones) and at most [`IN_FLIGHT`] minus `busy` in all — the worker's own limits.
    async fn due_deliveries(
        &self,
        now: i64,
        limit: i64,
        busy: &[i64],
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let room = IN_FLIGHT.saturating_sub(busy.len());
        if room == 0 || limit <= 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.pool().begin().await?;
        let mut per_sub: HashMap<String, usize> = HashMap::new();
        if !busy.is_empty() {
            let rows = sqlx::query("SELECT subscription_id, COUNT(*) FROM deliveries WHERE id = ANY($1) GROUP BY subscription_id")
                .bind(busy)
                .fetch_all(&mut *tx)
                .await?;
            for r in rows {
                per_sub.insert(r.get(0), r.get::<i64, _>(1) as usize);
            }
        }
        let candidates = sqlx::query("SELECT d.id, d.subscription_id FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND s.state = 'Active' AND d.id <> ALL($2) ORDER BY d.id LIMIT $3 FOR UPDATE OF d SKIP LOCKED")
            .bind(now)
            .bind(busy)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let mut claim: Vec<i64> = Vec::new();
        for c in &candidates {
            if claim.len() >= room {
                break;
            }
            let n = per_sub.entry(c.get(1)).or_insert(0);
            if *n >= PER_SUBSCRIPTION {
                continue;
            }
            *n += 1;
            claim.push(c.get(0));
        }
        if claim.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query("UPDATE deliveries d SET next_attempt_at = $1 FROM events e, subscriptions s WHERE d.id = ANY($2) AND e.seq = d.event_seq AND s.id = d.subscription_id RETURNING d.id, e.id, e.event_name, e.message, d.subscription_id, s.url, s.tool_proxy_guid, d.attempts, d.created_at")
            .bind(now.saturating_add(CLAIM_LEASE))
            .bind(&claim)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut due: Vec<DueDelivery> = rows
            .iter()
            .map(|r| DueDelivery {
                id: r.get(0),
                event_id: r.get(1),
                event_name: r.get(2),
                message: r.get(3),
                subscription_id: r.get(4),
                url: r.get(5),
                tool_proxy_guid: r.get(6),
                attempts: r.get(7),
                created_at: r.get(8),
            })
            .collect();
        due.sort_by_key(|d| d.id);
        Ok(due)
    }

    async fn record_delivery(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
        now: i64,
        deactivate_after: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(sub) =
            sqlx::query_scalar::<_, String>("SELECT subscription_id FROM deliveries WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Err(StoreError::NotFound(format!("delivery {id}")));
        };
        let (state, status, error, next) = outcome_columns(outcome);
        // A claim's lease in next_attempt_at is replaced by a retry's time; delivered and
        // failed deliveries are never due again.
        sqlx::query("UPDATE deliveries SET state = $1, attempts = attempts + 1, last_status = $2, last_error = $3, next_attempt_at = COALESCE($4, next_attempt_at), updated_at = $5 WHERE id = $6")
            .bind(state)
            .bind(status.map(i64::from))
            .bind(error)
            .bind(next)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        match state {
            "delivered" => {
                sqlx::query("UPDATE subscriptions SET consecutive_failures = 0 WHERE id = $1")
                    .bind(&sub)
                    .execute(&mut *tx)
                    .await?;
            }
            "failed" => {
                let failures: i64 = sqlx::query_scalar("UPDATE subscriptions SET consecutive_failures = consecutive_failures + 1 WHERE id = $1 RETURNING consecutive_failures")
                    .bind(&sub)
                    .fetch_one(&mut *tx)
                    .await?;
                if failures >= deactivate_after {
                    sqlx::query("UPDATE subscriptions SET state = 'Deactivated', deactivated_reason = $1, updated_at = $2 WHERE id = $3 AND state = 'Active'")
                        .bind(deactivation_reason(failures, error))
                        .bind(now)
                        .bind(&sub)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE deliveries SET state = 'failed', last_error = 'the subscription was deactivated', updated_at = $1 WHERE subscription_id = $2 AND state = 'pending'")
                        .bind(now)
                        .bind(&sub)
                        .execute(&mut *tx)
                        .await?;
                    tracing::warn!(subscription = %sub, failures, "webhook subscription deactivated after repeated delivery failures");
                }
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_deliveries(
        &self,
        failed_only: bool,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let rows = sqlx::query("SELECT d.id, e.id, e.event_name, d.subscription_id, s.url, d.state, d.attempts, d.last_status, d.last_error, d.created_at, d.updated_at FROM deliveries d JOIN events e ON e.seq = d.event_seq JOIN subscriptions s ON s.id = d.subscription_id WHERE (NOT $1 OR d.state = 'failed') ORDER BY d.id DESC LIMIT $2")
            .bind(failed_only)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| DeliveryRow {
                id: r.get(0),
                event_id: r.get(1),
                event_name: r.get(2),
                subscription_id: r.get(3),
                url: r.get(4),
                state: r.get(5),
                attempts: r.get(6),
                last_status: r.get(7),
                last_error: r.get(8),
                created_at: r.get(9),
                updated_at: r.get(10),
            })
            .collect())
    }

    async fn webhook_counts(&self) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>), StoreError> {
        let pairs = |rows: Vec<PgRow>| rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let d = sqlx::query(
            "SELECT state, COUNT(*) FROM deliveries GROUP BY state ORDER BY state COLLATE \"C\"",
        )
        .fetch_all(self.pool())
        .await?;
        let s = sqlx::query(
            "SELECT state, COUNT(*) FROM subscriptions GROUP BY state ORDER BY state COLLATE \"C\"",
        )
        .fetch_all(self.pool())
        .await?;
        Ok((pairs(d), pairs(s)))
    }

    async fn resubmit(&self, submission_id: i64, now: i64) -> Result<String, StoreError> {
        let mut tx = self.begin_write().await?;
        let id = emit_submission_event(
            &mut tx,
            "plagiarism_resubmit",
            submission_id,
            None,
            "lti2 admin submission resubmit",
            now,
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("submission {submission_id}")))?;
        tx.commit().await?;
        Ok(id)
    }
}
