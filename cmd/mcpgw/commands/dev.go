package commands

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcpgw/mcpgw/cmd/internal/cli"
	"github.com/mcpgw/mcpgw/internal/devmode"
)

func newDevCmd() *cobra.Command {
	var cfg devmode.Config
	var logLevel string
	c := &cobra.Command{
		Use:   "dev",
		Short: "Run control plane, edge and a demo backend in one process",
		Long: `Run a whole mcpgw installation in one process, for a first try on this
machine: a control plane (on an embedded store in the data dir, or on Postgres
with --database-url), an edge enrolled with it, and the demo backend
('mcpgw demo-backend') behind the edge.

The first start applies a default config (the demo backend, a role "demo"
allowing all it offers, a principal "demo" bound to it) and makes a demo API
key and an admin token. Once a client can list the demo tools, it prints the
demo API key (first, on its own line), the MCP URL, the admin token, an mcpctl
context line and MCP client configs for HTTP and stdio.

Dev mode only: the demo credentials are kept in plain text in
DATA_DIR/dev-credentials.json (mode 0600) so a restart prints them again; a
restart keeps all state. Logs go to DATA_DIR/dev.log (warnings also to
stderr). Ctrl-C stops everything, the demo backend included.

Every flag can also be set as MCPGW_<FLAG> in the environment.`,
		Example: `  mcpgw dev
  mcpgw dev --data-dir /tmp/mcpgw-try --listen 127.0.0.1:9080
  mcpgw dev --database-url postgres://postgres@127.0.0.1:5432/mcpgw_dev`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := cli.FlagsFromEnv(c.Flags()); err != nil {
				return cli.Usage(err)
			}
			if err := cfg.StderrLevel.UnmarshalText([]byte(logLevel)); err != nil {
				return cli.Usage(fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel))
			}
			cfg.Stdout, cfg.Stderr = c.OutOrStdout(), c.ErrOrStderr()
			if err := cfg.Validate(); err != nil {
				return cli.Usage(oneLineError{err})
			}
			if err := devmode.Run(c.Context(), cfg); err != nil {
				return oneLineError{err}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", devmode.DefaultDataDir, "directory for all state: store, CA, edge identity, audit spool, credentials")
	f.StringVar(&cfg.Listen, "listen", devmode.DefaultListen, "address of the edge's MCP listener (/mcp)")
	f.StringVar(&cfg.NodeListen, "node-listen", devmode.DefaultNodeListen, "address of the control plane's listener for edges (mTLS)")
	f.StringVar(&cfg.AdminListen, "admin-listen", devmode.DefaultAdminListen, "address of the control plane's listener for mcpctl (TLS)")
	f.StringVar(&cfg.DatabaseURL, "database-url", "", "put the control plane on this Postgres database instead of the embedded store")
	f.StringVar(&logLevel, "log-level", "warn", "lowest level of the logs also written to stderr: debug, info, warn or error")
	return c
}
