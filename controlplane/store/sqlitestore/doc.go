// Package sqlitestore is the control plane's embedded store: the whole of
// what controlplane/store and internal/auditdb keep in Postgres (config with
// revisions and the change log, principals, API key hashes, join tokens,
// the node registry, the installation CA, and the audit ledger and events),
// in one pure-Go SQLite file (modernc.org/sqlite, no cgo). It backs `mcpgw
// dev` and small single-node installs; production keeps Postgres.
//
// It implements the same interfaces as the Postgres stores (admin.Store,
// admin.AuditStore, nodeapi.Store, snapshot.Source, pki.CAStore,
// ingest.Store) and runs the same config write logic (store.Writer), so a
// write is validated, diffed and logged identically; the contract suite in
// controlplane/store/storetest runs against both.
//
// What differs, by design (docs/embedded-store.md):
//   - One control plane only. Open takes an exclusive lock on PATH.lock and
//     a second process on the same file is refused ("another mcpgw control
//     plane is using PATH"). There is no LISTEN/NOTIFY: commits wake this
//     process's snapshot builder directly.
//   - One writer: every write runs on a single connection (BEGIN
//     IMMEDIATE), reads on a small pool of their own (WAL mode, so readers
//     never wait for the writer).
//   - Audit retention deletes rows older than the retention period instead
//     of dropping day partitions; the tail follows the ledger's commit order
//     instead of polling a time window.
//   - The schema is its own (schema/*.sql, versioned by PRAGMA
//     user_version) and is applied by Open.
package sqlitestore
