package auditdb

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
)

// SeqRange is an inclusive range of batch seqs.
type SeqRange struct{ From, To int64 }

// EpochReport is the verification of one spool epoch of a node.
type EpochReport struct {
	Epoch             int64
	Batches           int64
	FirstSeq, LastSeq int64
	// Missing lists seqs absent from the ledger: batches never received.
	Missing []SeqRange
	// BrokenLinks lists seqs whose prev_hash is not the hash of the stored
	// batch before them (tampered, forged, or an edge that skipped a
	// corrupt record), and CRCFailures those that arrived corrupted.
	BrokenLinks []int64
	CRCFailures []int64
	// Events in the ledger, events refused at ingest, and events the edge
	// dropped under on_full: drop (gap records).
	Events, Rejected, Dropped int64
	// Gaps lists the drops (at most maxListed), with when they happened.
	Gaps []Gap
	// Pruned is the prefix of the epoch whose ledger rows retention has
	// removed (Through is 0 when none). Its batches, counts and listed
	// problems are included in the fields above, so a report reads the
	// same before and after a prune.
	Pruned Pruned

	// Totals of the capped lists, for folding into a Pruned.
	missing, broken, crcFailed int64
	lastHash                   []byte
	lastTS                     time.Time
}

// Pruned is what the ledger keeps of a (node, epoch) prefix whose rows
// retention pruned (audit_ledger_pruned): enough to carry the chain on
// from the next batch, to recognise a replay of a pruned seq, and to
// report the prefix as pruned rather than missing.
type Pruned struct {
	Epoch int64
	// FirstSeq is the lowest seq the ledger held; every seq from 1 through
	// Through is accounted for here (held and pruned, or counted missing).
	FirstSeq, Through int64
	// Hash is the batch_hash of seq Through: the prev_hash the batch after
	// it must carry.
	Hash []byte
	// Batches pruned and their events, rejected and dropped counts.
	Batches, Events, Rejected, Dropped int64
	// Problems among the pruned rows, counted, and listed as Verify lists
	// them (capped alike), so that a report reads the same after a prune.
	Missing, BrokenLinks, CRCFailures int64
	Listed                            Listed
	// LastTS is the newest event time among the pruned batches.
	LastTS time.Time
}

// FoldPruned extends pruned (zero for none) by ledger rows of epoch that
// follow it, sorted by seq (their Epoch is set to epoch), judging their
// links exactly as Verify does. Rows at or below pruned.Through are
// ignored. Both stores prune with it, so a prune never changes a report.
func FoldPruned(pruned Pruned, epoch int64, links []LedgerLink) Pruned {
	pruned.Epoch = epoch
	for i := range links {
		links[i].Epoch = epoch
	}
	var rep Report
	rep.walkChain(pruned.asList(), links)
	if len(rep.Epochs) == 0 {
		return pruned
	}
	e := rep.Epochs[0]
	return Pruned{Epoch: epoch, FirstSeq: e.FirstSeq, Through: e.LastSeq, Hash: e.lastHash,
		Batches: e.Batches, Events: e.Events, Rejected: e.Rejected, Dropped: e.Dropped,
		Missing: e.missing, BrokenLinks: e.broken, CRCFailures: e.crcFailed, LastTS: e.lastTS,
		Listed: Listed{Missing: e.Missing, BrokenLinks: e.BrokenLinks, CRCFailures: e.CRCFailures, Gaps: e.Gaps}}
}

// Listed are the per-epoch lists of a report, as a pruned prefix keeps
// them (audit_ledger_pruned.listed, JSON).
type Listed struct {
	Missing     []SeqRange `json:"missing,omitempty"`
	BrokenLinks []int64    `json:"broken_links,omitempty"`
	CRCFailures []int64    `json:"crc_failures,omitempty"`
	Gaps        []Gap      `json:"gaps,omitempty"`
}

func (p Pruned) asList() []Pruned {
	if p.Through == 0 {
		return nil
	}
	return []Pruned{p}
}

