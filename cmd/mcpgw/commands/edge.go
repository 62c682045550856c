package commands

import "github.com/spf13/cobra"

func newEdgeCmd() *cobra.Command { return notYet("edge", "Run an edge data-plane node") }
