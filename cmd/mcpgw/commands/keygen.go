package commands

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcpgw/mcpgw/cmd/internal/cli"
	"github.com/mcpgw/mcpgw/internal/policy"
)

func newKeygenCmd() *cobra.Command {
	var (
		name   string
		groups []string
	)
	c := &cobra.Command{
		Use:   "keygen --name NAME [--group GROUP]...",
		Short: "Make a new API key for a principal of a standalone edge",
		Long: `Make a new API key (mcpgw_<id>_<secret>, 256 random bits) and print it once,
alone on stdout, so it can be captured: KEY=$(mcpgw keygen --name alice).

On stderr it prints the principal line to paste under principals: in the
edge's config file. The file holds only the SHA-256 of the key; the key itself
is stored nowhere, so keep it now or make a new one. Fleet edges get their
keys from 'mcpctl keys create' instead.`,
		Example: `  mcpgw keygen --name alice
  mcpgw keygen --name ci-bot --group automation`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if name == "" {
				return cli.Usage(fmt.Errorf("keygen needs --name NAME (the principal the key authenticates)"))
			}
			for _, n := range append([]string{name}, groups...) {
				if !policy.ValidPrincipalName(n) {
					return cli.Usage(fmt.Errorf("%q is not a valid principal or group name", n))
				}
			}
			key, err := policy.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			sum := policy.HashKey(key)
			line := "- {name: " + name
			if len(groups) > 0 {
				line += ", groups: [" + strings.Join(groups, ", ") + "]"
			}
			line += ", api_key_sha256: " + hex.EncodeToString(sum[:]) + "}"
			if _, err := fmt.Fprintln(c.OutOrStdout(), key); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.ErrOrStderr(), `
mcpgw: the key above is shown only this once and stored nowhere; keep it now.
Paste this line under "principals:" in the edge's config (it holds only the key's SHA-256):

  %s

`, line)
			return err
		},
	}
	c.Flags().StringVar(&name, "name", "", "principal the key authenticates (required)")
	c.Flags().StringSliceVar(&groups, "group", nil, "group the principal belongs to (repeatable)")
	return c
}
