// Command mcpctl is the admin CLI for an mcpgw control plane. See `mcpctl --help`.
package main

import (
	"os"

	"github.com/mcpgw/mcpgw/cmd/mcpctl/commands"
)

func main() { os.Exit(commands.Execute(os.Args[1:])) }
