package auditlog

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// A sync Record returns only when its event is in the spool: copying the
// spool directory right after (as a crashed process would leave it) and
// recovering the copy finds every acknowledged event.
func TestSyncRecordIsSpooledWhenItReturns(t *testing.T) {
	dir := t.TempDir()
	sink := newGateSink(t, filepath.Join(t.TempDir(), "audit.jsonl"), false) // keep everything in the spool
	l, _ := startLog(t, Config{Dir: dir, ShutdownDrain: time.Millisecond}, sink)
	var acked []string
	for i := range 50 {
		ev := testEvent(i)
		if err := l.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, ev.ID.String())
	}
	// Snapshot the directory while the log is still running.
	snap := t.TempDir()
	copyDir(t, dir, snap)
	batches, rep := readSpool(t, snap)
	if rep.TornTails != 0 || rep.Corrupt != 0 || rep.ChainBreaks != 0 {
		t.Fatalf("recovery of a live spool reported problems: %+v", rep)
	}
	got := eventIDs(t, batches)
	if !slices.Equal(got, acked) {
		t.Fatalf("spool holds %d events, want the %d acknowledged ones in order", len(got), len(acked))
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// The SIGKILL test runs this process again as a child that records events
// in sync mode and prints each id once Record returned.
const childEnv = "MCPGW_AUDITLOG_TEST_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(runChild(dir))
	}
	os.Exit(m.Run())
}

func runChild(dir string) int {
	sink, err := NewFileSink(filepath.Join(dir, "audit.jsonl"), 0, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := Open(Config{Dir: filepath.Join(dir, "spool"), Logger: quietLogger()}, sink)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = l.Run(context.Background()) }()
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex // guards out
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				ev := testEvent(g*1_000_000 + i)
				if err := l.Record(context.Background(), ev); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				out.WriteString(ev.ID.String() + "\n")
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return 0
}

// DESIGN §6 / issue 5: killing the edge with SIGKILL under load loses no
// event whose Record returned in sync mode.
func TestSIGKILLLosesNoAcknowledgedEvent(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var acked []string
	for sc.Scan() {
		acked = append(acked, sc.Text())
		if len(acked) == 3000 {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
		}
	}
	_ = cmd.Wait()
	if len(acked) < 3000 {
		t.Fatalf("child stopped after %d events: %s", len(acked), stderr.String())
	}
	batches, rep := readSpool(t, filepath.Join(dir, "spool"))
	inSpool := map[string]bool{}
	for _, id := range eventIDs(t, batches) {
		inSpool[id] = true
	}
	// Events the file sink already acknowledged may be gone from the spool
	// (segments are deleted after acks); they are in the file.
	fileIDs, _ := fileLines(t, filepath.Join(dir, "audit.jsonl"))
	for _, id := range fileIDs {
		inSpool[id] = true
	}
	missing := 0
	for _, id := range acked {
		if !inSpool[id] {
			missing++
		}
	}
	t.Logf("child acknowledged %d events before SIGKILL (it may print a few more before dying); spool+file hold %d; recovery: %d torn tails", len(acked), len(inSpool), rep.TornTails)
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged events are missing after SIGKILL", missing, len(acked))
	}
}

