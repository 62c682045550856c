package auditdb_test

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

func TestBatchRoundTripAndHash(t *testing.T) {
	now := time.Now().UTC()
	b := chain(9, 4, [32]byte{1}, [][]audit.Event{evts(now, 3, 0)})[0]
	b.DroppedBefore, b.GapFirst, b.GapLast = 2, now.Truncate(time.Microsecond), now.Add(time.Second).Truncate(time.Microsecond)
	enc := b.AppendBinary(nil)
	got, err := auditdb.DecodeBatch(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got.Epoch != 9 || got.Seq != 4 || got.Count != 3 || got.DroppedBefore != 2 || !got.GapFirst.Equal(b.GapFirst) ||
		!got.GapLast.Equal(b.GapLast) || got.PrevHash != b.PrevHash || string(got.Lines) != string(b.Lines) {
		t.Fatalf("round trip changed the batch: %+v", got)
	}
	if got.Hash() != b.Hash() || got.CRC != auditdb.CRC32C(got.Lines) {
		t.Fatal("hash or CRC differs after a round trip")
	}
	// Any changed byte changes the hash.
	enc[len(enc)-5] ^= 1
	if mod, err := auditdb.DecodeBatch(enc); err == nil && mod.Hash() == b.Hash() {
		t.Fatal("a modified batch has the same hash")
	}
}

func TestDecodeBatchRejectsBadFraming(t *testing.T) {
	good := chain(1, 1, [32]byte{}, [][]audit.Event{evts(time.Now(), 2, 0)})[0].AppendBinary(nil)
	for name, p := range map[string][]byte{
		"short":         good[:10],
		"bad magic":     append([]byte("XXXX"), good[4:]...),
		"count too big": append(append([]byte{}, good[:auditdb.BatchHeaderSize-1]...), append([]byte{9}, good[auditdb.BatchHeaderSize:]...)...),
		"trailing":      append(append([]byte{}, good...), "{}"...),
	} {
		if _, err := auditdb.DecodeBatch(p); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "audit batch") {
			t.Errorf("%s: unclear error %v", name, err)
		}
	}
}

// DecodeBatch takes bytes from disk and the network: it must never panic,
// and whatever it accepts must re-encode to the same bytes (so the hash an
// edge computed is the hash ingest recomputes).
func FuzzDecodeBatch(f *testing.F) {
	f.Add(chain(1, 1, [32]byte{}, [][]audit.Event{evts(time.Unix(1e9, 0), 2, 0)})[0].AppendBinary(nil))
	f.Add([]byte("MGAB\x01"))
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := auditdb.DecodeBatch(p)
		if err != nil {
			return
		}
		if got := b.AppendBinary(nil); string(got) != string(p) {
			t.Fatalf("re-encoding changed the batch:\n%x\n%x", p, got)
		}
		_ = b.EachLine(func([]byte) error { return nil })
	})
}

// Hash is exactly what proto/mcpgw/v1 AuditBatch.hash defines: SHA-256 over
// prev_hash (32 zero bytes when empty) || seq (8 bytes BE) ||
// dropped_before (8 bytes BE) || payload.
func TestHashIsTheWireContract(t *testing.T) {
	b := chain(3, 7, [32]byte{9, 9}, [][]audit.Event{evts(time.Now(), 2, 0)})[0]
	b.DroppedBefore = 5
	var in []byte
	in = append(in, b.PrevHash[:]...)
	in = binary.BigEndian.AppendUint64(in, 7)
	in = binary.BigEndian.AppendUint64(in, 5)
	in = append(in, b.Lines...)
	if b.Hash() != sha256.Sum256(in) {
		t.Fatal("Batch.Hash differs from the AuditBatch.hash definition")
	}
	first := chain(3, 1, [32]byte{}, [][]audit.Event{evts(time.Now(), 1, 0)})[0]
	in = append(make([]byte, 32), 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0)
	if first.Hash() != sha256.Sum256(append(in, first.Lines...)) {
		t.Fatal("first batch: empty prev_hash must hash as 32 zero bytes")
	}
	if first.CRC != auditdb.CRC32C(first.Lines) {
		t.Fatal("CRC is not over the payload")
	}

	// With gap times, they follow the payload as Unix µs; the hash of the
	// same batch without them stays what it was before they travelled.
	gap := chain(3, 7, [32]byte{9, 9}, [][]audit.Event{evts(time.Now(), 2, 0)})[0]
	gap.DroppedBefore = 5
	without := gap.Hash()
	gap.GapFirst, gap.GapLast = time.UnixMicro(1_700_000_000_000_001), time.UnixMicro(1_700_000_000_900_000)
	in = append(in[:0], gap.PrevHash[:]...)
	in = binary.BigEndian.AppendUint64(in, 7)
	in = binary.BigEndian.AppendUint64(in, 5)
	in = append(in, gap.Lines...)
	if without != sha256.Sum256(in) {
		t.Fatal("a batch without gap times must hash as before")
	}
	in = binary.BigEndian.AppendUint64(in, 1_700_000_000_000_001)
	in = binary.BigEndian.AppendUint64(in, 1_700_000_000_900_000)
	if gap.Hash() != sha256.Sum256(in) {
		t.Fatal("gap times are not covered as the AuditBatch.hash definition says")
	}
}
