// Package store is the control plane's access to Postgres: the only package
// (besides internal/auditdb, which owns audit SQL) that imports pgx.
//
// For now it provides the schema migrator: Migrate applies the embedded
// migrations (package migrations) under an advisory lock, and ReadStatus
// tells a caller that must not migrate (`mcpgw cp --no-migrate`) whether the
// schema is current. Tests of this package live in package store_test because
// internal/pgtest, which they use, migrates through this package.
package store
