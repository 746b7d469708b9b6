//! Loading LMS records: the import document (`lti2 admin import FILE.json`,
//! `POST /api/admin/import`) and the content-addressed file store.
//!
//! The document is JSON with optional lists `accounts`, `courses`, `users`, `enrollments`,
//! `groups`, `assignments` and `submissions` (the README shows every field). Every record is
//! upserted by its id, so importing the same document twice changes nothing. A document that
//! does not parse, names an unknown field, repeats an id, or refers to a record that is neither
//! in the document nor in the database is refused with the JSON path of the offending field,
//! and nothing is written.
//!
//! Files: an attachment carries its bytes as `content_base64`, or (from the command line only)
//! as a `path` relative to the document. Bytes are stored once under
//! `<data_dir>/files/<sha256[0..2]>/<sha256>`, written and synced before the database commits;
//! if the commit fails, files this import added that no row refers to are removed again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::store::lms::ToolLookup;
use crate::store::StoreError;

/// Why an import was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A field is wrong: its JSON path (e.g. `submissions[0].history[1].attachments[0].path`)
    /// and what is wrong with it.
    #[error("{path}: {message}")]
    Invalid {
        /// The JSON path of the offending field.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    /// An invalid field.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ImportError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Store(StoreError::Database(e))
    }
}

/// How many records an import wrote, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Accounts.
    pub accounts: usize,
    /// Courses.
    pub courses: usize,
    /// Users.
    pub users: usize,
    /// Enrollments.
    pub enrollments: usize,
    /// Groups.
    pub groups: usize,
    /// Assignments.
    pub assignments: usize,
    /// Submissions.
    pub submissions: usize,
    /// Submission versions.
    pub versions: usize,
    /// Attachments.
    pub attachments: usize,
}

/// A time: RFC 3339 text in the document, seconds since the epoch inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_time(&s)
            .map(Timestamp)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses an RFC 3339 time (`2026-12-01T23:59:00Z`, `2012-07-01T23:59:00-06:00`) into seconds
/// since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| format!("'{s}' is not an RFC 3339 time such as 2026-12-01T23:59:00Z"))
}

/// Formats seconds since the epoch as RFC 3339 in UTC (`2017-10-17T14:28:09Z`), as Canvas's
/// JSON shows times.
pub fn format_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

macro_rules! states {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[doc = concat!("A `", stringify!($name), "` value.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
        pub enum $name {
            $(
                #[doc = $text]
                #[serde(rename = $text)]
                $variant,
            )+
        }
        impl $name {
            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
    };
}

states!(CourseState { Available => "available", Completed => "completed", Deleted => "deleted" });
states!(UserState { Registered => "registered", Deleted => "deleted" });
states!(Role { Student => "student", Teacher => "teacher", Ta => "ta", Designer => "designer", Observer => "observer" });
states!(EnrollmentState { Active => "active", Completed => "completed", Deleted => "deleted" });
states!(GroupState { Available => "available", Deleted => "deleted" });
states!(AssignmentState { Published => "published", Unpublished => "unpublished", Deleted => "deleted" });
states!(SubmissionState { Unsubmitted => "unsubmitted", Submitted => "submitted", PendingReview => "pending_review", Graded => "graded", Deleted => "deleted" });
states!(SubmissionType {
    OnlineUpload => "online_upload",
    OnlineTextEntry => "online_text_entry",
    OnlineUrl => "online_url",
    MediaRecording => "media_recording",
    OnPaper => "on_paper",
    ExternalTool => "external_tool",
    None => "none",
});

fn default_role() -> Role {
    Role::Student
}

/// The import document.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportDoc {
    /// Accounts (account 1 exists already).
    #[serde(default)]
    pub accounts: Vec<ImportAccount>,
    /// Courses.
    #[serde(default)]
    pub courses: Vec<ImportCourse>,
    /// Users.
    #[serde(default)]
    pub users: Vec<ImportUser>,
    /// Enrollments.
    #[serde(default)]
    pub enrollments: Vec<ImportEnrollment>,
    /// Groups with their members.
    #[serde(default)]
    pub groups: Vec<ImportGroup>,
    /// Assignments.
    #[serde(default)]
    pub assignments: Vec<ImportAssignment>,
    /// Submissions with their history.
    #[serde(default)]
    pub submissions: Vec<ImportSubmission>,
}

/// An account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportAccount {
    /// Positive id.
    pub id: i64,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Parent account.
    pub parent_account_id: Option<i64>,
}

