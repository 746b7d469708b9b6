//! The LMS records the plagiarism-platform APIs read, the originality reports they write, and
//! the store trait over them ([`LmsStore`]). Times are seconds since the epoch.

use async_trait::async_trait;
use serde::Serialize;

use super::{ContextRef, StoreError};
use crate::import::{
    ImportAssignment, ImportAttachment, ImportDoc, ImportError, ImportSummary, ImportVersion,
};

/// A user (Canvas `User` with its opaque LTI id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    /// The Canvas id.
    pub id: i64,
    /// The opaque LTI id (`lti_context_id`).
    pub lti_id: String,
    /// Full name.
    pub name: String,
    /// "Last, First".
    pub sortable_name: String,
    /// Display name.
    pub short_name: String,
    /// Primary e-mail, if any.
    pub email: Option<String>,
}

/// A course.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseRecord {
    /// Its id.
    pub id: i64,
    /// Its account.
    pub account_id: i64,
    /// Its opaque LTI id.
    pub lti_id: String,
    /// `available`, `completed` or `deleted`.
    pub workflow_state: String,
}

/// The plagiarism tool an assignment is configured with (Canvas
/// `AssignmentConfigurationToolLookup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolLookup {
    /// The tool's vendor code.
    pub vendor_code: String,
    /// The tool's product code.
    pub product_code: String,
    /// The resource handler's resource type code.
    pub resource_type_code: String,
}

/// An assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentRecord {
    /// Its id.
    pub id: i64,
    /// Its course.
    pub course_id: i64,
    /// Its opaque LTI id.
    pub lti_id: String,
    /// Name.
    pub name: String,
    /// HTML description.
    pub description: Option<String>,
    /// Due date.
    pub due_at: Option<i64>,
    /// Points possible.
    pub points_possible: Option<f64>,
    /// e.g. `online_upload`, `online_text_entry`.
    pub submission_types: Vec<String>,
    /// `published`, `unpublished` or `deleted`.
    pub workflow_state: String,
    /// The plagiarism tool, if one is configured.
    pub tool: Option<ToolLookup>,
}

impl AssignmentRecord {
    /// Whether a report must name a file: the assignment does not take text entries (Canvas
    /// `OriginalityReportsApiController#attachment_required?`).
    pub fn attachment_required(&self) -> bool {
        !self
            .submission_types
            .iter()
            .any(|t| t == "online_text_entry")
    }
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachmentRecord {
    /// Its id.
    pub id: i64,
    /// SHA-256 of the bytes, lowercase hex (the file's name in the file store).
    pub sha256: String,
    /// Bytes.
    pub size: i64,
    /// Stored file name.
    pub filename: String,
    /// Name shown to people.
    pub display_name: String,
    /// Media type.
    pub content_type: String,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch.
    pub updated_at: i64,
}

/// One version (attempt) of a submission.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionVersion {
    /// The attempt number.
    pub attempt: i64,
    /// When it was submitted.
    pub submitted_at: Option<i64>,
    /// e.g. `online_upload`.
    pub submission_type: Option<String>,
    /// Text entry body.
    pub body: Option<String>,
    /// URL submission.
    pub url: Option<String>,
    /// Its state.
    pub workflow_state: String,
    /// Its files, in order.
    pub attachments: Vec<AttachmentRecord>,
}

/// A submission with its whole history (oldest version first); the submission itself mirrors
/// the latest version.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionRecord {
    /// Its id.
    pub id: i64,
    /// Its assignment.
    pub assignment_id: i64,
    /// Its user.
    pub user_id: i64,
    /// The group it was submitted for, if any.
    pub group_id: Option<i64>,
    /// `submitted`, `graded`, … or `deleted`.
    pub workflow_state: String,
    /// The current attempt.
    pub attempt: Option<i64>,
    /// When the current attempt was submitted.
    pub submitted_at: Option<i64>,
    /// The current attempt's type.
    pub submission_type: Option<String>,
    /// The current attempt's body.
    pub body: Option<String>,
    /// The current attempt's URL.
    pub url: Option<String>,
    /// When the student agreed to the tool's EULA (milliseconds since the epoch, as text).
    pub eula_agreement_timestamp: Option<String>,
    /// Every version, oldest first.
    pub history: Vec<SubmissionVersion>,
}

impl SubmissionRecord {
    /// Whether it is active (not deleted).
    pub fn active(&self) -> bool {
        self.workflow_state != "deleted"
    }

    /// The current version's files.
    pub fn current_attachments(&self) -> &[AttachmentRecord] {
        self.history
            .iter()
            .rev()
            .find(|v| Some(v.attempt) == self.attempt)
            .or(self.history.last())
            .map(|v| v.attachments.as_slice())
            .unwrap_or(&[])
    }

    /// Whether a file is in any version of its history.
    pub fn has_attachment(&self, attachment_id: i64) -> bool {
        self.history
            .iter()
            .any(|v| v.attachments.iter().any(|a| a.id == attachment_id))
    }
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Its id.
    pub id: i64,
    /// Its course.
    pub course_id: i64,
    /// `available` or `deleted`.
    pub workflow_state: String,
}

