// Package commands holds the `mcpgw` subcommands. Each command parses its flags
// into the Config of the package it runs and calls that package's Run; the
// wiring lives in those packages, not here. The edge and version commands
// and the conventions every command follows are cmd/internal/cli's, shared
// with mcpgw-edge.
package commands

import (
	"context"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcpgw/mcpgw/cmd/internal/cli"
)

// Execute runs the mcpgw command line and returns the process exit code.
func Execute(args []string) int {
	return execute(context.Background(), args, os.Stdout, os.Stderr)
}

func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Execute(ctx, newRoot(), args, stdout, stderr)
}

func newRoot() *cobra.Command {
	root := cli.Root(&cobra.Command{
		Use:   "mcpgw",
		Short: "MCP gateway for fleets: control plane, edge data plane, and an all-in-one dev mode",
	})
	root.AddCommand(
		cli.NewVersionCmd(),
		newMigrateCmd(),
		newCPCmd(),
		cli.NewEdgeCmd("mcpgw edge"),
		newDevCmd(),
		newDemoBackendCmd(),
		newKeygenCmd(),
		newPolicyCmd(),
	)
	return root
}
