//! [`LmsStore`] for PostgreSQL: LMS records, originality reports, and the import transaction.
//!
//! A port of the SQLite implementation (`sqlite_lms.rs`); the backend-independent pieces are
//! shared from [`super::lms`]. Differences in statement shape: `IS ?` is
//! `IS NOT DISTINCT FROM $n`; `json_each(?)` over a list of codes is `= ANY($n)` over a text
//! array; fingerprints are `json_build_array(…)::text` with `json_agg(… ORDER BY …)`; a new
//! report's id is `MAX(id) + 1` (SQLite's rowid rule), taken under the write lock; the import
//! defers the (deferrable) foreign keys with `SET CONSTRAINTS ALL DEFERRED`.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::lms::*;
use super::postgres::{PgStore, CHAIN_FROM_COURSE};
use super::{ContextKind, ContextRef, StoreError};
use crate::import::{ImportDoc, ImportError, ImportSummary};

const REPORT_COLUMNS: &str = "id, submission_id, attachment_id, originality_score, originality_report_attachment_id, originality_report_url, workflow_state, error_message, submission_time, root_account_id, link_resource_type_code, link_resource_url, link_vendor_code, link_product_code, link_resource_link_id, created_at, updated_at";

const ASSIGNMENT_COLUMNS: &str = "id, course_id, lti_id, name, description, due_at, points_possible, submission_types, workflow_state, tool_vendor_code, tool_product_code, tool_resource_type_code";

const USER_COLUMNS: &str = "u.id, u.lti_id, u.name, u.sortable_name, u.short_name, u.email";

/// A random 40-hex-digit id (SQLite's `lower(hex(randomblob(20)))`).
const RANDOM_HEX40: &str = "substr(encode(sha256(gen_random_uuid()::text::bytea), 'hex'), 1, 40)";

fn user_row(r: &PgRow) -> UserRecord {
    UserRecord {
        id: r.get(0),
        lti_id: r.get(1),
        name: r.get(2),
        sortable_name: r.get(3),
        short_name: r.get(4),
        email: r.get(5),
    }
}

fn assignment_row(r: &PgRow) -> AssignmentRecord {
    let types: String = r.get(7);
    AssignmentRecord {
        id: r.get(0),
        course_id: r.get(1),
        lti_id: r.get(2),
        name: r.get(3),
        description: r.get(4),
        due_at: r.get(5),
        points_possible: r.get(6),
        submission_types: serde_json::from_str(&types).unwrap_or_default(),
        workflow_state: r.get(8),
        tool: tool_lookup(r.get(9), r.get(10), r.get(11)),
    }
}

fn report_row(r: &PgRow) -> OriginalityReport {
    let rt: Option<String> = r.get(10);
    OriginalityReport {
        id: r.get(0),
        submission_id: r.get(1),
        attachment_id: r.get(2),
        originality_score: r.get(3),
        originality_report_attachment_id: r.get(4),
        originality_report_url: r.get(5),
        workflow_state: r.get(6),
        error_message: r.get(7),
        submission_time: r.get(8),
        root_account_id: r.get(9),
        link: rt.map(|resource_type_code| ReportLink {
            resource_type_code,
            resource_url: r.get(11),
            vendor_code: r.get::<Option<String>, _>(12).unwrap_or_default(),
            product_code: r.get::<Option<String>, _>(13).unwrap_or_default(),
            resource_link_id: r.get::<Option<String>, _>(14).unwrap_or_default(),
        }),
        created_at: r.get(15),
        updated_at: r.get(16),
    }
}

fn attachment_row(r: &PgRow, at: usize) -> AttachmentRecord {
    AttachmentRecord {
        id: r.get(at),
        sha256: r.get(at + 1),
        size: r.get(at + 2),
        filename: r.get(at + 3),
        display_name: r.get(at + 4),
        content_type: r.get(at + 5),
        created_at: r.get(at + 6),
        updated_at: r.get(at + 7),
    }
}

/// Inserts (`insert`: a new id, the largest plus one, as SQLite gives a rowid; the caller holds
/// the write lock) or updates a report; returns its id.
async fn write_report(
    tx: &mut Transaction<'_, Postgres>,
    r: &OriginalityReport,
    insert: bool,
) -> Result<i64, sqlx::Error> {
    let link = r.link.as_ref();
    let sql = if insert {
        "INSERT INTO originality_reports (id, submission_id, attachment_id, originality_score, originality_report_attachment_id, originality_report_url, workflow_state, error_message, submission_time, root_account_id, link_resource_type_code, link_resource_url, link_vendor_code, link_product_code, link_resource_link_id, created_at, updated_at) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM originality_reports), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id"
    } else {
        "UPDATE originality_reports SET submission_id = $1, attachment_id = $2, originality_score = $3, originality_report_attachment_id = $4, originality_report_url = $5, workflow_state = $6, error_message = $7, submission_time = $8, root_account_id = $9, link_resource_type_code = $10, link_resource_url = $11, link_vendor_code = $12, link_product_code = $13, link_resource_link_id = $14, created_at = $15, updated_at = $16 WHERE id = $17 RETURNING id"
    };
    let mut q = sqlx::query_scalar::<_, i64>(sql)
        .bind(r.submission_id)
        .bind(r.attachment_id)
        .bind(r.originality_score)
        .bind(r.originality_report_attachment_id)
        .bind(&r.originality_report_url)
        .bind(&r.workflow_state)
        .bind(&r.error_message)
        .bind(r.submission_time)
        .bind(r.root_account_id)
        .bind(link.map(|l| l.resource_type_code.clone()))
        .bind(link.and_then(|l| l.resource_url.clone()))
        .bind(link.map(|l| l.vendor_code.clone()))
        .bind(link.map(|l| l.product_code.clone()))
        .bind(link.map(|l| l.resource_link_id.clone()))
        .bind(r.created_at)
        .bind(r.updated_at);
    if !insert {
        q = q.bind(r.id);
    }
    q.fetch_one(&mut **tx).await
}

