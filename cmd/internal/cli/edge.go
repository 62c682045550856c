package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcpgw/mcpgw/dataplane"
	"github.com/mcpgw/mcpgw/dataplane/enforce"
)

// NewEdgeCmd is the edge command as invoked by cmdline: "mcpgw edge" (a
// subcommand) or "mcpgw-edge" (a program's root).
func NewEdgeCmd(cmdline string) *cobra.Command {
	var cfg dataplane.Config
	var logLevel string
	c := &cobra.Command{
		Use:   cmdline[strings.LastIndexByte(cmdline, ' ')+1:],
		Short: "Run an edge data-plane node",
		Long: `Run an edge: one MCP endpoint in front of every backend, which authenticates
every caller (API keys), decides every request by the RBAC policy (deny by
default) and records one audit event per request.

Standalone, the edge reads its config file (--config): backends, policy,
auth and audit. Editing the file reloads it; an invalid file is rejected and
the previous config keeps serving. In fleet mode (--control-plane) the edge
enrolls once with a join token, then takes its config from the control plane,
keeps serving its last-known-good config while the control plane is away,
and ships its audit log there. --state-dir holds the audit spool and, in
fleet mode, the node identity and the last-known-good config.

Clients connect over Streamable HTTP at /mcp on --listen (which also serves
/healthz, /readyz and /metrics unless --ops-listen is given), or over
stdin/stdout with --stdio, so a desktop client can launch the edge as its MCP
server (logs then go to stderr only). The stdio client acts as --principal,
or with the API key in $MCPGW_API_KEY.

Every flag can also be set as MCPGW_<FLAG> in the environment, e.g.
MCPGW_LISTEN=0.0.0.0:8080 or MCPGW_ALLOWED_HOST=mcp.example.com,localhost.
The Go garbage collector runs at GOGC=200 unless GOGC is set.`,
		Example: strings.ReplaceAll(`  CMD --config mcpgw.yaml
  CMD --config mcpgw.yaml --listen 0.0.0.0:8443 --tls-cert edge.crt --tls-key edge.key --allowed-host mcp.example.com
  CMD --config mcpgw.yaml --stdio --principal alice
  CMD --control-plane cp.example.com:7443 --ca-file ca.crt --join-token mcpgwjoin_... --state-dir /var/lib/mcpgw-edge
  CMD --control-plane cp.example.com:7443 --state-dir /var/lib/mcpgw-edge     # later starts`, "CMD", cmdline),
		Args: NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := FlagsFromEnv(c.Flags()); err != nil {
				return Usage(err)
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return Usage(fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel))
			}
			// Logs go to stderr always: with --stdio, stdout is the protocol.
			cfg.Logger = slog.New(slog.NewJSONHandler(c.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			// The stdio client's key comes only from the environment, never
			// from argv (visible in the process list).
			if cfg.Stdio {
				cfg.APIKey = os.Getenv(enforce.EnvAPIKey)
			}
			if err := cfg.Validate(); err != nil {
				return Usage(err)
			}
			if dataplane.ApplyGCDefault() {
				cfg.Logger.Debug("GC target set", "gogc", dataplane.GCPercent, "why", "edge default; GOGC in the environment overrides it")
			} else {
				cfg.Logger.Debug("GC target from the environment", "gogc", os.Getenv("GOGC"))
			}
			return dataplane.Run(c.Context(), cfg)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.ConfigFile, "config", "", "declarative config file or directory (backends, policy, auth, audit); standalone mode")
	f.StringVar(&cfg.ControlPlane, "control-plane", "", "control plane node listener HOST:PORT; fleet mode (no --config)")
	f.StringVar(&cfg.CAFile, "ca-file", "", "the control plane's CA bundle (its DATA_DIR/ca.crt); needed until the edge has enrolled")
	f.StringVar(&cfg.JoinToken, "join-token", "", "single-use token that enrolls this edge (first start only; later starts use --state-dir)")
	f.StringVar(&cfg.StateDir, "state-dir", "", "directory for the audit spool, node identity and last-known-good config (default $XDG_STATE_HOME/mcpgw/edge or ~/.local/state/mcpgw/edge)")
	f.StringToStringVar(&cfg.Labels, "label", nil, "labels reported at enrollment, k=v (repeatable; the join token's labels win)")
	f.StringVar(&cfg.FleetAudit.Durability, "audit-durability", "", "fleet mode: sync (default: a response waits until its audit event is in the spool) or async")
	f.StringVar(&cfg.FleetAudit.OnFull, "audit-on-full", "", "fleet mode: what a full audit spool does: refuse (default: new calls get 503) or drop (serve and record a counted gap)")
	f.StringVar(&cfg.FleetAudit.Fsync, "audit-fsync", "", "fleet mode: when the audit spool is flushed to disk: interval (default), always (before a sync response is released) or never")
	f.DurationVar(&cfg.FleetAudit.FsyncInterval, "audit-fsync-interval", 0, "fleet mode: with --audit-fsync interval, the longest a spool write stays unflushed (default 10ms)")
	f.Int64Var(&cfg.FleetAudit.SpoolMaxBytes, "audit-spool-max-bytes", 0, "fleet mode: cap on the audit spool on disk (default 1 GiB)")
	f.StringVar(&cfg.NodeName, "node-name", "", "this edge's name: reported at enrollment; a standalone edge's node id derives from it (default: host name)")
	f.StringVar(&cfg.Principal, "principal", "", "with --stdio: the principal the stdio client acts as (or set $MCPGW_API_KEY)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "address of the MCP HTTP listener (/mcp)")
	f.StringVar(&cfg.OpsListen, "ops-listen", "", "serve /healthz, /readyz and /metrics here instead of on --listen")
	f.BoolVar(&cfg.Stdio, "stdio", false, "serve MCP on stdin/stdout instead of HTTP")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate file for the HTTP listener (with --tls-key)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key file for the HTTP listener (with --tls-cert)")
	f.StringSliceVar(&cfg.AllowedHosts, "allowed-host", nil, `Host header values accepted ("*" for any; default: localhost names on a loopback listener, any otherwise)`)
	f.StringSliceVar(&cfg.AllowedOrigins, "allowed-origin", nil, `Origin header values accepted ("*" for any; default: origins on an allowed host)`)
	f.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 4<<20, "largest request body accepted")
	f.IntVar(&cfg.MaxParkedPerPrincipal, "max-parked-calls", 16, "era bridging: calls one principal may keep waiting for its input on a legacy backend (2026-07-28 clients); beyond it such a call gets an error (-1: no limit)")
	f.DurationVar(&cfg.ReloadInterval, "reload-interval", 0, "how often the config file is checked for changes (default 500ms)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return c
}
