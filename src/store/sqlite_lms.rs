//! [`LmsStore`] for SQLite: LMS records, originality reports, and the import transaction.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::lms::*;
use super::sqlite::{SqliteStore, CHAIN_FROM_COURSE};
use super::{ContextKind, ContextRef, StoreError};
use crate::import::{ImportDoc, ImportError, ImportSummary};

const REPORT_COLUMNS: &str = "id, submission_id, attachment_id, originality_score, originality_report_attachment_id, originality_report_url, workflow_state, error_message, submission_time, root_account_id, link_resource_type_code, link_resource_url, link_vendor_code, link_product_code, link_resource_link_id, created_at, updated_at";

const ASSIGNMENT_COLUMNS: &str = "id, course_id, lti_id, name, description, due_at, points_possible, submission_types, workflow_state, tool_vendor_code, tool_product_code, tool_resource_type_code";

const USER_COLUMNS: &str = "u.id, u.lti_id, u.name, u.sortable_name, u.short_name, u.email";

fn user_row(r: &SqliteRow) -> UserRecord {
    UserRecord {
        id: r.get(0),
        lti_id: r.get(1),
        name: r.get(2),
        sortable_name: r.get(3),
        short_name: r.get(4),
        email: r.get(5),
    }
}

fn assignment_row(r: &SqliteRow) -> AssignmentRecord {
    let vendor: Option<String> = r.get(9);
    let product: Option<String> = r.get(10);
    let rt: Option<String> = r.get(11);
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
        tool: tool_lookup(vendor, product, rt),
    }
}