/// A course.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportCourse {
    /// Positive id.
    pub id: i64,
    /// Its account.
    pub account_id: i64,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Opaque LTI id (default: kept, or a new random one).
    pub lti_id: Option<String>,
    /// Default `available`.
    pub workflow_state: Option<CourseState>,
}

/// A user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportUser {
    /// Positive id.
    pub id: i64,
    /// Opaque LTI id.
    pub lti_id: String,
    /// LTI ids the user had before.
    #[serde(default)]
    pub past_lti_ids: Vec<String>,
    /// Full name.
    #[serde(default)]
    pub name: String,
    /// Default: the name.
    pub sortable_name: Option<String>,
    /// Default: the name.
    pub short_name: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Default `registered`.
    pub workflow_state: Option<UserState>,
}

/// An enrollment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportEnrollment {
    /// The user.
    pub user_id: i64,
    /// The course.
    pub course_id: i64,
    /// Default `student`.
    #[serde(default = "default_role")]
    pub role: Role,
    /// Default `active`.
    pub workflow_state: Option<EnrollmentState>,
}

/// A group and its members (the member list replaces the stored one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportGroup {
    /// Positive id.
    pub id: i64,
    /// Its course.
    pub course_id: i64,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Default `available`.
    pub workflow_state: Option<GroupState>,
    /// Member user ids.
    #[serde(default)]
    pub members: Vec<i64>,
}

/// A per-student due date.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportOverride {
    /// The student.
    pub user_id: i64,
    /// Their due date (null: none).
    pub due_at: Option<Timestamp>,
}

/// An assignment (its overrides replace the stored ones).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportAssignment {
    /// Positive id.
    pub id: i64,
    /// Its course.
    pub course_id: i64,
    /// Opaque LTI id (default: kept, or a new UUID).
    pub lti_id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// HTML description.
    pub description: Option<String>,
    /// Due date.
    pub due_at: Option<Timestamp>,
    /// Points possible.
    pub points_possible: Option<f64>,
    /// Submission types (default `["online_upload"]`).
    pub submission_types: Option<Vec<SubmissionType>>,
    /// Default `published`.
    pub workflow_state: Option<AssignmentState>,
    /// The plagiarism tool chosen for it.
    pub plagiarism_tool: Option<ToolLookup>,
    /// Per-student due dates.
    #[serde(default)]
    pub overrides: Vec<ImportOverride>,
}

/// A submission and its history.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSubmission {
    /// Positive id.
    pub id: i64,
    /// Its assignment.
    pub assignment_id: i64,
    /// Its user.
    pub user_id: i64,
    /// The group it was submitted for (group assignments).
    pub group_id: Option<i64>,
    /// EULA agreement time, milliseconds since the epoch as text (Canvas's format).
    pub eula_agreement_timestamp: Option<String>,
    /// Default: the latest version's state.
    pub workflow_state: Option<SubmissionState>,
    /// Versions by attempt (upserted; versions not listed are kept).
    #[serde(default)]
    pub history: Vec<ImportVersion>,
}

/// One attempt.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportVersion {
    /// 1, 2, …
    pub attempt: i64,
    /// When it was submitted.
    pub submitted_at: Option<Timestamp>,
    /// Its type.
    pub submission_type: Option<SubmissionType>,
    /// Text entry body.
    pub body: Option<String>,
    /// URL.
    pub url: Option<String>,
    /// Default `submitted`.
    pub workflow_state: Option<SubmissionState>,
    /// Its files (the list replaces the stored one for this attempt).
    #[serde(default)]
    pub attachments: Vec<ImportAttachment>,
}

