package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// The audit half of the embedded store: the same ledger semantics as
// internal/auditdb (one row per (node, epoch, seq), a replay stores
// nothing, a different batch under a stored seq is auditdb.ErrConflict),
// with auditdb's own checks (CheckBatch) deciding what is stored.

const eventColumns = `id, ts, node_id, session_id, principal, transport, protocol_version, client_name, client_version,
	method, backend, name, decision, rule, policy_revision, status, error, latency_us, upstream_latency_us,
	request_bytes, response_bytes, args_sha256, trace_id`

// IngestAll stores batches of several nodes in one transaction; see
// auditdb.Store.IngestAll for the contract, which this follows exactly.
func (s *Store) IngestAll(ctx context.Context, groups ...auditdb.NodeBatches) (auditdb.Result, error) {
	var res auditdb.Result
	lo, hi := auditdb.AcceptWindow(s.audit)
	type checked struct {
		node uuid.UUID
		b    *auditdb.Batch
		c    auditdb.CheckedBatch
	}
	var all []checked
	for _, g := range groups {
		node, err := uuid.Parse(g.Node)
		if err != nil {
			return res, fmt.Errorf("audit ingest: node %q is not a UUID: %w", g.Node, err)
		}
		for i := range g.Batches {
			b := &g.Batches[i]
			all = append(all, checked{node: node, b: b, c: auditdb.CheckBatch(node, b, lo, hi)})
		}
	}
	if len(all) == 0 {
		return res, nil
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		ledger, err := tx.PrepareContext(ctx, `INSERT INTO audit_ledger (node_id, epoch, seq, event_count, first_ts, last_ts, batch_hash, prev_hash,
			crc, crc_ok, rejected_count, rejected_reason, dropped_before, gap_first_ts, gap_last_ts, chain_ok, received_at)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
				coalesce((SELECT l.batch_hash = ?8 FROM audit_ledger l WHERE l.node_id = ?1 AND l.epoch = ?2 AND l.seq = ?3 - 1),
					(SELECT p.batch_hash = ?8 FROM audit_ledger_pruned p WHERE p.node_id = ?1 AND p.epoch = ?2 AND p.through_seq = ?3 - 1),
					?3 = 1 AND ?8 IS NULL),
				?16)
			ON CONFLICT (node_id, epoch, seq) DO NOTHING
			RETURNING id, chain_ok`)
		if err != nil {
			return err
		}
		defer ledger.Close()
		events, err := tx.PrepareContext(ctx, `INSERT INTO audit_events (`+eventColumns+`, ledger_id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer events.Close()
		received := us(now())
		// Each epoch's pruned prefix, read once per call: a batch at or
		// below it is a replay whose row retention pruned.
		type epochKey struct {
			node  uuid.UUID
			epoch int64
		}
		pruned := map[epochKey]auditdb.Pruned{}
		for _, a := range all {
			b, c := a.b, a.c
			k := epochKey{a.node, b.Epoch}
			p, ok := pruned[k]
			if !ok {
				if p, err = readEpochPruned(ctx, tx, a.node, b.Epoch); err != nil {
					return fmt.Errorf("audit ingest: %w", err)
				}
				pruned[k] = p
			}
			if b.Seq <= p.Through {
				if b.Seq == p.Through && string(p.Hash) != string(c.Hash[:]) {
					return fmt.Errorf("%w: node %s epoch %d seq %d: stored hash %x, received %x", auditdb.ErrConflict, a.node, b.Epoch, b.Seq, p.Hash, c.Hash[:])
				}
				res.Duplicates++
				res.Pruned++
				continue
			}
			var prev any
			if b.HasPrev() {
				prev = b.PrevHash[:]
			}
			var reason any
			if c.Rejected > 0 {
				reason = c.Reason
			}
			var (
				id      int64
				chainOK bool
			)
			err := ledger.QueryRowContext(ctx, a.node.String(), b.Epoch, b.Seq, b.Count, nullUS(c.First), nullUS(c.Last), c.Hash[:], prev,
				int64(b.CRC), c.CRCOK, c.Rejected, reason, b.DroppedBefore, nullUS(b.GapFirst), nullUS(b.GapLast), received).Scan(&id, &chainOK)
			if errors.Is(err, sql.ErrNoRows) {
				var stored []byte
				if err := tx.QueryRowContext(ctx, `SELECT batch_hash FROM audit_ledger WHERE node_id = ? AND epoch = ? AND seq = ?`,
					a.node.String(), b.Epoch, b.Seq).Scan(&stored); err != nil {
					return fmt.Errorf("audit ingest: reading the stored batch %d/%d: %w", b.Epoch, b.Seq, err)
				}
				if string(stored) != string(c.Hash[:]) {
					return fmt.Errorf("%w: node %s epoch %d seq %d: stored hash %x, received %x", auditdb.ErrConflict, a.node, b.Epoch, b.Seq, stored, c.Hash[:])
				}
				res.Duplicates++
				continue
			}
			if err != nil {
				return fmt.Errorf("audit ingest: ledger row for batch %d/%d: %w", b.Epoch, b.Seq, err)
			}
			res.Batches++
			if !chainOK {
				res.ChainBreaks++
			}
			if !c.CRCOK {
				res.CRCFailures++
			}
			res.Rejected += c.Rejected
			for _, e := range c.Events {
				if _, err := events.ExecContext(ctx, e.ID.String(), us(e.TS), a.node.String(), e.SessionID, e.Principal, e.Transport,
					e.ProtocolVersion, e.ClientName, e.ClientVersion, e.Method, e.Backend, e.Name, e.Decision, e.Rule,
					e.PolicyRevision, e.Status, e.Error, e.LatencyUS, e.UpstreamLatencyUS, e.RequestBytes, e.ResponseBytes,
					e.ArgsSHA256, e.TraceID, id); err != nil {
					return fmt.Errorf("audit ingest: storing event %s: %w", e.ID, err)
				}
				res.Events++
			}
		}
		return nil
	})
	if err != nil {
		return auditdb.Result{}, err
	}
	return res, nil
}

// LedgerHeld reports which batches of (node, epoch) from seq start on are
// already committed.
func (s *Store) LedgerHeld(ctx context.Context, node string, epoch, start int64) (auditdb.Held, error) {
	id, err := uuid.Parse(node)
	if err != nil {
		return auditdb.Held{}, fmt.Errorf("audit ledger: node %q is not a UUID: %w", node, err)
	}
	// Seqs up to a pruned prefix were all accounted for (acknowledged
	// then), so the edge need not send them again.
	pruned, err := readEpochPruned(ctx, s.r, id, epoch)
	if err != nil {
		return auditdb.Held{}, fmt.Errorf("audit ledger: node %s epoch %d: %w", node, epoch, err)
	}
	h := auditdb.Held{Through: start - 1, PrevMissing: start > 1}
	from := max(start-1, 0)
	if pruned.Through > 0 && pruned.Through >= start-1 {
		h.Through, h.PrevMissing = max(h.Through, pruned.Through), false
		from = h.Through + 1
	}
	rows, err := s.r.QueryContext(ctx, `SELECT seq FROM audit_ledger WHERE node_id = ? AND epoch = ? AND seq >= ? ORDER BY seq LIMIT 100000`,
		id.String(), epoch, from)
	if err != nil {
		return auditdb.Held{}, fmt.Errorf("audit ledger: reading node %s epoch %d: %w", node, epoch, err)
	}
	seqs, err := collect(rows, func(r scanner) (int64, error) {
		var v int64
		return v, r.Scan(&v)
	})
	if err != nil {
		return auditdb.Held{}, fmt.Errorf("audit ledger: reading node %s epoch %d: %w", node, epoch, err)
	}
	for _, seq := range seqs {
		switch {
		case seq == start-1:
			h.PrevMissing = false
		case seq == h.Through+1:
			h.Through = seq
		}
	}
	return h, nil
}

// LedgerRows returns the ledger rows of node's epoch with seq in [from, to].
func (s *Store) LedgerRows(ctx context.Context, node string, epoch, from, to int64) ([]auditdb.LedgerRow, error) {
	id, err := uuid.Parse(node)
	if err != nil {
		return nil, fmt.Errorf("audit ledger: node %q is not a UUID: %w", node, err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT seq, event_count, chain_ok, crc_ok, rejected_count, coalesce(rejected_reason, ''), received_at
		FROM audit_ledger WHERE node_id = ? AND epoch = ? AND seq BETWEEN ? AND ? ORDER BY seq`, id.String(), epoch, from, to)
	if err != nil {
		return nil, fmt.Errorf("audit ledger: reading node %s epoch %d seqs %d..%d: %w", node, epoch, from, to, err)
	}
	return collect(rows, func(r scanner) (auditdb.LedgerRow, error) {
		var (
			l   auditdb.LedgerRow
			rcv int64
		)
		err := r.Scan(&l.Seq, &l.EventCount, &l.ChainOK, &l.CRCOK, &l.Rejected, &l.RejectedReason, &rcv)
		l.ReceivedAt = ts(rcv)
		return l, err
	})
}

// retainedSinceKey is the meta row holding where retention last cut.
const retainedSinceKey = "audit_retained_since"

// MaintainPartitions is retention for the embedded store, which has no
// partitions: it deletes the events of whole UTC days that ended before the
// retention period began (the day boundary Postgres drops partitions at)
// and records that cut so Verify compares counts from there. daysAhead is
// checked as Postgres checks it and otherwise unused.
func (s *Store) MaintainPartitions(ctx context.Context, daysAhead int) (auditdb.Maintenance, error) {
	m := auditdb.Maintenance{Locked: true}
	if daysAhead < 0 || daysAhead > 365 {
		return m, fmt.Errorf("audit partitions: days ahead %d is not between 0 and 365", daysAhead)
	}
	lo, _ := auditdb.AcceptWindow(s.audit)
	cut := lo.UTC().Truncate(24 * time.Hour)
	// Delete in chunks, each its own transaction, so a day of events going
	// away never holds the one writer (and with it ingest and admin writes)
	// for long.
	var total int64
	for {
		var n int64
		err := s.writeTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM audit_events WHERE (ts, id) IN
				(SELECT ts, id FROM audit_events WHERE ts < ? ORDER BY ts LIMIT ?)`, us(cut), retentionChunk)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return auditdb.Maintenance{}, fmt.Errorf("audit retention: %w", err)
		}
		total += n
		if n < retentionChunk {
			break
		}
	}
	if total > 0 {
		m.Dropped = append(m.Dropped, fmt.Sprintf("audit_events before %s (%d events)", cut.Format(time.DateOnly), total))
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))`,
			retainedSinceKey, us(cut))
		return err
	})
	if err != nil {
		return auditdb.Maintenance{}, fmt.Errorf("audit retention: %w", err)
	}
	m.Pruned, err = s.pruneLedger(ctx, cut)
	return m, err
}

