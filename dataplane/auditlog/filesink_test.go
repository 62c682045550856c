package auditlog

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// sealBatches builds a chain of n batches of per events each, as the
// writer would.
func sealBatches(n, per int, from int64, prev [32]byte) []SealedBatch {
	var out []SealedBatch
	for s := range n {
		b := auditdb.Batch{Epoch: 7, Seq: from + int64(s), PrevHash: prev}
		for i := range per {
			b.Lines = append(testEvent(s*per+i).AppendJSON(b.Lines), '\n')
			b.Count++
		}
		b.CRC = auditdb.CRC32C(b.Lines)
		raw := b.AppendBinary(nil)
		h := b.Hash()
		out = append(out, SealedBatch{Batch: b, Hash: h, Raw: raw})
		prev = h
	}
	return out
}

func batchIDs(t *testing.T, bs []SealedBatch) []string { return eventIDs(t, bs) }

// Redelivery after a crash (the cursor was not persisted) writes nothing
// twice, and a partial last line left by the crash is cut.
func TestFileSinkRedeliveryWritesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	bs := sealBatches(4, 3, 1, [32]byte{})
	bs[2].DroppedBefore, bs[2].GapFirst, bs[2].GapLast = 9, time.Now(), time.Now()
	s1, _ := NewFileSink(path, 0, 0)
	if err := s1.Deliver(context.Background(), bs[:3]); err != nil {
		t.Fatal(err)
	}
	s1.Close()
	appendFile(t, path, []byte(`{"id":"0190`)) // a crash mid-line

	s2, _ := NewFileSink(path, 0, 0)
	// The cursor said only batch 0 was acknowledged: 1..3 come again.
	if err := s2.Deliver(context.Background(), bs[1:]); err != nil {
		t.Fatal(err)
	}
	ids, gaps := fileLines(t, path)
	if want := batchIDs(t, bs); !slices.Equal(ids, want) {
		t.Fatalf("file has %d events, want each of %d once", len(ids), len(want))
	}
	if len(gaps) != 1 {
		t.Fatalf("gap lines: %q", gaps)
	}
	// Redelivery ending on the gap line itself.
	s2.Close()
	s3, _ := NewFileSink(path, 0, 0)
	more := sealBatches(1, 2, 5, bs[3].Hash)
	if err := s3.Deliver(context.Background(), append(slices.Clone(bs[3:]), more...)); err != nil {
		t.Fatal(err)
	}
	ids, _ = fileLines(t, path)
	if want := batchIDs(t, append(bs, more...)); !slices.Equal(ids, want) {
		t.Fatalf("file has %d events, want %d", len(ids), len(want))
	}
}

// Rotation by size: old files are named with a UTC timestamp and only the
// newest keep are kept.
func TestFileSinkRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	s, _ := NewFileSink(path, 2000, 2)
	clock := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	s.nowFunc = func() time.Time { clock = clock.Add(time.Second); return clock }
	bs := sealBatches(10, 3, 1, [32]byte{})
	for i := range bs {
		if err := s.Deliver(context.Background(), bs[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	if len(old) != 2 {
		t.Fatalf("rotated files: %v, want 2 kept", old)
	}
	if filepath.Base(old[1]) < filepath.Base(old[0]) || filepath.Base(old[0])[:15] != "audit-20261126T" {
		t.Fatalf("rotated names: %v", old)
	}
	st, _ := os.Stat(path)
	if st.Size() == 0 || st.Size() > 2000+1500 {
		t.Fatalf("current file is %d bytes", st.Size())
	}
}