/// A file of an attempt: new bytes (`content_base64`, or `path` from the command line), or
/// none to keep an attachment that is already stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportAttachment {
    /// Positive id.
    pub id: i64,
    /// Stored file name (default: the display name, or `file-<id>`).
    pub filename: Option<String>,
    /// Shown name (default: the filename).
    pub display_name: Option<String>,
    /// Media type (default `application/octet-stream`).
    pub content_type: Option<String>,
    /// A file to read, relative to the document (command line only).
    pub path: Option<String>,
    /// The bytes, base64.
    pub content_base64: Option<String>,
    /// Filled in by [`load_files`]: the stored content.
    #[serde(skip)]
    pub content: Option<Content>,
}

/// Stored bytes: their SHA-256 (lowercase hex) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// SHA-256, hex.
    pub sha256: String,
    /// Bytes.
    pub size: i64,
}

/// Largest import document (bytes) accepted over HTTP.
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;

/// Parses an import document. Errors name the JSON path of the offending field.
pub fn parse(bytes: &[u8]) -> Result<ImportDoc, ImportError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ImportError::at("$", format!("not JSON: {e}")))?;
    no_nul("", &value)?;
    records_are_objects(&value)?;
    let doc: ImportDoc = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "$".to_owned() } else { path };
        ImportError::at(path, e.inner().to_string())
    })?;
    check(&doc)?;
    Ok(doc)
}

/// No text of the document may hold a NUL character (PostgreSQL text cannot store one; the
/// HTTP routes refuse it for the same reason): the error names the first such field.
fn no_nul(path: &str, v: &serde_json::Value) -> Result<(), ImportError> {
    let here = || {
        if path.is_empty() {
            "$".to_owned()
        } else {
            path.to_owned()
        }
    };
    match v {
        serde_json::Value::String(s) if s.contains('\0') => Err(ImportError::at(
            here(),
            "must not contain a NUL character (\\u0000)",
        )),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| no_nul(&format!("{path}[{i}]"), item)),
        serde_json::Value::Object(m) => m.iter().try_for_each(|(k, item)| {
            if k.contains('\0') {
                return Err(ImportError::at(here(), "a key contains a NUL character"));
            }
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            no_nul(&p, item)
        }),
        _ => Ok(()),
    }
}

/// serde would read a record written as a JSON array positionally; every record must be an
/// object.
fn records_are_objects(v: &serde_json::Value) -> Result<(), ImportError> {
    fn each<'a>(
        v: &'a serde_json::Value,
        key: &str,
        path: &str,
    ) -> Result<Vec<(String, &'a serde_json::Value)>, ImportError> {
        let mut out = Vec::new();
        if let Some(serde_json::Value::Array(items)) = v.get(key) {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}{key}[{i}]");
                if !item.is_object() {
                    return Err(ImportError::at(p, "must be a JSON object"));
                }
                out.push((p, item));
            }
        }
        Ok(out)
    }
    if !v.is_object() {
        return Err(ImportError::at("$", "the document must be a JSON object"));
    }
    for key in ["accounts", "courses", "users", "enrollments", "groups"] {
        each(v, key, "")?;
    }
    for (p, a) in each(v, "assignments", "")? {
        each(a, "overrides", &format!("{p}."))?;
        if let Some(t) = a.get("plagiarism_tool") {
            if !t.is_object() && !t.is_null() {
                return Err(ImportError::at(
                    format!("{p}.plagiarism_tool"),
                    "must be a JSON object",
                ));
            }
        }
    }
    for (p, s) in each(v, "submissions", "")? {
        for (vp, version) in each(s, "history", &format!("{p}."))? {
            each(version, "attachments", &format!("{vp}."))?;
        }
    }
    Ok(())
}

fn positive(path: String, id: i64) -> Result<(), ImportError> {
    if id <= 0 {
        return Err(ImportError::at(path, "ids are positive integers"));
    }
    Ok(())
}