// Group commit: many concurrent sync callers share spool writes.
func TestGroupCommitSharesWrites(t *testing.T) {
	sink := newGateSink(t, filepath.Join(t.TempDir(), "audit.jsonl"), true)
	l, stop := startLog(t, Config{Dir: t.TempDir(), Fsync: FsyncAlways}, sink)
	const emitters, each = 64, 100
	var wg sync.WaitGroup
	errs := make(chan error, emitters)
	for g := range emitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := l.Record(context.Background(), testEvent(g*each+i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Written != emitters*each {
		t.Fatalf("written = %d, want %d", st.Written, emitters*each)
	}
	t.Logf("%d events in %d writes (%d fsyncs, %d batches)", st.Written, st.Writes, st.Fsyncs, st.Batches)
	if st.Writes*4 > st.Written {
		t.Fatalf("%d writes for %d events: concurrent callers are not sharing writes", st.Writes, st.Written)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ids, _ := fileLines(t, sink.path)
	if len(ids) != emitters*each {
		t.Fatalf("file sink got %d events, want %d", len(ids), emitters*each)
	}
}

// A batch that fills up is sealed when its last event is added; a sync
// caller writing its own batch must not then seal another, empty one.
func TestFullBatchIsNotFollowedByAnEmptyOne(t *testing.T) {
	sink := newGateSink(t, filepath.Join(t.TempDir(), "audit.jsonl"), true)
	l, stop := startLog(t, Config{Dir: t.TempDir(), BatchEvents: 1}, sink)
	const n = 20
	for i := range n {
		if err := l.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if st := l.Stats(); st.Written != n || st.Batches != n {
		t.Fatalf("%d events written in %d batches, want %d in %d (one event per batch)", st.Written, st.Batches, n, n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// Async Record never waits for the writer, the disk or a sink: with no
// writer running at all, every call returns, accepted until the queue is
// full and refused (on_full: refuse) or dropped (on_full: drop) after.
func TestAsyncNeverBlocks(t *testing.T) {
	for _, onFull := range []OnFull{OnFullRefuse, OnFullDrop} {
		t.Run(string(onFull), func(t *testing.T) {
			sink := newGateSink(t, filepath.Join(t.TempDir(), "audit.jsonl"), false)
			l, err := Open(Config{Dir: t.TempDir(), Durability: DurabilityAsync, QueueSize: 16, OnFull: onFull, Logger: quietLogger()}, sink)
			if err != nil {
				t.Fatal(err)
			}
			// Run is never called: a Record that waited for the writer
			// would hang here.
			const n = 20000
			done := make(chan int, 1)
			go func() {
				refused := 0
				for i := range n {
					err := l.Record(context.Background(), testEvent(i))
					if errors.Is(err, ErrAuditUnavailable) {
						refused++
					} else if err != nil {
						t.Error(err)
					}
				}
				done <- refused
			}()
			var refused int
			select {
			case refused = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("async Record blocked with no writer running")
			}
			st := l.Stats()
			t.Logf("%d refused, %d dropped of %d with a 16-event queue and no writer", refused, st.Dropped, n)
			switch onFull {
			case OnFullRefuse:
				if refused != n-16 || st.Refused != uint64(n-16) {
					t.Fatalf("refused %d (counter %d), want %d", refused, st.Refused, n-16)
				}
			case OnFullDrop:
				if refused != 0 || st.Dropped != uint64(n-16) {
					t.Fatalf("refused %d, dropped %d, want 0 and %d", refused, st.Dropped, n-16)
				}
			}
		})
	}
}

// on_full: refuse fails Record with ErrAuditUnavailable once the spool is at
// its cap, and serves again by itself when the sink drains it.
func TestRefuseWhenFullAndRecover(t *testing.T) {
	sink := newGateSink(t, filepath.Join(t.TempDir(), "audit.jsonl"), false)
	l, stop := startLog(t, Config{Dir: t.TempDir(), MaxBytes: 64 << 10}, sink)
	var accepted []string
	var refusedErr error
	for i := 0; refusedErr == nil; i++ {
		if i > 10000 {
			t.Fatal("spool never filled")
		}
		ev := testEvent(i)
		switch err := l.Record(context.Background(), ev); {
		case err == nil:
			accepted = append(accepted, ev.ID.String())
		case errors.Is(err, ErrAuditUnavailable):
			refusedErr = err
		default:
			t.Fatal(err)
		}
	}
	t.Logf("refused after %d events: %v", len(accepted), refusedErr)
	if !strings.Contains(refusedErr.Error(), "full") {
		t.Fatalf("refusal does not say the spool is full: %v", refusedErr)
	}
	if err := l.Available(); !errors.Is(err, ErrAuditUnavailable) {
		t.Fatalf("Available() = %v while full", err)
	}
	if ok, msg := l.Healthy(); ok || !strings.Contains(msg, "refusing") {
		t.Fatalf("Healthy() = %v, %q while full", ok, msg)
	}
	sink.set(true)
	waitFor(t, "the spool to drain", 10*time.Second, func() bool { return l.Available() == nil })
	ev := testEvent(-1)
	if err := l.Record(context.Background(), ev); err != nil {
		t.Fatalf("Record after recovery: %v", err)
	}
	accepted = append(accepted, ev.ID.String())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ids, gaps := fileLines(t, sink.path)
	if !slices.Equal(ids, accepted) || len(gaps) != 0 {
		t.Fatalf("file holds %d events and %d gaps, want exactly the %d accepted", len(ids), len(gaps), len(accepted))
	}
	if st := l.Stats(); st.Refused != 1 {
		t.Fatalf("refused counter = %d, want 1", st.Refused)
	}
}

// on_full: drop keeps answering, counts what it drops, and writes a gap
// record with the count and time range once there is room.
func TestDropCountsAndRecordsGap(t *testing.T) {
	sink := newGateSink(t, filepath.Join(t.TempDir(), "audit.jsonl"), false)
	l, stop := startLog(t, Config{Dir: t.TempDir(), MaxBytes: 64 << 10, OnFull: OnFullDrop}, sink)
	const n = 2000
	for i := range n {
		if err := l.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatalf("Record under on_full: drop: %v", err)
		}
	}
	dropped := l.Stats().Dropped
	if dropped == 0 {
		t.Fatal("nothing dropped with a 64 KiB spool and the sink down")
	}
	if ok, msg := l.Healthy(); ok || !strings.Contains(msg, "dropping") {
		t.Fatalf("Healthy() = %v, %q while dropping", ok, msg)
	}
	sink.set(true)
	waitFor(t, "the gap to reach the file", 10*time.Second, func() bool {
		if _, err := os.Stat(sink.path); err != nil {
			return false
		}
		_, gaps := fileLines(t, sink.path)
		return len(gaps) > 0
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ids, gaps := fileLines(t, sink.path)
	var total int64
	for _, g := range gaps {
		i := strings.Index(g, `"dropped":`)
		v, _ := strconv.ParseInt(strings.SplitN(g[i+10:], ",", 2)[0], 10, 64)
		total += v
		if !strings.Contains(g, `"first_ts":"20`) {
			t.Fatalf("gap line without a time range: %s", g)
		}
	}
	t.Logf("%d events written, %d dropped, gap lines: %v", len(ids), total, gaps)
	if total != int64(dropped) {
		t.Fatalf("gap records count %d dropped events, counter says %d", total, dropped)
	}
	if int64(len(ids))+total != n {
		t.Fatalf("%d written + %d dropped != %d recorded", len(ids), total, n)
	}
}

// A crash mid-write leaves a torn record at the end of the last segment:
// recovery cuts it (keeping the bytes aside), reports it, and the chain
// continues.
func TestTornTailIsTruncatedAndReported(t *testing.T) {
	dir := t.TempDir()
	sinkPath := filepath.Join(t.TempDir(), "audit.jsonl")
	l, stop := startLog(t, Config{Dir: dir, ShutdownDrain: time.Millisecond}, newGateSink(t, sinkPath, false))
	for i := range 10 {
		if err := l.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	segs := segmentFiles(t, dir)
	last := segs[len(segs)-1]
	before, _ := os.ReadFile(last)
	// Half of a record: a header claiming 500 bytes and 100 of them.
	torn := binary.BigEndian.AppendUint32(nil, 500)
	torn = binary.BigEndian.AppendUint32(torn, 12345)
	torn = append(torn, make([]byte, 100)...)
	appendFile(t, last, torn)

	sink := newGateSink(t, sinkPath, true)
	l2, stop2 := startLog(t, Config{Dir: dir}, sink)
	if st := l2.Stats(); st.TornTails != 1 {
		t.Fatalf("torn tails = %d, want 1", st.TornTails)
	}
	after, _ := os.ReadFile(last)
	if len(after) != len(before) {
		t.Fatalf("segment is %d bytes after recovery, want %d", len(after), len(before))
	}
	if side, _ := filepath.Glob(last + ".torn-*"); len(side) != 1 {
		t.Fatalf("torn bytes were not kept aside: %v", side)
	}
	for i := range 5 {
		if err := l2.Record(context.Background(), testEvent(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	batches, rep := readSpool(t, dir)
	if rep.ChainBreaks != 0 || rep.Corrupt != 0 {
		t.Fatalf("chain not continued across recovery: %+v", rep)
	}
	_ = eventIDs(t, batches) // checks seq and hash links
	ids, _ := fileLines(t, sinkPath)
	if len(ids) != 15 {
		t.Fatalf("file has %d events, want 15", len(ids))
	}
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// A record altered on disk is detected: a flipped byte fails its CRC; an
// edit with a recomputed CRC breaks the hash chain.
func TestTamperedRecordIsDetected(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fixCRC   bool
		wantCRC  int
		wantLink int
	}{
		{"flipped byte", false, 1, 1}, // the skipped record also leaves a seq gap
		{"edited with a valid CRC", true, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l, stop := startLog(t, Config{Dir: dir, ShutdownDrain: time.Millisecond}, newGateSink(t, filepath.Join(t.TempDir(), "a.jsonl"), false))
			for i := range 3 {
				if err := l.Record(context.Background(), testEvent(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			seg := segmentFiles(t, dir)[0]
			data, _ := os.ReadFile(seg)
			// Find the second record and change "alice" to "mallo" in it.
			n0 := binary.BigEndian.Uint32(data[0:4])
			off := recordHeaderSize + int(n0)
			n1 := int(binary.BigEndian.Uint32(data[off : off+4]))
			payload := data[off+recordHeaderSize : off+recordHeaderSize+n1]
			i := strings.Index(string(payload), "alice")
			copy(payload[i:], "mallo")
			if tc.fixCRC {
				binary.BigEndian.PutUint32(data[off+4:off+8], auditdb.CRC32C(payload))
			}
			if err := os.WriteFile(seg, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, rep := readSpool(t, dir)
			if rep.Corrupt != tc.wantCRC || rep.ChainBreaks != tc.wantLink {
				t.Fatalf("recovery: %d CRC failures, %d chain breaks, want %d and %d; problems: %q",
					rep.Corrupt, rep.ChainBreaks, tc.wantCRC, tc.wantLink, rep.Problems)
			}
			t.Logf("reported: %q", rep.Problems)
		})
	}
}

// Segments are deleted once every sink acknowledged them, and a restart
// continues seq and chain from the cursor even when no segment is left.
func TestSegmentsDeletedAfterAckAndChainContinues(t *testing.T) {
	dir := t.TempDir()
	sinkPath := filepath.Join(t.TempDir(), "audit.jsonl")
	cfg := Config{Dir: dir, SegmentBytes: 16 << 10}
	l, stop := startLog(t, cfg, newGateSink(t, sinkPath, true))
	for i := range 500 {
		if err := l.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Writes < 10 {
		t.Fatalf("only %d spool writes: the test needs several segments", st.Writes)
	}
	if n := len(segmentFiles(t, dir)); n != 1 {
		t.Fatalf("%d segments left after every batch was acknowledged, want only the active one", n)
	}
	st := l.Stats()
	if st.UnackedBatches != 0 {
		t.Fatalf("unacked batches = %d", st.UnackedBatches)
	}
	if acked, err := l.Acked("file"); err != nil || acked != int64(st.Batches) {
		t.Fatalf("Acked(file) = %d, %v; want %d (seqs start at 1)", acked, err, st.Batches)
	}
	l2, stop2 := startLog(t, cfg, newGateSink(t, sinkPath, true))
	if got, want := l2.spool.nextSeq, int64(st.Batches)+1; got != want {
		t.Fatalf("next seq after restart = %d, want %d", got, want)
	}
	for i := range 10 {
		if err := l2.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	ids, _ := fileLines(t, sinkPath)
	if len(ids) != 510 {
		t.Fatalf("file has %d events, want 510", len(ids))
	}
}

func TestConfigRejectsBadValues(t *testing.T) {
	for _, c := range []Config{
		{},
		{Dir: "x", Durability: "maybe"},
		{Dir: "x", OnFull: "block"},
		{Dir: "x", Fsync: "sometimes"},
		{Dir: "x", MaxBytes: 100},
	} {
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	if _, err := Open(Config{Dir: t.TempDir()}); err == nil {
		t.Error("Open without sinks accepted")
	}
}

// A corrupt record in the middle of the spool is reported and skipped at
// delivery (its seq becomes a visible gap downstream); the rest is delivered.
func TestCorruptRecordIsSkippedAndCounted(t *testing.T) {
	dir := t.TempDir()
	sinkPath := filepath.Join(t.TempDir(), "audit.jsonl")
	l, stop := startLog(t, Config{Dir: dir, ShutdownDrain: time.Millisecond}, newGateSink(t, sinkPath, false))
	var ids []string
	for i := range 3 {
		ev := testEvent(i)
		if err := l.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	seg := segmentFiles(t, dir)[0]
	data, _ := os.ReadFile(seg)
	off := recordHeaderSize + int(binary.BigEndian.Uint32(data[0:4]))
	data[off+recordHeaderSize+100] ^= 0x20
	if err := os.WriteFile(seg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	l2, stop2 := startLog(t, Config{Dir: dir}, newGateSink(t, sinkPath, true))
	if st := l2.Stats(); st.Corrupt == 0 {
		t.Fatal("corrupt record not counted at recovery")
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	got, _ := fileLines(t, sinkPath)
	if want := []string{ids[0], ids[2]}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v (the corrupt batch skipped)", got, want)
	}
}

// Two Logs never share a spool directory.
func TestSpoolDirIsLocked(t *testing.T) {
	dir := t.TempDir()
	_, stop := startLog(t, Config{Dir: dir}, newGateSink(t, filepath.Join(t.TempDir(), "a.jsonl"), true))
	if _, err := Open(Config{Dir: dir, Logger: quietLogger()}, newGateSink(t, filepath.Join(t.TempDir(), "b.jsonl"), true)); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open on a spool in use: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Released once Run returned.
	startLog(t, Config{Dir: dir}, newGateSink(t, filepath.Join(t.TempDir(), "c.jsonl"), true))
}

// An invalid event is refused where it is made, with the reason, not
// spooled to fail a whole batch at the sink later.
func TestRecordRejectsInvalidEvents(t *testing.T) {
	l, _ := startLog(t, Config{Dir: t.TempDir()}, newGateSink(t, filepath.Join(t.TempDir(), "a.jsonl"), true))
	ev := testEvent(1)
	ev.Status = "OK"
	err := l.Record(context.Background(), ev)
	if err == nil || errors.Is(err, ErrAuditUnavailable) || !strings.Contains(err.Error(), "status") {
		t.Fatalf("Record of an event with status %q: %v", ev.Status, err)
	}
	if st := l.Stats(); st.Enqueued != 0 {
		t.Fatalf("invalid event enqueued: %+v", st)
	}
}
