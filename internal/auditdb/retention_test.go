package auditdb_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/pgtest"
	"github.com/mcpgw/mcpgw/migrations"
)

func partName(d time.Time) string { return "audit_events_p" + d.Format("20060102") }

// Partition maintenance creates the days ahead, drops whole days past the
// retention (attached ones and one a crashed run left detached) without
// blocking ingest meanwhile, and does nothing while another replica holds
// the maintenance lock.
func TestMaintainPartitionsCreatesAheadAndDropsExpired(t *testing.T) {
	ctx := t.Context()
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	s := auditdb.New(pool, auditdb.Options{Retention: 30 * 24 * time.Hour})
	now := time.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	day := func(n int) time.Time { return today.AddDate(0, 0, n) }
	exists := func(d time.Time) bool {
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, partName(d)).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}

	if _, err := pool.Exec(ctx, `SELECT mcpgw_ensure_audit_partitions($1::date, 2), mcpgw_ensure_audit_partitions($2::date, 1),
		mcpgw_ensure_audit_partitions($3::date, 1)`, day(-40).Format(time.DateOnly), day(-35).Format(time.DateOnly), day(-29).Format(time.DateOnly)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO audit_events (id, ts, node_id, transport, method, decision, status, latency_us)
		VALUES ($1, $2, $3, 'http', 'tools/call', 'allow', 'ok', 1)`, uuid.New(), day(-40).Add(time.Hour), uuid.New()); err != nil {
		t.Fatal(err)
	}
	// A run that crashed between detach and drop left this one detached.
	if _, err := pool.Exec(ctx, `ALTER TABLE audit_events DETACH PARTITION `+partName(day(-35))); err != nil {
		t.Fatal(err)
	}

	// Another replica maintains: this one backs off.
	lock, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, migrations.LockClass, migrations.LockAuditPartitions); err != nil {
		t.Fatal(err)
	}
	m, err := s.MaintainPartitions(ctx, 7)
	if err != nil || m.Locked || len(m.Dropped) != 0 || m.Created != 0 {
		t.Fatalf("with the lock held elsewhere: %+v, %v; want nothing done", m, err)
	}
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, migrations.LockClass, migrations.LockAuditPartitions); err != nil {
		t.Fatal(err)
	}
	lock.Release()

	// An ingest transaction is open when maintenance starts: DETACH ...
	// CONCURRENTLY waits for it, and meanwhile other ingests go through.
	open, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Rollback(context.WithoutCancel(ctx))
	if _, err := open.Exec(ctx, `INSERT INTO audit_events (id, ts, node_id, transport, method, decision, status, latency_us)
		VALUES ($1, now(), $2, 'http', 'tools/call', 'allow', 'ok', 1)`, uuid.New(), uuid.New()); err != nil {
		t.Fatal(err)
	}
	type result struct {
		m   auditdb.Maintenance
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := s.MaintainPartitions(ctx, 7)
		done <- result{m, err}
	}()
	time.Sleep(300 * time.Millisecond) // let the detach start waiting
	ev := audit.Event{ID: audit.NewID(now), TS: now, NodeID: node, Transport: audit.TransportHTTP, Method: "tools/call",
		Decision: audit.DecisionAllow, Status: audit.StatusOK}
	b := auditdb.Batch{Epoch: 1, Seq: 1, Count: 1, Lines: append(ev.AppendJSON(nil), '\n')}
	b.CRC = auditdb.CRC32C(b.Lines)
	ictx, cancel := context.WithTimeout(ctx, 3*time.Second)
	res, err := s.Ingest(ictx, node, b)
	cancel()
	if err != nil || res.Events != 1 {
		t.Fatalf("ingest during maintenance: %+v, %v (blocked by the detach?)", res, err)
	}
	select {
	case r := <-done:
		t.Fatalf("maintenance finished (%+v, %v) while a transaction that may see the expired day was open", r.m, r.err)
	default:
	}
	if err := open.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("maintenance did not finish after the open transaction ended")
	}
	if r.err != nil || !r.m.Locked {
		t.Fatalf("maintenance: %+v, %v", r.m, r.err)
	}
	want := []string{partName(day(-40)), partName(day(-39)), partName(day(-35))}
	if !slices.Equal(r.m.Dropped, want) {
		t.Errorf("dropped %v, want %v", r.m.Dropped, want)
	}
	for _, d := range []int{-40, -39, -35} {
		if exists(day(d)) {
			t.Errorf("partition of day %d still exists", d)
		}
	}
	for _, d := range []int{-29, -1, 0, 7} {
		if !exists(day(d)) {
			t.Errorf("partition of day %+d missing", d)
		}
	}
	if exists(day(9)) {
		t.Errorf("partition of day +9 created; want through +7 (the migration made +7)")
	}
	t.Logf("maintenance: created %d, dropped %v", r.m.Created, r.m.Dropped)

	// Idempotent.
	m, err = s.MaintainPartitions(ctx, 8)
	if err != nil || m.Created != 1 || len(m.Dropped) != 0 {
		t.Fatalf("second run with one more day ahead: %+v, %v; want 1 created, none dropped", m, err)
	}
}
