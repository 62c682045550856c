// Command mcpgw-edge is an mcpgw edge and nothing else: `mcpgw-edge FLAGS`
// is `mcpgw edge FLAGS`. It links no control plane, embedded SQLite store
// or dev mode, so an idle edge maps and initializes less of its executable
// than `mcpgw edge` does (docs/benchmarks.md, "Memory").
package main

import (
	"context"
	"os"

	"github.com/mcpgw/mcpgw/cmd/internal/cli"
)

func main() {
	os.Exit(cli.Execute(context.Background(), cli.NewEdgeRoot(), os.Args[1:], os.Stdout, os.Stderr))
}