// pruneLedger deletes, per (node, epoch), the longest prefix of ledger rows
// whose events all lie before cut, folding them into the epoch's
// audit_ledger_pruned row (auditdb.FoldPruned), at most auditdb.PruneChunk
// rows per transaction so the one writer is never held for long. A row
// without stored events counts by its received_at. It returns the rows
// deleted.
func (s *Store) pruneLedger(ctx context.Context, cut time.Time) (int64, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT node_id, epoch FROM audit_ledger ORDER BY node_id, epoch`)
	if err != nil {
		return 0, fmt.Errorf("audit ledger pruning: listing epochs: %w", err)
	}
	type epochKey struct {
		node  uuid.UUID
		epoch int64
	}
	keys, err := collect(rows, func(r scanner) (epochKey, error) {
		var (
			k    epochKey
			node string
		)
		if err := r.Scan(&node, &k.epoch); err != nil {
			return k, err
		}
		k.node, err = uuid.Parse(node)
		return k, err
	})
	if err != nil {
		return 0, fmt.Errorf("audit ledger pruning: listing epochs: %w", err)
	}
	var total int64
	for _, k := range keys {
		// Most epochs have nothing to prune at a given run: one probe of
		// the row after the pruned prefix answers for them.
		var expired bool
		err := s.r.QueryRowContext(ctx, `SELECT coalesce(last_ts, received_at) < ? FROM audit_ledger
			WHERE node_id = ? AND epoch = ?
				AND seq > coalesce((SELECT through_seq FROM audit_ledger_pruned WHERE node_id = ? AND epoch = ?), -1)
			ORDER BY seq LIMIT 1`, us(cut), k.node.String(), k.epoch, k.node.String(), k.epoch).Scan(&expired)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && !expired) {
			continue
		}
		if err != nil {
			return total, fmt.Errorf("audit ledger pruning: node %s epoch %d: %w", k.node, k.epoch, err)
		}
		for {
			began := time.Now()
			n, more, err := s.pruneChunk(ctx, k.node, k.epoch, cut)
			total += n
			if err != nil {
				return total, fmt.Errorf("audit ledger pruning: node %s epoch %d: %w", k.node, k.epoch, err)
			}
			// Leave the one writer to ingest and admin writes as long again.
			if n > 0 && !auditdb.PacePrune(ctx, time.Since(began)) {
				return total, ctx.Err()
			}
			if !more {
				break
			}
		}
	}
	return total, nil
}

// pruneChunk prunes up to auditdb.PruneChunk rows of one epoch; more says
// the chunk was full of expired rows, so there may be others.
func (s *Store) pruneChunk(ctx context.Context, node uuid.UUID, epoch int64, cut time.Time) (n int64, more bool, err error) {
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		p, err := readEpochPruned(ctx, tx, node, epoch)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT seq, event_count, batch_hash, prev_hash, crc_ok, rejected_count, dropped_before,
			gap_first_ts, gap_last_ts, last_ts, coalesce(last_ts, received_at) < ?
			FROM audit_ledger WHERE node_id = ? AND epoch = ? AND seq > ? ORDER BY seq LIMIT ?`,
			us(cut), node.String(), epoch, p.Through, auditdb.PruneChunk)
		if err != nil {
			return fmt.Errorf("reading rows: %w", err)
		}
		type row struct {
			l       auditdb.LedgerLink
			expired bool
		}
		read, err := collect(rows, func(r scanner) (row, error) {
			var (
				x                         row
				gapFirst, gapLast, lastTS sql.NullInt64
			)
			err := r.Scan(&x.l.Seq, &x.l.Count, &x.l.Hash, &x.l.Prev, &x.l.CRCOK, &x.l.Rejected, &x.l.Dropped,
				&gapFirst, &gapLast, &lastTS, &x.expired)
			if gapFirst.Valid && gapLast.Valid {
				x.l.GapFirst, x.l.GapLast = nullTS(gapFirst), nullTS(gapLast)
			}
			x.l.LastTS = nullTS(lastTS)
			return x, err
		})
		if err != nil {
			return fmt.Errorf("reading rows: %w", err)
		}
		var links []auditdb.LedgerLink
		for _, x := range read {
			if !x.expired {
				break // the prefix ends at the first row still retained
			}
			links = append(links, x.l)
		}
		if len(links) == 0 {
			return nil
		}
		p = auditdb.FoldPruned(p, epoch, links)
		listed, err := json.Marshal(p.Listed)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM audit_ledger WHERE node_id = ? AND epoch = ? AND seq <= ?`, node.String(), epoch, p.Through)
		if err != nil {
			return fmt.Errorf("deleting rows: %w", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("deleting rows: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_ledger_pruned (node_id, epoch, first_seq, through_seq, batch_hash,
			batches, events, rejected, dropped, missing, broken_links, crc_failures, last_ts, listed, pruned_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (node_id, epoch) DO UPDATE SET first_seq = excluded.first_seq, through_seq = excluded.through_seq,
				batch_hash = excluded.batch_hash, batches = excluded.batches, events = excluded.events,
				rejected = excluded.rejected, dropped = excluded.dropped, missing = excluded.missing,
				broken_links = excluded.broken_links, crc_failures = excluded.crc_failures,
				last_ts = excluded.last_ts, listed = excluded.listed, pruned_at = excluded.pruned_at`,
			node.String(), epoch, p.FirstSeq, p.Through, p.Hash, p.Batches, p.Events, p.Rejected, p.Dropped,
			p.Missing, p.BrokenLinks, p.CRCFailures, nullUS(p.LastTS), string(listed), us(now())); err != nil {
			return fmt.Errorf("recording the pruned prefix: %w", err)
		}
		more = len(links) == auditdb.PruneChunk
		return nil
	})
	return n, more, err
}

