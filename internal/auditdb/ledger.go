package auditdb

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Held is what the ledger holds of one node's epoch from a given seq on.
type Held struct {
	// Through is the highest seq such that every seq from the asked-for
	// start up to it is in the ledger; start-1 when the start itself is
	// missing.
	Through int64
	// PrevMissing is true when start > 1 and seq start-1 is not in the
	// ledger: the edge no longer holds batches the control plane never
	// received (a gap VerifyAudit will report).
	PrevMissing bool
}

// maxHeldScan bounds how many ledger rows LedgerHeld walks; an edge never
// holds more unacknowledged batches than a spool's worth, and a shorter
// answer only makes it resend batches that are then acked as duplicates.
const maxHeldScan = 100000

// LedgerHeld reports which batches of (node, epoch) from seq start on are
// already committed, so the control plane can answer an AuditStream hello
// without making the edge resend them.
func (s *Store) LedgerHeld(ctx context.Context, node string, epoch, start int64) (Held, error) {
	id, err := uuid.Parse(node)
	if err != nil {
		return Held{}, fmt.Errorf("audit ledger: node %q is not a UUID: %w", node, err)
	}
	// Seqs up to a pruned prefix were all accounted for (acknowledged
	// then), so the edge need not send them again.
	pruned, err := readEpochPruned(ctx, s.pool, id, epoch)
	if err != nil {
		return Held{}, fmt.Errorf("audit ledger: node %s epoch %d: %w", node, epoch, err)
	}
	h := Held{Through: start - 1, PrevMissing: start > 1}
	from := max(start-1, 0)
	if pruned.Through > 0 && pruned.Through >= start-1 {
		h.Through, h.PrevMissing = max(h.Through, pruned.Through), false
		from = h.Through + 1
	}
	rows, err := s.pool.Query(ctx, `SELECT seq FROM audit_ledger
		WHERE node_id = $1 AND epoch = $2 AND seq >= $3 ORDER BY seq LIMIT $4`, id, epoch, from, maxHeldScan)
	if err != nil {
		return Held{}, fmt.Errorf("audit ledger: reading node %s epoch %d: %w", node, epoch, err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return Held{}, fmt.Errorf("audit ledger: reading node %s epoch %d: %w", node, epoch, err)
		}
		switch {
		case seq == start-1:
			h.PrevMissing = false
		case seq == h.Through+1:
			h.Through = seq
		}
	}
	if err := rows.Err(); err != nil {
		return Held{}, fmt.Errorf("audit ledger: reading node %s epoch %d: %w", node, epoch, err)
	}
	return h, nil
}

// LedgerRow is one audit_ledger row's verdicts, for reporting what ingest
// flagged about a batch.
type LedgerRow struct {
	Seq            int64
	EventCount     int
	ChainOK, CRCOK bool
	Rejected       int
	RejectedReason string
	ReceivedAt     time.Time
}

// LedgerRows returns the ledger rows of node's epoch with seq in [from, to].
func (s *Store) LedgerRows(ctx context.Context, node string, epoch, from, to int64) ([]LedgerRow, error) {
	id, err := uuid.Parse(node)
	if err != nil {
		return nil, fmt.Errorf("audit ledger: node %q is not a UUID: %w", node, err)
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, event_count, chain_ok, crc_ok, rejected_count, coalesce(rejected_reason, ''), received_at
		FROM audit_ledger WHERE node_id = $1 AND epoch = $2 AND seq BETWEEN $3 AND $4 ORDER BY seq`, id, epoch, from, to)
	if err != nil {
		return nil, fmt.Errorf("audit ledger: reading node %s epoch %d seqs %d..%d: %w", node, epoch, from, to, err)
	}
	defer rows.Close()
	var out []LedgerRow
	for rows.Next() {
		var r LedgerRow
		if err := rows.Scan(&r.Seq, &r.EventCount, &r.ChainOK, &r.CRCOK, &r.Rejected, &r.RejectedReason, &r.ReceivedAt); err != nil {
			return nil, fmt.Errorf("audit ledger: reading node %s epoch %d: %w", node, epoch, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
