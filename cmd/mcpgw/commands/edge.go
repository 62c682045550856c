package commands

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mcpgw/mcpgw/dataplane"
)

func newEdgeCmd() *cobra.Command {
	var cfg dataplane.Config
	var logLevel string
	c := &cobra.Command{
		Use:   "edge",
		Short: "Run an edge data-plane node",
		Long: `Run an edge: one MCP endpoint in front of every backend in the config file.

Clients connect over Streamable HTTP at /mcp on --listen (which also serves
/healthz, /readyz and /metrics unless --ops-listen is given), or over
stdin/stdout with --stdio, so a desktop client can launch the edge as its MCP
server (logs then go to stderr only). Editing the config file reloads it;
an invalid file is rejected and the previous config keeps serving.

Every flag can also be set as MCPGW_<FLAG> in the environment, e.g.
MCPGW_LISTEN=0.0.0.0:8080 or MCPGW_ALLOWED_HOST=mcp.example.com,localhost.`,
		Example: `  mcpgw edge --config mcpgw.yaml
  mcpgw edge --config mcpgw.yaml --listen 0.0.0.0:8443 --tls-cert edge.crt --tls-key edge.key --allowed-host mcp.example.com
  mcpgw edge --config mcpgw.yaml --stdio`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := flagsFromEnv(c.Flags()); err != nil {
				return usageError{err}
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageError{fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel)}
			}
			// Logs go to stderr always: with --stdio, stdout is the protocol.
			cfg.Logger = slog.New(slog.NewJSONHandler(c.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			return dataplane.Run(c.Context(), cfg)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.ConfigFile, "config", "", "declarative config file (backends, policy); required")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "address of the MCP HTTP listener (/mcp)")
	f.StringVar(&cfg.OpsListen, "ops-listen", "", "serve /healthz, /readyz and /metrics here instead of on --listen")
	f.BoolVar(&cfg.Stdio, "stdio", false, "serve MCP on stdin/stdout instead of HTTP")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate file for the HTTP listener (with --tls-key)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key file for the HTTP listener (with --tls-cert)")
	f.StringSliceVar(&cfg.AllowedHosts, "allowed-host", nil, `Host header values accepted ("*" for any; default: localhost names on a loopback listener, any otherwise)`)
	f.StringSliceVar(&cfg.AllowedOrigins, "allowed-origin", nil, `Origin header values accepted ("*" for any; default: origins on an allowed host)`)
	f.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 4<<20, "largest request body accepted")
	f.DurationVar(&cfg.ReloadInterval, "reload-interval", 0, "how often the config file is checked for changes (default 1s)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return c
}

// flagsFromEnv sets every flag not given on the command line from
// MCPGW_<FLAG> (upper case, dashes as underscores), when that is set.
func flagsFromEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(fl *pflag.Flag) {
		if err != nil || fl.Changed {
			return
		}
		name := "MCPGW_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if serr := fs.Set(fl.Name, v); serr != nil {
			err = fmt.Errorf("%s=%q: %w", name, v, serr)
		}
	})
	return err
}
