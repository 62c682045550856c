// Package auditdb is the audit log's SQL (DESIGN §6): exactly-once batch
// ingest into audit_ledger and the day-partitioned audit_events (ledger row
// with ON CONFLICT DO NOTHING, then COPY of the events, in one transaction),
// hash-chain checks, partition creation on demand, keyset-paginated queries
// and chain verification. It also defines the batch format the edge spools
// and ships (Batch), so the edge, a standalone edge's direct Postgres sink
// and the control plane's ingest agree on the bytes they hash.
//
// Besides controlplane/store it is the only package that imports pgx.
package auditdb
