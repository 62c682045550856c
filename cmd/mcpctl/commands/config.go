package commands

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/mcpgw/mcpgw/cmd/mcpctl/internal/contexts"
)

func newConfigCmd(g *globals) *cobra.Command {
	c := group("config", "Manage contexts: named control planes and the credentials to reach them",
		newSetContextCmd(g), newUseContextCmd(g), newGetContextsCmd(g),
		newCurrentContextCmd(g), newDeleteContextCmd(g))
	c.Long = `Contexts are named connection settings kept in a file (mode 0600, since it
holds admin tokens): $MCPCTL_CONFIG if set, else $XDG_CONFIG_HOME/mcpctl/config.yaml,
else ~/.config/mcpctl/config.yaml.

Settings are taken from flags first, then MCPCTL_SERVER, MCPCTL_TOKEN and
MCPCTL_CA_FILE, then the context named by --context or MCPCTL_CONTEXT, else the
current context.`
	return c
}

func (g *globals) loadContexts() (string, *contexts.File, error) {
	path, err := g.contextsPath()
	if err != nil {
		return "", nil, err
	}
	f, err := contexts.Load(path)
	return path, f, err
}

func newSetContextCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "set-context NAME --server HOST:PORT [--token TOKEN] [--ca-file FILE]",
		Short: "Create or update a context; fields you leave out keep their values",
		Example: `  mcpctl config set-context prod --server cp.example.com:8443 --token "$TOKEN" --ca-file ./ca.crt
  mcpctl config set-context prod --token "$NEW_TOKEN"     # rotate only the token`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			path, f, err := g.loadContexts()
			if err != nil {
				return err
			}
			ctx := contexts.Context{Name: args[0], Server: g.server, Token: g.token, InsecureSkipTLSVerify: g.insecureSkipVerify}
			if ctx.Server != "" {
				if ctx.Server, err = normalizeServer(ctx.Server); err != nil {
					return err
				}
			}
			if g.caFile != "" {
				// A relative path would mean something else from another
				// working directory.
				if ctx.CAFile, err = filepath.Abs(g.caFile); err != nil {
					return fmt.Errorf("resolving --ca-file: %w", err)
				}
			}
			_, existed := f.Get(ctx.Name)
			f.Set(ctx)
			if stored, _ := f.Get(ctx.Name); stored.Server == "" {
				return usagef("context %q has no server: pass --server HOST:PORT", ctx.Name)
			}
			becameCurrent := f.CurrentContext == ""
			if becameCurrent {
				f.CurrentContext = ctx.Name
			}
			if err := contexts.Save(path, f); err != nil {
				return err
			}
			verb := "created"
			if existed {
				verb = "modified"
			}
			fmt.Fprintf(c.OutOrStdout(), "context %q %s in %s\n", ctx.Name, verb, path)
			if becameCurrent {
				fmt.Fprintf(c.OutOrStdout(), "switched to context %q\n", ctx.Name)
			}
			return nil
		},
	}
	return c
}

func newUseContextCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "use-context NAME",
		Short: "Make a context the current one",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			path, f, err := g.loadContexts()
			if err != nil {
				return err
			}
			if _, ok := f.Get(args[0]); !ok {
				return fmt.Errorf("no context %q in %s (see 'mcpctl config get-contexts')", args[0], path)
			}
			f.CurrentContext = args[0]
			if err := contexts.Save(path, f); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "switched to context %q\n", args[0])
			return nil
		},
	}
}

func newDeleteContextCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete-context NAME",
		Short: "Remove a context (and its token) from the contexts file",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			path, f, err := g.loadContexts()
			if err != nil {
				return err
			}
			if !f.Delete(args[0]) {
				return fmt.Errorf("no context %q in %s", args[0], path)
			}
			if err := contexts.Save(path, f); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "deleted context %q\n", args[0])
			return nil
		},
	}
}

func newCurrentContextCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "current-context",
		Short: "Print the name of the current context",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			path, f, err := g.loadContexts()
			if err != nil {
				return err
			}
			if f.CurrentContext == "" {
				return fmt.Errorf("no current context in %s (see 'mcpctl config use-context')", path)
			}
			fmt.Fprintln(c.OutOrStdout(), f.CurrentContext)
			return nil
		},
	}
}

// contextView is how get-contexts shows a context: never the token itself.
type contextView struct {
	Name                  string `json:"name"`
	Current               bool   `json:"current"`
	Server                string `json:"server"`
	CAFile                string `json:"ca_file,omitempty"`
	HasToken              bool   `json:"has_token"`
	InsecureSkipTLSVerify bool   `json:"insecure_skip_tls_verify,omitempty"`
}

func newGetContextsCmd(g *globals) *cobra.Command {
	var out *outputFlag
	c := &cobra.Command{
		Use:   "get-contexts",
		Short: "List the contexts (tokens are never printed)",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, f, err := g.loadContexts()
			if err != nil {
				return err
			}
			views := make([]contextView, 0, len(f.Contexts))
			for _, x := range f.Contexts {
				views = append(views, contextView{
					Name: x.Name, Current: x.Name == f.CurrentContext, Server: x.Server,
					CAFile: x.CAFile, HasToken: x.Token != "", InsecureSkipTLSVerify: x.InsecureSkipTLSVerify,
				})
			}
			w := c.OutOrStdout()
			if out.value == "json" {
				return writePlainJSON(w, views)
			}
			t := newTable(w, "CURRENT", "NAME", "SERVER", "CA FILE", "TOKEN")
			for _, v := range views {
				cur, tok := " ", "none"
				if v.Current {
					cur = "*"
				}
				if v.HasToken {
					tok = "set"
				}
				ca := v.CAFile
				if v.InsecureSkipTLSVerify {
					ca = "(TLS not verified)"
				}
				t.row(cur, v.Name, v.Server, ca, tok)
			}
			return t.flush()
		},
	}
	out = addOutputFlag(c, "table", "table", "json")
	return c
}