fn unique<T: std::hash::Hash + Eq>(
    seen: &mut HashSet<T>,
    key: T,
    path: String,
) -> Result<(), ImportError> {
    if !seen.insert(key) {
        return Err(ImportError::at(
            path,
            "this id appears twice in the document",
        ));
    }
    Ok(())
}

/// An LTI id or a tool code is at most [`crate::store::MAX_IDENTIFIER_LEN`] characters.
fn identifier(path: String, value: &str) -> Result<(), ImportError> {
    crate::store::check_identifier(value).map_err(|e| ImportError::at(path, e))
}

/// Checks what can be checked without the database: positive and unique ids, attempts,
/// points, and one source of bytes per attachment.
fn check(doc: &ImportDoc) -> Result<(), ImportError> {
    let mut seen = HashSet::new();
    for (i, a) in doc.accounts.iter().enumerate() {
        positive(format!("accounts[{i}].id"), a.id)?;
        unique(&mut seen, a.id, format!("accounts[{i}].id"))?;
    }
    let mut seen = HashSet::new();
    for (i, c) in doc.courses.iter().enumerate() {
        positive(format!("courses[{i}].id"), c.id)?;
        unique(&mut seen, c.id, format!("courses[{i}].id"))?;
        if c.lti_id.as_deref().is_some_and(|l| l.trim().is_empty()) {
            return Err(ImportError::at(
                format!("courses[{i}].lti_id"),
                "must not be empty",
            ));
        }
        if let Some(l) = &c.lti_id {
            identifier(format!("courses[{i}].lti_id"), l)?;
        }
    }
    let mut seen = HashSet::new();
    let mut lti_ids = HashSet::new();
    for (i, u) in doc.users.iter().enumerate() {
        positive(format!("users[{i}].id"), u.id)?;
        unique(&mut seen, u.id, format!("users[{i}].id"))?;
        if u.lti_id.trim().is_empty() {
            return Err(ImportError::at(
                format!("users[{i}].lti_id"),
                "must not be empty",
            ));
        }
        for (j, l) in std::iter::once(&u.lti_id)
            .chain(&u.past_lti_ids)
            .enumerate()
        {
            let path = if j == 0 {
                format!("users[{i}].lti_id")
            } else {
                format!("users[{i}].past_lti_ids[{}]", j - 1)
            };
            identifier(path.clone(), l)?;
            if !lti_ids.insert(l.clone()) {
                return Err(ImportError::at(
                    path,
                    "this LTI id appears twice in the document",
                ));
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, e) in doc.enrollments.iter().enumerate() {
        unique(
            &mut seen,
            (e.user_id, e.course_id, e.role.as_str()),
            format!("enrollments[{i}]"),
        )?;
    }
    let mut seen = HashSet::new();
    for (i, g) in doc.groups.iter().enumerate() {
        positive(format!("groups[{i}].id"), g.id)?;
        unique(&mut seen, g.id, format!("groups[{i}].id"))?;
    }
    let mut seen = HashSet::new();
    for (i, a) in doc.assignments.iter().enumerate() {
        positive(format!("assignments[{i}].id"), a.id)?;
        unique(&mut seen, a.id, format!("assignments[{i}].id"))?;
        if let Some(l) = &a.lti_id {
            identifier(format!("assignments[{i}].lti_id"), l)?;
        }
        if a.points_possible.is_some_and(|p| !p.is_finite() || p < 0.0) {
            return Err(ImportError::at(
                format!("assignments[{i}].points_possible"),
                "must be a number ≥ 0",
            ));
        }
        if let Some(t) = &a.plagiarism_tool {
            for (k, v) in [
                ("vendor_code", &t.vendor_code),
                ("product_code", &t.product_code),
                ("resource_type_code", &t.resource_type_code),
            ] {
                if v.trim().is_empty() {
                    return Err(ImportError::at(
                        format!("assignments[{i}].plagiarism_tool.{k}"),
                        "must not be empty",
                    ));
                }
                identifier(format!("assignments[{i}].plagiarism_tool.{k}"), v)?;
            }
        }
        let mut users = HashSet::new();
        for (j, o) in a.overrides.iter().enumerate() {
            unique(
                &mut users,
                o.user_id,
                format!("assignments[{i}].overrides[{j}].user_id"),
            )?;
        }
    }
    let mut seen = HashSet::new();
    let mut attachment_ids = HashSet::new();
    for (i, s) in doc.submissions.iter().enumerate() {
        positive(format!("submissions[{i}].id"), s.id)?;
        unique(&mut seen, s.id, format!("submissions[{i}].id"))?;
        if s.eula_agreement_timestamp
            .as_deref()
            .is_some_and(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ImportError::at(
                format!("submissions[{i}].eula_agreement_timestamp"),
                "must be milliseconds since the epoch, as digits",
            ));
        }
        let mut attempts = HashSet::new();
        for (j, v) in s.history.iter().enumerate() {
            let vp = format!("submissions[{i}].history[{j}]");
            if v.attempt <= 0 {
                return Err(ImportError::at(
                    format!("{vp}.attempt"),
                    "attempts start at 1",
                ));
            }
            unique(&mut attempts, v.attempt, format!("{vp}.attempt"))?;
            for (k, a) in v.attachments.iter().enumerate() {
                let ap = format!("{vp}.attachments[{k}]");
                positive(format!("{ap}.id"), a.id)?;
                if a.path.is_some() && a.content_base64.is_some() {
                    return Err(ImportError::at(
                        ap,
                        "give either path or content_base64, not both",
                    ));
                }
                // One attachment may appear in several attempts (a resubmission keeps a
                // file), but its bytes are given once.
                if (a.path.is_some() || a.content_base64.is_some()) && !attachment_ids.insert(a.id)
                {
                    return Err(ImportError::at(
                        format!("{ap}.id"),
                        "the bytes of this attachment are given twice",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The content-addressed file store under `<data_dir>/files`.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// The store under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("files"),
        }
    }

    /// Where the bytes with this SHA-256 are kept.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("00");
        self.root.join(prefix).join(sha256)
    }

    /// Stores bytes (written to a temporary file, synced, then renamed into place); returns
    /// their content and whether this call created the file.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<(Content, bool)> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let content = Content {
            sha256: sha256.clone(),
            size: bytes.len() as i64,
        };
        let dest = self.path_of(&sha256);
        if dest.exists() {
            return Ok((content, false));
        }
        let dir = dest.parent().expect("a parent directory");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{sha256}.{}.tmp", uuid::Uuid::new_v4().simple()));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &dest)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok((content, true))
    }

    /// Removes stored bytes.
    pub fn remove(&self, sha256: &str) {
        let _ = std::fs::remove_file(self.path_of(sha256));
    }
}

/// Reads the bytes of every attachment that carries some (`content_base64`, or `path`
/// relative to `base_dir` when it is given; over HTTP `path` is refused) into the file store,
/// and records their content on the attachment. Returns the SHA-256 of the files this call
/// created, to remove if the import then fails.
pub fn load_files(
    doc: &mut ImportDoc,
    files: &FileStore,
    base_dir: Option<&Path>,
) -> Result<Vec<String>, ImportError> {
    let mut created = Vec::new();
    let result = (|| {
        for (i, s) in doc.submissions.iter_mut().enumerate() {
            for (j, v) in s.history.iter_mut().enumerate() {
                for (k, a) in v.attachments.iter_mut().enumerate() {
                    let ap = format!("submissions[{i}].history[{j}].attachments[{k}]");
                    let bytes = if let Some(b64) = &a.content_base64 {
                        base64::engine::general_purpose::STANDARD
                            .decode(b64.trim())
                            .map_err(|_| {
                                ImportError::at(format!("{ap}.content_base64"), "is not base64")
                            })?
                    } else if let Some(p) = &a.path {
                        let Some(base) = base_dir else {
                            return Err(ImportError::at(format!("{ap}.path"), "files can only be read from disk by `lti2 admin import`; send content_base64"));
                        };
                        // A document can only name files in its own directory tree.
                        let full = base.join(p);
                        let inside = match (full.canonicalize(), base.canonicalize()) {
                            (Ok(f), Ok(b)) => f.starts_with(&b),
                            _ => false,
                        };
                        if !inside {
                            return Err(ImportError::at(
                                format!("{ap}.path"),
                                format!("{p}: not a readable file inside the document's directory"),
                            ));
                        }
                        std::fs::read(&full).map_err(|e| {
                            ImportError::at(
                                format!("{ap}.path"),
                                format!("{}: {e}", full.display()),
                            )
                        })?
                    } else {
                        continue;
                    };
                    let (content, new) = files.put(&bytes).map_err(|e| {
                        ImportError::Store(StoreError::Invalid(format!("cannot store a file: {e}")))
                    })?;
                    if new {
                        created.push(content.sha256.clone());
                    }
                    a.content = Some(content);
                }
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(created),
        Err(e) => {
            for sha in &created {
                files.remove(sha);
            }
            Err(e)
        }
    }
}

/// Imports a document: stores its files, then writes every record in one transaction. If the
/// transaction fails, the files this import added that no row refers to are removed. `base_dir`
/// is where `path`s are read from (None: `path` is refused, as over HTTP).
pub async fn run(
    store: &dyn crate::store::Store,
    files: &FileStore,
    mut doc: ImportDoc,
    base_dir: Option<&Path>,
    now: i64,
) -> Result<ImportSummary, ImportError> {
    let created = load_files(&mut doc, files, base_dir)?;
    match store.import(&doc, now).await {
        Ok(summary) => Ok(summary),
        Err(e) => {
            for sha in &created {
                if !store.content_referenced(sha).await.unwrap_or(true) {
                    files.remove(sha);
                }
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_offending_field() {
        let e = parse(br#"{"submissions":[{"id":1,"assignment_id":2,"user_id":3,"history":[{"attempt":1,"submitted_at":"yesterday"}]}]}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("submissions[0].history[0].submitted_at: "),
            "{e}"
        );
        let e = parse(br#"{"users":[{"id":1,"lti_id":"a","nmae":"x"}]}"#).unwrap_err();
        assert!(e.to_string().starts_with("users[0].nmae"), "{e}");
        let e =
            parse(br#"{"courses":[{"id":1,"account_id":1},{"id":1,"account_id":1}]}"#).unwrap_err();
        assert!(e.to_string().starts_with("courses[1].id: "), "{e}");
        let e = parse(br#"{"assignments":[{"id":1,"course_id":1,"submission_types":["essay"]}]}"#)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("assignments[0].submission_types[0]"),
            "{e}"
        );
        let e = parse(br#"[]"#).unwrap_err();
        assert!(matches!(e, ImportError::Invalid { .. }));
        let e = parse(br#"{"users":[[1,"lti"]]}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("users[0]: must be a JSON object"),
            "{e}"
        );
        let e = parse(br#"{"submissions":[{"id":1,"assignment_id":1,"user_id":1,"history":[{"attempt":1,"attachments":[[5]]}]}]}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("submissions[0].history[0].attachments[0]: "),
            "{e}"
        );
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{}"#).is_ok());
    }

    #[test]
    fn times_round_trip() {
        assert_eq!(parse_time("2012-07-01T23:59:00-06:00").unwrap(), 1341208740);
        assert_eq!(format_time(1341208740), "2012-07-02T05:59:00Z");
        assert!(parse_time("2012-07-01").is_err());
    }

    #[test]
    fn files_are_stored_once_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FileStore::new(dir.path());
        let (c, new) = fs.put(b"hello").unwrap();
        assert!(new);
        assert_eq!(c.size, 5);
        assert_eq!(std::fs::read(fs.path_of(&c.sha256)).unwrap(), b"hello");
        let (c2, new2) = fs.put(b"hello").unwrap();
        assert_eq!((c2, new2), (c, false));
    }
}
