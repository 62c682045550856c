// Package auditfault holds issue 7's end-to-end fault test of the audit
// pipeline with real processes: `mcpgw cp` on a private Postgres cluster
// (internal/pgcluster) and two `mcpgw edge --control-plane` processes in
// front of an HTTP MCP backend, driven by raw HTTP clients while the test
// SIGKILLs the control plane twice, kills and restarts Postgres once and
// SIGKILLs one edge once. See docs/audit-pipeline.md.
package auditfault
