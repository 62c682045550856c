package auditdb

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpgw/mcpgw/internal/audit"
)

// Defaults for Options.
const (
	DefaultRetention = 30 * 24 * time.Hour
	DefaultMaxFuture = 24 * time.Hour
)

// Options bound what ingest accepts.
type Options struct {
	// Retention: events older than this are rejected (their day is, or is
	// about to be, dropped by retention).
	Retention time.Duration
	// MaxFuture: events further ahead than this are rejected (a skewed
	// clock must not create partitions for years ahead).
	MaxFuture time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Store runs audit SQL on a pool. It is safe for concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	opts  Options
	owned bool // Open made pool, so Close closes it

	// mu guards days: the UTC days (Unix day numbers) whose partition this
	// Store has ensured, so ingest calls the partition function once per day.
	mu   sync.Mutex
	days map[int64]bool
}

// New returns a Store using pool. It does not connect.
func New(pool *pgxpool.Pool, opts Options) *Store {
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.MaxFuture <= 0 {
		opts.MaxFuture = DefaultMaxFuture
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{pool: pool, opts: opts, days: map[int64]bool{}}
}

// Result says what one Ingest call did.
type Result struct {
	// Batches new to the ledger, and batches already there (replays).
	Batches, Duplicates int
	// Events stored in audit_events.
	Events int
	// Rejected events (recorded in audit_ledger.rejected_count/reason).
	Rejected int
	// ChainBreaks counts new batches recorded with chain_ok = false, and
	// CRCFailures those whose payload did not match the CRC sent.
	ChainBreaks, CRCFailures int
	// Pruned counts the replays (included in Duplicates) of batches at or
	// below their epoch's pruned prefix: retention pruned their ledger rows,
	// so they are acknowledged as ingested and nothing is stored. Only the
	// last pruned seq can still be compared by hash.
	Pruned int
}

// ErrConflict means a batch's (node, epoch, seq) is already in the ledger
// with a different hash: a forged or rewritten batch. Nothing of the call
// is stored.
var ErrConflict = errors.New("audit batch conflicts with the stored batch of the same seq")

// Ingest stores batches from node (its UUID), in one transaction: for each
// batch, in order, a ledger row keyed (node, epoch, seq) inserted with ON
// CONFLICT DO NOTHING and, only when the row is new, its events, copied
// into audit_events. A replayed batch (same hash) changes nothing; a
// different batch under a known seq fails the call with ErrConflict.
//
// Checks are recorded, never silently passed: a batch whose prev_hash does
// not match the stored previous batch of its epoch (or whose previous batch
// is missing; seq 1 must have none) gets chain_ok = false; one whose CRC
// (Batch.CRC) does not match its lines gets crc_ok = false and none of its events stored;
// events that are invalid, claim another node, or fall outside the accepted
// window (older than Retention, further ahead than MaxFuture) are not
// stored and counted with a reason in rejected_count/rejected_reason.
func (s *Store) Ingest(ctx context.Context, node string, batches ...Batch) (Result, error) {
	return s.IngestAll(ctx, NodeBatches{Node: node, Batches: batches})
}

// NodeBatches are batches from one node.
type NodeBatches struct {
	Node    string
	Batches []Batch
}

// IngestAll is Ingest for batches of several nodes in one transaction, so
// the control plane can coalesce small batches from many streams into one
// commit. Each node's batches must be in seq order. An error (ErrConflict
// included) stores nothing of the call; retry node by node to isolate it.
func (s *Store) IngestAll(ctx context.Context, groups ...NodeBatches) (Result, error) {
	var res Result
	now := s.opts.Now()
	lo, hi := now.Add(-s.opts.Retention), now.Add(s.opts.MaxFuture)

	// Decode and check everything before touching the database.
	var prepared []*preparedBatch
	days := map[int64]bool{}
	for _, g := range groups {
		nodeID, err := uuid.Parse(g.Node)
		if err != nil {
			return res, fmt.Errorf("audit ingest: node %q is not a UUID: %w", g.Node, err)
		}
		for i := range g.Batches {
			p := &preparedBatch{b: &g.Batches[i], node: nodeID}
			p.prepare(lo, hi)
			for _, r := range p.rows {
				days[dayOf(r.TS)] = true
			}
			prepared = append(prepared, p)
		}
	}
	if len(prepared) == 0 {
		return res, nil
	}
	if err := s.ensureDays(ctx, days); err != nil {
		return res, err
	}

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("audit ingest: beginning transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	if err := insertLedgers(ctx, tx, prepared); err != nil {
		return Result{}, err
	}
	src := &eventSource{}
	total := 0
	for _, p := range prepared {
		if !p.isNew {
			res.Duplicates++
			if p.pruned {
				res.Pruned++
			}
			continue
		}
		res.Batches++
		if !p.chainOK {
			res.ChainBreaks++
		}
		if !p.crcOK {
			res.CRCFailures++
		}
		res.Rejected += p.rejected
		if len(p.rows) > 0 {
			src.batches = append(src.batches, p)
			total += len(p.rows)
		}
	}
	if total > 0 {
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, eventColumns, src)
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "23514" && strings.Contains(pgErr.Message, "no partition") {
				// A partition vanished under us (retention): forget the
				// cache so the retry ensures it again or rejects the event.
				s.mu.Lock()
				clear(s.days)
				s.mu.Unlock()
			}
			return Result{}, fmt.Errorf("audit ingest: copying %d events: %w", total, err)
		}
		res.Events = int(n)
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{}, fmt.Errorf("audit ingest: committing: %w", err)
	}
	return res, nil
}

