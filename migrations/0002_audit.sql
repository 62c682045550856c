-- 0002_audit: the audit ledger and the day-partitioned audit log (DESIGN §6).
-- See docs/schema.md for partitioning, retention and the ingest protocol.

-- One row per audit batch an edge shipped, keyed by the edge's (node, spool
-- epoch, seq). Ingest inserts it with ON CONFLICT DO NOTHING and copies the
-- batch's events only when the insert took, in one transaction: that is what
-- makes a replayed batch a no-op (exactly once in effect). No foreign key to
-- nodes: a standalone edge writing to Postgres directly has no nodes row.
CREATE TABLE audit_ledger (
    node_id        uuid NOT NULL,
    epoch          bigint NOT NULL CHECK (epoch >= 0),
    seq            bigint NOT NULL CHECK (seq >= 0),
    event_count    integer NOT NULL CHECK (event_count >= 0),
    -- Event time range of the batch (NULL when it holds only a gap record).
    first_ts       timestamptz,
    last_ts        timestamptz,
    -- SHA-256 of the batch as shipped, and the prev_hash the edge sent: the
    -- hash of the batch before it in this node's chain (NULL for the first).
    batch_hash     bytea NOT NULL CHECK (octet_length(batch_hash) = 32),
    prev_hash      bytea CHECK (octet_length(prev_hash) = 32),
    -- CRC-32C the edge sent for the batch payload (uint32), and whether the
    -- payload matched it. A batch that failed is recorded (so the chain shows
    -- where) but its events are not stored.
    crc            bigint NOT NULL CHECK (crc BETWEEN 0 AND 4294967295),
    crc_ok         boolean NOT NULL DEFAULT true,
    -- Events of the batch refused at ingest (outside the partition window,
    -- e.g. far future or past retention) and why; never silently lost.
    rejected_count integer NOT NULL DEFAULT 0 CHECK (rejected_count BETWEEN 0 AND event_count),
    rejected_reason text,
    -- Events the edge dropped (on_full: drop) just before this batch, and the
    -- time range they fell in when the edge knows it.
    dropped_before bigint NOT NULL DEFAULT 0 CHECK (dropped_before >= 0),
    gap_first_ts   timestamptz,
    gap_last_ts    timestamptz,
    received_at    timestamptz NOT NULL DEFAULT now(),
    -- False when prev_hash did not match the stored previous batch: the chain
    -- is broken and VerifyAudit reports it. Never silently accepted.
    chain_ok       boolean NOT NULL,
    PRIMARY KEY (node_id, epoch, seq),
    CHECK (first_ts IS NULL OR last_ts >= first_ts),
    CHECK ((rejected_count = 0) = (rejected_reason IS NULL))
);

-- The audit log. Columns and names are fixed by DESIGN §6. Range-partitioned by
-- day (UTC) on ts; the primary key must include ts for that. The index set is
-- exactly: the primary key, BRIN on ts, btree on (principal, ts). The ingest
-- benchmark measures this set; add an index only with a new benchmark figure.
-- There is no default partition on purpose: an event outside the created days
-- fails with "no partition of relation" and ingest rejects it with a reason
-- instead of parking it where retention would never find it.
CREATE TABLE audit_events (
    id                  uuid NOT NULL,
    ts                  timestamptz NOT NULL,
    node_id             uuid NOT NULL,
    session_id          text,
    principal           text,
    -- 'stdio' or 'http'.
    transport           text NOT NULL,
    protocol_version    text,
    client_name         text,
    client_version      text,
    method              text NOT NULL,
    backend             text,
    -- Tool or prompt name, or resource URI.
    name                text,
    decision            text NOT NULL CHECK (decision IN ('allow', 'deny')),
    -- Matched rule id; NULL when no rule matched (default deny).
    rule                text,
    policy_revision     bigint,
    status              text NOT NULL
                            CHECK (status IN ('ok', 'error', 'denied', 'timeout', 'cancelled', 'unavailable')),
    error               text,
    latency_us          bigint NOT NULL CHECK (latency_us >= 0),
    upstream_latency_us bigint CHECK (upstream_latency_us >= 0),
    request_bytes       bigint NOT NULL DEFAULT 0 CHECK (request_bytes >= 0),
    response_bytes      bigint NOT NULL DEFAULT 0 CHECK (response_bytes >= 0),
    -- Lowercase hex SHA-256 of the call's arguments.
    args_sha256         text,
    trace_id            text,
    PRIMARY KEY (ts, id)
) PARTITION BY RANGE (ts);

CREATE INDEX audit_events_ts_brin ON audit_events USING brin (ts);
CREATE INDEX audit_events_principal_ts_idx ON audit_events (principal, ts);

-- mcpgw_ensure_audit_partitions creates the daily partitions for the UTC days
-- from_day .. from_day + days - 1 that do not exist yet, and returns how many
-- it created. Idempotent; safe to call from several replicas (partition
-- maintenance should still hold advisory lock (1835233383, 3) so replicas do
-- not queue on the parent's lock). Partitions are named audit_events_pYYYYMMDD
-- and cover [day 00:00 UTC, next day 00:00 UTC).
--
-- Each partition is created standalone and then ATTACHed: ATTACH PARTITION
-- takes only SHARE UPDATE EXCLUSIVE on audit_events, which does not conflict
-- with concurrent COPY/INSERT, whereas CREATE TABLE ... PARTITION OF takes
-- ACCESS EXCLUSIVE and would stall ingest behind it. The bound-matching CHECK
-- lets ATTACH skip its validation scan; it is dropped once attached.
CREATE FUNCTION mcpgw_ensure_audit_partitions(from_day date, days integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    day      date;
    part     text;
    lo       text;
    hi       text;
    created  integer := 0;
BEGIN
    IF from_day IS NULL OR days IS NULL THEN
        RAISE EXCEPTION 'mcpgw_ensure_audit_partitions: from_day and days must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF days < 1 OR days > 366 THEN
        RAISE EXCEPTION 'mcpgw_ensure_audit_partitions: days must be between 1 and 366, got %', days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0 .. days - 1 LOOP
        day  := from_day + i;
        part := 'audit_events_p' || to_char(day, 'YYYYMMDD');
        IF to_regclass(quote_ident(part)) IS NOT NULL THEN
            CONTINUE;
        END IF;
        lo := to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00';
        hi := to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00';
        BEGIN
            EXECUTE format(
                'CREATE TABLE %I (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS,'
                ' CONSTRAINT %I CHECK (ts >= %L::timestamptz AND ts < %L::timestamptz))',
                part, part || '_bound', lo, hi);
            EXECUTE format(
                'ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                part, lo, hi);
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_bound');
            created := created + 1;
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            -- Another session created it between our check and our CREATE.
            NULL;
        END;
    END LOOP;
    RETURN created;
END;
$$;

-- Yesterday .. today + 7 (UTC), so a fresh install accepts events at once and
-- slightly late ones from before midnight. Partition maintenance keeps the
-- window moving from here on.
SELECT mcpgw_ensure_audit_partitions((now() AT TIME ZONE 'UTC')::date - 1, 9);
