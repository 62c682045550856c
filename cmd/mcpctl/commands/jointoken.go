package commands

import (
	"fmt"
	"maps"
	"net"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// createdToken is the -o json shape of join-token create.
type createdToken struct {
	Token      string            `json:"token"`
	ID         string            `json:"id"`
	ExpireTime string            `json:"expire_time"`
	NodeGroup  string            `json:"node_group,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Command    string            `json:"command"`
}

func newJoinTokenCmd(g *globals) *cobra.Command {
	var (
		ttl, description, nodeGroup, cpAddr, stateDir string
		labels                                        map[string]string
		out                                           *outputFlag
	)
	create := &cobra.Command{
		Use:   "create [--ttl 1h] [--labels k=v,...] [--node-group NAME]",
		Short: "Mint a single-use token that enrolls one new edge, and print the command to run there",
		Long: `Mint a single-use join token and print the exact 'mcpgw edge' command that
enrolls a new edge with it. The token is shown once.

The edge connects to the control plane's node listener, which is not the admin
listener mcpctl talks to; pass it with --control-plane if the printed command's
address is not the one your edges reach (by default it is the --server host on
port 7443, the default of mcpgw cp --node-listen).`,
		Example: `  mcpctl join-token create --ttl 1h --labels region=eu,tier=web
  mcpctl join-token create -o json | jq -r .token`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			req := &mcpgwv1.CreateJoinTokenRequest{Labels: labels, NodeGroup: nodeGroup, Description: description}
			if ttl != "" {
				d, err := parseLifetime("ttl", ttl)
				if err != nil {
					return err
				}
				req.Ttl = durationpb.New(d)
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			defer cl.Close()
			cctx, cancel := cl.call(c.Context())
			defer cancel()
			r, err := cl.CreateJoinToken(cctx, req)
			if err != nil {
				return cl.rpcError("creating a join token", err)
			}
			jt := r.GetJoinToken()
			addr := cpAddr
			if addr == "" {
				addr = defaultNodeAddr(cl.addr)
				if out.value != "json" {
					fmt.Fprintf(g.stderr, "note: edges connect to the node listener, assumed at %s (the default port of mcpgw cp --node-listen); pass --control-plane ADDR if yours differs\n", addr)
				}
			}
			caFile := cl.caFile
			if caFile == "" {
				caFile = "ca.crt"
			}
			cmd := fmt.Sprintf("mcpgw edge --control-plane %s --ca-file %s --join-token %s --state-dir %s",
				shellQuote(addr), shellQuote(caFile), r.GetToken(), shellQuote(stateDir))
			w := c.OutOrStdout()
			if out.value == "json" {
				return writePlainJSON(w, createdToken{
					Token: r.GetToken(), ID: jt.GetId(), ExpireTime: timeText(jt.GetExpireTime()),
					NodeGroup: jt.GetNodeGroup(), Labels: maps.Clone(jt.GetLabels()), Command: cmd,
				})
			}
			fmt.Fprintf(g.stderr, "warning: this is the only time the token is shown; it enrolls one edge and expires %s\n", timeText(jt.GetExpireTime()))
			fmt.Fprintf(w, "join token %s (single use, expires %s)\n", jt.GetId(), timeText(jt.GetExpireTime()))
			fmt.Fprintf(w, "%s\n\n", r.GetToken())
			fmt.Fprintf(w, "On the new edge, with the control plane's CA bundle copied to %s, run:\n\n", caFile)
			fmt.Fprintf(w, "  %s\n", cmd)
			return nil
		},
	}
	create.Flags().StringVar(&ttl, "ttl", "", "how long the token is valid, e.g. 1h or 2d (default 1h, at most 7d)")
	create.Flags().StringToStringVar(&labels, "labels", nil, "labels for the enrolled node, k=v,...")
	create.Flags().StringVar(&nodeGroup, "node-group", "", `node group of the enrolled node (default "default")`)
	create.Flags().StringVar(&description, "description", "", "what the token is for")
	create.Flags().StringVar(&cpAddr, "control-plane", "", "node listener address to put in the printed edge command (default: the --server host, port 7443)")
	create.Flags().StringVar(&stateDir, "state-dir", "/var/lib/mcpgw-edge", "state directory to put in the printed edge command")
	out = addOutputFlag(create, "text", "text", "json")

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Make an unused join token unusable",
		Args:  exactArgs("ID"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			defer cl.Close()
			cctx, cancel := cl.call(c.Context())
			defer cancel()
			if _, err := cl.RevokeJoinToken(cctx, &mcpgwv1.RevokeJoinTokenRequest{Id: args[0]}); err != nil {
				return cl.rpcError(fmt.Sprintf("revoking join token %q", args[0]), err)
			}
			fmt.Fprintf(c.OutOrStdout(), "join token %s revoked\n", args[0])
			return nil
		},
	}
	return group("join-token", "Create and revoke join tokens that enroll new edges", create, revoke)
}

// defaultNodePort is the port of controlplane.DefaultNodeListen (a test
// keeps them equal; mcpctl does not link the control plane to learn it).
const defaultNodePort = "7443"

// defaultNodeAddr guesses the node listener from the admin address: the
// same host on the default node port, which is right for a default install.
func defaultNodeAddr(adminAddr string) string {
	host, _, err := net.SplitHostPort(adminAddr)
	if err != nil {
		return adminAddr
	}
	return net.JoinHostPort(host, defaultNodePort)
}

// shellQuote quotes s for a POSIX shell when it needs it, so the printed
// command can be pasted as is.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
