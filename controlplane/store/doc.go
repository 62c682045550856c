// Package store is the control plane's access to Postgres: the only package
// (besides internal/auditdb, which owns audit SQL) that imports pgx.
//
// Its schema migrator applies the embedded migrations (package migrations):
// Migrate applies what is pending under an advisory lock, ReadStatus tells a
// caller that must not migrate (`mcpgw cp --no-migrate`) whether the schema
// is current, and MigrateURL serves `mcpgw migrate`. docs/schema.md describes
// the schema. Tests of this package live in package store_test because
// internal/pgtest, which they use, migrates through this package.
package store
