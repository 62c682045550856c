package commands

import (
	"github.com/spf13/cobra"
)

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print a completion script for your shell. To load it:

  bash:  source <(mcpctl completion bash)          # or save to /etc/bash_completion.d/mcpctl
  zsh:   mcpctl completion zsh > "${fpath[1]}/_mcpctl"
  fish:  mcpctl completion fish > ~/.config/fish/completions/mcpctl.fish`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("completion needs a shell: bash, zsh or fish")
			}
			if err := cobra.OnlyValidArgs(c, args); err != nil {
				return usagef("completion: unsupported shell %q (want bash, zsh or fish)", args[0])
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			w := c.OutOrStdout()
			root := c.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(w, true)
			case "zsh":
				return root.GenZshCompletion(w)
			default:
				return root.GenFishCompletion(w, true)
			}
		},
	}
}
