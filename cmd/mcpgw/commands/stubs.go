package commands

import (
	"fmt"

	"github.com/spf13/cobra"
)

// notYet builds a subcommand whose implementation has not landed: it exits
// non-zero with a clear message instead of pretending to work.
func notYet(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Short:              short + " (not yet implemented)",
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, _ []string) error {
			return fmt.Errorf("%s: %w", c.CommandPath(), errNotImplemented)
		},
	}
}

func newDevCmd() *cobra.Command {
	return notYet("dev", "Run control plane, edge and a demo backend in one process")
}
