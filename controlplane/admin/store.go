package admin

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// Store is the config store the AdminService runs on. Two implement it:
// *store.Store on Postgres (production, any number of replicas) and
// *sqlitestore.Store on an embedded SQLite file (`mcpgw dev`, small
// single-replica installs); controlplane/store/storetest runs one contract
// suite against both. Errors are the store package's sentinels (ErrNotFound,
// ErrStaleRevision, *InvalidConfigError, ...) whatever the implementation,
// so toStatus maps them the same way.
type Store interface {
	AdminTokens
	CurrentRevision(ctx context.Context) (int64, error)
	LoadConfig(ctx context.Context) (*store.Config, error)

	ApplyDocument(ctx context.Context, meta store.Meta, doc document.Document, opt store.ApplyOptions) (store.Result, error)
	ListBackends(ctx context.Context, after string, limit int) ([]store.Backend, int64, error)
	GetBackend(ctx context.Context, name string) (store.Backend, error)
	CreateBackend(ctx context.Context, meta store.Meta, b document.Backend, opt store.WriteOptions) (store.Result, error)
	UpdateBackend(ctx context.Context, meta store.Meta, b document.Backend, opt store.WriteOptions) (store.Result, error)
	DeleteBackend(ctx context.Context, meta store.Meta, name string, opt store.WriteOptions) (store.Result, error)
	ListRoles(ctx context.Context, after string, limit int) ([]store.Role, int64, error)
	GetRole(ctx context.Context, name string) (store.Role, error)
	CreateRole(ctx context.Context, meta store.Meta, r policy.Role, opt store.WriteOptions) (store.Result, error)
	UpdateRole(ctx context.Context, meta store.Meta, r policy.Role, opt store.WriteOptions) (store.Result, error)
	DeleteRole(ctx context.Context, meta store.Meta, name string, opt store.WriteOptions) (store.Result, error)
	ListBindings(ctx context.Context, after string, limit int) ([]store.Binding, int64, error)
	GetBinding(ctx context.Context, role string) (store.Binding, error)
	CreateBinding(ctx context.Context, meta store.Meta, b policy.Binding, opt store.WriteOptions) (store.Result, error)
	UpdateBinding(ctx context.Context, meta store.Meta, b policy.Binding, opt store.WriteOptions) (store.Result, error)
	DeleteBinding(ctx context.Context, meta store.Meta, role string, opt store.WriteOptions) (store.Result, error)
	ListPrincipals(ctx context.Context, after string, limit int) ([]store.Principal, int64, error)
	GetPrincipal(ctx context.Context, name string) (store.Principal, error)
	CreatePrincipal(ctx context.Context, meta store.Meta, p policy.Principal, opt store.WriteOptions) (store.Result, error)
	UpdatePrincipal(ctx context.Context, meta store.Meta, p policy.Principal, opt store.WriteOptions) (store.Result, error)
	DeletePrincipal(ctx context.Context, meta store.Meta, name string, opt store.WriteOptions) (store.Result, []string, error)

	CreateAPIKey(ctx context.Context, meta store.Meta, k store.NewAPIKey) (store.APIKey, store.Result, bool, error)
	GetAPIKey(ctx context.Context, id string) (store.APIKey, error)
	ListAPIKeys(ctx context.Context, principal string, includeInactive bool, after *store.KeyCursor, limit int) ([]store.APIKey, error)
	RevokeAPIKey(ctx context.Context, meta store.Meta, id string) (store.APIKey, store.Result, error)

	CreateJoinToken(ctx context.Context, t store.NewJoinToken) (store.JoinToken, error)
	ListJoinTokens(ctx context.Context, includeInactive bool, after *store.TokenCursor, limit int) ([]store.JoinToken, error)
	RevokeJoinToken(ctx context.Context, id string) (store.JoinToken, error)

	ListNodes(ctx context.Context, f store.NodeFilter) ([]store.Node, int64, error)
	GetNode(ctx context.Context, id uuid.UUID) (store.Node, error)
	RevokeNode(ctx context.Context, id uuid.UUID) (store.Node, error)
	RolloutNodes(ctx context.Context, group string) ([]store.NodeRollout, error)

	GetRevision(ctx context.Context, rev int64) (store.Revision, error)
	ListRevisions(ctx context.Context, before int64, limit int) ([]store.Revision, error)
}

// AdminTokens is what admin authentication needs of the store.
type AdminTokens interface {
	// AuthenticateAdmin finds the active admin token with this hash and
	// records its use; store.ErrNotFound if there is none.
	AuthenticateAdmin(ctx context.Context, sha256Hex string) (store.AdminToken, error)
}

// AuditStore serves QueryAudit, VerifyAudit and TailAudit: *auditdb.Store
// on Postgres, *sqlitestore.Store embedded.
type AuditStore interface {
	Query(ctx context.Context, f auditdb.Filter, pageToken string, limit int) ([]audit.Event, string, error)
	Nodes(ctx context.Context) ([]string, error)
	Verify(ctx context.Context, node string) (auditdb.Report, error)
	OpenTail(f auditdb.Filter, lag time.Duration) (auditdb.Tail, error)
}