// readPruned returns node's pruned prefixes by epoch, or only epoch's when
// epoch is not nil.
func readPruned(ctx context.Context, q queryer, node uuid.UUID, epoch *int64) ([]auditdb.Pruned, error) {
	query, args := `SELECT epoch, first_seq, through_seq, batch_hash, batches, events, rejected, dropped,
		missing, broken_links, crc_failures, last_ts, listed FROM audit_ledger_pruned WHERE node_id = ?`, []any{node.String()}
	if epoch != nil {
		query, args = query+` AND epoch = ?`, append(args, *epoch)
	}
	rows, err := q.QueryContext(ctx, query+` ORDER BY epoch`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading the pruned ledger: %w", err)
	}
	out, err := collect(rows, func(r scanner) (auditdb.Pruned, error) {
		var (
			p      auditdb.Pruned
			lastTS sql.NullInt64
			listed []byte
		)
		if err := r.Scan(&p.Epoch, &p.FirstSeq, &p.Through, &p.Hash, &p.Batches, &p.Events, &p.Rejected, &p.Dropped,
			&p.Missing, &p.BrokenLinks, &p.CRCFailures, &lastTS, &listed); err != nil {
			return p, err
		}
		p.LastTS = nullTS(lastTS)
		return p, auditdb.UnmarshalListed(listed, &p.Listed)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the pruned ledger: %w", err)
	}
	return out, nil
}

// readEpochPruned returns one epoch's pruned prefix (zero when none).
func readEpochPruned(ctx context.Context, q queryer, node uuid.UUID, epoch int64) (auditdb.Pruned, error) {
	ps, err := readPruned(ctx, q, node, &epoch)
	if err != nil || len(ps) == 0 {
		return auditdb.Pruned{Epoch: epoch}, err
	}
	return ps[0], nil
}

// retentionChunk is how many events one retention transaction deletes.
const retentionChunk = 5000

// filterSQL turns f (all but the time range) into conditions and args.
func filterSQL(f auditdb.Filter, prefix string) ([]string, []any, error) {
	if err := auditdb.CheckFilter(f); err != nil {
		return nil, nil, err
	}
	var (
		where []string
		args  []any
	)
	if f.Node != "" {
		id, _ := uuid.Parse(f.Node) // checked above
		where, args = append(where, prefix+"node_id = ?"), append(args, id.String())
	}
	for _, c := range []struct{ col, v string }{
		{"principal", f.Principal}, {"backend", f.Backend}, {"name", f.Name},
		{"method", f.Method}, {"status", f.Status}, {"decision", f.Decision},
	} {
		if c.v != "" {
			where, args = append(where, prefix+c.col+" = ?"), append(args, c.v)
		}
	}
	return where, args, nil
}

// Query returns events matching f, newest first, at most limit (0 means
// auditdb.DefaultQueryLimit), and a token for the next page, keyset
// paginated on (ts, id) as auditdb.Store.Query is.
func (s *Store) Query(ctx context.Context, f auditdb.Filter, pageToken string, limit int) ([]audit.Event, string, error) {
	if limit == 0 {
		limit = auditdb.DefaultQueryLimit
	}
	if limit < 0 || limit > auditdb.MaxQueryLimit {
		return nil, "", fmt.Errorf("audit query: limit %d is not between 1 and %d", limit, auditdb.MaxQueryLimit)
	}
	where, args, err := filterSQL(f, "")
	if err != nil {
		return nil, "", fmt.Errorf("audit query: %s", strings.TrimPrefix(err.Error(), "audit tail: "))
	}
	if !f.Since.IsZero() {
		where, args = append(where, "ts >= ?"), append(args, us(f.Since))
	}
	if !f.Until.IsZero() {
		where, args = append(where, "ts < ?"), append(args, us(f.Until))
	}
	if pageToken != "" {
		t, id, err := auditdb.DecodePageToken(pageToken)
		if err != nil {
			return nil, "", err
		}
		where, args = append(where, "(ts, id) < (?, ?)"), append(args, us(t), id.String())
	}
	q := "SELECT " + eventColumns + " FROM audit_events"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY ts DESC, id DESC LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("audit query: %w", err)
	}
	events, err := collect(rows, scanEvent)
	if err != nil {
		return nil, "", fmt.Errorf("audit query: %w", err)
	}
	next := ""
	if len(events) > limit {
		events = events[:limit]
		last := events[limit-1]
		next = auditdb.EncodePageToken(last.TS, last.ID)
	}
	return events, next, nil
}

