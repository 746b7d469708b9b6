-- lti2: LTI 2 registration (IMS ToolProxy records, custom tool consumer profiles).
-- Times are seconds since the Unix epoch. JSON columns hold arrays or objects as text.

-- The vendor code a developer key registers tools for (Canvas `developer_keys.vendor_code`):
-- a tool proxy whose vendor code has developer keys must be registered with one of them.
ALTER TABLE developer_keys ADD COLUMN vendor_code TEXT;
CREATE INDEX developer_keys_by_vendor_code ON developer_keys (vendor_code);

-- A custom tool consumer profile: the restricted services and capabilities one developer key
-- unlocks (Canvas `lti_tool_consumer_profiles`).
CREATE TABLE tool_consumer_profiles (
    uuid             TEXT    PRIMARY KEY,
    developer_key_id INTEGER NOT NULL UNIQUE REFERENCES developer_keys(id),
    services         TEXT    NOT NULL DEFAULT '[]',
    capabilities     TEXT    NOT NULL DEFAULT '[]',
    created_at       INTEGER NOT NULL
);

-- Canvas `lti_product_families`: one per (vendor code, product code, developer key).
CREATE TABLE product_families (
    id                 INTEGER PRIMARY KEY,
    vendor_code        TEXT    NOT NULL,
    product_code       TEXT    NOT NULL,
    developer_key_id   INTEGER REFERENCES developer_keys(id),
    vendor_name        TEXT    NOT NULL DEFAULT '',
    vendor_description TEXT,
    website            TEXT,
    vendor_email       TEXT,
    created_at         INTEGER NOT NULL
);
CREATE UNIQUE INDEX product_families_by_codes
    ON product_families (vendor_code, product_code, ifnull(developer_key_id, 0));

-- What registration adds to a tool proxy. `raw_data` is the ToolProxy JSON as registered;
-- `update_payload` a re-registration waiting for the admin (with its new secret sealed apart).
ALTER TABLE tool_proxies ADD COLUMN product_family_id INTEGER REFERENCES product_families(id);
ALTER TABLE tool_proxies ADD COLUMN name TEXT;
ALTER TABLE tool_proxies ADD COLUMN description TEXT;
ALTER TABLE tool_proxies ADD COLUMN product_version TEXT;
ALTER TABLE tool_proxies ADD COLUMN lti_version TEXT;
ALTER TABLE tool_proxies ADD COLUMN registration_url TEXT;
ALTER TABLE tool_proxies ADD COLUMN raw_data TEXT;
ALTER TABLE tool_proxies ADD COLUMN update_payload TEXT;
ALTER TABLE tool_proxies ADD COLUMN update_secret_enc BLOB;

CREATE TABLE resource_handlers (
    id                 INTEGER PRIMARY KEY,
    tool_proxy_guid    TEXT    NOT NULL REFERENCES tool_proxies(guid) ON DELETE CASCADE,
    resource_type_code TEXT    NOT NULL,
    name               TEXT    NOT NULL DEFAULT '',
    description        TEXT,
    UNIQUE (tool_proxy_guid, resource_type_code)
);

CREATE TABLE message_handlers (
    id                  INTEGER PRIMARY KEY,
    resource_handler_id INTEGER NOT NULL REFERENCES resource_handlers(id) ON DELETE CASCADE,
    message_type        TEXT    NOT NULL,
    launch_path         TEXT    NOT NULL,
    capabilities        TEXT    NOT NULL DEFAULT '[]',
    parameters          TEXT    NOT NULL DEFAULT '[]',
    placements          TEXT    NOT NULL DEFAULT '[]'
);
CREATE INDEX message_handlers_by_resource_handler ON message_handlers (resource_handler_id);

-- Where a tool proxy is installed (Canvas `lti_tool_proxy_bindings`).
CREATE TABLE tool_proxy_bindings (
    id              INTEGER PRIMARY KEY,
    tool_proxy_guid TEXT    NOT NULL REFERENCES tool_proxies(guid) ON DELETE CASCADE,
    context_type    TEXT    NOT NULL CHECK (context_type IN ('account', 'course')),
    context_id      INTEGER NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1,
    created_at      INTEGER NOT NULL,
    UNIQUE (tool_proxy_guid, context_type, context_id)
);
CREATE INDEX tool_proxy_bindings_by_context ON tool_proxy_bindings (context_type, context_id);
