-- 0001_config: the control plane's configuration, credentials, node registry
-- and PKI. See docs/schema.md for what each table is for.
--
-- Conventions:
--   * Names follow internal/policy and internal/document field for field, so a
--     row converts to its Go type without a translation table.
--   * A list that the Go type marks omitempty is a NOT NULL text[] where '{}'
--     means "absent", so there is exactly one spelling of "not set".
--   * Every row that is part of the configuration pushed to edges carries
--     `revision`: the config revision whose transaction last wrote it.
--   * Hashes of secrets are lowercase hex SHA-256 of the whole secret string;
--     secrets themselves are never stored.

-- Config revisions. A config-changing transaction starts with
--   UPDATE config_head SET revision = nextval('config_revision'), updated_at = now()
--   RETURNING revision;
-- The row lock on config_head serialises config writers, so revisions commit in
-- the order they were taken and a reader that sees config_head.revision = N in
-- its snapshot sees every change up to N and none after it. The sequence alone
-- would not give that: a later revision could commit before an earlier one.
CREATE SEQUENCE config_revision AS bigint MINVALUE 1 START 1;

CREATE TABLE config_head (
    -- One row only: the lock that orders config transactions.
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- Latest committed config revision; 0 before the first change.
    revision   bigint NOT NULL DEFAULT 0 CHECK (revision >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO config_head DEFAULT VALUES;

-- What changed in each revision, for `mcpctl` diffs, rollout views and
-- forensics. One row per object changed; before/after are the object's JSON
-- form (as in the declarative document) or NULL for create/delete.
CREATE TABLE config_changes (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    revision bigint NOT NULL CHECK (revision > 0),
    ts       timestamptz NOT NULL DEFAULT now(),
    -- Who made the change: an admin token id, "bootstrap", a client cert subject.
    actor    text NOT NULL,
    -- Resource kind: backend, role, binding, principal, api_key, ...
    kind     text NOT NULL CHECK (kind <> ''),
    name     text NOT NULL,
    action   text NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    before   jsonb,
    after    jsonb,
    CHECK ((action = 'create') = (before IS NULL)),
    CHECK ((action = 'delete') = (after IS NULL))
);
CREATE INDEX config_changes_revision_idx ON config_changes (revision);

-- Backends: internal/document.Backend. Exactly one transport is set.
CREATE TABLE backends (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    -- NULL = use name as the prefix; '' = expose names unprefixed.
    prefix        text,
    -- stdio transport: argv, extra env (values may be "${env:NAME}"), working dir.
    stdio_command text[],
    stdio_env     jsonb,
    stdio_dir     text,
    -- Streamable HTTP transport.
    http_url      text,
    http_headers  jsonb,
    -- Per-request timeout in milliseconds; 0 = unset, the edge's default (60s).
    timeout_ms    bigint NOT NULL DEFAULT 0 CHECK (timeout_ms >= 0),
    -- Upstream session pooling for legacy backends: '' (default, shared),
    -- 'shared' or 'per_principal'.
    sessions      text NOT NULL DEFAULT '' CHECK (sessions IN ('', 'shared', 'per_principal')),
    revision      bigint NOT NULL CHECK (revision > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((stdio_command IS NULL) <> (http_url IS NULL)),
    CHECK (stdio_command IS NULL OR cardinality(stdio_command) > 0),
    CHECK (stdio_command IS NOT NULL OR (stdio_env IS NULL AND stdio_dir IS NULL)),
    CHECK (http_url IS NOT NULL OR http_headers IS NULL),
    CHECK (stdio_env IS NULL OR jsonb_typeof(stdio_env) = 'object'),
    CHECK (http_headers IS NULL OR jsonb_typeof(http_headers) = 'object')
);

-- Roles: internal/policy.Role.
CREATE TABLE roles (
    name        text PRIMARY KEY CHECK (name <> ''),
    description text NOT NULL DEFAULT '',
    revision    bigint NOT NULL CHECK (revision > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Rules: internal/policy.Rule, ordered within their role by position
-- (0-based, the index in Role.Rules). A role's rules are rewritten together.
CREATE TABLE rules (
    role      text NOT NULL REFERENCES roles (name)
                  ON UPDATE CASCADE ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    position  integer NOT NULL CHECK (position >= 0),
    -- Explicit rule id; '' = the default "<role>/<position>".
    id        text NOT NULL DEFAULT '',
    effect    text NOT NULL CHECK (effect IN ('allow', 'deny')),
    methods   text[] NOT NULL DEFAULT '{}',
    backends  text[] NOT NULL DEFAULT '{}',
    tools     text[] NOT NULL DEFAULT '{}',
    prompts   text[] NOT NULL DEFAULT '{}',
    resources text[] NOT NULL DEFAULT '{}',
    revision  bigint NOT NULL CHECK (revision > 0),
    PRIMARY KEY (role, position)
);

-- Bindings: internal/policy.Binding and the RoleBinding resource, keyed by
-- role: at most one binding per role, holding every subject that has it
-- (several bindings of one role in a document merge into one).
CREATE TABLE bindings (
    role     text PRIMARY KEY REFERENCES roles (name)
                 ON UPDATE CASCADE ON DELETE NO ACTION DEFERRABLE INITIALLY DEFERRED,
    -- "user:<principal>" or "group:<group>"; at least one.
    subjects text[] NOT NULL CHECK (cardinality(subjects) > 0),
    revision bigint NOT NULL CHECK (revision > 0)
);

-- Principals: internal/policy.Principal. In fleet mode their key hashes come
-- from api_keys, never from the document.
CREATE TABLE principals (
    name       text PRIMARY KEY CHECK (name <> ''),
    groups     text[] NOT NULL DEFAULT '{}',
    revision   bigint NOT NULL CHECK (revision > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- API keys ("mcpgw_<id>_<secret>"). Only the hash of the whole key string is
-- kept; it is what edges look callers up by. Key hashes are pushed to edges,
-- so a key change is a config change and takes a revision.
CREATE TABLE api_keys (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9]+$'),
    principal   text NOT NULL REFERENCES principals (name)
                    ON UPDATE CASCADE ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    sha256      text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz,
    revision    bigint NOT NULL CHECK (revision > 0)
);
CREATE INDEX api_keys_principal_idx ON api_keys (principal);

-- Admin tokens ("mcpgwadm_..."), for the admin API only; hash only.
CREATE TABLE admin_tokens (
    id           text PRIMARY KEY CHECK (id <> ''),
    sha256       text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- Node registry. A node is created by Enroll; its status columns are flushed
-- in batches by the replica it is connected to (not once per heartbeat).
CREATE TABLE nodes (
    id                  uuid PRIMARY KEY,
    name                text NOT NULL CHECK (name <> ''),
    -- Labels and node group come from the join token it enrolled with.
    labels              jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    node_group          text NOT NULL DEFAULT 'default' CHECK (node_group <> ''),
    version             text NOT NULL DEFAULT '',
    -- Current client certificate: serial (hex) and SHA-256 fingerprint (hex).
    cert_serial         text,
    cert_fingerprint    text CHECK (cert_fingerprint ~ '^[0-9a-f]{64}$'),
    cert_not_after      timestamptz,
    enrolled_at         timestamptz NOT NULL DEFAULT now(),
    -- Set by RevokeNode; a revoked node is refused on every call.
    revoked_at          timestamptz,
    -- Last snapshot the node ACKed.
    applied_revision    bigint NOT NULL DEFAULT 0 CHECK (applied_revision >= 0),
    applied_hash        text NOT NULL DEFAULT '',
    last_seen           timestamptz,
    -- Last NACK: the revision refused, why and when; cleared when the node
    -- ACKs a newer revision. Shown by ListNodes.
    last_nack_revision  bigint,
    last_nack_error     text,
    last_nack_at        timestamptz,
    -- Audit spool at the edge, from its last ConfigStream Status.
    spool_depth_bytes   bigint NOT NULL DEFAULT 0 CHECK (spool_depth_bytes >= 0),
    spool_depth_batches bigint NOT NULL DEFAULT 0 CHECK (spool_depth_batches >= 0),
    spool_oldest_unacked_at timestamptz,
    -- The whole latest EdgeStatus report (protojson) and when it arrived.
    status              jsonb,
    status_at           timestamptz,
    -- CP replica holding the node's ConfigStream; NULL when disconnected.
    connected_replica   text,
    CHECK ((last_nack_revision IS NULL) = (last_nack_error IS NULL))
);
CREATE UNIQUE INDEX nodes_cert_fingerprint_idx ON nodes (cert_fingerprint);
CREATE INDEX nodes_node_group_idx ON nodes (node_group);

-- Join tokens: single use, expiring, hash only. used_at/used_by_node are set in
-- the Enroll transaction that consumes the token.
CREATE TABLE join_tokens (
    id           text PRIMARY KEY CHECK (id <> ''),
    sha256       text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    description  text NOT NULL DEFAULT '',
    labels       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    node_group   text NOT NULL DEFAULT 'default' CHECK (node_group <> ''),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    used_by_node uuid REFERENCES nodes (id) ON DELETE SET NULL,
    -- used_by_node may later be NULLed by deleting the node; used_at stays.
    CHECK (used_at IS NOT NULL OR used_by_node IS NULL)
);

-- The installation's PKI: one CA (name 'ca'), created once by the first CP
-- replica under advisory lock (1835233383, 2). The private key is encrypted
-- with the key-encryption key every replica gets from env or its data dir;
-- kek_id identifies that KEK so a replica with the wrong one fails clearly
-- instead of producing garbage.
CREATE TABLE pki (
    name           text PRIMARY KEY CHECK (name <> ''),
    cert_pem       text NOT NULL,
    key_encrypted  bytea NOT NULL,
    -- How key_encrypted was produced, e.g. 'aes-256-gcm'.
    key_encryption text NOT NULL,
    kek_id         text NOT NULL,
    not_after      timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