// preparedBatch is a batch decoded and checked for ingest.
type preparedBatch struct {
	b        *Batch
	node     uuid.UUID
	isNew    bool // set by insertLedgers: the ledger row was inserted
	pruned   bool // a replay at or below its epoch's pruned prefix
	chainOK  bool
	hash     [32]byte
	crcOK    bool
	rows     []*audit.Event // events to store
	rejected int
	reason   string
	first    time.Time // time range of the stored events
	last     time.Time
}

func (p *preparedBatch) prepare(lo, hi time.Time) {
	node := p.node
	p.hash = p.b.Hash()
	p.crcOK = CRC32C(p.b.Lines) == p.b.CRC
	reasons := map[string]int{}
	n := 0
	err := p.b.EachLine(func(line []byte) error {
		n++
		ev, err := decodeEvent(line)
		if err != nil {
			reasons["invalid event"]++
			return nil
		}
		switch {
		case ev.NodeID != "" && !strings.EqualFold(ev.NodeID, node.String()):
			reasons["node_id is not the sending node"]++
		case ev.TS.Before(lo):
			reasons["older than the retention period"]++
		case ev.TS.After(hi):
			reasons["too far in the future"]++
		default:
			if p.crcOK {
				p.rows = append(p.rows, &ev)
			}
			// The ledger's time range covers the stored events, so that
			// Verify compares like with like after retention.
			if p.first.IsZero() || ev.TS.Before(p.first) {
				p.first = ev.TS
			}
			if ev.TS.After(p.last) {
				p.last = ev.TS
			}
		}
		return nil
	})
	if err != nil || n != p.b.Count {
		reasons["malformed batch framing"] += max(0, p.b.Count-n)
	}
	if !p.crcOK {
		p.rows = nil
		p.rejected = p.b.Count
		p.reason = "CRC-32C mismatch: batch corrupted in transit"
		return
	}
	for _, c := range reasons {
		p.rejected += c
	}
	p.rejected = min(p.rejected, p.b.Count)
	if p.rejected > 0 {
		keys := make([]string, 0, len(reasons))
		for k := range reasons {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%d %s", reasons[k], k)
		}
		p.reason = strings.Join(parts, "; ")
	}
}

