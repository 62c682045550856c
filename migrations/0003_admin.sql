-- 0003_admin: what the admin API needs beyond 0001_config.
--
-- config_revisions: one row per committed config revision, saying who made it
-- and with which operation (AdminService Revision.actor/operation). The
-- per-object detail stays in config_changes; this row is written in the same
-- transaction, so a revision has a header exactly when it has changes.
CREATE TABLE config_revisions (
    revision  bigint PRIMARY KEY CHECK (revision > 0),
    ts        timestamptz NOT NULL DEFAULT now(),
    -- Who: "admin-token:<id>", "admin-cert:<name>", "bootstrap", ...
    actor     text NOT NULL,
    -- What: the RPC or command, e.g. "ApplyPolicy", "CreateApiKey".
    operation text NOT NULL
);

-- Join tokens can be revoked before use (RevokeJoinToken); a revoked token is
-- refused by Enroll like a used or expired one.
ALTER TABLE join_tokens ADD COLUMN revoked_at timestamptz;

-- Rollout views read the last NACK's per-resource errors; they are kept as the
-- JSON array the edge sent ([{kind, name, error}]) so ListNodes can show them.
ALTER TABLE nodes ADD COLUMN last_nack_rejected jsonb
    CHECK (last_nack_rejected IS NULL OR jsonb_typeof(last_nack_rejected) = 'array');