#[async_trait]
impl LmsStore for PgStore {
    async fn user_by_any_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let by_past = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users u JOIN user_past_lti_ids p ON p.user_id = u.id WHERE p.lti_id = $1 AND u.workflow_state <> 'deleted'"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        if let Some(r) = by_past {
            return Ok(Some(user_row(&r)));
        }
        let by_lti = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.lti_id = $1 AND u.workflow_state <> 'deleted'"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        if let Some(r) = by_lti {
            return Ok(Some(user_row(&r)));
        }
        let Some(num) = crate::server::lti::canonical_id(id) else {
            return Ok(None);
        };
        let by_id = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1 AND u.workflow_state <> 'deleted'"
        ))
        .bind(num)
        .fetch_optional(self.pool())
        .await?;
        Ok(by_id.as_ref().map(user_row))
    }

    async fn user(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(user_row))
    }

    async fn course(&self, id: i64) -> Result<Option<CourseRecord>, StoreError> {
        let row =
            sqlx::query("SELECT id, account_id, lti_id, workflow_state FROM courses WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|r| CourseRecord {
            id: r.get(0),
            account_id: r.get(1),
            lti_id: r.get::<Option<String>, _>(2).unwrap_or_default(),
            workflow_state: r.get(3),
        }))
    }

    async fn account_chain(&self, course_id: i64) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(&format!(
            "{CHAIN_FROM_COURSE}SELECT id FROM chain ORDER BY depth"
        ))
        .bind(course_id)
        .fetch_all(self.pool())
        .await?)
    }

    async fn assignment(&self, id: i64) -> Result<Option<AssignmentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(assignment_row))
    }

    async fn assignment_by_lti_id(
        &self,
        lti_id: &str,
    ) -> Result<Option<AssignmentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE lti_id = $1"
        ))
        .bind(lti_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(assignment_row))
    }

    async fn due_at_override(
        &self,
        assignment_id: i64,
        user_id: i64,
    ) -> Result<Option<Option<i64>>, StoreError> {
        let row = sqlx::query(
            "SELECT due_at FROM assignment_overrides WHERE assignment_id = $1 AND user_id = $2",
        )
        .bind(assignment_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn is_student(&self, user_id: i64, course_id: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM enrollments WHERE user_id = $1 AND course_id = $2 AND role = 'student' AND workflow_state = 'active'")
            .bind(user_id)
            .bind(course_id)
            .fetch_optional(self.pool())
            .await?
            .is_some())
    }

    async fn user_has_tool_assignment(
        &self,
        user_id: i64,
        lookup_vendor: &str,
        lookup_product: &str,
        resource_type_codes: &[String],
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "SELECT 1 FROM enrollments e JOIN courses c ON c.id = e.course_id JOIN assignments a ON a.course_id = c.id WHERE e.user_id = $1 AND e.workflow_state = 'active' AND c.workflow_state <> 'deleted' AND a.workflow_state <> 'deleted' AND a.tool_vendor_code = $2 AND a.tool_product_code = $3 AND a.tool_resource_type_code = ANY($4) LIMIT 1",
        )
        .bind(user_id)
        .bind(lookup_vendor)
        .bind(lookup_product)
        .bind(resource_type_codes)
        .fetch_optional(self.pool())
        .await?
        .is_some())
    }

    async fn submission(&self, id: i64) -> Result<Option<SubmissionRecord>, StoreError> {
        let Some(r) = sqlx::query("SELECT id, assignment_id, user_id, group_id, workflow_state, attempt, submitted_at, submission_type, body, url, eula_agreement_timestamp FROM submissions WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let versions = sqlx::query("SELECT attempt, submitted_at, submission_type, body, url, workflow_state FROM submission_versions WHERE submission_id = $1 ORDER BY attempt")
            .bind(id)
            .fetch_all(self.pool())
            .await?;
        let files = sqlx::query("SELECT l.attempt, a.id, a.sha256, a.size, a.filename, a.display_name, a.content_type, a.created_at, a.updated_at FROM submission_version_attachments l JOIN attachments a ON a.id = l.attachment_id WHERE l.submission_id = $1 ORDER BY l.attempt, l.position")
            .bind(id)
            .fetch_all(self.pool())
            .await?;
        let history = versions
            .iter()
            .map(|v| {
                let attempt: i64 = v.get(0);
                SubmissionVersion {
                    attempt,
                    submitted_at: v.get(1),
                    submission_type: v.get(2),
                    body: v.get(3),
                    url: v.get(4),
                    workflow_state: v.get(5),
                    attachments: files
                        .iter()
                        .filter(|f| f.get::<i64, _>(0) == attempt)
                        .map(|f| attachment_row(f, 1))
                        .collect(),
                }
            })
            .collect();
        Ok(Some(SubmissionRecord {
            id: r.get(0),
            assignment_id: r.get(1),
            user_id: r.get(2),
            group_id: r.get(3),
            workflow_state: r.get(4),
            attempt: r.get(5),
            submitted_at: r.get(6),
            submission_type: r.get(7),
            body: r.get(8),
            url: r.get(9),
            eula_agreement_timestamp: r.get(10),
            history,
        }))
    }

    async fn submission_for(
        &self,
        assignment_id: i64,
        user_id: i64,
    ) -> Result<Option<SubmissionRecord>, StoreError> {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM submissions WHERE assignment_id = $1 AND user_id = $2",
        )
        .bind(assignment_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        match id {
            Some(id) => self.submission(id).await,
            None => Ok(None),
        }
    }

    async fn attachment(&self, id: i64) -> Result<Option<AttachmentRecord>, StoreError> {
        let row = sqlx::query("SELECT id, sha256, size, filename, display_name, content_type, created_at, updated_at FROM attachments WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| attachment_row(&r, 0)))
    }

    async fn submission_with_attachment(
        &self,
        attachment_id: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(submission_id) FROM submission_version_attachments WHERE attachment_id = $1",
        )
        .bind(attachment_id)
        .fetch_one(self.pool())
        .await?)
    }

    async fn group(&self, id: i64) -> Result<Option<GroupRecord>, StoreError> {
        let row = sqlx::query("SELECT id, course_id, workflow_state FROM groups WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| GroupRecord {
            id: r.get(0),
            course_id: r.get(1),
            workflow_state: r.get(2),
        }))
    }

    async fn group_users(
        &self,
        group_id: i64,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<UserRecord>, i64), StoreError> {
        let filter = "FROM users u JOIN group_memberships m ON m.user_id = u.id WHERE m.group_id = $1 AND m.workflow_state = 'accepted' AND u.workflow_state <> 'deleted'";
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) {filter}"))
            .bind(group_id)
            .fetch_one(self.pool())
            .await?;
        // SQLite reads a negative LIMIT as none and a negative OFFSET as 0; PostgreSQL refuses
        // both (`LIMIT NULL` is none).
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} {filter} ORDER BY u.id LIMIT $2 OFFSET $3"
        ))
        .bind(group_id)
        .bind((limit >= 0).then_some(limit))
        .bind(offset.max(0))
        .fetch_all(self.pool())
        .await?;
        Ok((rows.iter().map(user_row).collect(), total))
    }

    async fn tool_facts(&self, guid: &str) -> Result<ToolFacts, StoreError> {
        let mut facts = ToolFacts::default();
        if let Some(r) = sqlx::query("SELECT pf.vendor_code, pf.product_code FROM tool_proxies tp JOIN product_families pf ON pf.id = tp.product_family_id WHERE tp.guid = $1")
            .bind(guid)
            .fetch_optional(self.pool())
            .await?
        {
            facts.vendor_code = r.get(0);
            facts.product_code = r.get(1);
        }
        let handlers = sqlx::query("SELECT rh.resource_type_code, EXISTS (SELECT 1 FROM message_handlers mh CROSS JOIN LATERAL json_array_elements_text(mh.capabilities::json) AS c(value) WHERE mh.resource_handler_id = rh.id AND c.value = 'Canvas.placements.similarityDetection') FROM resource_handlers rh WHERE rh.tool_proxy_guid = $1 ORDER BY rh.id")
            .bind(guid)
            .fetch_all(self.pool())
            .await?;
        for h in handlers {
            let code: String = h.get(0);
            if h.get::<bool, _>(1) {
                facts.similarity_resource_type_codes.push(code.clone());
            }
            facts.resource_type_codes.push(code);
        }
        // `enabled::int <> 0` reads the flag whether it is stored as BOOLEAN or as 0/1.
        let bindings = sqlx::query("SELECT context_type, context_id, enabled::int <> 0 FROM tool_proxy_bindings WHERE tool_proxy_guid = $1")
            .bind(guid)
            .fetch_all(self.pool())
            .await?;
        for b in bindings {
            let kind: String = b.get(0);
            if let Some(kind) = ContextKind::parse(&kind) {
                facts
                    .bindings
                    .push((ContextRef { kind, id: b.get(1) }, b.get::<bool, _>(2)));
            }
        }
        Ok(facts)
    }

    async fn originality_report(&self, id: i64) -> Result<Option<OriginalityReport>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {REPORT_COLUMNS} FROM originality_reports WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(report_row))
    }

    async fn report_for(
        &self,
        submission_id: i64,
        attachment_id: Option<i64>,
    ) -> Result<Option<OriginalityReport>, StoreError> {
        let row = sqlx::query(&format!("SELECT {REPORT_COLUMNS} FROM originality_reports WHERE submission_id = $1 AND attachment_id IS NOT DISTINCT FROM $2 ORDER BY id LIMIT 1"))
            .bind(submission_id)
            .bind(attachment_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(report_row))
    }

    async fn report_for_attachment(
        &self,
        attachment_id: i64,
    ) -> Result<Option<OriginalityReport>, StoreError> {
        let row = sqlx::query(&format!("SELECT {REPORT_COLUMNS} FROM originality_reports WHERE attachment_id = $1 ORDER BY id LIMIT 1"))
            .bind(attachment_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(report_row))
    }

    async fn report_at_time(
        &self,
        submission_id: i64,
        submission_time: Option<i64>,
    ) -> Result<Option<OriginalityReport>, StoreError> {
        let row = sqlx::query(&format!("SELECT {REPORT_COLUMNS} FROM originality_reports WHERE submission_id = $1 AND attachment_id IS NULL AND submission_time IS NOT DISTINCT FROM $2 ORDER BY id LIMIT 1"))
            .bind(submission_id)
            .bind(submission_time)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(report_row))
    }

    async fn save_originality_report(
        &self,
        report: &OriginalityReport,
        group: Option<(i64, i64)>,
    ) -> Result<OriginalityReport, StoreError> {
        let mut tx = self.begin_write().await?;
        let id = write_report(&mut tx, report, report.id == 0).await?;
        let saved = OriginalityReport {
            id,
            ..report.clone()
        };
        if let Some((assignment_id, group_id)) = group {
            let members: Vec<i64> = sqlx::query_scalar("SELECT id FROM submissions WHERE assignment_id = $1 AND group_id = $2 AND id <> $3 AND workflow_state <> 'deleted' ORDER BY id")
                .bind(assignment_id)
                .bind(group_id)
                .bind(saved.submission_id)
                .fetch_all(&mut *tx)
                .await?;
            for member in members {
                let newer = sqlx::query("SELECT 1 FROM originality_reports WHERE submission_id = $1 AND attachment_id IS NOT DISTINCT FROM $2 AND updated_at >= $3")
                    .bind(member)
                    .bind(saved.attachment_id)
                    .bind(saved.updated_at)
                    .fetch_optional(&mut *tx)
                    .await?;
                if newer.is_some() {
                    continue;
                }
                sqlx::query("DELETE FROM originality_reports WHERE submission_id = $1 AND attachment_id IS NOT DISTINCT FROM $2")
                    .bind(member)
                    .bind(saved.attachment_id)
                    .execute(&mut *tx)
                    .await?;
                write_report(&mut tx, &group_copy(&saved, member), true).await?;
            }
        }
        tx.commit().await?;
        Ok(saved)
    }

    async fn import(&self, doc: &ImportDoc, now: i64) -> Result<ImportSummary, ImportError> {
        let mut tx = self.begin_write().await?;
        // Every foreign key the import touches is DEFERRABLE: checked at commit, as SQLite's
        // `PRAGMA defer_foreign_keys = ON` does. A failed statement aborts the transaction;
        // every such failure returns at once and the transaction rolls back when dropped.
        sqlx::query("SET CONSTRAINTS ALL DEFERRED")
            .execute(&mut *tx)
            .await?;
        let summary = import_in(&mut tx, doc, now).await?;
        tx.commit().await?;
        Ok(summary)
    }

    async fn max_ids(&self) -> Result<(i64, i64), StoreError> {
        let s: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM submissions")
            .fetch_one(self.pool())
            .await?;
        let a: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM attachments")
            .fetch_one(self.pool())
            .await?;
        Ok((s.unwrap_or(0), a.unwrap_or(0)))
    }

    async fn content_referenced(&self, sha256: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 FROM attachments WHERE sha256 = $1 LIMIT 1")
                .bind(sha256)
                .fetch_optional(self.pool())
                .await?
                .is_some(),
        )
    }
}