// insertLedgerSQL inserts every batch's ledger row in one statement. The
// chain check of a row compares its prev_hash with the stored batch before
// it (the statement's snapshot) or, when that batch is not stored yet but
// travels in the same call (a catch-up ships runs of consecutive batches
// together), with that batch's hash, which the caller passes as call_prev;
// seq 1 must have no prev_hash; the batch right after an epoch's pruned
// prefix links to the prefix's last hash. Rows whose key is stored (or
// repeated in the call), or at or below the pruned prefix, are skipped and
// are absent from RETURNING.
const insertLedgerSQL = `
INSERT INTO audit_ledger (node_id, epoch, seq, event_count, first_ts, last_ts, batch_hash, prev_hash,
    crc, crc_ok, rejected_count, rejected_reason, dropped_before, gap_first_ts, gap_last_ts, chain_ok)
SELECT i.node_id, i.epoch, i.seq, i.event_count, i.first_ts, i.last_ts, i.batch_hash, i.prev_hash,
    i.crc, i.crc_ok, i.rejected_count, i.rejected_reason, i.dropped_before, i.gap_first_ts, i.gap_last_ts,
    coalesce((SELECT l.batch_hash = i.prev_hash FROM audit_ledger l
              WHERE l.node_id = i.node_id AND l.epoch = i.epoch AND l.seq = i.seq - 1),
             (SELECT p.batch_hash = i.prev_hash FROM audit_ledger_pruned p
              WHERE p.node_id = i.node_id AND p.epoch = i.epoch AND p.through_seq = i.seq - 1),
             CASE WHEN i.call_prev IS NOT NULL THEN i.call_prev = i.prev_hash END,
             i.seq = 1 AND i.prev_hash IS NULL)
FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::integer[], $5::timestamptz[], $6::timestamptz[],
    $7::bytea[], $8::bytea[], $9::bigint[], $10::boolean[], $11::integer[], $12::text[], $13::bigint[],
    $14::timestamptz[], $15::timestamptz[], $16::bytea[])
    AS i(node_id, epoch, seq, event_count, first_ts, last_ts, batch_hash, prev_hash, crc, crc_ok,
        rejected_count, rejected_reason, dropped_before, gap_first_ts, gap_last_ts, call_prev)
WHERE NOT EXISTS (SELECT 1 FROM audit_ledger_pruned p
                  WHERE p.node_id = i.node_id AND p.epoch = i.epoch AND p.through_seq >= i.seq)
ON CONFLICT (node_id, epoch, seq) DO NOTHING
RETURNING node_id, epoch, seq, chain_ok`

// ledgerKey is an audit_ledger primary key.
type ledgerKey struct {
	node       uuid.UUID
	epoch, seq int64
}

// insertLedgers inserts the ledger rows of all batches in one statement,
// marks the batches whose row is new (with their chain verdict), and checks
// that every other one carries the hash already stored for its seq. A
// catch-up after an outage, or an edge under sync durability (a batch per
// group commit), ships thousands of small batches: a statement or a round
// trip per batch would dominate the ingest.
func insertLedgers(ctx context.Context, tx pgx.Tx, prepared []*preparedBatch) error {
	n := len(prepared)
	var (
		nodes                     = make([]uuid.UUID, n)
		epochs, seqs, crcs, drops = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		counts, rejected          = make([]int32, n), make([]int32, n)
		firsts, lasts             = make([]*time.Time, n), make([]*time.Time, n)
		gapFirsts, gapLasts       = make([]*time.Time, n), make([]*time.Time, n)
		hashes, prevs, callPrevs  = make([][]byte, n), make([][]byte, n), make([][]byte, n)
		crcOK                     = make([]bool, n)
		reasons                   = make([]*string, n)
	)
	// The hash of the first batch of the call under each key, for the
	// chain check of the batch after it.
	inCall := make(map[ledgerKey][]byte, n)
	for _, p := range prepared {
		k := ledgerKey{p.node, p.b.Epoch, p.b.Seq}
		if _, ok := inCall[k]; !ok {
			inCall[k] = p.hash[:]
		}
	}
	for i, p := range prepared {
		b := p.b
		nodes[i], epochs[i], seqs[i], counts[i] = p.node, b.Epoch, b.Seq, int32(b.Count)
		callPrevs[i] = inCall[ledgerKey{p.node, b.Epoch, b.Seq - 1}]
		firsts[i], lasts[i] = nullTime(p.first), nullTime(p.last)
		hashes[i] = p.hash[:]
		if b.HasPrev() {
			prevs[i] = b.PrevHash[:]
		}
		crcs[i], crcOK[i], rejected[i] = int64(b.CRC), p.crcOK, int32(p.rejected)
		if p.rejected > 0 {
			reasons[i] = &p.reason
		}
		drops[i], gapFirsts[i], gapLasts[i] = b.DroppedBefore, nullTime(b.GapFirst), nullTime(b.GapLast)
	}
	rows, err := tx.Query(ctx, insertLedgerSQL, nodes, epochs, seqs, counts, firsts, lasts, hashes, prevs,
		crcs, crcOK, rejected, reasons, drops, gapFirsts, gapLasts, callPrevs)
	if err != nil {
		return fmt.Errorf("audit ingest: ledger rows: %w", err)
	}
	inserted := make(map[ledgerKey]bool, n)
	for rows.Next() {
		var k ledgerKey
		var chainOK bool
		if err := rows.Scan(&k.node, &k.epoch, &k.seq, &chainOK); err != nil {
			rows.Close()
			return fmt.Errorf("audit ingest: ledger rows: %w", err)
		}
		inserted[k] = chainOK
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit ingest: ledger rows: %w", err)
	}
	// The first batch of the call under a new key is the one that was
	// inserted; any later one under the same key is a replay of it.
	var dups []*preparedBatch
	for _, p := range prepared {
		k := ledgerKey{p.node, p.b.Epoch, p.b.Seq}
		if chainOK, ok := inserted[k]; ok {
			p.isNew, p.chainOK = true, chainOK
			delete(inserted, k)
			continue
		}
		dups = append(dups, p)
	}
	if len(inserted) > 0 {
		return fmt.Errorf("audit ingest: the ledger returned %d rows no batch of the call asked for", len(inserted))
	}
	return checkReplays(ctx, tx, dups)
}

