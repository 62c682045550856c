package auditlog

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
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
		if err := s.ack("file", seq, h); err != nil {
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
	if err := s.closeCursor("file"); err != nil {
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
	if err := s2.ack("file", 123456789, [32]byte{1}); err != nil {
		t.Fatal(err)
	}
	if c, err := readCursor(dir, "file", s2.epoch); err != nil || c.acked != 123456789 {
		t.Fatalf("cursor after ack: %+v, %v", c, err)
	}
	s2.closeCursor("file")
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
