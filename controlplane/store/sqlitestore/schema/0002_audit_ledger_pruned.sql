-- What retention keeps of the audit_ledger rows it prunes: per (node,
-- epoch), the prefix whose events all expired, folded into one row (as
-- Postgres migration 0005_audit_ledger_pruned; see docs/schema.md). Ingest
-- links the batch after the prefix to batch_hash and acknowledges a replay
-- at or below through_seq without storing it; Verify reports the prefix as
-- pruned, otherwise exactly as before (listed: the problems' JSON lists).
CREATE TABLE audit_ledger_pruned (
    node_id      TEXT NOT NULL,
    epoch        INTEGER NOT NULL,
    first_seq    INTEGER NOT NULL,
    through_seq  INTEGER NOT NULL CHECK (through_seq >= first_seq),
    batch_hash   BLOB NOT NULL,
    batches      INTEGER NOT NULL,
    events       INTEGER NOT NULL,
    rejected     INTEGER NOT NULL,
    dropped      INTEGER NOT NULL,
    missing      INTEGER NOT NULL,
    broken_links INTEGER NOT NULL,
    crc_failures INTEGER NOT NULL,
    listed       TEXT NOT NULL DEFAULT '{}',
    last_ts      INTEGER,
    pruned_at    INTEGER NOT NULL,
    PRIMARY KEY (node_id, epoch)
) WITHOUT ROWID;
