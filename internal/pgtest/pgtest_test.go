package pgtest_test

import (
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgw/mcpgw/internal/pgtest"
)

func TestNewDatabaseIsFreshMigratedAndDropped(t *testing.T) {
	// Made first so that an unreachable server skips the whole test here.
	admin := pgtest.NewPool(t, pgtest.NewDatabase(t, pgtest.Unmigrated()))
	var urls []string
	t.Run("migrated", func(t *testing.T) {
		u := pgtest.NewDatabase(t)
		urls = append(urls, u)
		pool := pgtest.NewPool(t, u)
		var applied int
		if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM schema_migrations").Scan(&applied); err != nil {
			t.Fatalf("migrated database has no schema_migrations: %v", err)
		}
		if applied == 0 {
			t.Fatal("migrated database has no applied migrations")
		}
		// Leak a connection on purpose: the drop must still succeed.
		leaked := pgtest.NewPool(t, u)
		if _, err := leaked.Exec(t.Context(), "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unmigrated", func(t *testing.T) {
		u := pgtest.NewDatabase(t, pgtest.Unmigrated())
		urls = append(urls, u)
		pool := pgtest.NewPool(t, u)
		var n int
		if err := pool.QueryRow(t.Context(),
			"SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("unmigrated database has %d relations in public, want 0", n)
		}
	})
	if len(urls) != 2 || urls[0] == urls[1] {
		t.Fatalf("databases %v: want two distinct ones", urls)
	}

	// Both subtests have finished, so their cleanups dropped the databases.
	for _, u := range urls {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(parsed.Path, "/")
		if !strings.HasPrefix(name, "mcpgw_test_") {
			t.Errorf("database %q is not named mcpgw_test_<random>", name)
		}
		var exists bool
		if err := admin.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("database %s still exists after its test ended", name)
		}
	}
}

// recorder is a testing.TB that records how NewDatabase gave up instead of
// ending the real test, so both outcomes can be checked.
type recorder struct {
	testing.TB
	mu              sync.Mutex
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Skip(args ...any) {
	r.mu.Lock()
	r.skipped, r.msg = true, fmt.Sprint(args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) {
	r.mu.Lock()
	r.failed, r.msg = true, fmt.Sprint(args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) { r.Fatal(fmt.Sprintf(format, args...)) }
func (r *recorder) Skipf(format string, args ...any)  { r.Skip(fmt.Sprintf(format, args...)) }

func (r *recorder) Cleanup(func()) {}

func runRecorded(t *testing.T) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pgtest.NewDatabase(r)
	}()
	<-done
	return r
}

func TestUnreachableServerSkipsLocallyFailsInCI(t *testing.T) {
	// Port 1 on loopback refuses connections at once.
	t.Setenv(pgtest.EnvURL, "postgres://postgres:hunter2@127.0.0.1:1/postgres?sslmode=disable")

	t.Setenv("CI", "")
	r := runRecorded(t)
	if !r.skipped || r.failed {
		t.Fatalf("without CI: skipped=%v failed=%v, want a skip", r.skipped, r.failed)
	}
	if !strings.Contains(r.msg, "not reachable") || !strings.Contains(r.msg, pgtest.EnvURL) || strings.Contains(r.msg, "hunter2") {
		t.Errorf("skip message %q should say the server is not reachable, name %s, and hide the password", r.msg, pgtest.EnvURL)
	}

	t.Setenv("CI", "true")
	r = runRecorded(t)
	if !r.failed || r.skipped {
		t.Fatalf("with CI set: skipped=%v failed=%v, want a failure", r.skipped, r.failed)
	}
}

func TestBadURLFails(t *testing.T) {
	t.Setenv(pgtest.EnvURL, "host=127.0.0.1 user=postgres")
	r := runRecorded(t)
	if !r.failed || !strings.Contains(r.msg, "must be a URL") {
		t.Fatalf("keyword/value DSN: failed=%v msg=%q, want a failure asking for a URL", r.failed, r.msg)
	}
}
