package auditlog

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// holdSink checks that the batches it is given stay intact for as long as
// it holds them: the reader recycles its chunk buffers, and a chunk that
// is overwritten too early shows here as a batch whose bytes no longer
// hash to what the reader checked when it read them. While closed it
// fails every delivery and holds on to the failed batches (the slice and
// the memory it aliases, not copies) until they come again, when they
// must be byte for byte what they were. Like the control-plane shipper it
// hands each delivery to another goroutine and waits for it, so that
// under -race a write to a held chunk shows as a race too.
type holdSink struct {
	t      *testing.T
	checks chan []SealedBatch
	done   chan error

	// mu guards open.
	mu   sync.Mutex
	open bool

	// Owned by the delivery goroutine.
	held     []SealedBatch
	heldRaw  [][]byte // copies of held's Raw, taken when they were first given
	next     int64    // seq the next batch must have
	prevHash [32]byte
	lines    [][]byte // every delivered event line, copied
	calls    int
	maxBytes int // the most bytes one delivery carried
}

func newHoldSink(t *testing.T) *holdSink {
	s := &holdSink{t: t, checks: make(chan []SealedBatch), done: make(chan error), next: 1}
	go func() {
		for bs := range s.checks {
			s.done <- checkBatches(bs)
		}
	}()
	t.Cleanup(func() { close(s.checks) })
	return s
}

func (s *holdSink) Name() string { return "hold" }

// MaxDelivery asks for everything at once, so one read spans many chunks
// and, with small segments, several segment files.
func (s *holdSink) MaxDelivery() (int, int) { return 1 << 20, 64 << 20 }

func (s *holdSink) setOpen(open bool) {
	s.mu.Lock()
	s.open = open
	s.mu.Unlock()
}

// checkBatches verifies every batch against its own checks: CRC and hash
// recomputed from Lines, and Raw decoding to the same header and Lines.
func checkBatches(bs []SealedBatch) error {
	for i := range bs {
		b := &bs[i]
		if auditdb.CRC32C(b.Lines) != b.CRC {
			return errors.New("a batch's Lines no longer match their CRC")
		}
		if b.Batch.Hash() != b.Hash {
			return errors.New("a batch no longer hashes to its Hash")
		}
		d, err := auditdb.DecodeBatch(b.Raw)
		if err != nil || d.Seq != b.Seq || !bytes.Equal(d.Lines, b.Lines) {
			return errors.New("a batch's Raw no longer decodes to the batch")
		}
	}
	return nil
}

func (s *holdSink) Deliver(_ context.Context, bs []SealedBatch) error {
	s.calls++
	if s.held != nil {
		// The Log retries a failed delivery with the same batches.
		if len(bs) != len(s.held) || bs[0].Seq != s.held[0].Seq {
			s.t.Errorf("redelivery of %d batches from seq %d, want the %d held from seq %d", len(bs), bs[0].Seq, len(s.held), s.held[0].Seq)
		}
		for i := range s.held {
			if !bytes.Equal(s.held[i].Raw, s.heldRaw[i]) {
				s.t.Errorf("held batch %d was overwritten between a failed delivery and its retry", s.held[i].Seq)
			}
		}
	}
	// Check them on another goroutine while this one waits, as the
	// shipper sends them from its stream goroutine.
	s.checks <- bs
	if err := <-s.done; err != nil {
		s.t.Errorf("delivery %d: %v", s.calls, err)
	}
	s.mu.Lock()
	open := s.open
	s.mu.Unlock()
	if !open {
		if s.held == nil {
			s.held = bs
			s.heldRaw = s.heldRaw[:0]
			for i := range bs {
				s.heldRaw = append(s.heldRaw, bytes.Clone(bs[i].Raw))
			}
		}
		return errors.New("sink closed by the test")
	}
	s.held, s.heldRaw = nil, nil
	n := 0
	for i := range bs {
		b := &bs[i]
		if b.Seq != s.next || b.PrevHash != s.prevHash {
			s.t.Errorf("batch %d does not continue the chain after %d", b.Seq, s.next-1)
		}
		s.next, s.prevHash = b.Seq+1, b.Hash
		n += len(b.Raw)
		_ = b.EachLine(func(line []byte) error {
			s.lines = append(s.lines, bytes.Clone(line))
			return nil
		})
	}
	s.maxBytes = max(s.maxBytes, n)
	return nil
}

// The reader reuses its chunk buffers, but never while a sink holds
// batches that alias them: a backlog read in one delivery spans many
// chunks and segments, a failed delivery is retried with the same bytes,
// and every event arrives once, intact and in order.
func TestChunkReuseKeepsHeldBatchesIntact(t *testing.T) {
	dir := t.TempDir()
	sink := newHoldSink(t)
	// Segments of a few chunks: a delivery reads several chunks of one
	// file and crosses several files, so chunks are replaced mid-segment
	// and retired at a segment's end while batches alias them.
	l, stop := startLog(t, Config{Dir: dir, SegmentBytes: 600 << 10}, sink)
	const n = 3000
	want := make([][]byte, 0, n)
	for i := range n {
		ev := testEvent(i)
		if err := l.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		want = append(want, []byte(ev.ID.String()))
	}
	sink.setOpen(true)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if sink.maxBytes < 2*readChunk {
		t.Fatalf("the largest delivery carried %d bytes; the test needs one spanning several %d-byte chunks", sink.maxBytes, readChunk)
	}
	if len(sink.lines) != n {
		t.Fatalf("%d events delivered, want %d", len(sink.lines), n)
	}
	for i, line := range sink.lines {
		if !bytes.Contains(line, want[i]) {
			t.Fatalf("event %d delivered is not the event recorded %d-th", i, i)
		}
	}
	t.Logf("%d deliveries, the largest %d bytes", sink.calls, sink.maxBytes)
}
