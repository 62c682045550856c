package auditlog

import (
	"context"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

// forwarder is a TCP proxy to Postgres the test can start late, standing in
// for a database that comes back.
type forwarder struct {
	ln    net.Listener
	to    string
	wg    sync.WaitGroup
	mu    sync.Mutex // guards conns
	conns []net.Conn
}

func startForwarder(t *testing.T, addr, to string) *forwarder {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln, to: to}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			f.wg.Add(2)
			go func() { defer f.wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer f.wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(f.stop)
	return f
}

func (f *forwarder) stop() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// Issue 5: with audit.postgres_url pointing at a stopped Postgres the edge
// serves, and the events arrive, exactly once, when it is back.
func TestPostgresSinkWaitsForTheDatabase(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	real := pgtest.NewPool(t, dbURL)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	// A port nobody listens on: the database is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	realHost := u.Host
	u.Host = addr
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	store, err := auditdb.Open(context.Background(), u.String(), auditdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	sink, err := NewPostgresSink(store, testNode.String())
	if err != nil {
		t.Fatal(err)
	}
	l, stop := startLog(t, Config{Dir: t.TempDir()}, sink)
	var ids []string
	record := func(n int) {
		for i := range n {
			ev := testEvent(i)
			if err := l.Record(context.Background(), ev); err != nil {
				t.Fatalf("Record with the database down: %v", err)
			}
			ids = append(ids, ev.ID.String())
		}
	}
	record(200)
	waitFor(t, "the sink to report the database down", 5*time.Second, func() bool {
		ok, msg := l.Healthy()
		return !ok && strings.Contains(msg, "audit sink postgres")
	})
	_, msg := l.Healthy()
	t.Logf("while down: %s", msg)
	if err := l.Available(); err != nil {
		t.Fatalf("the edge must keep serving with its database down: %v", err)
	}

	startForwarder(t, addr, realHost)
	waitFor(t, "the spooled events to reach Postgres", 10*time.Second, func() bool {
		ok, _ := l.Healthy()
		return ok && l.Stats().UnackedBatches == 0
	})
	record(50)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var n, distinct int
	if err := real.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT id) FROM audit_events`).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != len(ids) || distinct != len(ids) {
		t.Fatalf("audit_events has %d rows (%d distinct), want each of %d events once", n, distinct, len(ids))
	}
	rep, err := auditdb.New(real, auditdb.Options{}).Verify(context.Background(), testNode.String())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.ChainComplete || len(rep.Problems) != 0 {
		t.Fatalf("verify: %+v", rep)
	}
	if got := sinkErrors(t, l, "postgres"); got == 0 {
		t.Fatal("sink errors while the database was down were not counted")
	}
}

// sinkErrors reads mcpgw_audit_sink_errors_total{sink} through a registry,
// as /metrics would.
func sinkErrors(t *testing.T, l *Log, sink string) float64 {
	reg := prometheus.NewRegistry()
	if err := reg.Register(l.Metrics()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var v float64 = -1
	for _, mf := range mfs {
		seen[mf.GetName()] = true
		if mf.GetName() != "mcpgw_audit_sink_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == sink {
				v = m.GetCounter().GetValue()
			}
		}
	}
	for _, name := range []string{"mcpgw_audit_events_enqueued_total", "mcpgw_audit_events_written_total",
		"mcpgw_audit_events_dropped_total", "mcpgw_audit_events_refused_total", "mcpgw_audit_spool_bytes",
		"mcpgw_audit_spool_unacked_batches", "mcpgw_audit_oldest_unacked_age_seconds"} {
		if !seen[name] {
			t.Errorf("metric %s not exported", name)
		}
	}
	return v
}

// Issue 7: a spool full under on_full: drop records a gap that travels to
// Postgres and that Verify reports, with the exact count.
func TestDropGapReachesPostgresAndVerify(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	real := pgtest.NewPool(t, dbURL)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	realHost := u.Host
	u.Host = addr
	store, err := auditdb.Open(context.Background(), u.String(), auditdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	sink, err := NewPostgresSink(store, testNode.String())
	if err != nil {
		t.Fatal(err)
	}
	l, stop := startLog(t, Config{Dir: t.TempDir(), MaxBytes: 64 << 10, OnFull: OnFullDrop}, sink)
	const n = 2000
	for i := range n {
		if err := l.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	dropped := l.Stats().Dropped
	if dropped == 0 {
		t.Fatal("nothing dropped")
	}
	startForwarder(t, addr, realHost)
	waitFor(t, "the spool and the gap to reach Postgres", 10*time.Second, func() bool {
		st := l.Stats()
		return !st.Full && st.UnackedBatches == 0 && !l.gapPending()
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rep, err := auditdb.New(real, auditdb.Options{}).Verify(context.Background(), testNode.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dropped %d; verify: complete=%v stored=%d dropped=%d problems=%q", dropped, rep.ChainComplete, rep.StoredEvents, rep.Dropped, rep.Problems)
	if !rep.ChainComplete || rep.Dropped != int64(dropped) || rep.StoredEvents+rep.Dropped != n {
		t.Fatalf("verify does not account for every event: %+v", rep)
	}
}

// Connections to Postgres cut mid-traffic (some mid-transaction, some after
// a commit whose reply is lost) still leave every acknowledged event in
// audit_events exactly once.
func TestPostgresSinkExactlyOnceAcrossConnectionLoss(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	real := pgtest.NewPool(t, dbURL)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	realHost := u.Host
	fwd := startForwarder(t, "127.0.0.1:0", realHost)
	addr := fwd.ln.Addr().String()
	u.Host = addr
	store, err := auditdb.Open(context.Background(), u.String(), auditdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	sink, err := NewPostgresSink(store, testNode.String())
	if err != nil {
		t.Fatal(err)
	}
	l, stop := startLog(t, Config{Dir: t.TempDir()}, sink)

	ctx, cancel := context.WithCancel(context.Background())
	var ids []string
	done := make(chan error, 1)
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			ev := testEvent(i)
			if err := l.Record(context.Background(), ev); err != nil {
				done <- err
				return
			}
			ids = append(ids, ev.ID.String())
			time.Sleep(50 * time.Microsecond) // a client's pace, not a tight loop
		}
		done <- nil
	}()
	for range 3 {
		time.Sleep(150 * time.Millisecond)
		fwd.stop() // every connection cut, wherever it was
		time.Sleep(100 * time.Millisecond)
		fwd = startForwarder(t, addr, realHost)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	drainStart := time.Now()
	waitFor(t, "the spool to drain into Postgres", 15*time.Second, func() bool {
		ok, msg := l.Healthy()
		if time.Since(drainStart) > 10*time.Second {
			t.Logf("still draining: %v %s %+v", ok, msg, l.Stats())
			time.Sleep(time.Second)
		}
		return ok && l.Stats().UnackedBatches == 0
	})
	t.Logf("drained in %v", time.Since(drainStart))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var n, distinct int
	if err := real.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT id) FROM audit_events`).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	rep, err := auditdb.New(real, auditdb.Options{}).Verify(context.Background(), testNode.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events recorded across 3 connection cuts (%d sink errors); audit_events %d rows, %d distinct; verify complete=%v",
		len(ids), int(sinkErrors(t, l, "postgres")), n, distinct, rep.ChainComplete)
	if n != len(ids) || distinct != len(ids) || !rep.ChainComplete {
		t.Fatalf("want each of %d events exactly once and a complete chain; got %d rows, %d distinct, %+v", len(ids), n, distinct, rep)
	}
}
