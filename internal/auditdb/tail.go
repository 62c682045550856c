package auditdb

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mcpgw/mcpgw/internal/audit"
)

// DefaultTailLag is how far back a Tailer looks for batches on every poll.
// audit_ledger.received_at is the ingest transaction's start time, so a
// batch becomes visible up to one transaction duration after its
// received_at; the lag must exceed the longest ingest transaction
// (controlplane/ingest bounds commits well below it).
const DefaultTailLag = 15 * time.Second

// maxTailBatches bounds the batches one Poll reads; the rest come next time.
const maxTailBatches = 2000

// Tailer follows audit events as they are committed, across every control
// plane replica: it polls audit_ledger by received_at (one row per batch,
// so cheap) with a lag window, remembers which batches it has reported, and
// reads the new batches' events by node and time range with the filter
// applied. Events appear in commit order, whatever their ts, so a batch
// replayed from a spool after an outage is tailed when it lands.
//
// A Tailer is not safe for concurrent use; one per tail stream.
type Tailer struct {
	s      *Store
	f      Filter
	lag    time.Duration
	primed bool
	// seen holds the batches already reported, with their received_at, and
	// ids the events reported (a node's consecutive batches can overlap in
	// time by a few µs, so one batch's range query may return a neighbour's
	// event); both are pruned as the window moves on.
	seen    map[batchKey]time.Time
	seenIDs map[uuid.UUID]time.Time
}

type batchKey struct {
	node       uuid.UUID
	epoch, seq int64
}

// NewTailer returns a Tailer for events matching f (Since and Until are
// ignored: a tail starts now). lag 0 means DefaultTailLag.
func (s *Store) NewTailer(f Filter, lag time.Duration) (*Tailer, error) {
	if _, _, err := filterWhere(f, nil, "e."); err != nil {
		return nil, err
	}
	if lag <= 0 {
		lag = DefaultTailLag
	}
	f.Since, f.Until = time.Time{}, time.Time{}
	return &Tailer{s: s, f: f, lag: lag, seen: map[batchKey]time.Time{}, seenIDs: map[uuid.UUID]time.Time{}}, nil
}

// Poll returns the matching events committed since the previous Poll,
// oldest commit first. The first Poll marks "now" and returns nothing that
// was committed before it.
func (t *Tailer) Poll(ctx context.Context) ([]audit.Event, error) {
	var dbNow time.Time
	if err := t.s.pool.QueryRow(ctx, `SELECT now()`).Scan(&dbNow); err != nil {
		return nil, fmt.Errorf("audit tail: reading the clock: %w", err)
	}
	// On the first Poll everything in the window was committed before the
	// tail started: it is marked seen, not reported.
	from := dbNow.Add(-t.lag)
	type cand struct {
		key    batchKey
		lo, hi time.Time
		recv   time.Time
	}
	rows, err := t.s.pool.Query(ctx, `SELECT node_id, epoch, seq, first_ts, last_ts, received_at FROM audit_ledger
		WHERE received_at >= $1 AND crc_ok AND first_ts IS NOT NULL
		ORDER BY received_at, node_id, epoch, seq`, from)
	if err != nil {
		return nil, fmt.Errorf("audit tail: reading the ledger: %w", err)
	}
	var cands []cand
	for rows.Next() {
		var c cand
		if err := rows.Scan(&c.key.node, &c.key.epoch, &c.key.seq, &c.lo, &c.hi, &c.recv); err != nil {
			rows.Close()
			return nil, fmt.Errorf("audit tail: reading the ledger: %w", err)
		}
		if _, ok := t.seen[c.key]; ok {
			continue
		}
		t.seen[c.key] = c.recv
		if t.primed && len(cands) < maxTailBatches {
			cands = append(cands, c)
		} else if t.primed {
			delete(t.seen, c.key) // next Poll
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit tail: reading the ledger: %w", err)
	}
	// Forget what fell out of the window.
	for k, r := range t.seen {
		if r.Before(dbNow.Add(-2 * t.lag)) {
			delete(t.seen, k)
		}
	}
	for id, r := range t.seenIDs {
		if r.Before(dbNow.Add(-2 * t.lag)) {
			delete(t.seenIDs, id)
		}
	}
	if !t.primed {
		t.primed = true
		return nil, nil
	}
	if len(cands) == 0 {
		return nil, nil
	}
	nodes := make([]uuid.UUID, len(cands))
	los := make([]time.Time, len(cands))
	his := make([]time.Time, len(cands))
	ords := make([]int64, len(cands))
	for i, c := range cands {
		nodes[i], los[i], his[i], ords[i] = c.key.node, c.lo, c.hi, int64(i)
	}
	args := []any{nodes, los, his, ords}
	where, args, err := filterWhere(t.f, args, "e.")
	if err != nil {
		return nil, err
	}
	cols := make([]string, len(eventColumns))
	for i, c := range eventColumns {
		cols[i] = "e." + c
	}
	sql := `SELECT ` + strings.Join(cols, ", ") + `
		FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::bigint[]) AS b(node, lo, hi, ord)
		JOIN audit_events e ON e.node_id = b.node AND e.ts BETWEEN b.lo AND b.hi`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY b.ord, e.ts, e.id"
	erows, err := t.s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("audit tail: reading events: %w", err)
	}
	events, err := pgx.CollectRows(erows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("audit tail: reading events: %w", err)
	}
	out := events[:0]
	for _, e := range events {
		if _, ok := t.seenIDs[e.ID]; ok {
			continue
		}
		t.seenIDs[e.ID] = dbNow
		out = append(out, e)
	}
	return out, nil
}

// filterWhere appends the conditions of f (all but the time range) on
// columns prefixed with prefix, numbering parameters after args.
func filterWhere(f Filter, args []any, prefix string) ([]string, []any, error) {
	var where []string
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, prefix+strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.Node != "" {
		id, err := uuid.Parse(f.Node)
		if err != nil {
			return nil, nil, fmt.Errorf("audit tail: node %q is not a UUID", f.Node)
		}
		add("node_id = ?", id)
	}
	switch f.Status {
	case "", audit.StatusOK, audit.StatusError, audit.StatusDenied, audit.StatusTimeout, audit.StatusCancelled, audit.StatusUnavailable:
	default:
		return nil, nil, fmt.Errorf("audit tail: status %q is not one of ok, error, denied, timeout, cancelled, unavailable", f.Status)
	}
	switch f.Decision {
	case "", audit.DecisionAllow, audit.DecisionDeny:
	default:
		return nil, nil, fmt.Errorf("audit tail: decision %q is not allow or deny", f.Decision)
	}
	for _, c := range []struct{ col, v string }{
		{"principal", f.Principal}, {"backend", f.Backend}, {"name", f.Name},
		{"method", f.Method}, {"status", f.Status}, {"decision", f.Decision},
	} {
		if c.v != "" {
			add(c.col+" = ?", c.v)
		}
	}
	return where, args, nil
}

// Tail is a live tail of committed events: a *Tailer here, the embedded
// store's own poller in controlplane/store/sqlitestore.
type Tail interface {
	// Poll returns the matching events committed since the previous Poll;
	// the first Poll marks "now" and returns nothing.
	Poll(ctx context.Context) ([]audit.Event, error)
}

// OpenTail is NewTailer behind the Tail interface, so the admin API can
// tail either store.
func (s *Store) OpenTail(f Filter, lag time.Duration) (Tail, error) {
	t, err := s.NewTailer(f, lag)
	if err != nil {
		return nil, err
	}
	return t, nil
}
