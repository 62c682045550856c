package auditdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mcpgw/mcpgw/internal/wait"
)

// PruneChunk is how many ledger rows one pruning transaction deletes at
// most, so that pruning a large backlog never holds row locks or a
// transaction for long: ingest only ever writes above the pruned prefix,
// and the rows a chunk deletes are rows no ingest writes.
const PruneChunk = 5000

// PacePrune waits after a pruning chunk that took d as long again, so that
// pruning a backlog takes at most about half of the time (and of a core)
// from ingest, which on a small machine competes with it for the CPUs. It
// returns false when ctx ended.
func PacePrune(ctx context.Context, d time.Duration) bool { return wait.For(ctx, d) }

// pruneLedger deletes, per (node, epoch), the longest prefix of ledger rows
// whose events all lie before cut (the first retained day), folding them
// into the epoch's audit_ledger_pruned row (FoldPruned), in transactions
// of at most PruneChunk rows. A row without stored events counts by its
// received_at. It runs on the maintenance connection, under the
// maintenance lock, after the expired partitions are gone, so it is the
// only writer of audit_ledger_pruned. It returns the rows deleted.
func pruneLedger(ctx context.Context, conn *pgx.Conn, cut time.Time) (int64, error) {
	// The (node, epoch) pairs, by skipping through the primary key: one
	// index probe per pair instead of a scan of the ledger.
	rows, err := conn.Query(ctx, `
WITH RECURSIVE k AS (
    (SELECT node_id, epoch FROM audit_ledger ORDER BY node_id, epoch LIMIT 1)
    UNION ALL
    SELECT n.node_id, n.epoch FROM k CROSS JOIN LATERAL (
        SELECT l.node_id, l.epoch FROM audit_ledger l
        WHERE (l.node_id, l.epoch) > (k.node_id, k.epoch)
        ORDER BY l.node_id, l.epoch LIMIT 1) n
)
SELECT node_id, epoch FROM k`)
	if err != nil {
		return 0, fmt.Errorf("audit ledger pruning: listing epochs: %w", err)
	}
	type epochKey struct {
		node  uuid.UUID
		epoch int64
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (epochKey, error) {
		var k epochKey
		return k, r.Scan(&k.node, &k.epoch)
	})
	if err != nil {
		return 0, fmt.Errorf("audit ledger pruning: listing epochs: %w", err)
	}
	var total int64
	for _, k := range keys {
		n, err := pruneEpoch(ctx, conn, k.node, k.epoch, cut)
		total += n
		if err != nil {
			return total, fmt.Errorf("audit ledger pruning: node %s epoch %d: %w", k.node, k.epoch, err)
		}
	}
	return total, nil
}

// expiredHeadSQL says whether the first row after an epoch's pruned prefix
// has expired: most epochs have nothing to prune at a given run, and this
// answers for them from one index probe instead of a chunk of rows.
const expiredHeadSQL = `SELECT coalesce(last_ts, received_at) < $3 FROM audit_ledger
WHERE node_id = $1 AND epoch = $2
    AND seq > coalesce((SELECT through_seq FROM audit_ledger_pruned WHERE node_id = $1 AND epoch = $2), -1)
ORDER BY seq LIMIT 1`

