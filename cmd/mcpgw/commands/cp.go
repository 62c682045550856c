package commands

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpgw/mcpgw/cmd/internal/cli"
	"github.com/mcpgw/mcpgw/controlplane"
)

func newCPCmd() *cobra.Command {
	var cfg controlplane.Config
	var logLevel, storeKind string
	c := &cobra.Command{
		Use:   "cp",
		Short: "Run a control-plane replica",
		Long: `Run one control-plane replica: the admin API for mcpctl (TLS, bearer admin
token) and the node API for edges (mTLS), backed by Postgres. Any number of
replicas may share one database; each serves every edge.

At start it applies the schema migrations (unless --no-migrate, which refuses
a schema that is behind), loads the installation CA from the database or
creates it, and writes the CA bundle that edges and mcpctl trust to
DATA_DIR/ca.crt. The CA's private key is stored encrypted with a
key-encryption key from $MCPGW_KEK (base64 of 32 bytes) or DATA_DIR/kek,
created on first start: every replica needs the same one.

--store sqlite (or sqlite:PATH) runs on the embedded store instead: one
SQLite file, DATA_DIR/mcpgw.db by default, no Postgres. It serves one
replica only (a second one on the same file is refused) and suits small
single-node installs; docs/embedded-store.md says what differs.

The admin token comes from $MCPGW_ADMIN_TOKEN ("mcpgwadm_..."); without it,
the first start generates one and prints it once on stderr. Only its hash is
stored.

Audit events edges ship are committed to the audit_events table, which is
partitioned by UTC day; days older than --audit-retention (default 30d) are
dropped by one replica at a time, and events already that old are refused at
ingest with a reason the ledger keeps.

Every flag can also be set as MCPGW_<FLAG> in the environment, e.g.
MCPGW_DATABASE_URL or MCPGW_TLS_SAN=cp.example.com,10.0.0.5.`,
		Example: `  mcpgw cp --database-url postgres://mcpgw@db:5432/mcpgw --data-dir /var/lib/mcpgw
  mcpgw cp --database-url postgres://mcpgw@db:5432/mcpgw --data-dir /var/lib/mcpgw \
      --node-listen :7443 --admin-listen 0.0.0.0:7444 --tls-san cp.example.com --ops-listen 127.0.0.1:9090
  mcpgw cp --store sqlite --data-dir /var/lib/mcpgw`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := cli.FlagsFromEnv(c.Flags()); err != nil {
				return cli.Usage(err)
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return cli.Usage(fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel))
			}
			// Secrets come only from the environment, never from argv
			// (visible in the process list).
			cfg.AdminToken = os.Getenv(controlplane.EnvAdminToken)
			cfg.KEK = os.Getenv(controlplane.EnvKEK)
			cfg.Logger = slog.New(slog.NewJSONHandler(c.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			cfg.Notices = c.ErrOrStderr()
			if err := chooseStore(storeKind, &cfg); err != nil {
				return cli.Usage(err)
			}
			if err := cfg.Validate(); err != nil {
				return cli.Usage(oneLineError{err})
			}
			if err := controlplane.Run(c.Context(), cfg); err != nil {
				return oneLineError{err}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.DatabaseURL, "database-url", "", "Postgres URL, e.g. postgres://user@host:5432/db (required with --store postgres)")
	f.StringVar(&storeKind, "store", "postgres", `"postgres" (--database-url), or the embedded single-replica store: "sqlite" (DATA_DIR/mcpgw.db) or "sqlite:PATH"`)
	f.StringVar(&cfg.NodeListen, "node-listen", controlplane.DefaultNodeListen, "address of the edges' listener (mTLS)")
	f.StringVar(&cfg.AdminListen, "admin-listen", controlplane.DefaultAdminListen, "address of mcpctl's listener (TLS + admin token)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for ca.crt and the kek file (required; created if missing)")
	f.StringSliceVar(&cfg.TLSSANs, "tls-san", nil, "extra host names or IPs for the server certificate (repeatable)")
	f.StringVar(&cfg.OpsListen, "ops-listen", "", "serve /metrics, /healthz and /readyz over HTTP here (off by default)")
	f.BoolVar(&cfg.NoMigrate, "no-migrate", false, "refuse to start on an outdated schema instead of migrating it")
	f.StringVar(&cfg.Replica, "replica-name", "", "name of this replica in node status (default: host name)")
	f.Var((*daysValue)(&cfg.AuditRetention), "audit-retention", "how long audit events are kept, in days (30d) or as a duration (1080h); at least 2d. Older days are dropped")
	f.Lookup("audit-retention").DefValue = "30d"
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return c
}

// chooseStore applies --store: Postgres stays the default (production); the
// embedded store must be asked for by name.
func chooseStore(kind string, cfg *controlplane.Config) error {
	switch {
	case kind == "postgres":
		return nil
	case kind == "sqlite" || strings.HasPrefix(kind, "sqlite:"):
		if cfg.DatabaseURL != "" {
			return errors.New("--store sqlite and --database-url exclude each other: the embedded store does not use Postgres")
		}
		path := strings.TrimPrefix(strings.TrimPrefix(kind, "sqlite"), ":")
		if path == "" {
			if cfg.DataDir == "" {
				return errors.New("--store sqlite keeps its file in --data-dir; give --data-dir (or --store sqlite:PATH)")
			}
			path = controlplane.EmbeddedStorePath(cfg.DataDir)
		}
		cfg.EmbeddedPath = path
		return nil
	default:
		return fmt.Errorf("--store %q: use postgres, sqlite or sqlite:PATH", kind)
	}
}

// daysValue is a duration flag that also takes whole days ("30d"), since
// retention is thought of, and applied, in days.
type daysValue time.Duration

func (d *daysValue) String() string {
	v := time.Duration(*d)
	if v > 0 && v%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", v/(24*time.Hour))
	}
	return v.String()
}

func (d *daysValue) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > 36500 {
			return fmt.Errorf("want a positive number of days like 30d, or a duration like 720h")
		}
		*d = daysValue(time.Duration(days) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("want a positive number of days like 30d, or a duration like 720h")
	}
	*d = daysValue(v)
	return nil
}

func (*daysValue) Type() string { return "days" }