fn report_row(r: &SqliteRow) -> OriginalityReport {
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

fn attachment_row(r: &SqliteRow, at: usize) -> AttachmentRecord {
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

async fn write_report(
    tx: &mut Transaction<'_, Sqlite>,
    r: &OriginalityReport,
    insert: bool,
) -> Result<i64, sqlx::Error> {
    let link = r.link.as_ref();
    let sql = if insert {
        "INSERT INTO originality_reports (submission_id, attachment_id, originality_score, originality_report_attachment_id, originality_report_url, workflow_state, error_message, submission_time, root_account_id, link_resource_type_code, link_resource_url, link_vendor_code, link_product_code, link_resource_link_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
    } else {
        "UPDATE originality_reports SET submission_id = ?, attachment_id = ?, originality_score = ?, originality_report_attachment_id = ?, originality_report_url = ?, workflow_state = ?, error_message = ?, submission_time = ?, root_account_id = ?, link_resource_type_code = ?, link_resource_url = ?, link_vendor_code = ?, link_product_code = ?, link_resource_link_id = ?, created_at = ?, updated_at = ? WHERE id = ? RETURNING id"
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
impl LmsStore for SqliteStore {
    async fn user_by_any_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let by_past = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users u JOIN user_past_lti_ids p ON p.user_id = u.id WHERE p.lti_id = ? AND u.workflow_state <> 'deleted'"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        if let Some(r) = by_past {
            return Ok(Some(user_row(&r)));
        }
        let by_lti = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.lti_id = ? AND u.workflow_state <> 'deleted'"))
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
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = ? AND u.workflow_state <> 'deleted'"
        ))
        .bind(num)
        .fetch_optional(self.pool())
        .await?;
        Ok(by_id.as_ref().map(user_row))
    }

    async fn user(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(user_row))
    }

    async fn course(&self, id: i64) -> Result<Option<CourseRecord>, StoreError> {
        let row =
            sqlx::query("SELECT id, account_id, lti_id, workflow_state FROM courses WHERE id = ?")
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
            "SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE id = ?"
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
            "SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE lti_id = ?"
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
            "SELECT due_at FROM assignment_overrides WHERE assignment_id = ? AND user_id = ?",
        )
        .bind(assignment_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn is_student(&self, user_id: i64, course_id: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM enrollments WHERE user_id = ? AND course_id = ? AND role = 'student' AND workflow_state = 'active'")
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
        let codes = serde_json::to_string(resource_type_codes).expect("strings serialise");
        Ok(sqlx::query(
            "SELECT 1 FROM enrollments e JOIN courses c ON c.id = e.course_id JOIN assignments a ON a.course_id = c.id WHERE e.user_id = ? AND e.workflow_state = 'active' AND c.workflow_state <> 'deleted' AND a.workflow_state <> 'deleted' AND a.tool_vendor_code = ? AND a.tool_product_code = ? AND a.tool_resource_type_code IN (SELECT value FROM json_each(?)) LIMIT 1",
        )
        .bind(user_id)
        .bind(lookup_vendor)
        .bind(lookup_product)
        .bind(codes)
        .fetch_optional(self.pool())
        .await?
        .is_some())
    }

    async fn submission(&self, id: i64) -> Result<Option<SubmissionRecord>, StoreError> {
        let Some(r) = sqlx::query("SELECT id, assignment_id, user_id, group_id, workflow_state, attempt, submitted_at, submission_type, body, url, eula_agreement_timestamp FROM submissions WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let versions = sqlx::query("SELECT attempt, submitted_at, submission_type, body, url, workflow_state FROM submission_versions WHERE submission_id = ? ORDER BY attempt")
            .bind(id)
            .fetch_all(self.pool())
            .await?;
        let files = sqlx::query("SELECT l.attempt, a.id, a.sha256, a.size, a.filename, a.display_name, a.content_type, a.created_at, a.updated_at FROM submission_version_attachments l JOIN attachments a ON a.id = l.attachment_id WHERE l.submission_id = ? ORDER BY l.attempt, l.position")
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
            "SELECT id FROM submissions WHERE assignment_id = ? AND user_id = ?",
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
        let row = sqlx::query("SELECT id, sha256, size, filename, display_name, content_type, created_at, updated_at FROM attachments WHERE id = ?")
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
            "SELECT MIN(submission_id) FROM submission_version_attachments WHERE attachment_id = ?",
        )
        .bind(attachment_id)
        .fetch_one(self.pool())
        .await?)
    }

    async fn group(&self, id: i64) -> Result<Option<GroupRecord>, StoreError> {
        let row = sqlx::query("SELECT id, course_id, workflow_state FROM groups WHERE id = ?")
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
        let filter = "FROM users u JOIN group_memberships m ON m.user_id = u.id WHERE m.group_id = ? AND m.workflow_state = 'accepted' AND u.workflow_state <> 'deleted'";
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) {filter}"))
            .bind(group_id)
            .fetch_one(self.pool())
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} {filter} ORDER BY u.id LIMIT ? OFFSET ?"
        ))
        .bind(group_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        Ok((rows.iter().map(user_row).collect(), total))
    }

    async fn tool_facts(&self, guid: &str) -> Result<ToolFacts, StoreError> {
        let mut facts = ToolFacts::default();
        if let Some(r) = sqlx::query("SELECT pf.vendor_code, pf.product_code FROM tool_proxies tp JOIN product_families pf ON pf.id = tp.product_family_id WHERE tp.guid = ?")
            .bind(guid)
            .fetch_optional(self.pool())
            .await?
        {
            facts.vendor_code = r.get(0);
            facts.product_code = r.get(1);
        }
        let handlers = sqlx::query("SELECT rh.resource_type_code, EXISTS (SELECT 1 FROM message_handlers mh, json_each(mh.capabilities) c WHERE mh.resource_handler_id = rh.id AND c.value = 'Canvas.placements.similarityDetection') FROM resource_handlers rh WHERE rh.tool_proxy_guid = ? ORDER BY rh.id")
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
        let bindings = sqlx::query("SELECT context_type, context_id, enabled FROM tool_proxy_bindings WHERE tool_proxy_guid = ?")
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
            "SELECT {REPORT_COLUMNS} FROM originality_reports WHERE id = ?"
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
        let row = sqlx::query(&format!("SELECT {REPORT_COLUMNS} FROM originality_reports WHERE submission_id = ? AND attachment_id IS ? ORDER BY id LIMIT 1"))
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
        let row = sqlx::query(&format!("SELECT {REPORT_COLUMNS} FROM originality_reports WHERE attachment_id = ? ORDER BY id LIMIT 1"))
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
        let row = sqlx::query(&format!("SELECT {REPORT_COLUMNS} FROM originality_reports WHERE submission_id = ? AND attachment_id IS NULL AND submission_time IS ? ORDER BY id LIMIT 1"))
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
            let members: Vec<i64> = sqlx::query_scalar("SELECT id FROM submissions WHERE assignment_id = ? AND group_id = ? AND id <> ? AND workflow_state <> 'deleted' ORDER BY id")
                .bind(assignment_id)
                .bind(group_id)
                .bind(saved.submission_id)
                .fetch_all(&mut *tx)
                .await?;
            for member in members {
                let newer = sqlx::query("SELECT 1 FROM originality_reports WHERE submission_id = ? AND attachment_id IS ? AND updated_at >= ?")
                    .bind(member)
                    .bind(saved.attachment_id)
                    .bind(saved.updated_at)
                    .fetch_optional(&mut *tx)
                    .await?;
                if newer.is_some() {
                    continue;
                }
                sqlx::query("DELETE FROM originality_reports WHERE submission_id = ? AND attachment_id IS ?")
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
        sqlx::query("PRAGMA defer_foreign_keys = ON")
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
            sqlx::query("SELECT 1 FROM attachments WHERE sha256 = ? LIMIT 1")
                .bind(sha256)
                .fetch_optional(self.pool())
                .await?
                .is_some(),
        )
    }
}

