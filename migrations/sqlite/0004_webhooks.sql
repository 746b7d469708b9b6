-- lti2: webhook subscriptions, the event outbox, and deliveries. Times are seconds since the
-- Unix epoch.

CREATE TABLE subscriptions (
    id                        TEXT    PRIMARY KEY,
    tool_proxy_guid           TEXT    NOT NULL REFERENCES tool_proxies(guid),
    developer_key_id          INTEGER,
    root_account_id           INTEGER NOT NULL,
    context_type              TEXT    NOT NULL CHECK (context_type IN ('root_account', 'assignment')),
    context_id                TEXT    NOT NULL,
    assignment_id             INTEGER,
    event_types               TEXT,
    system_event_types        TEXT,
    user_event_types          TEXT,
    format                    TEXT    NOT NULL,
    transport_type            TEXT    NOT NULL,
    url                       TEXT    NOT NULL,
    associated_integration_id TEXT,
    state                     TEXT    NOT NULL CHECK (state IN ('Active', 'Deleted', 'Deactivated')),
    automatic                 INTEGER NOT NULL DEFAULT 0,
    consecutive_failures      INTEGER NOT NULL DEFAULT 0,
    deactivated_reason        TEXT,
    created_at                INTEGER NOT NULL,
    updated_at                INTEGER NOT NULL
);
CREATE INDEX subscriptions_by_tool_proxy ON subscriptions (tool_proxy_guid, id);

-- The transactional outbox: written in the same transaction as the change it reports.
CREATE TABLE events (
    seq                       INTEGER PRIMARY KEY AUTOINCREMENT,
    id                        TEXT    NOT NULL UNIQUE,
    event_name                TEXT    NOT NULL,
    system                    INTEGER NOT NULL,
    root_account_id           INTEGER,
    assignment_id             INTEGER,
    associated_integration_id TEXT,
    message                   TEXT    NOT NULL,
    dispatched                INTEGER NOT NULL DEFAULT 0,
    created_at                INTEGER NOT NULL
);
CREATE INDEX events_undispatched ON events (dispatched, seq);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    event_seq       INTEGER NOT NULL REFERENCES events(seq),
    subscription_id TEXT    NOT NULL REFERENCES subscriptions(id),
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (event_seq, subscription_id)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
