package commands

import "github.com/spf13/cobra"

func newMigrateCmd() *cobra.Command { return notYet("migrate", "Apply database migrations") }