// Gap is one run of events an edge dropped (on_full: drop), recorded by the
// batch after it.
type Gap struct {
	// Seq of the batch that recorded the gap.
	Seq    int64
	Events int64
	// First and Last are the times of the first and last lost event; zero
	// when the edge did not send them.
	First, Last time.Time
}

// Report is the verification of a node's audit chain.
type Report struct {
	Node   string
	Epochs []EpochReport
	// ChainComplete: every epoch's seqs are contiguous from 1, every link
	// and CRC holds, and the stored event count matches the ledger.
	ChainComplete bool
	// LedgerEvents is what the ledger says was stored (events minus
	// rejected, CRC-valid batches) within the retained days; StoredEvents
	// is what audit_events holds for the node in the same days.
	LedgerEvents, StoredEvents int64
	// Dropped and Rejected total the epochs': losses that were recorded,
	// not hidden.
	Dropped, Rejected int64
	// RetainedSince is the start of the oldest partition: counts are
	// compared from there on, since retention drops older days.
	RetainedSince time.Time
	// Problems says, one line each, what is wrong or was lost.
	Problems []string
}

// maxListed bounds the per-epoch lists of seqs in a report.
const maxListed = 100

// Verify checks node's chain in audit_ledger: per epoch, seqs contiguous
// from 1, each prev_hash equal to the stored previous batch_hash, CRCs ok;
// and the number of its events in audit_events against the ledger.
func (s *Store) Verify(ctx context.Context, node string) (Report, error) {
	rep := Report{Node: node}
	nodeID, err := uuid.Parse(node)
	if err != nil {
		return rep, fmt.Errorf("audit verify: node %q is not a UUID: %w", node, err)
	}
	rep.Node = nodeID.String()
	rows, err := s.pool.Query(ctx, `
SELECT epoch, seq, event_count, batch_hash, prev_hash, crc_ok, rejected_count, dropped_before, gap_first_ts, gap_last_ts
FROM audit_ledger WHERE node_id = $1 ORDER BY epoch, seq`, nodeID)
	if err != nil {
		return rep, fmt.Errorf("audit verify: reading the ledger: %w", err)
	}
	var links []LedgerLink
	for rows.Next() {
		var l LedgerLink
		var gapFirst, gapLast *time.Time
		if err := rows.Scan(&l.Epoch, &l.Seq, &l.Count, &l.Hash, &l.Prev, &l.CRCOK, &l.Rejected, &l.Dropped, &gapFirst, &gapLast); err != nil {
			rows.Close()
			return rep, fmt.Errorf("audit verify: reading the ledger: %w", err)
		}
		if gapFirst != nil && gapLast != nil {
			l.GapFirst, l.GapLast = gapFirst.UTC(), gapLast.UTC()
		}
		links = append(links, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("audit verify: reading the ledger: %w", err)
	}
	pruned, err := readPruned(ctx, s.pool, nodeID)
	if err != nil {
		return rep, fmt.Errorf("audit verify: %w", err)
	}
	rep.walkChain(pruned, links)

	// Compare counts over the days retention has kept.
	var oldest *string
	if err := s.pool.QueryRow(ctx, `
SELECT min(substring(c.relname from '^audit_events_p([0-9]{8})$'))
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = 'audit_events'`).Scan(&oldest); err != nil {
		return rep, fmt.Errorf("audit verify: finding the oldest partition: %w", err)
	}
	if oldest != nil {
		if t, err := time.Parse("20060102", *oldest); err == nil {
			rep.RetainedSince = t
		}
	}
	if err := s.pool.QueryRow(ctx, `
SELECT coalesce(sum(event_count - rejected_count) FILTER (WHERE crc_ok), 0)
FROM audit_ledger WHERE node_id = $1 AND (first_ts IS NULL OR first_ts >= $2)`,
		nodeID, rep.RetainedSince).Scan(&rep.LedgerEvents); err != nil {
		return rep, fmt.Errorf("audit verify: summing the ledger: %w", err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE node_id = $1 AND ts >= $2`,
		nodeID, rep.RetainedSince).Scan(&rep.StoredEvents); err != nil {
		return rep, fmt.Errorf("audit verify: counting events: %w", err)
	}

	rep.conclude()
	return rep, nil
}

// LedgerLink is one ledger row as chain verification reads it.
type LedgerLink struct {
	Epoch, Seq int64
	Count      int32
	Hash, Prev []byte
	CRCOK      bool
	Rejected   int32
	Dropped    int64
	// GapFirst and GapLast bound the times of the Dropped events, when the
	// edge sent them (zero otherwise).
	GapFirst, GapLast time.Time
	// LastTS is the newest stored event's time (zero when none); only
	// pruning reads it, for Pruned.LastTS.
	LastTS time.Time
}

// VerifyLedger builds the Report of node from its pruned prefixes (sorted
// by epoch), its ledger rows (sorted by epoch, seq) and the two event
// counts over the retained days, exactly as Verify does; the embedded store
// (controlplane/store/sqlitestore) reads its own tables and calls it, so
// both stores judge a chain alike.
func VerifyLedger(node string, pruned []Pruned, links []LedgerLink, ledgerEvents, storedEvents int64, retainedSince time.Time) Report {
	rep := Report{Node: node, LedgerEvents: ledgerEvents, StoredEvents: storedEvents, RetainedSince: retainedSince}
	rep.walkChain(pruned, links)
	rep.conclude()
	return rep
}

// walkChain fills the per-epoch reports from the pruned prefixes and the
// ledger rows, both sorted by epoch (rows by seq): gaps, broken links, CRC
// failures and the counts. An epoch with a pruned prefix starts from it:
// its next seq is Through + 1, linked to its Hash; rows at or below Through
// (a pruned seq that arrived again while it was being pruned) are skipped.
func (rep *Report) walkChain(pruned []Pruned, links []LedgerLink) {
	var (
		cur      *EpochReport
		prevHash []byte
		prevSeq  int64
	)
	start := func(epoch int64) {
		rep.Epochs = append(rep.Epochs, EpochReport{Epoch: epoch})
		cur = &rep.Epochs[len(rep.Epochs)-1]
		prevHash, prevSeq = nil, 0
		if len(pruned) > 0 && pruned[0].Epoch == epoch {
			p := pruned[0]
			pruned = pruned[1:]
			cur.Pruned = p
			cur.FirstSeq, cur.LastSeq = p.FirstSeq, p.Through
			cur.Batches, cur.Events, cur.Rejected, cur.Dropped = p.Batches, p.Events, p.Rejected, p.Dropped
			cur.missing, cur.broken, cur.crcFailed = p.Missing, p.BrokenLinks, p.CRCFailures
			cur.Missing, cur.BrokenLinks = slices.Clone(p.Listed.Missing), slices.Clone(p.Listed.BrokenLinks)
			cur.CRCFailures, cur.Gaps = slices.Clone(p.Listed.CRCFailures), slices.Clone(p.Listed.Gaps)
			cur.lastTS = p.LastTS
			prevSeq, prevHash = p.Through, p.Hash
			cur.lastHash = p.Hash
		}
	}
	for _, l := range links {
		// Epochs pruned whole come before this row's epoch.
		for len(pruned) > 0 && pruned[0].Epoch < l.Epoch {
			start(pruned[0].Epoch)
		}
		epoch, seq, prev := l.Epoch, l.Seq, l.Prev
		if cur == nil || cur.Epoch != epoch {
			start(epoch)
		}
		// Seqs start at 1 (the AuditStream contract): the first row is
		// judged against seq 0 with no hash.
		switch {
		case seq <= prevSeq:
			continue // at or below the pruned prefix: already accounted for
		case seq != prevSeq+1:
			if len(cur.Missing) < maxListed {
				cur.Missing = append(cur.Missing, SeqRange{prevSeq + 1, seq - 1})
			}
			cur.missing += seq - prevSeq - 1
		case !bytes.Equal(prev, prevHash):
			if len(cur.BrokenLinks) < maxListed {
				cur.BrokenLinks = append(cur.BrokenLinks, seq)
			}
			cur.broken++
		}
		if !l.CRCOK {
			if len(cur.CRCFailures) < maxListed {
				cur.CRCFailures = append(cur.CRCFailures, seq)
			}
			cur.crcFailed++
		}
		if cur.Batches == 0 {
			cur.FirstSeq = seq
		}
		cur.Batches++
		cur.LastSeq = seq
		cur.Events += int64(l.Count)
		cur.Rejected += int64(l.Rejected)
		cur.Dropped += l.Dropped
		if l.Dropped > 0 && len(cur.Gaps) < maxListed {
			cur.Gaps = append(cur.Gaps, Gap{Seq: seq, Events: l.Dropped, First: l.GapFirst, Last: l.GapLast})
		}
		if l.LastTS.After(cur.lastTS) {
			cur.lastTS = l.LastTS
		}
		prevSeq, prevHash = seq, l.Hash
		cur.lastHash = l.Hash
	}
	for _, p := range pruned {
		start(p.Epoch)
	}
}

// conclude compares the counts and lists the problems.
func (rep *Report) conclude() {
	rep.ChainComplete = rep.LedgerEvents == rep.StoredEvents
	if !rep.ChainComplete {
		rep.Problems = append(rep.Problems, fmt.Sprintf("audit_events holds %d events of this node, the ledger says %d", rep.StoredEvents, rep.LedgerEvents))
	}
	for _, e := range rep.Epochs {
		rep.Dropped += e.Dropped
		rep.Rejected += e.Rejected
		if e.missing > 0 || e.broken > 0 || e.crcFailed > 0 {
			rep.ChainComplete = false
		}
		for _, m := range e.Missing {
			rep.Problems = append(rep.Problems, fmt.Sprintf("epoch %d: batches %d..%d missing", e.Epoch, m.From, m.To))
		}
		for _, q := range e.BrokenLinks {
			rep.Problems = append(rep.Problems, fmt.Sprintf("epoch %d: batch %d does not link to the batch before it", e.Epoch, q))
		}
		for _, q := range e.CRCFailures {
			rep.Problems = append(rep.Problems, fmt.Sprintf("epoch %d: batch %d arrived corrupted (CRC mismatch)", e.Epoch, q))
		}
		for _, g := range e.Gaps {
			when := "at an unrecorded time"
			if !g.First.IsZero() {
				when = "between " + g.First.Format(time.RFC3339Nano) + " and " + g.Last.Format(time.RFC3339Nano)
			}
			rep.Problems = append(rep.Problems, fmt.Sprintf("epoch %d: %d events dropped at the edge (on_full: drop) %s, before batch %d",
				e.Epoch, g.Events, when, g.Seq))
		}
		if n := int64(0); len(e.Gaps) == maxListed {
			for _, g := range e.Gaps {
				n += g.Events
			}
			if e.Dropped > n {
				rep.Problems = append(rep.Problems, fmt.Sprintf("epoch %d: %d more events dropped at the edge in later gaps", e.Epoch, e.Dropped-n))
			}
		}
		if e.Rejected > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("epoch %d: %d events rejected at ingest", e.Epoch, e.Rejected))
		}
	}
}

// Nodes lists the nodes with batches in the ledger, for verifying them all.
func (s *Store) Nodes(ctx context.Context) ([]string, error) {
	// A node whose rows were all pruned still has a chain to verify.
	rows, err := s.pool.Query(ctx, `SELECT node_id FROM audit_ledger UNION SELECT node_id FROM audit_ledger_pruned ORDER BY node_id`)
	if err != nil {
		return nil, fmt.Errorf("audit verify: listing nodes: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("audit verify: listing nodes: %w", err)
		}
		out = append(out, id.String())
	}
	return out, rows.Err()
}