/// What the association checks need to know about a tool proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolFacts {
    /// Vendor code of its product family (None when created by the console).
    pub vendor_code: Option<String>,
    /// Product code of its product family.
    pub product_code: Option<String>,
    /// Its resource handlers' codes.
    pub resource_type_codes: Vec<String>,
    /// The codes of its resource handlers that have a similarity-detection message handler.
    pub similarity_resource_type_codes: Vec<String>,
    /// Where it is installed: (context, enabled).
    pub bindings: Vec<(ContextRef, bool)>,
}

/// An originality report's LTI link (Canvas `Lti::Link`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLink {
    /// Resource handler code.
    pub resource_type_code: String,
    /// Launch URL override.
    pub resource_url: Option<String>,
    /// The tool's vendor code.
    pub vendor_code: String,
    /// The tool's product code.
    pub product_code: String,
    /// A unique id (UUID).
    pub resource_link_id: String,
}

/// An originality report (Canvas `OriginalityReport`).
#[derive(Debug, Clone, PartialEq)]
pub struct OriginalityReport {
    /// Its id (0 before it is saved).
    pub id: i64,
    /// The submission.
    pub submission_id: i64,
    /// The scored file (JSON `file_id`).
    pub attachment_id: Option<i64>,
    /// 0–100.
    pub originality_score: Option<f64>,
    /// A file holding the report.
    pub originality_report_attachment_id: Option<i64>,
    /// A link to the report.
    pub originality_report_url: Option<String>,
    /// `pending`, `error` or `scored`.
    pub workflow_state: String,
    /// Why scoring failed.
    pub error_message: Option<String>,
    /// The submitted_at of the version scored.
    pub submission_time: Option<i64>,
    /// The submission's root account.
    pub root_account_id: Option<i64>,
    /// The LTI link.
    pub link: Option<ReportLink>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch.
    pub updated_at: i64,
}

/// The LMS records and originality reports.
#[async_trait]
pub trait LmsStore: Send + Sync {
    /// An active user by past LTI id, LTI id, or Canvas id, tried in that order (Canvas
    /// `UsersApiController#user`).
    async fn user_by_any_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    /// A user by Canvas id, whatever its state.
    async fn user(&self, id: i64) -> Result<Option<UserRecord>, StoreError>;
    /// A course.
    async fn course(&self, id: i64) -> Result<Option<CourseRecord>, StoreError>;
    /// The accounts above a course, nearest first (its account, then the parents).
    async fn account_chain(&self, course_id: i64) -> Result<Vec<i64>, StoreError>;
    /// An assignment by id.
    async fn assignment(&self, id: i64) -> Result<Option<AssignmentRecord>, StoreError>;
    /// An assignment by LTI id.
    async fn assignment_by_lti_id(
        &self,
        lti_id: &str,
    ) -> Result<Option<AssignmentRecord>, StoreError>;
    /// A user's due date override on an assignment: `Some(due_at)` when there is one.
    async fn due_at_override(
        &self,
        assignment_id: i64,
        user_id: i64,
    ) -> Result<Option<Option<i64>>, StoreError>;
    /// Whether the user has an active student enrollment in the course.
    async fn is_student(&self, user_id: i64, course_id: i64) -> Result<bool, StoreError>;
    /// Whether the user is enrolled (active) in an available course with a published
    /// assignment configured for this tool (vendor, product, one of the resource type codes)
    /// (Canvas `UsersApiController#user_in_context?` for U1).
    async fn user_has_tool_assignment(
        &self,
        user_id: i64,
        lookup_vendor: &str,
        lookup_product: &str,
        resource_type_codes: &[String],
    ) -> Result<bool, StoreError>;
    /// A submission with its history.
    async fn submission(&self, id: i64) -> Result<Option<SubmissionRecord>, StoreError>;
    /// The submission of a user to an assignment.
    async fn submission_for(
        &self,
        assignment_id: i64,
        user_id: i64,
    ) -> Result<Option<SubmissionRecord>, StoreError>;
    /// A file.
    async fn attachment(&self, id: i64) -> Result<Option<AttachmentRecord>, StoreError>;
    /// The first submission (lowest id) with the file in any version (Canvas's first
    /// `AttachmentAssociation`).
    async fn submission_with_attachment(
        &self,
        attachment_id: i64,
    ) -> Result<Option<i64>, StoreError>;
    /// A group.
    async fn group(&self, id: i64) -> Result<Option<GroupRecord>, StoreError>;
    /// A page of a group's participating users (accepted members, not deleted), by id; and the
    /// total count.
    async fn group_users(
        &self,
        group_id: i64,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<UserRecord>, i64), StoreError>;
    /// What the association checks need about a tool proxy.
    async fn tool_facts(&self, guid: &str) -> Result<ToolFacts, StoreError>;
    /// A report by id.
    async fn originality_report(&self, id: i64) -> Result<Option<OriginalityReport>, StoreError>;
    /// The newest report of a submission for a file (or with no file when `attachment_id` is
    /// None).
    async fn report_for(
        &self,
        submission_id: i64,
        attachment_id: Option<i64>,
    ) -> Result<Option<OriginalityReport>, StoreError>;
    /// The newest report for a file, whatever its submission.
    async fn report_for_attachment(
        &self,
        attachment_id: i64,
    ) -> Result<Option<OriginalityReport>, StoreError>;
    /// The report of a submission with no file whose `submission_time` is this time.
    async fn report_at_time(
        &self,
        submission_id: i64,
        submission_time: Option<i64>,
    ) -> Result<Option<OriginalityReport>, StoreError>;
    /// Inserts (`id` 0) or updates a report and, when `group_id` is given, copies it to the
    /// submissions of the other members of that group for the same assignment (Canvas
    /// `CopyToGroup`: a member's report for the same file that is at least as recent is kept;
    /// older ones are replaced; a copy keeps `updated_at`, has no `submission_time`, and a new
    /// link id). One transaction. Returns the saved report.
    async fn save_originality_report(
        &self,
        report: &OriginalityReport,
        group: Option<(i64, i64)>,
    ) -> Result<OriginalityReport, StoreError>;
    /// Imports LMS records (upserts by id), all or nothing.
    async fn import(&self, doc: &ImportDoc, now: i64) -> Result<ImportSummary, ImportError>;
    /// The largest id in use for submissions and for attachments (to pick new ones).
    async fn max_ids(&self) -> Result<(i64, i64), StoreError>;
    /// Whether any attachment row uses this content.
    async fn content_referenced(&self, sha256: &str) -> Result<bool, StoreError>;
}

