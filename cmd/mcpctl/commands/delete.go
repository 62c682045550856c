package commands

import (
	"fmt"

	"github.com/spf13/cobra"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

func newDeleteCmd(g *globals) *cobra.Command {
	var (
		expected int64
		dryRun   bool
	)
	c := &cobra.Command{
		Use:   "delete KIND NAME",
		Short: "Delete a resource (keys, join tokens and nodes are revoked) (KIND: " + kindNames(kinds) + ")",
		Long: `Delete one resource. For keys, join tokens and nodes, delete revokes: the record
stays visible (get --all) but stops working.

--expected-revision N deletes only if the resource is still at revision N (the
REVISION column of get), so you never delete something someone just changed.`,
		Example: `  mcpctl delete backend github
  mcpctl delete role readonly --expected-revision 12
  mcpctl delete key k1a2b3c4`,
		Args:              exactArgs("KIND", "NAME"),
		ValidArgsFunction: kindCompletion(kinds),
		RunE: func(c *cobra.Command, args []string) error {
			k, err := parseKind(c, args[0], kinds)
			if err != nil {
				return err
			}
			if expected < 0 {
				return usagef("--expected-revision must be positive")
			}
			if !k.config && (expected != 0 || dryRun) {
				return usagef("--expected-revision and --dry-run apply to backends, roles, bindings and principals only")
			}
			name := args[1]
			cl, err := g.dial()
			if err != nil {
				return err
			}
			defer cl.Close()
			cctx, cancel := cl.call(c.Context())
			defer cancel()
			what := fmt.Sprintf("deleting %s %q", k.singular, name)
			var rev int64
			var extra string
			switch k.name {
			case "backends":
				r, err := cl.DeleteBackend(cctx, &mcpgwv1.DeleteBackendRequest{Name: name, ExpectedRevision: expected, DryRun: dryRun})
				if err != nil {
					return cl.rpcError(what, err)
				}
				rev = r.GetRevision()
			case "roles":
				r, err := cl.DeleteRole(cctx, &mcpgwv1.DeleteRoleRequest{Name: name, ExpectedRevision: expected, DryRun: dryRun})
				if err != nil {
					return cl.rpcError(what, err)
				}
				rev = r.GetRevision()
			case "bindings":
				r, err := cl.DeleteBinding(cctx, &mcpgwv1.DeleteBindingRequest{Role: name, ExpectedRevision: expected, DryRun: dryRun})
				if err != nil {
					return cl.rpcError(what, err)
				}
				rev = r.GetRevision()
			case "principals":
				r, err := cl.DeletePrincipal(cctx, &mcpgwv1.DeletePrincipalRequest{Name: name, ExpectedRevision: expected, DryRun: dryRun})
				if err != nil {
					return cl.rpcError(what, err)
				}
				rev = r.GetRevision()
				if n := len(r.GetRevokedApiKeyIds()); n > 0 {
					extra = fmt.Sprintf("; %s revoked", plural(n, "key", "keys"))
				}
			case "keys":
				r, err := cl.RevokeApiKey(cctx, &mcpgwv1.RevokeApiKeyRequest{Id: name})
				if err != nil {
					return cl.rpcError(what, err)
				}
				fmt.Fprintf(c.OutOrStdout(), "key %s revoked (revision %d)\n", name, r.GetRevision())
				return nil
			case "tokens":
				if _, err := cl.RevokeJoinToken(cctx, &mcpgwv1.RevokeJoinTokenRequest{Id: name}); err != nil {
					return cl.rpcError(what, err)
				}
				fmt.Fprintf(c.OutOrStdout(), "join token %s revoked\n", name)
				return nil
			case "nodes":
				id, err := resolveNode(c.Context(), cl, name)
				if err != nil {
					return err
				}
				r, err := cl.RevokeNode(cctx, &mcpgwv1.RevokeNodeRequest{NodeId: id})
				if err != nil {
					return cl.rpcError(what, err)
				}
				fmt.Fprintf(c.OutOrStdout(), "node %s (%s) revoked; it must enroll again with a new join token\n", r.GetNode().GetName(), id)
				return nil
			}
			if dryRun {
				fmt.Fprintf(c.OutOrStdout(), "dry run: would delete %s %q (revision %d)\n", k.singular, name, rev)
				return nil
			}
			fmt.Fprintf(c.OutOrStdout(), "%s %q deleted (revision %d%s)\n", k.singular, name, rev, extra)
			return nil
		},
	}
	c.Flags().Int64Var(&expected, "expected-revision", 0, "delete only if the resource is at this revision (0 = unconditionally)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "validate only; change nothing")
	return c
}
