package pgcluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpgw/mcpgw/internal/pgcluster"
)

// A private cluster starts, keeps its data across a SIGKILL of the
// postmaster and a restart (crash recovery), and stops.
func TestClusterSurvivesKillAndRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c, err := pgcluster.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Remove(); err != nil {
			t.Error(err)
		}
	})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	exec := func(sql string) int {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var n int
		if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (v int); INSERT INTO kept SELECT generate_series(1, 100)`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, c.URL()); err == nil {
		t.Fatal("connected to a killed cluster")
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n := exec(`SELECT count(*)::int FROM kept`); n != 100 {
		t.Fatalf("after kill and restart: %d rows, want 100", n)
	}
	if err := c.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
}
