package cli

import "github.com/spf13/cobra"

// NewEdgeRoot is mcpgw-edge's command line: the edge command as the root,
// with the flags of `mcpgw edge`, and `mcpgw-edge version`.
func NewEdgeRoot() *cobra.Command {
	root := Root(NewEdgeCmd("mcpgw-edge"))
	root.AddCommand(NewVersionCmd())
	return root
}
