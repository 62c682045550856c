// Package storetest is the contract suite both control-plane stores must
// pass: the Postgres stores (controlplane/store with internal/auditdb) and
// the embedded one (controlplane/store/sqlitestore). Each store's tests
// call Run with a function opening a fresh, empty store; every case runs on
// its own.
package storetest

import (
	"context"
	"testing"

	"github.com/mcpgw/mcpgw/controlplane/admin"
	"github.com/mcpgw/mcpgw/controlplane/ingest"
	"github.com/mcpgw/mcpgw/controlplane/nodeapi"
	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/snapshot"
	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

// Store is everything the control plane asks of a store: the union of the
// interfaces its parts define where they use them.
type Store interface {
	admin.Store
	admin.AuditStore
	nodeapi.Store
	snapshot.Source
	pki.CAStore
	ingest.Store
	// What controlplane.Run needs besides: the bootstrap admin token and
	// readiness.
	EnsureBootstrapAdminToken(ctx context.Context, sha256Hex string, replace bool) (bool, error)
	HasActiveAdminToken(ctx context.Context) (bool, error)
	Ping(ctx context.Context) error
}

// postgres is the Postgres implementation as the control plane assembles
// it: three types over one pool.
type postgres struct {
	*configStore
	*store.NodeStore
	*auditStore
}

type (
	configStore = store.Store
	auditStore  = auditdb.Store
)

// Opener opens a fresh, empty store whose audit half uses opts (retention,
// accepted window, clock).
type Opener func(t *testing.T, opts auditdb.Options) Store

// OpenPostgres returns the Postgres stores on a fresh database
// (internal/pgtest: skipped without Postgres locally, failed under CI).
func OpenPostgres(t *testing.T, opts auditdb.Options) Store {
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	return postgres{store.New(pool), store.NewNodeStore(pool), auditdb.New(pool, opts)}
}

// Run runs every contract case against stores made by open.
func Run(t *testing.T, open Opener) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"RevisionsAndOptimisticConcurrency", testRevisions},
		{"ApplyDocument", testApplyDocument},
		{"CRUDEveryResource", testCRUD},
		{"ListPagination", testListPagination},
		{"APIKeysByHash", testAPIKeys},
		{"AdminTokens", testAdminTokens},
		{"JoinTokensSingleUseAndExpiry", testJoinTokens},
		{"NodeRegistry", testNodeRegistry},
		{"CA", testCA},
		{"SnapshotResources", testSnapshotResources},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConfigNotifications", testNotifications},
		{"AuditIngestExactlyOnce", testAuditExactlyOnce},
		{"AuditQueryFiltersAndPagination", testAuditQuery},
		{"AuditVerifyDetectsGap", testAuditVerify},
		{"AuditTail", testAuditTail},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, open(t, auditdb.Options{}))
		})
	}
	// Cases that open their store themselves, with a clock of their own.
	for _, c := range []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"AuditLedgerPruning", testAuditLedgerPruning},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, open)
		})
	}
}
