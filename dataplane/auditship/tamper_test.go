package auditship_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// A spool record altered on the edge's disk before it was shipped is not
// just noticed at the edge: the control plane's VerifyAudit reports it.
// Edited with a matching record CRC, the batch is shipped with the hash of
// what it now holds, so the next batch's link breaks; with a flipped byte
// the edge drops the record as corrupt and its seq is missing.
func TestTamperedSpoolRecordIsReportedByVerify(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fixCRC     bool
		wantBroken []int64
		wantMiss   []auditdb.SeqRange
	}{
		{name: "edited with a valid record CRC", fixCRC: true, wantBroken: []int64{3}},
		{name: "flipped byte", fixCRC: false, wantMiss: []auditdb.SeqRange{{From: 2, To: 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			addr := freeAddr(t)
			node := uuid.NewString()
			conn := e.nodeConn(node, addr)
			dir := t.TempDir()
			// No control plane yet: every batch stays in the spool. One
			// event per Record, one batch per group commit.
			ed := startEdge(t, node, dir, conn)
			ed.record(t, 4)
			ed.stop()

			segs, err := filepath.Glob(filepath.Join(dir, "seg-*.log"))
			if err != nil || len(segs) == 0 {
				t.Fatalf("spool segments: %v %v", segs, err)
			}
			slices.Sort(segs)
			data, err := os.ReadFile(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			// Records: 4-byte length, 4-byte CRC-32C, payload. Rewrite the
			// principal in the second one.
			const hdr = 8
			off := hdr + int(binary.BigEndian.Uint32(data[0:4]))
			n := int(binary.BigEndian.Uint32(data[off : off+4]))
			payload := data[off+hdr : off+hdr+n]
			i := strings.Index(string(payload), `"alice"`)
			if i < 0 {
				t.Fatalf("second record holds no alice: %q", payload)
			}
			copy(payload[i:], `"mallo"`)
			if tc.fixCRC {
				binary.BigEndian.PutUint32(data[off+4:off+8], auditdb.CRC32C(payload))
			}
			if err := os.WriteFile(segs[0], data, 0o600); err != nil {
				t.Fatal(err)
			}

			e.startCP(addr, nil)
			ed2 := startEdge(t, node, dir, conn)
			var rep auditdb.Report
			waitFor(t, 20*time.Second, "the spool to be shipped", func() bool {
				rep, err = e.store.Verify(t.Context(), node)
				return err == nil && len(rep.Epochs) == 1 && rep.Epochs[0].LastSeq >= 4 && ed2.log.Stats().UnackedBatches == 0
			})
			ep := rep.Epochs[0]
			t.Logf("verify: complete=%v broken=%v missing=%v problems=%q", rep.ChainComplete, ep.BrokenLinks, ep.Missing, rep.Problems)
			if rep.ChainComplete || !slices.Equal(ep.BrokenLinks, tc.wantBroken) || !slices.Equal(ep.Missing, tc.wantMiss) {
				t.Fatalf("verify: complete=%v broken %v missing %v; want incomplete, broken %v, missing %v",
					rep.ChainComplete, ep.BrokenLinks, ep.Missing, tc.wantBroken, tc.wantMiss)
			}
			if st := ed2.log.Stats(); st.Corrupt == 0 {
				t.Errorf("the edge did not count the altered record at recovery: %+v", st)
			}
		})
	}
}
