package store_test

import (
	"testing"

	"github.com/mcpgw/mcpgw/controlplane/store/storetest"
)

// TestContract runs the store contract on Postgres (controlplane/store with
// internal/auditdb); sqlitestore runs the same cases on SQLite.
func TestContract(t *testing.T) { storetest.Run(t, storetest.OpenPostgres) }
