package sqlitestore_test

import (
	"path/filepath"
	"testing"

	"github.com/mcpgw/mcpgw/controlplane/store/sqlitestore"
	"github.com/mcpgw/mcpgw/controlplane/store/storetest"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

func open(t testing.TB) *sqlitestore.Store {
	t.Helper()
	return openWith(t, auditdb.Options{})
}

func openWith(t testing.TB, opts auditdb.Options) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "mcpgw.db"), sqlitestore.Options{Audit: opts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestContract runs the store contract on SQLite; controlplane/store runs
// the same cases on Postgres.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts auditdb.Options) storetest.Store { return openWith(t, opts) })
}
