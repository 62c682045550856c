package auditdb

import (
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/internal/audit"
)

// This file exports the checks ingest and queries make, for the embedded
// store (controlplane/store/sqlitestore): it keeps audit in its own tables
// but must accept, reject and page exactly as this package does.

// CheckedBatch is a batch decoded and checked as IngestAll checks it.
type CheckedBatch struct {
	// Hash is the batch's chain link (Batch.Hash).
	Hash [32]byte
	// CRCOK reports whether Lines match the CRC sent.
	CRCOK bool
	// Events are those to store: none when the CRC failed.
	Events []*audit.Event
	// Rejected events and why (the ledger's rejected_count/reason).
	Rejected int
	Reason   string
	// First and Last bound the accepted events' times (zero when none).
	First, Last time.Time
}

// CheckBatch decodes and checks b from node, accepting events in [lo, hi].
func CheckBatch(node uuid.UUID, b *Batch, lo, hi time.Time) CheckedBatch {
	p := &preparedBatch{b: b, node: node}
	p.prepare(lo, hi)
	return CheckedBatch{Hash: p.hash, CRCOK: p.crcOK, Events: p.rows, Rejected: p.rejected, Reason: p.reason, First: p.first, Last: p.last}
}

// AcceptWindow returns the event times ingest accepts now under opts
// (defaults filled in as New fills them).
func AcceptWindow(opts Options) (lo, hi time.Time) {
	o := New(nil, opts).opts
	now := o.Now()
	return now.Add(-o.Retention), now.Add(o.MaxFuture)
}

// CheckFilter reports what Query and NewTailer refuse in f (a node that is
// not a UUID, an unknown status or decision).
func CheckFilter(f Filter) error {
	_, _, err := filterWhere(f, nil, "")
	return err
}

// EncodePageToken and DecodePageToken are Query's keyset page tokens.
func EncodePageToken(ts time.Time, id uuid.UUID) string { return encodePageToken(ts, id) }

// DecodePageToken parses a token made by EncodePageToken.
func DecodePageToken(tok string) (time.Time, uuid.UUID, error) { return decodePageToken(tok) }
