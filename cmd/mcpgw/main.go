// Command mcpgw runs the mcpgw control plane, an edge node, or both in one
// process for development. See `mcpgw --help`.
package main

import (
	"os"

	"github.com/mcpgw/mcpgw/cmd/mcpgw/commands"
)

func main() { os.Exit(commands.Execute(os.Args[1:])) }
