// Package pgtest is test support for code that needs Postgres: it hands each
// test a fresh, uniquely named database on the server named by
// MCPGW_TEST_DATABASE_URL, migrated with the embedded schema, and drops it
// when the test ends. Tests run against the real server, never a fake.
//
// When the server cannot be reached the test is skipped with a message that
// says how to point it at one, except when the CI environment variable is
// set: there a missing database is a failure, so CI can never go green by
// skipping.
//
// pgtest migrates through controlplane/store, so tests of package store
// itself must be in package store_test (an internal test importing pgtest
// would be an import cycle).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/migrations"
)

const (
	// EnvURL names the variable holding the URL of the server's maintenance
	// database, which pgtest connects to in order to create and drop
	// databases. Only the URL form (postgres://...) is accepted.
	EnvURL = "MCPGW_TEST_DATABASE_URL"
	// DefaultURL is used when EnvURL is unset: the local server over TCP.
	DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

	// connectTimeout bounds reaching the server, so a missing one skips fast.
	connectTimeout = 5 * time.Second
	// setupTimeout bounds creating, migrating and dropping a database.
	setupTimeout = time.Minute
)

// Option changes what NewDatabase prepares.
type Option func(*options)

type options struct {
	migrate bool
}

// Unmigrated leaves the new database empty, for tests of the migrator.
func Unmigrated() Option { return func(o *options) { o.migrate = false } }

// NewDatabase creates a database named mcpgw_test_<random>, migrates it
// unless Unmigrated is given, registers its removal (DROP DATABASE ... WITH
// (FORCE), so connections the test leaks do not keep it alive) with
// t.Cleanup, and returns its URL.
func NewDatabase(t testing.TB, opts ...Option) string {
	t.Helper()
	o := options{migrate: true}
	for _, opt := range opts {
		opt(&o)
	}

	adminURL := os.Getenv(EnvURL)
	if adminURL == "" {
		adminURL = DefaultURL
	}
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("pgtest: %s must be a URL like %s, got %q", EnvURL, DefaultURL, redact(adminURL))
	}

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	admin, err := connect(ctx, adminURL)
	if err != nil {
		msg := fmt.Sprintf("pgtest: Postgres is not reachable at %s (set %s to a server's maintenance database URL): %v",
			u.Redacted(), EnvURL, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// The maintenance connection is not kept for the test's lifetime: many
	// test packages run at once and each would hold one.
	defer admin.Close(context.WithoutCancel(ctx))

	name := "mcpgw_test_" + randomHex(8)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() { dropDatabase(t, adminURL, name) })

	dbURL := *u
	dbURL.Path = "/" + name
	dbURL.RawPath = ""
	if o.migrate {
		pool, err := pgxpool.New(ctx, dbURL.String())
		if err != nil {
			t.Fatalf("pgtest: opening %s: %v", name, err)
		}
		defer pool.Close()
		if _, err := store.Migrate(ctx, pool, migrations.FS); err != nil {
			t.Fatalf("pgtest: migrating %s: %v", name, err)
		}
	}
	return dbURL.String()
}

// NewPool opens a pool on databaseURL (typically from NewDatabase) that is
// closed when the test ends, before the database is dropped.
func NewPool(t testing.TB, databaseURL string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		t.Fatalf("pgtest: opening pool: %v", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		t.Fatalf("pgtest: connecting pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func connect(ctx context.Context, databaseURL string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = connectTimeout
	return pgx.ConnectConfig(ctx, cfg)
}

func dropDatabase(t testing.TB, adminURL, name string) {
	// t.Context is already cancelled when cleanups run.
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	admin, err := connect(ctx, adminURL)
	if err != nil {
		t.Errorf("pgtest: dropping database %s: %v", name, err)
		return
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("pgtest: dropping database %s: %v", name, err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails.
	return hex.EncodeToString(b)
}

// redact hides a password in a string that may or may not parse as a URL.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparseable)"
}