// pruneEpoch prunes one (node, epoch), chunk by chunk.
func pruneEpoch(ctx context.Context, conn *pgx.Conn, node uuid.UUID, epoch int64, cut time.Time) (int64, error) {
	var expired bool
	switch err := conn.QueryRow(ctx, expiredHeadSQL, node, epoch, cut).Scan(&expired); {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("reading the first row: %w", err)
	case !expired:
		return 0, nil
	}
	var total int64
	for {
		var n int
		more := false
		began := time.Now()
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			p, err := readEpochPruned(ctx, tx, node, epoch)
			if err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT seq, event_count, batch_hash, prev_hash, crc_ok, rejected_count, dropped_before,
				gap_first_ts, gap_last_ts, last_ts, coalesce(last_ts, received_at) < $4
				FROM audit_ledger WHERE node_id = $1 AND epoch = $2 AND seq > $3 ORDER BY seq LIMIT $5`,
				node, epoch, p.Through, cut, PruneChunk)
			if err != nil {
				return fmt.Errorf("reading rows: %w", err)
			}
			var links []LedgerLink
			for rows.Next() {
				var (
					l                         LedgerLink
					gapFirst, gapLast, lastTS *time.Time
					expired                   bool
				)
				if err := rows.Scan(&l.Seq, &l.Count, &l.Hash, &l.Prev, &l.CRCOK, &l.Rejected, &l.Dropped,
					&gapFirst, &gapLast, &lastTS, &expired); err != nil {
					rows.Close()
					return fmt.Errorf("reading rows: %w", err)
				}
				if !expired {
					break // the prefix ends at the first row still retained
				}
				if gapFirst != nil && gapLast != nil {
					l.GapFirst, l.GapLast = gapFirst.UTC(), gapLast.UTC()
				}
				if lastTS != nil {
					l.LastTS = lastTS.UTC()
				}
				links = append(links, l)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("reading rows: %w", err)
			}
			if len(links) == 0 {
				return nil
			}
			p = FoldPruned(p, epoch, links)
			listed, err := json.Marshal(p.Listed)
			if err != nil {
				return err
			}
			// Rows at or below the old prefix that arrived again while it
			// was pruned go too: they were accounted for.
			tag, err := tx.Exec(ctx, `DELETE FROM audit_ledger WHERE node_id = $1 AND epoch = $2 AND seq <= $3`, node, epoch, p.Through)
			if err != nil {
				return fmt.Errorf("deleting rows: %w", err)
			}
			n = int(tag.RowsAffected())
			if _, err := tx.Exec(ctx, `INSERT INTO audit_ledger_pruned AS p (node_id, epoch, first_seq, through_seq, batch_hash,
				batches, events, rejected, dropped, missing, broken_links, crc_failures, last_ts, listed)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
				ON CONFLICT (node_id, epoch) DO UPDATE SET first_seq = excluded.first_seq, through_seq = excluded.through_seq,
					batch_hash = excluded.batch_hash, batches = excluded.batches, events = excluded.events,
					rejected = excluded.rejected, dropped = excluded.dropped, missing = excluded.missing,
					broken_links = excluded.broken_links, crc_failures = excluded.crc_failures,
					last_ts = excluded.last_ts, listed = excluded.listed, pruned_at = now()`,
				node, epoch, p.FirstSeq, p.Through, p.Hash, p.Batches, p.Events, p.Rejected, p.Dropped,
				p.Missing, p.BrokenLinks, p.CRCFailures, nullTime(p.LastTS), listed); err != nil {
				return fmt.Errorf("recording the pruned prefix: %w", err)
			}
			more = len(links) == PruneChunk
			return nil
		})
		total += int64(n)
		if err != nil {
			return total, err
		}
		if n > 0 && !PacePrune(ctx, time.Since(began)) {
			return total, ctx.Err()
		}
		if !more {
			return total, nil
		}
	}
}

// queryer is what reading the pruned prefixes needs: a pool, a connection
// or a transaction.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

const prunedColumns = `epoch, first_seq, through_seq, batch_hash, batches, events, rejected, dropped,
	missing, broken_links, crc_failures, last_ts, listed`

func scanPruned(r pgx.CollectableRow) (Pruned, error) {
	var (
		p      Pruned
		lastTS *time.Time
		listed []byte
	)
	if err := r.Scan(&p.Epoch, &p.FirstSeq, &p.Through, &p.Hash, &p.Batches, &p.Events, &p.Rejected, &p.Dropped,
		&p.Missing, &p.BrokenLinks, &p.CRCFailures, &lastTS, &listed); err != nil {
		return p, err
	}
	if lastTS != nil {
		p.LastTS = lastTS.UTC()
	}
	return p, UnmarshalListed(listed, &p.Listed)
}

// UnmarshalListed reads audit_ledger_pruned.listed.
func UnmarshalListed(b []byte, l *Listed) error {
	if err := json.Unmarshal(b, l); err != nil {
		return fmt.Errorf("decoding the listed problems: %w", err)
	}
	return nil
}

// readPruned returns node's pruned prefixes, by epoch.
func readPruned(ctx context.Context, q queryer, node uuid.UUID) ([]Pruned, error) {
	rows, err := q.Query(ctx, `SELECT `+prunedColumns+` FROM audit_ledger_pruned WHERE node_id = $1 ORDER BY epoch`, node)
	if err != nil {
		return nil, fmt.Errorf("reading the pruned ledger: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanPruned)
	if err != nil {
		return nil, fmt.Errorf("reading the pruned ledger: %w", err)
	}
	return out, nil
}

// readEpochPruned returns one epoch's pruned prefix (zero when none).
func readEpochPruned(ctx context.Context, q queryer, node uuid.UUID, epoch int64) (Pruned, error) {
	rows, err := q.Query(ctx, `SELECT `+prunedColumns+` FROM audit_ledger_pruned WHERE node_id = $1 AND epoch = $2`, node, epoch)
	if err != nil {
		return Pruned{}, fmt.Errorf("reading the pruned ledger: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanPruned)
	if err != nil || len(out) == 0 {
		if err != nil {
			err = fmt.Errorf("reading the pruned ledger: %w", err)
		}
		return Pruned{Epoch: epoch}, err
	}
	return out[0], nil
}
