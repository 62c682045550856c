package sqlitestore_test

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/controlplane/store/sqlitestore"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/document"
)

// A second control plane on the same file is refused while the first runs,
// and may open it once the first has closed; state survives the reopen.
func TestSingleReplicaLockAndReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "data", "mcpgw.db")
	first, err := sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.CreateBackend(ctx, store.Meta{Actor: "test"}, document.Backend{Name: "search", HTTP: &document.HTTPTransport{URL: "http://127.0.0.1:9000/mcp"}}, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	second, err := sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err == nil {
		second.Close()
		t.Fatal("a second store opened a locked database")
	}
	if !errors.Is(err, sqlitestore.ErrLocked) || !strings.Contains(err.Error(), "another mcpgw control plane is using "+first.Path()) {
		t.Fatalf("second open: %v", err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if fi, err := os.Stat(f); err != nil {
			t.Fatal(err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, want 0600", f, fi.Mode())
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	again, err := sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
	defer again.Close()
	b, err := again.GetBackend(ctx, "search")
	if err != nil || b.Revision != 1 {
		t.Fatalf("backend after reopen: %+v, %v", b, err)
	}
	if rev, err := again.CurrentRevision(ctx); err != nil || rev != 1 {
		t.Fatalf("revision after reopen: %d, %v", rev, err)
	}
}

// A database written by a newer mcpgw is refused, not misread.
func TestNewerSchemaRefused(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "mcpgw.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetSchemaVersionForTest(ctx, sqlitestore.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{}); err == nil || !strings.Contains(err.Error(), "newer than this mcpgw knows") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("open of a newer schema: %v", err)
	}
}

// Retention deletes whole days that ended before the retention period and
// Verify then compares counts from the cut, so the chain stays complete.
func TestRetentionDeletesOldDays(t *testing.T) {
	ctx := t.Context()
	node := "0190c0de-0000-7000-8000-0000000000bb"
	clock := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	opts := sqlitestore.Options{Audit: auditdb.Options{Retention: 48 * time.Hour, Now: func() time.Time { return clock }}}
	s, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "mcpgw.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var prev [32]byte
	var batches []auditdb.Batch
	// 12,001 events on the 18th (more than two retention chunks), one on
	// the 20th.
	const old = 12001
	for i, at := range []time.Time{clock.Add(-47 * time.Hour), clock.Add(-time.Hour)} {
		b := auditdb.Batch{Epoch: 1, Seq: int64(i + 1), PrevHash: prev}
		n := 1
		if i == 0 {
			n = old
		}
		for j := range n {
			ts := at.Add(time.Duration(j) * time.Microsecond)
			e := audit.Event{ID: audit.NewID(ts), TS: ts, NodeID: node, Principal: "alice", Transport: audit.TransportHTTP,
				Method: "tools/call", Decision: audit.DecisionAllow, Status: audit.StatusOK}
			b.Lines = append(e.AppendJSON(b.Lines), '\n')
			b.Count++
		}
		b.CRC = auditdb.CRC32C(b.Lines)
		prev = b.Hash()
		batches = append(batches, b)
	}
	if res, err := s.IngestAll(ctx, auditdb.NodeBatches{Node: node, Batches: batches}); err != nil || res.Events != old+1 {
		t.Fatalf("ingest: %+v, %v", res, err)
	}
	clock = clock.Add(24 * time.Hour) // the 18th is now past retention
	m, err := s.MaintainPartitions(ctx, 7)
	if err != nil || !m.Locked || len(m.Dropped) != 1 || !strings.Contains(m.Dropped[0], "before 2026-11-19 (12001 events)") {
		t.Fatalf("MaintainPartitions: %+v, %v", m, err)
	}
	evs, _, err := s.Query(ctx, auditdb.Filter{}, "", 10)
	if err != nil || len(evs) != 1 || !evs[0].TS.Equal(clock.Add(-25*time.Hour)) {
		t.Fatalf("events after retention: %d, %v", len(evs), err)
	}
	rep, err := s.Verify(ctx, node)
	if err != nil || !rep.ChainComplete || rep.StoredEvents != 1 || rep.LedgerEvents != 1 || rep.RetainedSince.IsZero() {
		t.Fatalf("verify after retention: %+v, %v", rep, err)
	}
	if _, err := s.MaintainPartitions(ctx, 400); err == nil {
		t.Fatal("days ahead 400 accepted")
	}
}

// A lock held by another program (here a raw connection, as a backup tool
// would hold one) makes writes fail as store.ErrUnavailable, which the
// admin API answers with UNAVAILABLE, and they succeed once it is released.
func TestForeignLockIsUnavailable(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "mcpgw.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{BusyTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	conn, err := raw.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	b := document.Backend{Name: "search", HTTP: &document.HTTPTransport{URL: "http://127.0.0.1:9000/mcp"}}
	_, err = s.CreateBackend(ctx, store.Meta{Actor: "test"}, b, store.WriteOptions{})
	if !errors.Is(err, store.ErrUnavailable) || !store.IsUnavailable(err) {
		t.Fatalf("write under a foreign lock: %v, want store.ErrUnavailable", err)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBackend(ctx, store.Meta{Actor: "test"}, b, store.WriteOptions{}); err != nil {
		t.Fatalf("write after the lock was released: %v", err)
	}
}