func scanEvent(r scanner) (audit.Event, error) {
	var (
		e    audit.Event
		id   string
		at   int64
		node string
	)
	err := r.Scan(&id, &at, &node, &e.SessionID, &e.Principal, &e.Transport, &e.ProtocolVersion, &e.ClientName, &e.ClientVersion,
		&e.Method, &e.Backend, &e.Name, &e.Decision, &e.Rule, &e.PolicyRevision, &e.Status, &e.Error, &e.LatencyUS,
		&e.UpstreamLatencyUS, &e.RequestBytes, &e.ResponseBytes, &e.ArgsSHA256, &e.TraceID)
	if err != nil {
		return e, err
	}
	if e.ID, err = uuid.Parse(id); err != nil {
		return e, err
	}
	e.TS, e.NodeID = ts(at), node
	return e, nil
}

// Nodes lists the nodes with batches in the ledger.
func (s *Store) Nodes(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT node_id FROM audit_ledger UNION SELECT node_id FROM audit_ledger_pruned ORDER BY node_id`)
	if err != nil {
		return nil, fmt.Errorf("audit verify: listing nodes: %w", err)
	}
	return collect(rows, func(r scanner) (string, error) {
		var n string
		return n, r.Scan(&n)
	})
}

// Verify checks node's chain in the ledger and its stored event count, with
// auditdb's own verdicts (auditdb.VerifyLedger).
func (s *Store) Verify(ctx context.Context, node string) (auditdb.Report, error) {
	nodeID, err := uuid.Parse(node)
	if err != nil {
		return auditdb.Report{Node: node}, fmt.Errorf("audit verify: node %q is not a UUID: %w", node, err)
	}
	var (
		pruned               []auditdb.Pruned
		links                []auditdb.LedgerLink
		ledgerEvents, stored int64
		since                time.Time
	)
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT epoch, seq, event_count, batch_hash, prev_hash, crc_ok, rejected_count, dropped_before,
			gap_first_ts, gap_last_ts
			FROM audit_ledger WHERE node_id = ? ORDER BY epoch, seq`, nodeID.String())
		if err != nil {
			return fmt.Errorf("reading the ledger: %w", err)
		}
		links, err = collect(rows, func(r scanner) (auditdb.LedgerLink, error) {
			var l auditdb.LedgerLink
			var gapFirst, gapLast sql.NullInt64
			err := r.Scan(&l.Epoch, &l.Seq, &l.Count, &l.Hash, &l.Prev, &l.CRCOK, &l.Rejected, &l.Dropped, &gapFirst, &gapLast)
			if gapFirst.Valid && gapLast.Valid {
				l.GapFirst, l.GapLast = nullTS(gapFirst), nullTS(gapLast)
			}
			return l, err
		})
		if err != nil {
			return fmt.Errorf("reading the ledger: %w", err)
		}
		if pruned, err = readPruned(ctx, tx, nodeID, nil); err != nil {
			return err
		}
		var cut sql.NullInt64
		err = tx.QueryRowContext(ctx, `SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?`, retainedSinceKey).Scan(&cut)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("reading the retention cut: %w", err)
		}
		since = nullTS(cut)
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(CASE WHEN crc_ok THEN event_count - rejected_count ELSE 0 END), 0)
			FROM audit_ledger WHERE node_id = ? AND (first_ts IS NULL OR first_ts >= ?)`, nodeID.String(), us(since)).Scan(&ledgerEvents); err != nil {
			return fmt.Errorf("summing the ledger: %w", err)
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE node_id = ? AND ts >= ?`,
			nodeID.String(), us(since)).Scan(&stored); err != nil {
			return fmt.Errorf("counting events: %w", err)
		}
		return nil
	})
	if err != nil {
		return auditdb.Report{Node: nodeID.String()}, fmt.Errorf("audit verify: %w", err)
	}
	return auditdb.VerifyLedger(nodeID.String(), pruned, links, ledgerEvents, stored, since), nil
}