// checkReplays makes sure every batch whose key the ledger already holds
// (a replay after a lost ack) is the stored batch, in one query; a
// different hash under a stored seq is a forgery or a rewrite: ErrConflict.
// A batch at or below its epoch's pruned prefix is marked pruned: its row
// is gone, only the prefix's last hash can still be compared.
func checkReplays(ctx context.Context, tx pgx.Tx, dups []*preparedBatch) error {
	if len(dups) == 0 {
		return nil
	}
	nodes, epochs, seqs := make([]uuid.UUID, len(dups)), make([]int64, len(dups)), make([]int64, len(dups))
	for i, p := range dups {
		nodes[i], epochs[i], seqs[i] = p.node, p.b.Epoch, p.b.Seq
	}
	rows, err := tx.Query(ctx, `SELECT d.node_id, d.epoch, d.seq, l.batch_hash, p.through_seq, p.batch_hash
		FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS d(node_id, epoch, seq)
		LEFT JOIN audit_ledger l ON l.node_id = d.node_id AND l.epoch = d.epoch AND l.seq = d.seq
		LEFT JOIN audit_ledger_pruned p ON p.node_id = d.node_id AND p.epoch = d.epoch`, nodes, epochs, seqs)
	if err != nil {
		return fmt.Errorf("audit ingest: reading the stored batches of %d replays: %w", len(dups), err)
	}
	type stored struct {
		hash, prunedHash []byte
		prunedThrough    *int64
	}
	found := make(map[ledgerKey]stored, len(dups))
	for rows.Next() {
		var (
			k  ledgerKey
			st stored
		)
		if err := rows.Scan(&k.node, &k.epoch, &k.seq, &st.hash, &st.prunedThrough, &st.prunedHash); err != nil {
			rows.Close()
			return fmt.Errorf("audit ingest: reading the stored batches of %d replays: %w", len(dups), err)
		}
		found[k] = st
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit ingest: reading the stored batches of %d replays: %w", len(dups), err)
	}
	for _, p := range dups {
		st := found[ledgerKey{p.node, p.b.Epoch, p.b.Seq}]
		h := st.hash
		if h == nil {
			if st.prunedThrough == nil || *st.prunedThrough < p.b.Seq {
				return fmt.Errorf("audit ingest: batch %d/%d was neither inserted nor found in the ledger", p.b.Epoch, p.b.Seq)
			}
			p.pruned = true
			if *st.prunedThrough != p.b.Seq {
				continue // nothing left to compare it with
			}
			h = st.prunedHash
		}
		if string(h) != string(p.hash[:]) {
			return fmt.Errorf("%w: node %s epoch %d seq %d: stored hash %x, received %x", ErrConflict, p.node, p.b.Epoch, p.b.Seq, h, p.hash[:])
		}
	}
	return nil
}

