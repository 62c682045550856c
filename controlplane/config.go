// Package controlplane runs one control-plane replica (`mcpgw cp`): it
// migrates (or checks) the schema, loads or creates the installation CA,
// makes sure an admin token exists, and serves the AdminService (TLS +
// bearer admin token) and the NodeService (mTLS) with a gRPC health service
// on both, plus optional /metrics, /healthz and /readyz, all under one
// errgroup in Run. Replicas are stateless: any number of them may share one
// database (docs/control-plane.md). With Config.EmbeddedPath instead of a
// database URL, one replica runs on an embedded SQLite file
// (docs/embedded-store.md).
package controlplane

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/mcpgw/mcpgw/controlplane/admin"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// Environment variables read by the command (cmd/mcpgw) into Config.
const (
	EnvAdminToken = "MCPGW_ADMIN_TOKEN"
	EnvKEK        = "MCPGW_KEK"
)

// Defaults.
const (
	DefaultNodeListen  = ":7443"
	DefaultAdminListen = "127.0.0.1:7444"
	// DefaultShutdownGrace bounds draining in-flight RPCs on shutdown;
	// streams still open afterwards are cut (edges reconnect elsewhere).
	DefaultShutdownGrace = 10 * time.Second
	// DefaultAuditRetention is how long audit events are kept: whole day
	// partitions of audit_events are dropped once they ended this long ago,
	// and ingest rejects (with a reason, counted) events already that old.
	DefaultAuditRetention = auditdb.DefaultRetention
	// MinAuditRetention: audit_events is partitioned by day, so anything
	// shorter would drop today's partition while it is being written.
	MinAuditRetention = 48 * time.Hour
)

// Config is everything one replica needs. Validate before Run.
type Config struct {
	// DatabaseURL is the Postgres URL (postgres://...): production, any
	// number of replicas. Exactly one of DatabaseURL and EmbeddedPath.
	DatabaseURL string
	// EmbeddedPath, instead of DatabaseURL, puts this replica on the
	// embedded store: one SQLite file (controlplane/store/sqlitestore),
	// created if missing, for `mcpgw dev` and small single-node installs.
	// One replica only: a second one on the same file is refused
	// (docs/embedded-store.md). EmbeddedStorePath(DataDir) is the usual
	// place.
	EmbeddedPath string
	// NodeListen is the edges' listener (mTLS), host:port. Default ":7443".
	NodeListen string
	// AdminListen is mcpctl's listener (TLS + bearer admin token or admin
	// client certificate). Default "127.0.0.1:7444".
	AdminListen string
	// DataDir holds ca.crt (written at start) and, unless KEK is given, the
	// key-encryption key file "kek". Required; created if missing.
	DataDir string
	// TLSSANs are extra names and addresses for the server certificate, on
	// top of the listen addresses (e.g. the load balancer's name).
	TLSSANs []string
	// OpsListen, if set, serves /metrics, /healthz and /readyz over plain
	// HTTP. Off by default so two replicas on one host never fight over a
	// port nobody asked for.
	OpsListen string
	// NoMigrate refuses to start on a schema that is behind instead of
	// migrating it.
	NoMigrate bool
	// AdminToken ($MCPGW_ADMIN_TOKEN) is the bootstrap admin token
	// ("mcpgwadm_..."), stored hashed. Empty: if no admin token exists yet,
	// one is generated and written once to Notices.
	AdminToken string
	// KEK ($MCPGW_KEK) is the base64 key-encryption key of the CA's private
	// key. Empty: DataDir/kek, created on first start. Every replica of an
	// installation needs the same one.
	KEK string
	// Replica names this replica in the node registry and GetServerInfo.
	// Default: the host name.
	Replica string
	// NodeCertTTL is the lifetime of the certificates issued to edges
	// (0 = nodeapi's default, 24h); running edges renew them. mcpgw dev
	// makes it long because its edge is often stopped for days.
	NodeCertTTL time.Duration
	// ShutdownGrace bounds graceful shutdown. Default 10s.
	ShutdownGrace time.Duration
	// AuditRetention is how long audit events are kept (whole UTC days;
	// one replica at a time drops expired days under an advisory lock).
	// Default 30 days; at least 2 days.
	AuditRetention time.Duration
	// Logger receives structured logs; never secrets. Default slog.Default().
	Logger *slog.Logger
	// Notices receives the one-time messages meant for the operator's eyes:
	// a generated admin token, a newly created KEK. Default os.Stderr.
	Notices io.Writer
	// OnReady, if set, is called once every listener is bound and serving.
	OnReady func(Ready)
}

// Ready describes a started replica.
type Ready struct {
	NodeAddr, AdminAddr, OpsAddr string
	// CAFile is the CA bundle written to the data directory.
	CAFile string
}

// Validate checks the config and fills in defaults. It touches nothing
// outside the struct.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.DatabaseURL != "" && c.EmbeddedPath != "":
		errs = append(errs, errors.New("both a database URL and an embedded store were given; choose Postgres (--database-url) or the embedded store (--store sqlite:PATH)"))
	case c.EmbeddedPath != "":
		if c.NoMigrate {
			errs = append(errs, errors.New("--no-migrate applies to Postgres only: the embedded store applies its schema when it opens"))
		}
	case c.DatabaseURL == "":
		errs = append(errs, errors.New("a database URL is required (--database-url or $MCPGW_DATABASE_URL), or --store sqlite:PATH for the embedded single-replica store"))
	case !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://"):
		errs = append(errs, errors.New("the database URL must look like postgres://user@host:5432/db"))
	}
	if c.NodeListen == "" {
		c.NodeListen = DefaultNodeListen
	}
	if c.AdminListen == "" {
		c.AdminListen = DefaultAdminListen
	}
	for name, addr := range map[string]string{"node listen": c.NodeListen, "admin listen": c.AdminListen, "ops listen": c.OpsListen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s address %q: want host:port (%v)", name, addr, err))
		}
	}
	if c.NodeListen == c.AdminListen && !strings.HasSuffix(c.NodeListen, ":0") {
		errs = append(errs, fmt.Errorf("node and admin listeners must differ (both %q)", c.NodeListen))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("a data directory is required (--data-dir)"))
	}
	for _, san := range c.TLSSANs {
		if san == "" || strings.ContainsAny(san, " /") {
			errs = append(errs, fmt.Errorf("TLS SAN %q: want a host name or IP address", san))
		}
	}
	if c.AdminToken != "" && (!strings.HasPrefix(c.AdminToken, admin.AdminTokenPrefix) || len(c.AdminToken) < len(admin.AdminTokenPrefix)+24) {
		errs = append(errs, fmt.Errorf("$%s must start with %q followed by at least 24 random characters", EnvAdminToken, admin.AdminTokenPrefix))
	}
	if c.Replica == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "cp"
		}
		c.Replica = h
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	switch {
	case c.AuditRetention == 0:
		c.AuditRetention = DefaultAuditRetention
	case c.AuditRetention < MinAuditRetention:
		errs = append(errs, fmt.Errorf("audit retention %v is too short: audit is kept in whole days, so it must be at least 2 days (e.g. 30d)", c.AuditRetention))
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Notices == nil {
		c.Notices = os.Stderr
	}
	return errors.Join(errs...)
}