// OpenTail returns a tail of events matching f. With one writer, ledger
// ids become visible in commit order, so the tail simply reads the batches
// after the last id it has seen; lag is unused.
func (s *Store) OpenTail(f auditdb.Filter, _ time.Duration) (auditdb.Tail, error) {
	where, args, err := filterSQL(f, "e.")
	if err != nil {
		return nil, err
	}
	return &tail{s: s, where: where, args: args, after: -1}, nil
}

// tail follows audit_ledger.id. Not safe for concurrent use.
type tail struct {
	s     *Store
	where []string
	args  []any
	// after is the last ledger id reported; -1 before the first Poll.
	after int64
}

// maxTailBatches bounds the batches one Poll reads; the rest come next time.
const maxTailBatches = 2000

func (t *tail) Poll(ctx context.Context) ([]audit.Event, error) {
	if t.after < 0 {
		var last sql.NullInt64
		if err := t.s.r.QueryRowContext(ctx, `SELECT max(id) FROM audit_ledger`).Scan(&last); err != nil {
			return nil, fmt.Errorf("audit tail: reading the ledger: %w", err)
		}
		t.after = last.Int64
		return nil, nil
	}
	var (
		out  []audit.Event
		upto int64
	)
	err := t.s.readTx(ctx, func(tx *sql.Tx) error {
		var top sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT max(id) FROM (SELECT id FROM audit_ledger WHERE id > ? ORDER BY id LIMIT ?)`,
			t.after, maxTailBatches).Scan(&top); err != nil {
			return fmt.Errorf("audit tail: reading the ledger: %w", err)
		}
		if !top.Valid {
			upto = t.after
			return nil
		}
		upto = top.Int64
		cols := strings.ReplaceAll("e."+eventColumns, ", ", ", e.")
		cols = strings.ReplaceAll(cols, ",\n\t", ", e.")
		q := `SELECT ` + cols + ` FROM audit_events e WHERE e.ledger_id > ? AND e.ledger_id <= ?`
		for _, w := range t.where {
			q += " AND " + w
		}
		q += ` ORDER BY e.ledger_id, e.ts, e.id`
		rows, err := tx.QueryContext(ctx, q, append([]any{t.after, upto}, t.args...)...)
		if err != nil {
			return fmt.Errorf("audit tail: reading events: %w", err)
		}
		out, err = collect(rows, scanEvent)
		if err != nil {
			return fmt.Errorf("audit tail: reading events: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	t.after = upto
	return out, nil
}
