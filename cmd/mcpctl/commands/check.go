package commands

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

func newCheckCmd(g *globals) *cobra.Command {
	var (
		req  mcpgwv1.CheckRequest
		tool string
		out  *outputFlag
	)
	c := &cobra.Command{
		Use:   "check --principal NAME (--tool NAME | --method METHOD [--name ITEM]) [--args JSON]",
		Short: "Ask whether the current policy allows a request, and why",
		Long: `Evaluate one hypothetical request against the current policy with the decision
function the edges use, and print the decision (allow or deny), the rule that
decided, the policy revision and the reasoning.

The exit code is 0 whatever the decision (the check itself worked) and 1 if the
check could not be made (unknown principal, control plane unreachable, ...).`,
		Example: `  mcpctl check --principal alice --tool github__delete_repo
  mcpctl check --principal bob --method resources/read --name file:///docs/readme.md
  mcpctl check --principal alice --method tools/call --name search --backend search --args '{"q":"x"}'`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if req.Principal == "" {
				return usagef("check needs --principal NAME")
			}
			if tool != "" {
				if req.Method != "" && req.Method != "tools/call" || req.Name != "" {
					return usagef("--tool NAME is short for --method tools/call --name NAME; give one or the other")
				}
				req.Method, req.Name = "tools/call", tool
			}
			if req.Method == "" {
				return usagef("check needs --method METHOD (or --tool NAME)")
			}
			if req.ArgumentsJson != "" {
				var obj map[string]any
				if err := json.Unmarshal([]byte(req.ArgumentsJson), &obj); err != nil {
					return usagef("--args must be a JSON object: %v", err)
				}
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			defer cl.Close()
			cctx, cancel := cl.call(c.Context())
			defer cancel()
			r, err := cl.Check(cctx, &req)
			if err != nil {
				return cl.rpcError("checking the request", err)
			}
			w := c.OutOrStdout()
			switch out.value {
			case "json":
				return writeJSON(w, r)
			case "yaml":
				return writeProtoYAML(w, r)
			}
			fmt.Fprintln(w, r.GetDecision())
			rule := r.GetRule()
			if rule == "" {
				rule = "(none: default deny)"
			}
			fmt.Fprintf(w, "rule:     %s\n", rule)
			fmt.Fprintf(w, "revision: %d\n", r.GetRevision())
			if r.GetBackend() != "" {
				fmt.Fprintf(w, "backend:  %s\n", r.GetBackend())
			}
			if len(r.GetExplanation()) > 0 {
				fmt.Fprintln(w, "because:")
				for _, line := range r.GetExplanation() {
					fmt.Fprintf(w, "  %s\n", line)
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&req.Principal, "principal", "", "principal making the request (required)")
	f.StringVar(&req.Method, "method", "", "MCP method, e.g. tools/call, prompts/get, resources/read")
	f.StringVar(&req.Name, "name", "", "item: exposed tool or prompt name (github__create_issue) or resource URI")
	f.StringVar(&tool, "tool", "", "short for --method tools/call --name NAME")
	f.StringVar(&req.Backend, "backend", "", "backend of the item, for unprefixed backends (default: from the name's prefix)")
	f.StringVar(&req.ArgumentsJson, "args", "", "tool arguments as a JSON object, for rules with conditions")
	out = addOutputFlag(c, "text", "text", "json", "yaml")
	return c
}
