// Package store is the control plane's access to Postgres: the only package
// (besides internal/auditdb, which owns audit SQL) that imports pgx.
//
// The config writes live on Writer, which runs the shared logic (load the
// config under the head lock, edit a copy, validate it whole with the edges'
// compiler, diff, commit one revision with its change log) over a ConfigTx;
// Store supplies a Postgres ConfigTx and the embedded store
// (controlplane/store/sqlitestore) a SQLite one, so both behave alike. The
// contract suite both pass is controlplane/store/storetest.
//
// Its schema migrator applies the embedded migrations (package migrations):
// Migrate applies what is pending under an advisory lock, ReadStatus tells a
// caller that must not migrate (`mcpgw cp --no-migrate`) whether the schema
// is current, and MigrateURL serves `mcpgw migrate`. docs/schema.md describes
// the schema. Tests of this package live in package store_test because
// internal/pgtest, which they use, migrates through this package.
package store
