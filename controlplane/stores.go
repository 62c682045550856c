package controlplane

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/mcpgw/mcpgw/controlplane/admin"
	"github.com/mcpgw/mcpgw/controlplane/ingest"
	"github.com/mcpgw/mcpgw/controlplane/nodeapi"
	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/snapshot"
	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/controlplane/store/sqlitestore"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// EmbeddedStoreFile is the embedded store's file name in a data directory.
const EmbeddedStoreFile = "mcpgw.db"

// EmbeddedStorePath is where the embedded store lives in dataDir; `mcpgw
// dev` and `mcpgw cp --store sqlite` use it.
func EmbeddedStorePath(dataDir string) string { return filepath.Join(dataDir, EmbeddedStoreFile) }

// configBackend, nodeBackend and auditBackend are what Run's parts need,
// each the union of the interfaces those parts define; Postgres and the
// embedded store both provide them.
type (
	configBackend interface {
		admin.Store
		pki.CAStore
		EnsureBootstrapAdminToken(ctx context.Context, sha256Hex string, replace bool) (bool, error)
		HasActiveAdminToken(ctx context.Context) (bool, error)
		Ping(ctx context.Context) error
	}
	nodeBackend interface {
		nodeapi.Store
		snapshot.Source
	}
	auditBackend interface {
		admin.AuditStore
		ingest.Store
	}
)

// stores are the stores of one replica, and how to release them.
type stores struct {
	config configBackend
	nodes  nodeBackend
	audit  auditBackend
	// kind names the store in logs: "postgres" or "embedded".
	kind  string
	close func()
}

// openStores opens the store cfg selects: Postgres (migrated, or checked
// with NoMigrate) or the embedded SQLite file (locked to this process,
// schema applied on open).
func openStores(ctx context.Context, cfg Config, audit auditdb.Options) (*stores, error) {
	if cfg.EmbeddedPath != "" {
		s, err := sqlitestore.Open(ctx, cfg.EmbeddedPath, sqlitestore.Options{Audit: audit})
		if err != nil {
			return nil, err
		}
		cfg.Logger.Info("using the embedded store (single replica)", "path", s.Path())
		return &stores{config: s, nodes: s, audit: s, kind: "embedded", close: func() { _ = s.Close() }}, nil
	}
	pool, err := store.OpenPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	st := store.New(pool)
	if err := prepareSchema(ctx, cfg, st); err != nil {
		pool.Close()
		return nil, err
	}
	return &stores{config: st, nodes: store.NewNodeStore(pool), audit: auditdb.New(pool, audit), kind: "postgres", close: pool.Close}, nil
}

// prepareSchema migrates, or with NoMigrate refuses a schema that is behind.
func prepareSchema(ctx context.Context, cfg Config, s *store.Store) error {
	if !cfg.NoMigrate {
		applied, err := s.MigrateSchema(ctx)
		for _, m := range applied {
			cfg.Logger.Info("applied migration", "migration", m.String())
		}
		if err != nil {
			return fmt.Errorf("migrating the database: %w", err)
		}
		return nil
	}
	st, err := s.SchemaStatus(ctx)
	if err != nil {
		return fmt.Errorf("checking the database schema: %w", err)
	}
	if !st.Current() {
		names := make([]string, len(st.Pending))
		for i, m := range st.Pending {
			names[i] = m.String()
		}
		return fmt.Errorf("the database schema is at version %d and this mcpgw needs %s applied; run `mcpgw migrate` (or start without --no-migrate)",
			st.Version, strings.Join(names, ", "))
	}
	return nil
}
