package auditdb_test

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// Folding any prefixes of a chain into pruned prefixes, in chunks of any
// size, leaves VerifyLedger's report as it was over the whole ledger: same
// verdict, totals, lists (missing seqs, broken links, CRC failures, drop
// gaps, more than the lists hold) and problems.
func TestFoldPrunedKeepsTheReport(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	hash := func(epoch, seq int64) []byte {
		h := sha256.Sum256(fmt.Appendf(nil, "%d/%d", epoch, seq))
		return h[:]
	}
	t0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	var links []auditdb.LedgerLink
	for epoch := int64(1); epoch <= 3; epoch++ {
		for seq := int64(1); seq <= 400; seq++ {
			if rng.IntN(20) == 0 && seq != 1 {
				continue // never arrived
			}
			l := auditdb.LedgerLink{Epoch: epoch, Seq: seq, Count: int32(1 + rng.IntN(3)), Hash: hash(epoch, seq), CRCOK: rng.IntN(30) != 0,
				LastTS: t0.Add(time.Duration(seq) * time.Second)}
			if seq > 1 {
				l.Prev = hash(epoch, seq-1)
			}
			if rng.IntN(25) == 0 {
				l.Prev = hash(epoch, 0) // forged
			}
			if rng.IntN(3) == 0 {
				l.Rejected = 1
			}
			if rng.IntN(2) == 0 { // more gaps than a report lists
				l.Dropped, l.GapFirst, l.GapLast = int64(1+rng.IntN(5)), t0, t0.Add(time.Second)
			}
			links = append(links, l)
		}
	}
	const node = "0190c0de-0000-7000-8000-0000000000aa"
	want := auditdb.VerifyLedger(node, nil, links, 7, 7, t0)
	if want.ChainComplete || len(want.Epochs) != 3 || len(want.Epochs[0].Gaps) != 100 {
		t.Fatalf("the test chain should be broken in every way and hold more gaps than listed: %+v", want)
	}
	for _, chunk := range []int{1, 7, 50, 1000} {
		// Epoch 1 pruned whole, epoch 2 up to its 300th row, epoch 3 not at all.
		var pruned []auditdb.Pruned
		var rest []auditdb.LedgerLink
		for epoch, upto := range map[int64]int{1: 1 << 30, 2: 300} {
			var rows []auditdb.LedgerLink
			for _, l := range links {
				if l.Epoch == epoch {
					rows = append(rows, l)
				}
			}
			upto = min(upto, len(rows))
			p := auditdb.Pruned{}
			for i := 0; i < upto; i += chunk {
				p = auditdb.FoldPruned(p, epoch, slices.Clone(rows[i:min(i+chunk, upto)]))
			}
			pruned = append(pruned, p)
			rest = append(rest, rows[upto:]...)
		}
		for _, l := range links {
			if l.Epoch == 3 {
				rest = append(rest, l)
			}
		}
		slices.SortFunc(pruned, func(a, b auditdb.Pruned) int { return int(a.Epoch - b.Epoch) })
		slices.SortFunc(rest, func(a, b auditdb.LedgerLink) int {
			if a.Epoch != b.Epoch {
				return int(a.Epoch - b.Epoch)
			}
			return int(a.Seq - b.Seq)
		})
		got := auditdb.VerifyLedger(node, pruned, rest, 7, 7, t0)
		if got.ChainComplete != want.ChainComplete || got.Dropped != want.Dropped || got.Rejected != want.Rejected ||
			!slices.Equal(got.Problems, want.Problems) || len(got.Epochs) != 3 {
			t.Fatalf("chunks of %d: report\n%v\nwant\n%v", chunk, got.Problems, want.Problems)
		}
		for i, e := range got.Epochs {
			w := want.Epochs[i]
			if e.Epoch != w.Epoch || e.Batches != w.Batches || e.FirstSeq != w.FirstSeq || e.LastSeq != w.LastSeq || e.Events != w.Events ||
				!slices.Equal(e.Missing, w.Missing) || !slices.Equal(e.BrokenLinks, w.BrokenLinks) || !slices.Equal(e.CRCFailures, w.CRCFailures) ||
				len(e.Gaps) != len(w.Gaps) {
				t.Fatalf("chunks of %d, epoch %d:\n%+v\nwant\n%+v", chunk, e.Epoch, e, w)
			}
		}
		if p := got.Epochs[0].Pruned; p.Through != 400 || !p.LastTS.Equal(t0.Add(400*time.Second)) {
			t.Fatalf("chunks of %d: epoch 1 pruned as %+v", chunk, p)
		}
	}
}
