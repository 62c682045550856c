package commands

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcpgw/mcpgw/internal/buildinfo"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the mcpgw version",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(c.OutOrStdout(), "mcpgw %s\n", buildinfo.String())
			return err
		},
	}
}