// ensureDays creates the partitions of days not yet known to exist. It runs
// outside the ingest transaction so the partition locks are not held across
// the COPY.
func (s *Store) ensureDays(ctx context.Context, days map[int64]bool) error {
	s.mu.Lock()
	var missing []int64
	for d := range days {
		if !s.days[d] {
			missing = append(missing, d)
		}
	}
	s.mu.Unlock()
	for _, d := range missing {
		day := time.Unix(d*86400, 0).UTC()
		if _, err := s.pool.Exec(ctx, `SELECT mcpgw_ensure_audit_partitions($1::date, 1)`, day.Format(time.DateOnly)); err != nil {
			return fmt.Errorf("audit ingest: ensuring the partition for %s: %w", day.Format(time.DateOnly), err)
		}
		s.mu.Lock()
		s.days[d] = true
		s.mu.Unlock()
	}
	return nil
}

func dayOf(t time.Time) int64 {
	u := t.Unix()
	if u < 0 {
		return (u - 86399) / 86400
	}
	return u / 86400
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

var eventColumns = []string{
	"id", "ts", "node_id", "session_id", "principal", "transport", "protocol_version",
	"client_name", "client_version", "method", "backend", "name", "decision", "rule",
	"policy_revision", "status", "error", "latency_us", "upstream_latency_us",
	"request_bytes", "response_bytes", "args_sha256", "trace_id",
}

// eventSource feeds the stored events of new batches to CopyFrom without
// building a [][]any up front.
type eventSource struct {
	batches []*preparedBatch
	bi, ri  int // current batch, and the next row in it
	cur     *audit.Event
	node    uuid.UUID
	// id and nodeID are the current row's uuids in binary form; vals points
	// at them, so Values allocates nothing for them.
	id, nodeID pgtype.UUID
	vals       [23]any
}

func (s *eventSource) Next() bool {
	for s.bi < len(s.batches) {
		p := s.batches[s.bi]
		if s.ri < len(p.rows) {
			s.cur, s.node = p.rows[s.ri], p.node
			s.ri++
			return true
		}
		s.bi, s.ri = s.bi+1, 0
	}
	return false
}

func (s *eventSource) Err() error { return nil }

func (s *eventSource) Values() ([]any, error) {
	e := s.cur
	v := &s.vals
	// pgtype.UUID is copied as its 16 bytes. A uuid.UUID is a
	// driver.Valuer, so pgx would format it as a 36-character string (an
	// allocation) and parse that back into 16 bytes, for two columns of
	// every row.
	s.id, s.nodeID = pgtype.UUID{Bytes: e.ID, Valid: true}, pgtype.UUID{Bytes: s.node, Valid: true}
	v[0], v[1], v[2], v[3], v[4] = &s.id, e.TS, &s.nodeID, e.SessionID, e.Principal
	v[5], v[6], v[7], v[8], v[9] = e.Transport, e.ProtocolVersion, e.ClientName, e.ClientVersion, e.Method
	v[10], v[11], v[12], v[13], v[14] = e.Backend, e.Name, e.Decision, e.Rule, e.PolicyRevision
	v[15], v[16], v[17], v[18] = e.Status, e.Error, e.LatencyUS, e.UpstreamLatencyUS
	v[19], v[20], v[21], v[22] = e.RequestBytes, e.ResponseBytes, e.ArgsSHA256, e.TraceID
	return v[:], nil
}

// Open returns a Store on a new pool for databaseURL, for a standalone edge
// whose audit goes straight to Postgres. It does not connect: an
// unreachable database shows up as failing ingests, not as a failed start.
// Close releases the pool.
func Open(ctx context.Context, databaseURL string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, errors.New("audit postgres_url is not a valid Postgres URL")
	}
	// Ingest holds one connection at a time per sink; a small pool
	// keeps an edge from crowding the database.
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("audit postgres pool: %w", err)
	}
	s := New(pool, opts)
	s.owned = true
	return s, nil
}

// Close closes the pool if Open made it.
func (s *Store) Close() {
	if s.owned {
		s.pool.Close()
	}
}