async fn exists(
    tx: &mut Transaction<'_, Postgres>,
    table: &str,
    id: i64,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(&format!("SELECT 1 FROM {table} WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
}

/// `id` is in the document's list or in the table.
async fn known(
    tx: &mut Transaction<'_, Postgres>,
    in_doc: &HashSet<i64>,
    table: &str,
    id: i64,
    path: String,
    what: &str,
) -> Result<(), ImportError> {
    if in_doc.contains(&id) || exists(tx, table, id).await? {
        Ok(())
    } else {
        Err(unknown_record(path, what, id))
    }
}

/// What an assignment looks like to its events (None when it does not exist).
async fn assignment_fingerprint(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT json_build_array(course_id, lti_id, name, description, due_at, points_possible, submission_types, workflow_state, tool_vendor_code, tool_product_code, tool_resource_type_code)::text FROM assignments WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// What a submission and its versions look like to its events (None when it does not exist).
async fn submission_fingerprint(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT json_build_array(s.assignment_id, s.user_id, s.group_id, s.workflow_state, s.eula_agreement_timestamp, (SELECT COALESCE(json_agg(json_build_array(v.attempt, v.submitted_at, v.submission_type, v.body, v.url, v.workflow_state, (SELECT COALESCE(json_agg(l.attachment_id ORDER BY l.position), '[]'::json) FROM submission_version_attachments l WHERE l.submission_id = v.submission_id AND l.attempt = v.attempt)) ORDER BY v.attempt), '[]'::json) FROM submission_versions v WHERE v.submission_id = s.id))::text FROM submissions s WHERE s.id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

async fn import_in(
    tx: &mut Transaction<'_, Postgres>,
    doc: &ImportDoc,
    now: i64,
) -> Result<ImportSummary, ImportError> {
    let mut sum = ImportSummary::default();
    let account_ids: HashSet<i64> = doc.accounts.iter().map(|a| a.id).collect();
    let course_ids: HashSet<i64> = doc.courses.iter().map(|c| c.id).collect();
    let user_ids: HashSet<i64> = doc.users.iter().map(|u| u.id).collect();
    let group_ids: HashSet<i64> = doc.groups.iter().map(|g| g.id).collect();
    let assignment_ids: HashSet<i64> = doc.assignments.iter().map(|a| a.id).collect();

    for (i, a) in doc.accounts.iter().enumerate() {
        if let Some(p) = a.parent_account_id {
            if p == a.id {
                return Err(ImportError::at(
                    format!("accounts[{i}].parent_account_id"),
                    "an account cannot be its own parent",
                ));
            }
            known(
                tx,
                &account_ids,
                "accounts",
                p,
                format!("accounts[{i}].parent_account_id"),
                "account",
            )
            .await?;
        }
        sqlx::query(&format!("INSERT INTO accounts (id, name, parent_account_id, uuid, created_at) VALUES ($1, $2, $3, {RANDOM_HEX40}, $4) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, parent_account_id = EXCLUDED.parent_account_id"))
            .bind(a.id)
            .bind(&a.name)
            .bind(a.parent_account_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        sum.accounts += 1;
    }
    // No loops in the account tree: walking up from an imported account must end at a root.
    for (i, a) in doc.accounts.iter().enumerate() {
        let mut seen = HashSet::new();
        let mut at = Some(a.id);
        while let Some(id) = at {
            if !seen.insert(id) {
                return Err(ImportError::at(
                    format!("accounts[{i}].parent_account_id"),
                    "this parent makes a loop in the account tree",
                ));
            }
            at = sqlx::query_scalar::<_, Option<i64>>(
                "SELECT parent_account_id FROM accounts WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .flatten();
        }
    }
    for (i, c) in doc.courses.iter().enumerate() {
        let p = format!("courses[{i}]");
        known(
            tx,
            &account_ids,
            "accounts",
            c.account_id,
            format!("{p}.account_id"),
            "account",
        )
        .await?;
        sqlx::query(&format!("INSERT INTO courses (id, account_id, name, created_at, lti_id, workflow_state) VALUES ($1, $2, $3, $4, COALESCE($5, {RANDOM_HEX40}), COALESCE($6, 'available')) ON CONFLICT (id) DO UPDATE SET account_id = EXCLUDED.account_id, name = EXCLUDED.name, lti_id = COALESCE($5, courses.lti_id), workflow_state = COALESCE($6, courses.workflow_state)"))
            .bind(c.id)
            .bind(c.account_id)
            .bind(&c.name)
            .bind(now)
            .bind(&c.lti_id)
            .bind(c.workflow_state.map(|s| s.as_str()))
            .execute(&mut **tx)
            .await
            .map_err(|e| unique_or(e, format!("{p}.lti_id"), "another course has this LTI id"))?;
        sum.courses += 1;
    }
    for (i, u) in doc.users.iter().enumerate() {
        let p = format!("users[{i}]");
        let taken: Option<i64> = sqlx::query_scalar(
            "SELECT user_id FROM user_past_lti_ids WHERE lti_id = $1 AND user_id <> $2",
        )
        .bind(&u.lti_id)
        .bind(u.id)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(other) = taken {
            return Err(ImportError::at(
                format!("{p}.lti_id"),
                format!("user {other} had this LTI id before"),
            ));
        }
        sqlx::query("INSERT INTO users (id, lti_id, name, sortable_name, short_name, email, workflow_state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, 'registered'), $8, $8) ON CONFLICT (id) DO UPDATE SET lti_id = EXCLUDED.lti_id, name = EXCLUDED.name, sortable_name = EXCLUDED.sortable_name, short_name = EXCLUDED.short_name, email = EXCLUDED.email, workflow_state = COALESCE($7, users.workflow_state), updated_at = EXCLUDED.updated_at")
            .bind(u.id)
            .bind(&u.lti_id)
            .bind(&u.name)
            .bind(u.sortable_name.as_deref().unwrap_or(&u.name))
            .bind(u.short_name.as_deref().unwrap_or(&u.name))
            .bind(&u.email)
            .bind(u.workflow_state.map(|s| s.as_str()))
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(|e| unique_or(e, format!("{p}.lti_id"), "another user has this LTI id"))?;
        sqlx::query("DELETE FROM user_past_lti_ids WHERE user_id = $1")
            .bind(u.id)
            .execute(&mut **tx)
            .await?;
        for (j, past) in u.past_lti_ids.iter().enumerate() {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT id FROM users WHERE lti_id = $1 AND id <> $2")
                    .bind(past)
                    .bind(u.id)
                    .fetch_optional(&mut **tx)
                    .await?;
            if let Some(other) = current {
                return Err(ImportError::at(
                    format!("{p}.past_lti_ids[{j}]"),
                    format!("this is user {other}'s LTI id"),
                ));
            }
            sqlx::query("INSERT INTO user_past_lti_ids (user_id, lti_id) VALUES ($1, $2)")
                .bind(u.id)
                .bind(past)
                .execute(&mut **tx)
                .await
                .map_err(|e| {
                    unique_or(
                        e,
                        format!("{p}.past_lti_ids[{j}]"),
                        "another user had this LTI id",
                    )
                })?;
        }
        sum.users += 1;
    }
    for (i, e) in doc.enrollments.iter().enumerate() {
        let p = format!("enrollments[{i}]");
        known(
            tx,
            &user_ids,
            "users",
            e.user_id,
            format!("{p}.user_id"),
            "user",
        )
        .await?;
        known(
            tx,
            &course_ids,
            "courses",
            e.course_id,
            format!("{p}.course_id"),
            "course",
        )
        .await?;
        sqlx::query("INSERT INTO enrollments (user_id, course_id, role, workflow_state) VALUES ($1, $2, $3, COALESCE($4, 'active')) ON CONFLICT (user_id, course_id, role) DO UPDATE SET workflow_state = EXCLUDED.workflow_state")
            .bind(e.user_id)
            .bind(e.course_id)
            .bind(e.role.as_str())
            .bind(e.workflow_state.map(|s| s.as_str()))
            .execute(&mut **tx)
            .await?;
        sum.enrollments += 1;
    }
    for (i, g) in doc.groups.iter().enumerate() {
        let p = format!("groups[{i}]");
        known(
            tx,
            &course_ids,
            "courses",
            g.course_id,
            format!("{p}.course_id"),
            "course",
        )
        .await?;
        sqlx::query("INSERT INTO groups (id, course_id, name, workflow_state) VALUES ($1, $2, $3, COALESCE($4, 'available')) ON CONFLICT (id) DO UPDATE SET course_id = EXCLUDED.course_id, name = EXCLUDED.name, workflow_state = COALESCE($4, groups.workflow_state)")
            .bind(g.id)
            .bind(g.course_id)
            .bind(&g.name)
            .bind(g.workflow_state.map(|s| s.as_str()))
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM group_memberships WHERE group_id = $1")
            .bind(g.id)
            .execute(&mut **tx)
            .await?;
        let mut members = HashSet::new();
        for (j, m) in g.members.iter().enumerate() {
            known(
                tx,
                &user_ids,
                "users",
                *m,
                format!("{p}.members[{j}]"),
                "user",
            )
            .await?;
            if !members.insert(*m) {
                return Err(ImportError::at(
                    format!("{p}.members[{j}]"),
                    "this user is listed twice",
                ));
            }
            sqlx::query("INSERT INTO group_memberships (group_id, user_id, workflow_state) VALUES ($1, $2, 'accepted')")
                .bind(g.id)
                .bind(m)
                .execute(&mut **tx)
                .await?;
        }
        sum.groups += 1;
    }
    let job = format!("import:{}", uuid::Uuid::new_v4());
    let with_bytes: HashSet<i64> = doc
        .submissions
        .iter()
        .flat_map(|s| &s.history)
        .flat_map(|v| &v.attachments)
        .filter(|a| a.content.is_some())
        .map(|a| a.id)
        .collect();
    for (i, a) in doc.assignments.iter().enumerate() {
        let p = format!("assignments[{i}]");
        known(
            tx,
            &course_ids,
            "courses",
            a.course_id,
            format!("{p}.course_id"),
            "course",
        )
        .await?;
        let before = assignment_fingerprint(tx, a.id).await?;
        let tool = a.plagiarism_tool.as_ref();
        sqlx::query("INSERT INTO assignments (id, course_id, lti_id, name, description, due_at, points_possible, submission_types, workflow_state, tool_vendor_code, tool_product_code, tool_resource_type_code, created_at, updated_at) VALUES ($1, $2, COALESCE($3, $4), $5, $6, $7, $8, $9, COALESCE($10, 'published'), $11, $12, $13, $14, $14) ON CONFLICT (id) DO UPDATE SET course_id = EXCLUDED.course_id, lti_id = COALESCE($3, assignments.lti_id), name = EXCLUDED.name, description = EXCLUDED.description, due_at = EXCLUDED.due_at, points_possible = EXCLUDED.points_possible, submission_types = EXCLUDED.submission_types, workflow_state = COALESCE($10, assignments.workflow_state), tool_vendor_code = EXCLUDED.tool_vendor_code, tool_product_code = EXCLUDED.tool_product_code, tool_resource_type_code = EXCLUDED.tool_resource_type_code, updated_at = EXCLUDED.updated_at")
            .bind(a.id)
            .bind(a.course_id)
            .bind(&a.lti_id)
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&a.name)
            .bind(&a.description)
            .bind(a.due_at.map(|t| t.0))
            .bind(a.points_possible)
            .bind(submission_types_json(a))
            .bind(a.workflow_state.map(|s| s.as_str()))
            .bind(tool.map(|t| t.vendor_code.clone()))
            .bind(tool.map(|t| t.product_code.clone()))
            .bind(tool.map(|t| t.resource_type_code.clone()))
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(|e| unique_or(e, format!("{p}.lti_id"), "another assignment has this LTI id"))?;
        sqlx::query("DELETE FROM assignment_overrides WHERE assignment_id = $1")
            .bind(a.id)
            .execute(&mut **tx)
            .await?;
        for (j, o) in a.overrides.iter().enumerate() {
            known(
                tx,
                &user_ids,
                "users",
                o.user_id,
                format!("{p}.overrides[{j}].user_id"),
                "user",
            )
            .await?;
            sqlx::query("INSERT INTO assignment_overrides (assignment_id, user_id, due_at) VALUES ($1, $2, $3)")
                .bind(a.id)
                .bind(o.user_id)
                .bind(o.due_at.map(|t| t.0))
                .execute(&mut **tx)
                .await?;
        }
        let after = assignment_fingerprint(tx, a.id).await?;
        match before {
            None => {
                super::postgres_webhooks::emit_assignment_event(
                    tx,
                    "assignment_created",
                    a.id,
                    &job,
                    now,
                )
                .await?
            }
            Some(b) if Some(&b) != after.as_ref() => {
                super::postgres_webhooks::emit_assignment_event(
                    tx,
                    "assignment_updated",
                    a.id,
                    &job,
                    now,
                )
                .await?
            }
            _ => {}
        }
        sum.assignments += 1;
    }
    for (i, s) in doc.submissions.iter().enumerate() {
        let p = format!("submissions[{i}]");
        known(
            tx,
            &assignment_ids,
            "assignments",
            s.assignment_id,
            format!("{p}.assignment_id"),
            "assignment",
        )
        .await?;
        known(
            tx,
            &user_ids,
            "users",
            s.user_id,
            format!("{p}.user_id"),
            "user",
        )
        .await?;
        if let Some(g) = s.group_id {
            known(
                tx,
                &group_ids,
                "groups",
                g,
                format!("{p}.group_id"),
                "group",
            )
            .await?;
            let same_course: Option<i64> = sqlx::query_scalar("SELECT 1::BIGINT FROM groups g JOIN assignments a ON a.course_id = g.course_id WHERE g.id = $1 AND a.id = $2")
                .bind(g)
                .bind(s.assignment_id)
                .fetch_optional(&mut **tx)
                .await?;
            if same_course.is_none() {
                return Err(ImportError::at(
                    format!("{p}.group_id"),
                    "the group is not in the assignment's course",
                ));
            }
        }
        let other: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM submissions WHERE assignment_id = $1 AND user_id = $2 AND id <> $3",
        )
        .bind(s.assignment_id)
        .bind(s.user_id)
        .bind(s.id)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(other) = other {
            return Err(ImportError::at(
                format!("{p}.id"),
                format!("this user's submission to this assignment is submission {other}"),
            ));
        }
        let owner: Option<(i64, i64)> =
            sqlx::query_as("SELECT assignment_id, user_id FROM submissions WHERE id = $1")
                .bind(s.id)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some(owner) = owner {
            if let Some(message) = submission_owner_changes(owner, (s.assignment_id, s.user_id)) {
                return Err(ImportError::at(format!("{p}.id"), message));
            }
        }
        let before = submission_fingerprint(tx, s.id).await?;
        let attempts_before: Vec<i64> =
            sqlx::query_scalar("SELECT attempt FROM submission_versions WHERE submission_id = $1")
                .bind(s.id)
                .fetch_all(&mut **tx)
                .await?;
        sqlx::query("INSERT INTO submissions (id, assignment_id, user_id, group_id, workflow_state, eula_agreement_timestamp, created_at, updated_at) VALUES ($1, $2, $3, $4, 'unsubmitted', $5, $6, $6) ON CONFLICT (id) DO UPDATE SET assignment_id = EXCLUDED.assignment_id, user_id = EXCLUDED.user_id, group_id = EXCLUDED.group_id, eula_agreement_timestamp = COALESCE(EXCLUDED.eula_agreement_timestamp, submissions.eula_agreement_timestamp), updated_at = EXCLUDED.updated_at")
            .bind(s.id)
            .bind(s.assignment_id)
            .bind(s.user_id)
            .bind(s.group_id)
            .bind(&s.eula_agreement_timestamp)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        for (j, v) in s.history.iter().enumerate() {
            let vp = format!("{p}.history[{j}]");
            sqlx::query("INSERT INTO submission_versions (submission_id, attempt, submitted_at, submission_type, body, url, workflow_state) VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, 'submitted')) ON CONFLICT (submission_id, attempt) DO UPDATE SET submitted_at = EXCLUDED.submitted_at, submission_type = EXCLUDED.submission_type, body = EXCLUDED.body, url = EXCLUDED.url, workflow_state = EXCLUDED.workflow_state")
                .bind(s.id)
                .bind(v.attempt)
                .bind(v.submitted_at.map(|t| t.0))
                .bind(v.submission_type.map(|t| t.as_str()))
                .bind(&v.body)
                .bind(&v.url)
                .bind(v.workflow_state.map(|t| t.as_str()))
                .execute(&mut **tx)
                .await?;
            sqlx::query("DELETE FROM submission_version_attachments WHERE submission_id = $1 AND attempt = $2")
                .bind(s.id)
                .bind(v.attempt)
                .execute(&mut **tx)
                .await?;
            for (k, a) in v.attachments.iter().enumerate() {
                let ap = format!("{vp}.attachments[{k}]");
                let stored: Option<String> =
                    sqlx::query_scalar("SELECT sha256 FROM attachments WHERE id = $1")
                        .bind(a.id)
                        .fetch_optional(&mut **tx)
                        .await?;
                match (&a.content, stored) {
                    (Some(c), Some(sha)) if c.sha256 != sha => {
                        return Err(ImportError::at(ap, format!("attachment {} is stored with other content; a file's bytes never change", a.id)));
                    }
                    (Some(c), _) => {
                        let (filename, display, ctype) = attachment_names(a);
                        sqlx::query("INSERT INTO attachments (id, sha256, size, filename, display_name, content_type, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO UPDATE SET filename = EXCLUDED.filename, display_name = EXCLUDED.display_name, content_type = EXCLUDED.content_type, updated_at = CASE WHEN attachments.filename = EXCLUDED.filename AND attachments.display_name = EXCLUDED.display_name AND attachments.content_type = EXCLUDED.content_type THEN attachments.updated_at ELSE EXCLUDED.updated_at END")
                            .bind(a.id)
                            .bind(&c.sha256)
                            .bind(c.size)
                            .bind(filename)
                            .bind(display)
                            .bind(ctype)
                            .bind(now)
                            .execute(&mut **tx)
                            .await?;
                        sum.attachments += 1;
                    }
                    (None, Some(_)) => {}
                    // Its bytes come later in the document (links are checked at commit).
                    (None, None) if with_bytes.contains(&a.id) => {}
                    (None, None) => {
                        return Err(ImportError::at(ap, format!("attachment {} is not stored yet: give its content_base64 (or path)", a.id)));
                    }
                }
                sqlx::query("INSERT INTO submission_version_attachments (submission_id, attempt, attachment_id, position) VALUES ($1, $2, $3, $4)")
                    .bind(s.id)
                    .bind(v.attempt)
                    .bind(a.id)
                    .bind(k as i64)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| unique_or(e, format!("{ap}.id"), "this attachment is listed twice in one attempt"))?;
            }
            sum.versions += 1;
        }
        // The submission mirrors its latest version.
        sqlx::query("UPDATE submissions SET attempt = v.attempt, submitted_at = v.submitted_at, submission_type = v.submission_type, body = v.body, url = v.url, workflow_state = COALESCE($1, v.workflow_state) FROM (SELECT attempt, submitted_at, submission_type, body, url, workflow_state FROM submission_versions WHERE submission_id = $2 ORDER BY attempt DESC LIMIT 1) AS v WHERE submissions.id = $2")
            .bind(s.workflow_state.map(|t| t.as_str()))
            .bind(s.id)
            .execute(&mut **tx)
            .await?;
        if let Some(state) = s.workflow_state {
            sqlx::query("UPDATE submissions SET workflow_state = $1 WHERE id = $2")
                .bind(state.as_str())
                .bind(s.id)
                .execute(&mut **tx)
                .await?;
        }
        // Live events, in this transaction (the outbox): one submission_created per new
        // attempt; otherwise submission_updated when anything changed.
        let new_attempts = new_attempts(&s.history, &attempts_before);
        if !new_attempts.is_empty() {
            for attempt in new_attempts {
                super::postgres_webhooks::emit_submission_event(
                    tx,
                    "submission_created",
                    s.id,
                    Some(attempt),
                    &job,
                    now,
                )
                .await?;
            }
        } else if before.is_some() && before != submission_fingerprint(tx, s.id).await? {
            super::postgres_webhooks::emit_submission_event(
                tx,
                "submission_updated",
                s.id,
                None,
                &job,
                now,
            )
            .await?;
        }
        sum.submissions += 1;
    }
    Ok(sum)
}
