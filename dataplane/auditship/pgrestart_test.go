package auditship_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/pgcluster"
	"github.com/mcpgw/mcpgw/migrations"
)

// The control plane's own Postgres (a private cluster this test owns) is
// SIGKILLed while an edge ships, then started again (crash recovery): the
// edge keeps recording into its spool, and every event ends up in
// audit_events exactly once with a complete chain.
func TestPostgresKilledAndRestartedMidStream(t *testing.T) {
	ctx := t.Context()
	pg, err := pgcluster.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Remove() })
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := store.Migrate(ctx, pool, migrations.FS); err != nil {
		t.Fatal(err)
	}
	kek, _, _, err := pki.LoadKEK("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := pki.Init(ctx, store.New(pool), kek)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, direct: pool, store: auditdb.New(pool, auditdb.Options{}), ca: ca}
	cp := e.startCP("127.0.0.1:0", nil)
	node := uuid.NewString()
	ed := startEdge(t, node, t.TempDir(), e.nodeConn(node, cp.addr))

	var recorded atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ed.record(t, 1)
				recorded.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	count := func() int {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE node_id = $1`, node).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	waitFor(t, 20*time.Second, "events are committed", func() bool { return count() > 50 })
	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the edge keeps recording, the control plane cannot commit
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	want := int(recorded.Load())
	waitFor(t, 30*time.Second, "every recorded event is committed", func() bool { return count() >= want })
	time.Sleep(200 * time.Millisecond)
	rows, distinct := e.counts(node)
	t.Logf("recorded %d; rows %d, distinct %d; pauses sent %d, commit errors %d", want, rows, distinct,
		cp.ing.Stats().Pauses, cp.ing.Stats().CommitErrors)
	if rows != want || distinct != want {
		t.Fatalf("audit_events holds %d rows (%d distinct) for %d recorded events", rows, distinct, want)
	}
	rep, err := e.store.Verify(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.ChainComplete {
		t.Fatalf("chain not complete after the restart: %v", rep.Problems)
	}
}
