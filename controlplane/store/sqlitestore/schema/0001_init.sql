-- The embedded store's schema (controlplane/store/sqlitestore). Times are
-- INTEGER Unix microseconds (UTC), JSON is TEXT, UUIDs are lowercase TEXT
-- (whose order is their byte order). The config resources are kept in
-- their declarative-document JSON (the change log's form): the shared
-- write logic in controlplane/store validates them before they get here.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row: the latest committed config revision.
CREATE TABLE config_head (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    revision   INTEGER NOT NULL CHECK (revision >= 0),
    updated_at INTEGER NOT NULL
);

-- Backends, roles (with their ordered rules), bindings and principals.
CREATE TABLE resources (
    kind     TEXT NOT NULL CHECK (kind IN ('backend', 'role', 'binding', 'principal')),
    name     TEXT NOT NULL CHECK (name <> ''),
    spec     TEXT NOT NULL,
    revision INTEGER NOT NULL CHECK (revision > 0),
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;

CREATE TABLE config_revisions (
    revision  INTEGER PRIMARY KEY CHECK (revision > 0),
    ts        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    operation TEXT NOT NULL
);

CREATE TABLE config_changes (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    revision INTEGER NOT NULL REFERENCES config_revisions (revision),
    kind     TEXT NOT NULL,
    name     TEXT NOT NULL,
    action   TEXT NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    before   TEXT,
    after    TEXT
);
CREATE INDEX config_changes_revision ON config_changes (revision);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    principal   TEXT NOT NULL,
    sha256      TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER,
    revision    INTEGER NOT NULL CHECK (revision > 0)
);
CREATE INDEX api_keys_principal ON api_keys (principal);

CREATE TABLE admin_tokens (
    id           TEXT PRIMARY KEY,
    sha256       TEXT NOT NULL UNIQUE,
    description  TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
);

CREATE TABLE nodes (
    id                      TEXT PRIMARY KEY,
    name                    TEXT NOT NULL CHECK (name <> ''),
    labels                  TEXT NOT NULL DEFAULT '{}',
    node_group              TEXT NOT NULL DEFAULT 'default',
    version                 TEXT NOT NULL DEFAULT '',
    cert_serial             TEXT,
    cert_fingerprint        TEXT,
    cert_not_after          INTEGER,
    enrolled_at             INTEGER NOT NULL,
    revoked_at              INTEGER,
    applied_revision        INTEGER NOT NULL DEFAULT 0,
    applied_hash            TEXT NOT NULL DEFAULT '',
    last_seen               INTEGER,
    last_nack_revision      INTEGER,
    last_nack_error         TEXT,
    last_nack_rejected      TEXT,
    last_nack_at            INTEGER,
    spool_depth_bytes       INTEGER NOT NULL DEFAULT 0,
    spool_depth_batches     INTEGER NOT NULL DEFAULT 0,
    spool_oldest_unacked_at INTEGER,
    status                  TEXT,
    status_at               INTEGER,
    connected_replica       TEXT
);

CREATE TABLE join_tokens (
    id           TEXT PRIMARY KEY,
    sha256       TEXT NOT NULL UNIQUE,
    description  TEXT NOT NULL DEFAULT '',
    labels       TEXT NOT NULL DEFAULT '{}',
    node_group   TEXT NOT NULL DEFAULT 'default',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER,
    used_by_node TEXT,
    revoked_at   INTEGER
);

CREATE TABLE pki (
    name           TEXT PRIMARY KEY,
    cert_pem       TEXT NOT NULL,
    key_encrypted  BLOB NOT NULL,
    key_encryption TEXT NOT NULL,
    kek_id         TEXT NOT NULL,
    not_after      INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);

-- One row per audit batch, keyed (node, epoch, seq): a replayed batch finds
-- its row and stores nothing. id is the commit order the tail follows (one
-- writer, so ids become visible in order).
CREATE TABLE audit_ledger (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id         TEXT NOT NULL,
    epoch           INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    event_count     INTEGER NOT NULL,
    first_ts        INTEGER,
    last_ts         INTEGER,
    batch_hash      BLOB NOT NULL,
    prev_hash       BLOB,
    crc             INTEGER NOT NULL,
    crc_ok          INTEGER NOT NULL,
    rejected_count  INTEGER NOT NULL,
    rejected_reason TEXT,
    dropped_before  INTEGER NOT NULL,
    gap_first_ts    INTEGER,
    gap_last_ts     INTEGER,
    chain_ok        INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    UNIQUE (node_id, epoch, seq)
);

CREATE TABLE audit_events (
    ts                  INTEGER NOT NULL,
    id                  TEXT NOT NULL,
    ledger_id           INTEGER NOT NULL,
    node_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    principal           TEXT NOT NULL,
    transport           TEXT NOT NULL,
    protocol_version    TEXT NOT NULL,
    client_name         TEXT NOT NULL,
    client_version      TEXT NOT NULL,
    method              TEXT NOT NULL,
    backend             TEXT NOT NULL,
    name                TEXT NOT NULL,
    decision            TEXT NOT NULL,
    rule                TEXT NOT NULL,
    policy_revision     INTEGER NOT NULL,
    status              TEXT NOT NULL,
    error               TEXT NOT NULL,
    latency_us          INTEGER NOT NULL,
    upstream_latency_us INTEGER NOT NULL,
    request_bytes       INTEGER NOT NULL,
    response_bytes      INTEGER NOT NULL,
    args_sha256         TEXT NOT NULL,
    trace_id            TEXT NOT NULL,
    PRIMARY KEY (ts, id)
) WITHOUT ROWID;
CREATE INDEX audit_events_principal ON audit_events (principal, ts);
CREATE INDEX audit_events_node ON audit_events (node_id, ts);
CREATE INDEX audit_events_ledger ON audit_events (ledger_id);
