package commands

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcpgw/mcpgw/internal/buildinfo"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the mcpctl version",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(c.OutOrStdout(), "mcpctl %s\n", buildinfo.String())
			return err
		},
	}
}
