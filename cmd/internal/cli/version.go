package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcpgw/mcpgw/internal/buildinfo"
)

// NewVersionCmd prints the program's name and version.
func NewVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the mcpgw version",
		Args:  NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(c.OutOrStdout(), "%s %s\n", c.Root().Name(), buildinfo.String())
			return err
		},
	}
}
