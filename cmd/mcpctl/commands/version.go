package commands

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/buildinfo"
)

// versionView is the -o json shape of mcpctl version.
type versionView struct {
	Client string      `json:"client"`
	Server *serverView `json:"server,omitempty"`
}

type serverView struct {
	Address  string `json:"address"`
	Version  string `json:"version"`
	Replica  string `json:"replica"`
	Revision int64  `json:"revision"`
}

func newVersionCmd(g *globals) *cobra.Command {
	var out *outputFlag
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the mcpctl version and, when one is reachable, the control plane's",
		Long: `Print the mcpctl version. When a control plane is configured (flags, environment
or context) and answers, also print its version, replica and current revision;
otherwise print the client version alone with a note on stderr.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			v := versionView{Client: buildinfo.String()}
			v.Server = g.serverVersion(c.Context())
			w := c.OutOrStdout()
			if out.value == "json" {
				return writePlainJSON(w, v)
			}
			fmt.Fprintf(w, "client: mcpctl %s\n", v.Client)
			if s := v.Server; s != nil {
				fmt.Fprintf(w, "server: mcpgw %s (replica %s at %s, revision %d)\n", s.Version, s.Replica, s.Address, s.Revision)
			}
			return nil
		},
	}
	out = addOutputFlag(c, "table", "table", "json")
	return c
}

// serverVersion asks the configured control plane for its version; any
// failure becomes a note on stderr, because the client version alone is
// still a useful answer.
func (g *globals) serverVersion(ctx context.Context) *serverView {
	s, err := g.settings()
	if err == nil && s.server == "" {
		fmt.Fprintln(g.stderr, "mcpctl: note: no control plane configured; showing the client version only")
		return nil
	}
	var cl *client
	if err == nil {
		cl, err = g.dial()
	}
	if err != nil {
		fmt.Fprintf(g.stderr, "mcpctl: note: showing the client version only: %v\n", err)
		return nil
	}
	defer cl.Close()
	cctx, cancel := cl.call(ctx)
	defer cancel()
	info, err := cl.GetServerInfo(cctx, &mcpgwv1.GetServerInfoRequest{})
	if err != nil {
		fmt.Fprintf(g.stderr, "mcpctl: note: showing the client version only: %v\n", cl.rpcError("asking for the server version", err))
		return nil
	}
	return &serverView{Address: cl.addr, Version: info.GetVersion(), Replica: info.GetReplica(), Revision: info.GetRevision()}
}