// Backend-independent pieces of the store implementations (SQLite and PostgreSQL).

/// The tool lookup of an assignment row: all three codes, or none.
pub(super) fn tool_lookup(
    vendor: Option<String>,
    product: Option<String>,
    resource_type: Option<String>,
) -> Option<ToolLookup> {
    match (vendor, product, resource_type) {
        (Some(vendor_code), Some(product_code), Some(resource_type_code)) => Some(ToolLookup {
            vendor_code,
            product_code,
            resource_type_code,
        }),
        _ => None,
    }
}

/// The copy of a saved report for another member's submission (Canvas `CopyToGroup`): no id
/// yet, no `submission_time`, and a new link id.
pub(super) fn group_copy(
    saved: &OriginalityReport,
    member_submission_id: i64,
) -> OriginalityReport {
    OriginalityReport {
        id: 0,
        submission_id: member_submission_id,
        submission_time: None,
        link: saved.link.clone().map(|l| ReportLink {
            resource_link_id: uuid::Uuid::new_v4().to_string(),
            ..l
        }),
        ..saved.clone()
    }
}

/// A unique violation becomes an error at `path` saying `message`; other errors pass through.
pub(super) fn unique_or(e: sqlx::Error, path: String, message: &str) -> ImportError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return ImportError::at(path, message.to_owned());
        }
    }
    ImportError::from(e)
}

/// The error for a reference to a record that is neither in the document nor stored.
pub(super) fn unknown_record(path: String, what: &str, id: i64) -> ImportError {
    ImportError::at(
        path,
        format!("there is no {what} {id}, in the document or the database"),
    )
}

/// An imported assignment's submission types as stored (JSON list; default
/// `["online_upload"]`).
pub(super) fn submission_types_json(a: &ImportAssignment) -> String {
    let types: Vec<&str> = match &a.submission_types {
        Some(t) => t.iter().map(|t| t.as_str()).collect(),
        None => vec!["online_upload"],
    };
    serde_json::to_string(&types).expect("strings serialise")
}

/// An imported attachment's (filename, display name, content type), with their defaults:
/// the display name or `file-<id>`; the filename; `application/octet-stream`.
pub(super) fn attachment_names(a: &ImportAttachment) -> (String, String, String) {
    let filename = a
        .filename
        .clone()
        .or_else(|| a.display_name.clone())
        .unwrap_or_else(|| format!("file-{}", a.id));
    let display = a.display_name.clone().unwrap_or_else(|| filename.clone());
    let ctype = a
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    (filename, display, ctype)
}

/// The attempts of an imported history that were not stored before, ascending.
pub(super) fn new_attempts(history: &[ImportVersion], attempts_before: &[i64]) -> Vec<i64> {
    let mut new: Vec<i64> = history
        .iter()
        .map(|v| v.attempt)
        .filter(|a| !attempts_before.contains(a))
        .collect();
    new.sort_unstable();
    new
}

/// A submission belongs to one assignment and one user for good (as in Canvas): an import that
/// gives an existing submission id another assignment or user is refused (it would hand one
/// student's work to another). `owner` and `given` are `(assignment_id, user_id)`.
pub(super) fn submission_owner_changes(owner: (i64, i64), given: (i64, i64)) -> Option<String> {
    (owner != given).then(|| {
        format!(
            "submission is user {}'s submission to assignment {}; a submission's assignment and user never change",
            owner.1, owner.0
        )
    })
}
