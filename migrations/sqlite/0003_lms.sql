-- lti2: the LMS records the plagiarism-platform APIs read (users, enrollments, groups,
-- assignments, submissions with their history, attachments) and the originality reports they
-- write. Times are seconds since the Unix epoch; ids are Canvas ids (one shard: global = local).

ALTER TABLE courses ADD COLUMN lti_id TEXT;
ALTER TABLE courses ADD COLUMN workflow_state TEXT NOT NULL DEFAULT 'available'
    CHECK (workflow_state IN ('available', 'completed', 'deleted'));
UPDATE courses SET lti_id = lower(hex(randomblob(20))) WHERE lti_id IS NULL;
CREATE UNIQUE INDEX courses_by_lti_id ON courses (lti_id);

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    lti_id         TEXT    NOT NULL UNIQUE,
    name           TEXT    NOT NULL DEFAULT '',
    sortable_name  TEXT    NOT NULL DEFAULT '',
    short_name     TEXT    NOT NULL DEFAULT '',
    email          TEXT,
    workflow_state TEXT    NOT NULL DEFAULT 'registered' CHECK (workflow_state IN ('registered', 'deleted')),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- LTI ids a user had before (Canvas `user_past_lti_ids`); U1 and G1 accept them.
CREATE TABLE user_past_lti_ids (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    lti_id  TEXT    NOT NULL UNIQUE
);
CREATE INDEX user_past_lti_ids_by_user ON user_past_lti_ids (user_id);

CREATE TABLE enrollments (
    user_id        INTEGER NOT NULL REFERENCES users(id),
    course_id      INTEGER NOT NULL REFERENCES courses(id),
    role           TEXT    NOT NULL CHECK (role IN ('student', 'teacher', 'ta', 'designer', 'observer')),
    workflow_state TEXT    NOT NULL DEFAULT 'active' CHECK (workflow_state IN ('active', 'completed', 'deleted')),
    PRIMARY KEY (user_id, course_id, role)
);
CREATE INDEX enrollments_by_course ON enrollments (course_id);

CREATE TABLE groups (
    id             INTEGER PRIMARY KEY,
    course_id      INTEGER NOT NULL REFERENCES courses(id),
    name           TEXT    NOT NULL DEFAULT '',
    workflow_state TEXT    NOT NULL DEFAULT 'available' CHECK (workflow_state IN ('available', 'deleted'))
);

CREATE TABLE group_memberships (
    group_id       INTEGER NOT NULL REFERENCES groups(id),
    user_id        INTEGER NOT NULL REFERENCES users(id),
    workflow_state TEXT    NOT NULL DEFAULT 'accepted' CHECK (workflow_state IN ('accepted', 'deleted')),
    PRIMARY KEY (group_id, user_id)
);

CREATE TABLE assignments (
    id                      INTEGER PRIMARY KEY,
    course_id               INTEGER NOT NULL REFERENCES courses(id),
    lti_id                  TEXT    NOT NULL UNIQUE,
    name                    TEXT    NOT NULL DEFAULT '',
    description             TEXT,
    due_at                  INTEGER,
    points_possible         REAL,
    submission_types        TEXT    NOT NULL DEFAULT '[]',
    workflow_state          TEXT    NOT NULL DEFAULT 'published' CHECK (workflow_state IN ('published', 'unpublished', 'deleted')),
    -- The plagiarism tool chosen for it (Canvas `assignment_configuration_tool_lookups`).
    tool_vendor_code        TEXT,
    tool_product_code       TEXT,
    tool_resource_type_code TEXT,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL
);
CREATE INDEX assignments_by_course ON assignments (course_id);

-- A per-student due date (an ad-hoc assignment override).
CREATE TABLE assignment_overrides (
    assignment_id INTEGER NOT NULL REFERENCES assignments(id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users(id),
    due_at        INTEGER,
    PRIMARY KEY (assignment_id, user_id)
);

-- Stored files: the bytes live under the data directory at files/<sha256[0..2]>/<sha256>.
CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY,
    sha256       TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    filename     TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX attachments_by_sha256 ON attachments (sha256);

-- A submission mirrors its latest version.
CREATE TABLE submissions (
    id                       INTEGER PRIMARY KEY,
    assignment_id            INTEGER NOT NULL REFERENCES assignments(id),
    user_id                  INTEGER NOT NULL REFERENCES users(id),
    group_id                 INTEGER REFERENCES groups(id),
    workflow_state           TEXT    NOT NULL DEFAULT 'submitted'
        CHECK (workflow_state IN ('unsubmitted', 'submitted', 'pending_review', 'graded', 'deleted')),
    attempt                  INTEGER,
    submitted_at             INTEGER,
    submission_type          TEXT,
    body                     TEXT,
    url                      TEXT,
    eula_agreement_timestamp TEXT,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL,
    UNIQUE (assignment_id, user_id)
);

-- Every version of a submission (Canvas `submission.versions`), one per attempt.
CREATE TABLE submission_versions (
    submission_id   INTEGER NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    submitted_at    INTEGER,
    submission_type TEXT,
    body            TEXT,
    url             TEXT,
    workflow_state  TEXT    NOT NULL DEFAULT 'submitted',
    PRIMARY KEY (submission_id, attempt)
);

CREATE TABLE submission_version_attachments (
    submission_id INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    attachment_id INTEGER NOT NULL REFERENCES attachments(id),
    position      INTEGER NOT NULL,
    PRIMARY KEY (submission_id, attempt, attachment_id),
    FOREIGN KEY (submission_id, attempt) REFERENCES submission_versions(submission_id, attempt) ON DELETE CASCADE
);
CREATE INDEX submission_version_attachments_by_attachment ON submission_version_attachments (attachment_id);

CREATE TABLE originality_reports (
    id                               INTEGER PRIMARY KEY,
    submission_id                    INTEGER NOT NULL REFERENCES submissions(id),
    attachment_id                    INTEGER,
    originality_score                REAL,
    originality_report_attachment_id INTEGER,
    originality_report_url           TEXT,
    workflow_state                   TEXT    NOT NULL CHECK (workflow_state IN ('pending', 'error', 'scored')),
    error_message                    TEXT,
    submission_time                  INTEGER,
    root_account_id                  INTEGER,
    -- The optional LTI link (Canvas `lti_links`).
    link_resource_type_code          TEXT,
    link_resource_url                TEXT,
    link_vendor_code                 TEXT,
    link_product_code                TEXT,
    link_resource_link_id            TEXT UNIQUE,
    created_at                       INTEGER NOT NULL,
    updated_at                       INTEGER NOT NULL
);
CREATE INDEX originality_reports_by_submission ON originality_reports (submission_id);
CREATE INDEX originality_reports_by_attachment ON originality_reports (attachment_id);
