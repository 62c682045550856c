-- 0005_audit_ledger_pruned: what retention keeps of the audit ledger rows it
-- prunes (internal/auditdb prune.go).
--
-- Retention drops audit_events day partitions, but audit_ledger has one row
-- per batch and, with sync edges sealing a batch per group commit, grows
-- about a row per event. Partition maintenance deletes the rows of a
-- (node, epoch) prefix whose events have all expired and folds them into
-- the epoch's one row here, which is what the ledger still needs of them:
--   * through_seq and batch_hash: the chain link the batch after the prefix
--     is checked against (its prev_hash must be batch_hash), and the bound
--     under which a replayed batch is acknowledged without being stored
--     (and, at through_seq itself, compared by hash);
--   * first_seq, the counts and the listed problems: VerifyAudit reports
--     the prefix as pruned and otherwise exactly as before the prune (same
--     totals, same missing seqs, broken links, CRC failures and drop gaps,
--     same verdict).
CREATE TABLE audit_ledger_pruned (
    node_id      uuid NOT NULL,
    epoch        bigint NOT NULL CHECK (epoch >= 0),
    -- Every seq from 1 through through_seq is accounted for here: pruned,
    -- or counted in missing. first_seq is the lowest seq the ledger held.
    first_seq    bigint NOT NULL CHECK (first_seq >= 0),
    through_seq  bigint NOT NULL CHECK (through_seq >= first_seq),
    -- batch_hash of seq through_seq.
    batch_hash   bytea NOT NULL CHECK (octet_length(batch_hash) = 32),
    -- Ledger rows pruned, the sums of their event_count, rejected_count and
    -- dropped_before, and the problems Verify found among them: seqs with no
    -- row, rows not linked to the row before, rows that failed their CRC.
    batches      bigint NOT NULL CHECK (batches >= 1),
    events       bigint NOT NULL CHECK (events >= 0),
    rejected     bigint NOT NULL CHECK (rejected >= 0),
    dropped      bigint NOT NULL CHECK (dropped >= 0),
    missing      bigint NOT NULL CHECK (missing >= 0),
    broken_links bigint NOT NULL CHECK (broken_links >= 0),
    crc_failures bigint NOT NULL CHECK (crc_failures >= 0),
    -- Those problems as VerifyAudit lists them (each list capped at 100, as
    -- there): {"missing": [{"From", "To"}], "broken_links": [seq],
    -- "crc_failures": [seq], "gaps": [{"Seq", "Events", "First", "Last"}]}.
    listed       jsonb NOT NULL DEFAULT '{}',
    -- Newest event time among the pruned batches (NULL when none stored).
    last_ts      timestamptz,
    pruned_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, epoch)
);
