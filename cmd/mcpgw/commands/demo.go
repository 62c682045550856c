package commands

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/mcpgw/mcpgw/cmd/internal/cli"
	"github.com/mcpgw/mcpgw/internal/demo"
)

func newDemoBackendCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "demo-backend",
		Short: "Serve the built-in demo MCP server on stdin/stdout",
		Long: `Serve a small MCP server over stdio: tools echo, add, time_now and
word_count, the prompt summarize and the resource demo://readme. 'mcpgw dev'
runs it as its demo backend; any MCP client or edge can launch it the same
way. It exits when its client closes stdin.`,
		Example: `  mcpgw demo-backend`,
		Args:    cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return demo.Serve(c.Context(), demo.Options{}, os.Stdin, os.Stdout)
		},
	}
}