async fn exists(
    tx: &mut Transaction<'_, Sqlite>,
    table: &str,
    id: i64,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(&format!("SELECT 1 FROM {table} WHERE id = ?"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
}

/// `id` is in the document's list or in the table.
async fn known(
    tx: &mut Transaction<'_, Sqlite>,
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
    tx: &mut Transaction<'_, Sqlite>,
    id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT json_array(course_id, lti_id, name, description, due_at, points_possible, submission_types, workflow_state, tool_vendor_code, tool_product_code, tool_resource_type_code) FROM assignments WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// What a submission and its versions look like to its events (None when it does not exist).
async fn submission_fingerprint(
    tx: &mut Transaction<'_, Sqlite>,
    id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT json_array(s.assignment_id, s.user_id, s.group_id, s.workflow_state, s.eula_agreement_timestamp, (SELECT json_group_array(json_array(v.attempt, v.submitted_at, v.submission_type, v.body, v.url, v.workflow_state, (SELECT json_group_array(l.attachment_id) FROM (SELECT attachment_id FROM submission_version_attachments WHERE submission_id = v.submission_id AND attempt = v.attempt ORDER BY position) l))) FROM (SELECT * FROM submission_versions WHERE submission_id = s.id ORDER BY attempt) v)) FROM submissions s WHERE s.id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

async fn import_in(
    tx: &mut Transaction<'_, Sqlite>,
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
        sqlx::query("INSERT INTO accounts (id, name, parent_account_id, uuid, created_at) VALUES (?, ?, ?, lower(hex(randomblob(20))), ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, parent_account_id = excluded.parent_account_id")
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
                "SELECT parent_account_id FROM accounts WHERE id = ?",
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
        sqlx::query("INSERT INTO courses (id, account_id, name, created_at, lti_id, workflow_state) VALUES (?, ?, ?, ?, coalesce(?, lower(hex(randomblob(20)))), coalesce(?, 'available')) ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, name = excluded.name, lti_id = coalesce(?, courses.lti_id), workflow_state = coalesce(?, courses.workflow_state)")
            .bind(c.id)
            .bind(c.account_id)
            .bind(&c.name)
            .bind(now)
            .bind(&c.lti_id)
            .bind(c.workflow_state.map(|s| s.as_str()))
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
            "SELECT user_id FROM user_past_lti_ids WHERE lti_id = ? AND user_id <> ?",
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
        sqlx::query("INSERT INTO users (id, lti_id, name, sortable_name, short_name, email, workflow_state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, coalesce(?, 'registered'), ?, ?) ON CONFLICT (id) DO UPDATE SET lti_id = excluded.lti_id, name = excluded.name, sortable_name = excluded.sortable_name, short_name = excluded.short_name, email = excluded.email, workflow_state = coalesce(?, users.workflow_state), updated_at = excluded.updated_at")
            .bind(u.id)
            .bind(&u.lti_id)
            .bind(&u.name)
            .bind(u.sortable_name.as_deref().unwrap_or(&u.name))
            .bind(u.short_name.as_deref().unwrap_or(&u.name))
            .bind(&u.email)
            .bind(u.workflow_state.map(|s| s.as_str()))
            .bind(now)
            .bind(now)
            .bind(u.workflow_state.map(|s| s.as_str()))
            .execute(&mut **tx)
            .await
            .map_err(|e| unique_or(e, format!("{p}.lti_id"), "another user has this LTI id"))?;
        sqlx::query("DELETE FROM user_past_lti_ids WHERE user_id = ?")
            .bind(u.id)
            .execute(&mut **tx)
            .await?;
        for (j, past) in u.past_lti_ids.iter().enumerate() {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT id FROM users WHERE lti_id = ? AND id <> ?")
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
            sqlx::query("INSERT INTO user_past_lti_ids (user_id, lti_id) VALUES (?, ?)")
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
        sqlx::query("INSERT INTO enrollments (user_id, course_id, role, workflow_state) VALUES (?, ?, ?, coalesce(?, 'active')) ON CONFLICT (user_id, course_id, role) DO UPDATE SET workflow_state = excluded.workflow_state")
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
        sqlx::query("INSERT INTO groups (id, course_id, name, workflow_state) VALUES (?, ?, ?, coalesce(?, 'available')) ON CONFLICT (id) DO UPDATE SET course_id = excluded.course_id, name = excluded.name, workflow_state = coalesce(?, groups.workflow_state)")
            .bind(g.id)
            .bind(g.course_id)
            .bind(&g.name)
            .bind(g.workflow_state.map(|s| s.as_str()))
            .bind(g.workflow_state.map(|s| s.as_str()))
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM group_memberships WHERE group_id = ?")
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
            sqlx::query("INSERT INTO group_memberships (group_id, user_id, workflow_state) VALUES (?, ?, 'accepted')")
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
        sqlx::query("INSERT INTO assignments (id, course_id, lti_id, name, description, due_at, points_possible, submission_types, workflow_state, tool_vendor_code, tool_product_code, tool_resource_type_code, created_at, updated_at) VALUES (?, ?, coalesce(?, ?), ?, ?, ?, ?, ?, coalesce(?, 'published'), ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET course_id = excluded.course_id, lti_id = coalesce(?, assignments.lti_id), name = excluded.name, description = excluded.description, due_at = excluded.due_at, points_possible = excluded.points_possible, submission_types = excluded.submission_types, workflow_state = coalesce(?, assignments.workflow_state), tool_vendor_code = excluded.tool_vendor_code, tool_product_code = excluded.tool_product_code, tool_resource_type_code = excluded.tool_resource_type_code, updated_at = excluded.updated_at")
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
            .bind(now)
            .bind(&a.lti_id)
            .bind(a.workflow_state.map(|s| s.as_str()))
            .execute(&mut **tx)
            .await
            .map_err(|e| unique_or(e, format!("{p}.lti_id"), "another assignment has this LTI id"))?;
        sqlx::query("DELETE FROM assignment_overrides WHERE assignment_id = ?")
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
            sqlx::query("INSERT INTO assignment_overrides (assignment_id, user_id, due_at) VALUES (?, ?, ?)")
                .bind(a.id)
                .bind(o.user_id)
                .bind(o.due_at.map(|t| t.0))
                .execute(&mut **tx)
                .await?;
        }
        let after = assignment_fingerprint(tx, a.id).await?;
        match before {
            None => {
                super::sqlite_webhooks::emit_assignment_event(
                    tx,
                    "assignment_created",
                    a.id,
                    &job,
                    now,
                )
                .await?
            }
            Some(b) if Some(&b) != after.as_ref() => {
                super::sqlite_webhooks::emit_assignment_event(
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
            let same_course: Option<i64> = sqlx::query_scalar("SELECT 1 FROM groups g JOIN assignments a ON a.course_id = g.course_id WHERE g.id = ? AND a.id = ?")
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
            "SELECT id FROM submissions WHERE assignment_id = ? AND user_id = ? AND id <> ?",
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
            sqlx::query_as("SELECT assignment_id, user_id FROM submissions WHERE id = ?")
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
            sqlx::query_scalar("SELECT attempt FROM submission_versions WHERE submission_id = ?")
                .bind(s.id)
                .fetch_all(&mut **tx)
                .await?;
        sqlx::query("INSERT INTO submissions (id, assignment_id, user_id, group_id, workflow_state, eula_agreement_timestamp, created_at, updated_at) VALUES (?, ?, ?, ?, 'unsubmitted', ?, ?, ?) ON CONFLICT (id) DO UPDATE SET assignment_id = excluded.assignment_id, user_id = excluded.user_id, group_id = excluded.group_id, eula_agreement_timestamp = coalesce(excluded.eula_agreement_timestamp, submissions.eula_agreement_timestamp), updated_at = excluded.updated_at")
            .bind(s.id)
            .bind(s.assignment_id)
            .bind(s.user_id)
            .bind(s.group_id)
            .bind(&s.eula_agreement_timestamp)
            .bind(now)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        for (j, v) in s.history.iter().enumerate() {
            let vp = format!("{p}.history[{j}]");
            sqlx::query("INSERT INTO submission_versions (submission_id, attempt, submitted_at, submission_type, body, url, workflow_state) VALUES (?, ?, ?, ?, ?, ?, coalesce(?, 'submitted')) ON CONFLICT (submission_id, attempt) DO UPDATE SET submitted_at = excluded.submitted_at, submission_type = excluded.submission_type, body = excluded.body, url = excluded.url, workflow_state = excluded.workflow_state")
                .bind(s.id)
                .bind(v.attempt)
                .bind(v.submitted_at.map(|t| t.0))
                .bind(v.submission_type.map(|t| t.as_str()))
                .bind(&v.body)
                .bind(&v.url)
                .bind(v.workflow_state.map(|t| t.as_str()))
                .execute(&mut **tx)
                .await?;
            sqlx::query("DELETE FROM submission_version_attachments WHERE submission_id = ? AND attempt = ?")
                .bind(s.id)
                .bind(v.attempt)
                .execute(&mut **tx)
                .await?;
            for (k, a) in v.attachments.iter().enumerate() {
                let ap = format!("{vp}.attachments[{k}]");
                let stored: Option<String> =
                    sqlx::query_scalar("SELECT sha256 FROM attachments WHERE id = ?")
                        .bind(a.id)
                        .fetch_optional(&mut **tx)
                        .await?;
                match (&a.content, stored) {
                    (Some(c), Some(sha)) if c.sha256 != sha => {
                        return Err(ImportError::at(ap, format!("attachment {} is stored with other content; a file's bytes never change", a.id)));
                    }
                    (Some(c), _) => {
                        let (filename, display, ctype) = attachment_names(a);
                        sqlx::query("INSERT INTO attachments (id, sha256, size, filename, display_name, content_type, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET filename = excluded.filename, display_name = excluded.display_name, content_type = excluded.content_type, updated_at = CASE WHEN attachments.filename = excluded.filename AND attachments.display_name = excluded.display_name AND attachments.content_type = excluded.content_type THEN attachments.updated_at ELSE excluded.updated_at END")
                            .bind(a.id)
                            .bind(&c.sha256)
                            .bind(c.size)
                            .bind(filename)
                            .bind(display)
                            .bind(ctype)
                            .bind(now)
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
                sqlx::query("INSERT INTO submission_version_attachments (submission_id, attempt, attachment_id, position) VALUES (?, ?, ?, ?)")
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
        sqlx::query("UPDATE submissions SET attempt = v.attempt, submitted_at = v.submitted_at, submission_type = v.submission_type, body = v.body, url = v.url, workflow_state = coalesce(?, v.workflow_state) FROM (SELECT attempt, submitted_at, submission_type, body, url, workflow_state FROM submission_versions WHERE submission_id = ? ORDER BY attempt DESC LIMIT 1) AS v WHERE submissions.id = ?")
            .bind(s.workflow_state.map(|t| t.as_str()))
            .bind(s.id)
            .bind(s.id)
            .execute(&mut **tx)
            .await?;
        if let Some(state) = s.workflow_state {
            sqlx::query("UPDATE submissions SET workflow_state = ? WHERE id = ?")
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
                super::sqlite_webhooks::emit_submission_event(
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
            super::sqlite_webhooks::emit_submission_event(
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
