-- lti2: contexts, credentials, signing keys, nonces. Times are seconds since the Unix epoch.

CREATE TABLE accounts (
    id                INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL DEFAULT '',
    parent_account_id INTEGER REFERENCES accounts(id),
    uuid              TEXT    NOT NULL,
    created_at        INTEGER NOT NULL
);
INSERT INTO accounts (id, name, uuid, created_at)
VALUES (1, 'Default Account', lower(hex(randomblob(20))), 0);

CREATE TABLE courses (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    name       TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);

CREATE TABLE developer_keys (
    id             INTEGER PRIMARY KEY,
    secret_enc     BLOB    NOT NULL,
    name           TEXT,
    workflow_state TEXT    NOT NULL CHECK (workflow_state IN ('active', 'inactive', 'deleted')),
    created_at     INTEGER NOT NULL
);

CREATE TABLE tool_proxies (
    guid               TEXT    PRIMARY KEY,
    secret_enc         BLOB    NOT NULL,
    workflow_state     TEXT    NOT NULL CHECK (workflow_state IN ('active', 'disabled', 'deleted')),
    enabled_capability TEXT    NOT NULL DEFAULT '[]',
    tool_service       TEXT    NOT NULL DEFAULT '[]',
    developer_key_id   INTEGER REFERENCES developer_keys(id),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

CREATE TABLE registrations (
    reg_key          TEXT    PRIMARY KEY,
    reg_password_enc BLOB    NOT NULL,
    context_type     TEXT    NOT NULL CHECK (context_type IN ('account', 'course')),
    context_id       INTEGER NOT NULL,
    tool_url         TEXT,
    expires_at       INTEGER NOT NULL,
    consumed_at      INTEGER,
    created_at       INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kid        TEXT    NOT NULL UNIQUE,
    key_enc    BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);

-- The durable log of claimed (resolved sub, jti) pairs, kept until exp + 60 s, then purged.
-- Appended in batches by the serving process, which also holds every unexpired pair in memory
-- and checks uniqueness there (one `lti2 serve` per SQLite file, enforced by a lock file): a
-- unique index on random jtis would dirty one random page per claim.
CREATE TABLE nonces (
    sub        TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX nonces_by_expiry ON nonces (expires_at);

-- Bumped by triggers on every change a cache depends on, by whatever process makes it.
CREATE TABLE change_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
);
INSERT INTO change_epoch (id, epoch) VALUES (1, 0);

CREATE TRIGGER accounts_ins AFTER INSERT ON accounts BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER accounts_upd AFTER UPDATE ON accounts BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER accounts_del AFTER DELETE ON accounts BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER courses_ins AFTER INSERT ON courses BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER courses_upd AFTER UPDATE ON courses BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER courses_del AFTER DELETE ON courses BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER developer_keys_ins AFTER INSERT ON developer_keys BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER developer_keys_upd AFTER UPDATE ON developer_keys BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER developer_keys_del AFTER DELETE ON developer_keys BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER tool_proxies_ins AFTER INSERT ON tool_proxies BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER tool_proxies_upd AFTER UPDATE ON tool_proxies BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER tool_proxies_del AFTER DELETE ON tool_proxies BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER signing_keys_ins AFTER INSERT ON signing_keys BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER signing_keys_del AFTER DELETE ON signing_keys BEGIN UPDATE change_epoch SET epoch = epoch + 1; END;
