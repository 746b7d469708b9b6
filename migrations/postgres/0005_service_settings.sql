-- Settings every process that shares this database must agree on (e.g. where jtis are
-- claimed), recorded by the first `lti2 serve` and checked by every later one.
CREATE TABLE service_settings (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
