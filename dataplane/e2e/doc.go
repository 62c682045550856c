// Package e2e holds the fleet end-to-end test: real `mcpgw cp` replicas on
// one Postgres database, real `mcpgw edge` processes enrolled with join
// tokens from `mcpctl`, real backends and a real MCP client, with processes
// killed and restarted mid-test (issue 6). It has no code of its own; the
// binaries are built once in TestMain.
package e2e
