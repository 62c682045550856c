package auditlog

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

// Every ack is on disk for the next process however the sink's process
// ends (the in-place write needs no fsync to survive it), across seqs of
// every width.
func TestCursorOverwrittenInPlace(t *testing.T) {
	dir := t.TempDir()
	s, _, err := openSpool(dir, DefaultSegmentBytes, []string{"file"}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	var size int64 = -1
	for _, seq := range []int64{1, 9, 10, 99, 100, 12345, 1 << 40, 2} {
		h := [32]byte{byte(seq), byte(seq >> 8), 0xee}
		if err := s.ack("file", seq, h, nil); err != nil {
			t.Fatal(err)
		}
		c, err := readCursor(dir, "file", s.epoch)
		if err != nil {
			t.Fatal(err)
		}
		if c.acked != seq || c.hash != h {
			t.Fatalf("after ack %d the cursor file reads %d %x", seq, c.acked, c.hash)
		}
		st, err := os.Stat(filepath.Join(dir, cursorPrefix+"file"))
		if err != nil {
			t.Fatal(err)
		}
		if size >= 0 && st.Size() != size {
			t.Fatalf("cursor file changed size %d -> %d: an in-place write must cover it all", size, st.Size())
		}
		size = st.Size()
	}
	if err := s.closeCursor("file", nil); err != nil {
		t.Fatal(err)
	}
	// A cursor written by an older version (shorter line) is replaced whole
	// by the first ack.
	line := "v1 " + strconv.FormatInt(s.epoch, 10) + " 7 " + hex.EncodeToString(make([]byte, 32)) + "\n"
	if err := os.WriteFile(filepath.Join(dir, cursorPrefix+"file"), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, _, err := openSpool(dir, DefaultSegmentBytes, []string{"file"}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if got := s2.consumers["file"].acked; got != 7 {
		t.Fatalf("old-format cursor read as %d, want 7", got)
	}
	if err := s2.ack("file", 123456789, [32]byte{1}, nil); err != nil {
		t.Fatal(err)
	}
	if c, err := readCursor(dir, "file", s2.epoch); err != nil || c.acked != 123456789 {
		t.Fatalf("cursor after ack: %+v, %v", c, err)
	}
	s2.closeCursor("file", nil)
}

// A machine crash can leave a sink's cursor far behind what the sink has
// stored (the cursor is fsynced lazily). When the edge starts again, the
// file sink must still get every event exactly once: the Log resumes it at
// the batch holding its file's last line, not at its stale cursor, however
// many deliveries that is behind.
func TestStaleCursorCausesNoDuplicates(t *testing.T) {
	for _, stale := range []string{"behind", "missing"} {
		t.Run(stale, func(t *testing.T) {
			dir := t.TempDir()
			sinkPath := filepath.Join(t.TempDir(), "audit.jsonl")
			cfg := Config{Dir: dir}
			l, stop := startLog(t, cfg, newGateSink(t, sinkPath, true))
			// One sync caller at a time: one batch per event, so the stale
			// cursor below is hundreds of batches (several deliveries) behind.
			const n = 300
			for i := range n {
				if err := l.Record(context.Background(), testEvent(i)); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the file sink to catch up", 10*time.Second, func() bool {
				a, _ := l.Acked("file")
				return a == int64(l.Stats().Batches)
			})
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if b := l.Stats().Batches; b < 3*deliverMaxBatches {
				t.Fatalf("only %d batches: the test needs a cursor several deliveries behind", b)
			}
			batches, _ := readSpool(t, dir)
			// What a machine crash leaves: the cursor as of an early ack, or
			// none at all if the first was never synced.
			cur := filepath.Join(dir, cursorPrefix+"file")
			if stale == "missing" {
				if err := os.Remove(cur); err != nil {
					t.Fatal(err)
				}
			} else {
				b := batches[4]
				line := "v1 " + strconv.FormatInt(b.Epoch, 10) + " " + strconv.FormatInt(b.Seq, 10) + " " + hex.EncodeToString(b.Hash[:]) + "\n"
				if err := os.WriteFile(cur, []byte(line), 0o600); err != nil {
					t.Fatal(err)
				}
			}

			l2, stop2 := startLog(t, cfg, newGateSink(t, sinkPath, true))
			for i := range 10 {
				if err := l2.Record(context.Background(), testEvent(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := stop2(); err != nil {
				t.Fatal(err)
			}
			ids, _ := fileLines(t, sinkPath)
			want := eventIDs(t, append(batches, mustSpool(t, dir, int64(len(batches)))...))
			if !slices.Equal(ids, want) {
				dup := len(ids) - len(slices.Compact(slices.Sorted(slices.Values(ids))))
				t.Fatalf("file has %d events (%d duplicates), want each of the %d spooled events once, in order", len(ids), dup, len(want))
			}
		})
	}
}

// mustSpool returns the spooled batches after seq after.
func mustSpool(t *testing.T, dir string, after int64) []SealedBatch {
	t.Helper()
	all, _ := readSpool(t, dir)
	var out []SealedBatch
	for _, b := range all {
		if b.Seq > after {
			out = append(out, b)
		}
	}
	return out
}

// The same for Postgres: a stale cursor makes the edge send batches again
// that the database has; ingest stores each (node, epoch, seq) once.
func TestStaleCursorPostgresExactlyOnce(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	real := pgtest.NewPool(t, dbURL)
	store, err := auditdb.Open(context.Background(), dbURL, auditdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	newSink := func() Sink {
		s, err := NewPostgresSink(store, testNode.String())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dir := t.TempDir()
	l, stop := startLog(t, Config{Dir: dir}, newSink())
	const n = 200
	for i := range n {
		if err := l.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "postgres to catch up", 15*time.Second, func() bool {
		a, _ := l.Acked("postgres")
		return a == int64(l.Stats().Batches)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, cursorPrefix+"postgres")); err != nil {
		t.Fatal(err)
	}
	l2, stop2 := startLog(t, Config{Dir: dir}, newSink())
	for i := range 10 {
		if err := l2.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "postgres to catch up again", 15*time.Second, func() bool {
		a, _ := l2.Acked("postgres")
		return a == int64(l.Stats().Batches+l2.Stats().Batches)
	})
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	var rows, distinct int
	if err := real.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT id) FROM audit_events`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	rep, err := auditdb.New(real, auditdb.Options{}).Verify(context.Background(), testNode.String())
	if err != nil {
		t.Fatal(err)
	}
	if rows != n+10 || distinct != n+10 || !rep.ChainComplete {
		t.Fatalf("want each of %d events once and a complete chain after redelivering everything; got %d rows, %d distinct, %+v", n+10, rows, distinct, rep)
	}
}

// A SIGKILLed edge restarted on its spool: the file sink's cursor on disk
// is up to a second behind (it is written after the lazy fsync), yet the
// file ends with every spooled event exactly once.
func TestSIGKILLThenRestartDeliversOnce(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	acked := 0
	for sc.Scan() {
		if acked++; acked == 3000 {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = cmd.Wait()
	if acked < 3000 {
		t.Fatalf("child stopped after %d events", acked)
	}
	spool := filepath.Join(dir, "spool")
	file := filepath.Join(dir, "audit.jsonl")
	before, _ := fileLines(t, file)
	c, err := readCursor(spool, "file", mustEpoch(t, spool))
	if err != nil {
		t.Fatal(err)
	}
	sink, err := NewFileSink(file, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, stop := startLog(t, Config{Dir: spool}, sink)
	var last int64
	waitFor(t, "the file sink to catch up", 10*time.Second, func() bool {
		l.spool.mu.Lock()
		last = l.spool.segs[len(l.spool.segs)-1].lastSeq
		l.spool.mu.Unlock()
		a, _ := l.Acked("file")
		return a == last
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ids, _ := fileLines(t, file)
	t.Logf("child recorded %d+ events; the file held %d at the kill, the cursor on disk said seq %d of %d; %d after the restart",
		acked, len(before), c.acked, last, len(ids))
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("event %s is in the audit file twice", id)
		}
		seen[id] = true
	}
	batches, _ := readSpool(t, spool)
	for _, id := range eventIDs(t, batches) {
		if !seen[id] {
			t.Fatalf("spooled event %s never reached the audit file", id)
		}
	}
}

func mustEpoch(t *testing.T, dir string) int64 {
	t.Helper()
	e, err := readEpoch(dir)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// syncWatch is a FileSink that checks, at every Sync, that the cursor on
// disk never claimed more than the previous Sync made durable.
type syncWatch struct {
	*FileSink
	t         *testing.T
	dir       string
	epoch     int64
	delivered int64 // last seq given to Deliver
	durable   int64 // last seq made durable by Sync
	syncs     int
	calls     int
}

func (w *syncWatch) Deliver(ctx context.Context, bs []SealedBatch) error {
	w.calls++
	if err := w.FileSink.Deliver(ctx, bs); err != nil {
		return err
	}
	w.delivered = bs[len(bs)-1].Seq
	return nil
}

func (w *syncWatch) Sync() error {
	if c, err := readCursor(w.dir, "file", w.epoch); err != nil || c.acked > w.durable {
		w.t.Errorf("before Sync the cursor on disk says %d (err %v), but only %d was made durable", c.acked, err, w.durable)
	}
	if err := w.FileSink.Sync(); err != nil {
		return err
	}
	w.syncs++
	w.durable = w.delivered
	return nil
}

// The file sink fsyncs about once a second, not once per delivery, and its
// cursor reaches the disk only after the data it covers; segments are
// still deleted once acknowledged.
func TestLazySinkCursorFollowsItsSync(t *testing.T) {
	dir := t.TempDir()
	fs, err := NewFileSink(filepath.Join(t.TempDir(), "audit.jsonl"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Segments of 1 MiB: a few are deleted (each after a Sync) during the run.
	cfg := Config{Dir: dir, SegmentBytes: 1 << 20}
	l, stop := startLog(t, cfg, &syncWatch{FileSink: fs, t: t, dir: dir})
	w := l.sinks[0].sink.(*syncWatch)
	w.epoch = l.Epoch()
	deadline := time.Now().Add(1500 * time.Millisecond)
	n := 0
	for ; time.Now().Before(deadline); n++ {
		if err := l.Record(context.Background(), testEvent(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events, %d deliveries, %d fsyncs of the file, %d segments left", n, w.calls, w.syncs, len(segmentFiles(t, dir)))
	if w.calls < 50 || w.syncs*10 > w.calls {
		t.Fatalf("%d fsyncs for %d deliveries: want far fewer", w.syncs, w.calls)
	}
	if c, err := readCursor(dir, "file", l.Epoch()); err != nil || c.acked != int64(l.Stats().Batches) || w.durable != c.acked {
		t.Fatalf("after stop the cursor says %d (%v), sink durable through %d, %d batches", c.acked, err, w.durable, l.Stats().Batches)
	}
	if got := len(segmentFiles(t, dir)); got != 1 {
		t.Fatalf("%d segments left, want only the active one", got)
	}
}

// One sync caller at a time seals a batch per event; a sink that has
// caught up lingers before reading, so its deliveries carry many batches.
func TestSinkDeliveriesCarryManyBatches(t *testing.T) {
	dir := t.TempDir()
	fs, err := NewFileSink(filepath.Join(t.TempDir(), "audit.jsonl"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, stop := startLog(t, Config{Dir: dir}, &syncWatch{FileSink: fs, t: t, dir: dir})
	w := l.sinks[0].sink.(*syncWatch)
	w.epoch = l.Epoch()
	for i := range 2000 {
		if err := l.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	b := l.Stats().Batches
	t.Logf("%d events, %d batches, %d deliveries", 2000, b, w.calls)
	if b < 1000 || uint64(w.calls)*5 > b {
		t.Fatalf("%d deliveries for %d batches: want at least 5 batches per delivery", w.calls, b)
	}
}

// Recovery streams a segment: opening a spool with a large segment does
// not allocate the segment's size (it used to read it whole, which left a
// restarted edge's heap and RSS that much bigger while it idled).
func TestRecoveryStreamsSegments(t *testing.T) {
	dir := t.TempDir()
	l, stop := startLog(t, Config{Dir: dir}, newGateSink(t, filepath.Join(t.TempDir(), "audit.jsonl"), true))
	for i := range 20000 {
		if err := l.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	segs := segmentFiles(t, dir)
	st, err := os.Stat(segs[len(segs)-1])
	if err != nil || st.Size() < 8<<20 {
		t.Fatalf("segment of %d bytes (%v): the test needs a big one", st.Size(), err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, rep, err := openSpool(dir, DefaultSegmentBytes, []string{"file"}, quietLogger())
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("recovered %d batches from a %d-byte segment, allocating %d bytes", rep.Batches, st.Size(), alloc)
	if rep.Batches == 0 || alloc > uint64(st.Size())/2 {
		t.Fatalf("recovery allocated %d bytes for a %d-byte segment", alloc, st.Size())
	}
}

// RecordWithin bounds a sync wait without a context of its own: it gives
// up after d when the writer does not answer, and a waiter whose timer was
// used is reused without a stale expiry.
func TestRecordWithinBoundsTheWait(t *testing.T) {
	l, err := Open(Config{Dir: t.TempDir(), Logger: quietLogger()}, newGateSink(t, filepath.Join(t.TempDir(), "a.jsonl"), true))
	if err != nil {
		t.Fatal(err)
	}
	// Not running: nothing writes the event.
	start := time.Now()
	err = l.RecordWithin(context.Background(), testEvent(0), 50*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("RecordWithin with no writer: %v after %v; want a deadline error after ~50ms", err, time.Since(start))
	}
	l.lock.Close()

	l2, _ := startLog(t, Config{Dir: t.TempDir()}, newGateSink(t, filepath.Join(t.TempDir(), "b.jsonl"), true))
	start = time.Now()
	for i := range 200 {
		if err := l2.RecordWithin(context.Background(), testEvent(i), 30*time.Millisecond); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	time.Sleep(60 * time.Millisecond) // any timer left running would now have fired
	for i := range 200 {
		if err := l2.RecordWithin(context.Background(), testEvent(i), time.Second); err != nil {
			t.Fatalf("event %d after a pause: %v", i, err)
		}
	}
}
