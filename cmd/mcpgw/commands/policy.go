package commands

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcpgw/mcpgw/cmd/internal/cli"
	"github.com/mcpgw/mcpgw/dataplane/enforce"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

func newPolicyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "Check and test a config file's policy offline",
		Long: `Evaluate a config file's policy with the decision function the edge enforces,
without running an edge: 'check' explains one request, 'test' runs golden
request→decision cases (for CI).`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return cli.Usage(fmt.Errorf("%s needs a subcommand: check or test", c.CommandPath()))
		},
	}
	c.AddCommand(newPolicyCheckCmd(), newPolicyTestCmd())
	return c
}

// loadPolicy reads config files and compiles their policy exactly as the
// edge does, so the revision printed is the one its audit events carry.
func loadPolicy(configs []string) (*document.Document, *enforce.Generation, error) {
	if len(configs) == 0 {
		return nil, nil, cli.Usage(errors.New("give --config FILE (the edge's config)"))
	}
	doc, err := document.ParseFiles(configs...)
	if err != nil {
		return nil, nil, err
	}
	g, err := enforce.Prepare(doc, state.Meta{})
	if err != nil {
		return nil, nil, err
	}
	return doc, g, nil
}

func newPolicyCheckCmd() *cobra.Command {
	var (
		configs                       []string
		principal, method, name, tool string
		backend                       string
	)
	c := &cobra.Command{
		Use:   "check --config FILE --principal NAME (--tool NAME | --method METHOD [--name ITEM])",
		Short: "Explain the decision for one request",
		Long: `Decide one hypothetical request against the config's policy and print the
decision (allow or deny), the rule that decided, the policy revision and every
rule considered.

The exit code is 0 whatever the decision (the check itself worked), 1 if the
config is invalid, 2 for a bad command line.`,
		Example: `  mcpgw policy check --config mcpgw.yaml --principal alice --method tools/call --name github__delete_repo
  mcpgw policy check --config mcpgw.yaml --principal bob --tool web_search --backend search
  mcpgw policy check --config mcpgw.yaml --principal bob --method resources/read --name file:///docs/a.md --backend github`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if principal == "" {
				return cli.Usage(errors.New("check needs --principal NAME"))
			}
			if tool != "" {
				if method != "" && method != "tools/call" || name != "" {
					return cli.Usage(errors.New("--tool NAME is short for --method tools/call --name NAME; give one or the other"))
				}
				method, name = "tools/call", tool
			}
			if method == "" {
				return cli.Usage(errors.New("check needs --method METHOD (or --tool NAME)"))
			}
			doc, g, err := loadPolicy(configs)
			if err != nil {
				return err
			}
			cs := document.Case{Name: "the request", Principal: principal, Method: method, Backend: backend, Expect: policy.EffectAllow}
			switch kind := policy.KindOf(method); {
			case name == "" && kind != policy.KindNone:
				return cli.Usage(fmt.Errorf("%s needs --name (the item it touches)", method))
			case name == "":
			case kind == policy.KindTool:
				cs.Tool = name
			case kind == policy.KindPrompt:
				cs.Prompt = name
			case kind == policy.KindResource:
				cs.Resource = name
			case method == "completion/complete" && strings.Contains(name, ":"):
				cs.Resource = name
			case method == "completion/complete":
				cs.Prompt = name
			default:
				return cli.Usage(fmt.Errorf("%s touches no item; drop --name", method))
			}
			req, err := cs.Request(doc)
			if err != nil {
				return cli.Usage(err)
			}
			x := g.Policy.Explain(principal, req)
			w := c.OutOrStdout()
			verdict := policy.EffectDeny
			if x.Decision.Allow {
				verdict = policy.EffectAllow
			}
			rule := x.Decision.Rule
			if rule == "" && !x.Decision.Allow {
				rule = "(none: default deny)"
			} else if rule == "" {
				rule = "(none: protocol housekeeping)"
			}
			fmt.Fprintln(w, verdict)
			fmt.Fprintf(w, "rule:     %s\n", rule)
			fmt.Fprintf(w, "revision: %d\n", x.Decision.Revision)
			if req.Backend != "" {
				fmt.Fprintf(w, "backend:  %s\n", req.Backend)
			}
			fmt.Fprintln(w, "because:")
			for _, line := range x.Lines() {
				if _, err := fmt.Fprintf(w, "  %s\n", line); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringSliceVar(&configs, "config", nil, "config file or directory (repeatable; merged like the edge's)")
	f.StringVar(&principal, "principal", "", "principal making the request (required)")
	f.StringVar(&method, "method", "", "MCP method, e.g. tools/call, prompts/get, resources/read")
	f.StringVar(&name, "name", "", "item: exposed tool or prompt name (github__create_issue) or resource URI")
	f.StringVar(&tool, "tool", "", "short for --method tools/call --name NAME")
	f.StringVar(&backend, "backend", "", "backend of the item (default: from the name's prefix; required for resources)")
	return c
}

func newPolicyTestCmd() *cobra.Command {
	var (
		configs []string
		cases   string
	)
	c := &cobra.Command{
		Use:   "test --config FILE --cases CASES.yaml",
		Short: "Run golden request→decision cases against the policy",
		Long: `Decide every case of a cases file (see examples/policy-cases.yaml) against the
config's policy and report each one. The exit code is 0 when every decision is
the expected one, 1 when any differs (each is listed) or a file is invalid, so
a policy change that opens or closes more than intended fails CI.`,
		Example: `  mcpgw policy test --config examples/mcpgw.yaml --cases examples/policy-cases.yaml`,
		Args:    cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if cases == "" {
				return cli.Usage(errors.New("test needs --cases FILE"))
			}
			doc, g, err := loadPolicy(configs)
			if err != nil {
				return err
			}
			f, err := os.Open(cases)
			if err != nil {
				return err
			}
			defer f.Close()
			cs, err := document.ParseCases(f, cases)
			if err != nil {
				return err
			}
			results, err := document.RunCases(doc, g.Policy, cs)
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			failed := 0
			for _, r := range results {
				if r.Problem == "" {
					fmt.Fprintf(w, "ok    %s\n", r.Case.Name)
					continue
				}
				failed++
				fmt.Fprintf(w, "FAIL  %s: %s\n", r.Case.Name, r.Problem)
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d cases failed (policy revision %d)", failed, len(results), g.Revision)
			}
			_, err = fmt.Fprintf(w, "%d cases passed (policy revision %d)\n", len(results), g.Revision)
			return err
		},
	}
	c.Flags().StringSliceVar(&configs, "config", nil, "config file or directory (repeatable; merged like the edge's)")
	c.Flags().StringVar(&cases, "cases", "", "cases file (required)")
	return c
}
