// Package migrations holds the Postgres schema of mcpgw as numbered SQL files
// (NNNN_name.sql), embedded so every binary carries the schema it was built
// for. controlplane/store applies them; docs/schema.md describes the result.
//
// A migration, once released, is never edited: the migrator records each
// file's checksum and refuses a database whose applied migrations changed.
// Change the schema by adding the next file.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed *.sql
var files embed.FS

// FS is the set of migrations, one NNNN_name.sql file per migration at its
// root, applied in version order.
var FS fs.FS = files

// Advisory lock keys, used with the two-key form pg_advisory_lock(int, int)
// and its relatives. They live here, next to the schema they protect, so both
// controlplane/store and internal/auditdb can use them without depending on
// each other. LockClass is "mcpg" in ASCII, to keep clear of other users of
// advisory locks in a shared database.
const (
	LockClass int32 = 0x6d637067

	// LockMigrate is held (session level) while migrations are applied.
	LockMigrate int32 = 1
	// LockPKI is held while the installation CA is created, so replicas
	// starting together create exactly one.
	LockPKI int32 = 2
	// LockAuditPartitions is held by the replica doing audit partition
	// maintenance (creating days ahead, dropping expired ones).
	LockAuditPartitions int32 = 3
)
