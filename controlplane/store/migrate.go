package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpgw/mcpgw/migrations"
)

// Migration is one schema migration: the file NNNN_name.sql.
type Migration struct {
	Version int64
	// Name is the part of the file name after the version, e.g. "config".
	Name string
	// Checksum is the hex SHA-256 of the file as applied.
	Checksum string
	// AppliedAt is when the migration was recorded; zero if it is pending.
	AppliedAt time.Time

	sql string
}

// String names the migration as its file does, without ".sql": "0001_config".
func (m Migration) String() string { return fmt.Sprintf("%04d_%s", m.Version, m.Name) }

// Status is how a database's schema compares with a set of migrations.
type Status struct {
	// Version is the highest applied version; 0 for an empty database.
	Version int64
	// Applied are the migrations recorded in the database, in version order.
	Applied []Migration
	// Pending are the migrations not yet applied, in version order.
	Pending []Migration
}

// Current reports whether every migration has been applied.
func (s Status) Current() bool { return len(s.Pending) == 0 }

var (
	// ErrChangedMigration means a migration file differs from what was
	// applied: editing a released migration would leave databases that ran
	// the old text and the new one with different schemas under one version.
	ErrChangedMigration = errors.New("applied migration has changed")
	// ErrUnknownMigration means the database has a migration the binary does
	// not carry: it was migrated by a newer mcpgw.
	ErrUnknownMigration = errors.New("database has migrations this mcpgw does not know (migrated by a newer version?)")
)

// createMigrationsTable is run by the migrator under the migration lock, so
// the IF NOT EXISTS never races another migrator.
const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    bigint PRIMARY KEY CHECK (version > 0),
	name       text NOT NULL,
	checksum   text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// Migrate applies the migrations in fsys (NNNN_name.sql files at its root;
// normally migrations.FS) that the database lacks, in version order, and
// returns those it applied. Each migration runs in its own transaction
// together with its schema_migrations row, so a failing one leaves nothing
// behind; the ones before it stay applied and are returned with the error.
//
// Migrators serialise on a session-level advisory lock (migrations.LockClass,
// migrations.LockMigrate) held on a dedicated connection, so replicas started
// together apply each migration once. The connection is closed afterwards
// rather than returned to the pool, since a migration may change session
// state. A database with a changed or unknown applied migration is refused
// (ErrChangedMigration, ErrUnknownMigration) before anything is applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) ([]Migration, error) {
	all, err := loadMigrations(fsys)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connecting for migrations: %w", err)
	}
	defer func() {
		// Closing the session also releases its advisory locks, whether or
		// not the explicit unlock below ran.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()

	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, $2)", migrations.LockClass, migrations.LockMigrate); err != nil {
		return nil, fmt.Errorf("taking the migration lock: %w", err)
	}
	defer func() {
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(unlockCtx, "SELECT pg_advisory_unlock($1, $2)", migrations.LockClass, migrations.LockMigrate)
	}()

	if _, err := conn.Exec(ctx, createMigrationsTable); err != nil {
		return nil, fmt.Errorf("creating schema_migrations: %w", err)
	}
	done, err := readApplied(ctx, conn)
	if err != nil {
		return nil, err
	}
	st, err := compare(all, done)
	if err != nil {
		return nil, err
	}
	var applied []Migration
	for _, m := range st.Pending {
		if err := apply(ctx, conn, &m); err != nil {
			return applied, fmt.Errorf("applying migration %s: %w", m, err)
		}
		applied = append(applied, m)
	}
	return applied, nil
}

// apply runs one migration and records it in one transaction.
func apply(ctx context.Context, conn *pgx.Conn, m *Migration) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Without arguments pgx uses the simple protocol, which accepts a
		// whole file of statements in one round trip.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return err
		}
		err := tx.QueryRow(ctx,
			"INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3) RETURNING applied_at",
			m.Version, m.Name, m.Checksum).Scan(&m.AppliedAt)
		if err != nil {
			return fmt.Errorf("recording it in schema_migrations: %w", err)
		}
		return nil
	})
}

// ReadStatus compares the database's applied migrations with those in fsys
// without changing anything, for a caller that must not migrate (`mcpgw cp
// --no-migrate`) but must refuse a schema that is behind. A database that
// was never migrated has every migration pending. Like Migrate, it returns
// ErrChangedMigration or ErrUnknownMigration for a schema it cannot trust.
func ReadStatus(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) (Status, error) {
	all, err := loadMigrations(fsys)
	if err != nil {
		return Status{}, err
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return Status{}, fmt.Errorf("looking for schema_migrations: %w", err)
	}
	var done []Migration
	if exists {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			return Status{}, fmt.Errorf("acquiring a connection: %w", err)
		}
		defer conn.Release()
		if done, err = readApplied(ctx, conn.Conn()); err != nil {
			return Status{}, err
		}
	}
	return compare(all, done)
}

// MigrateURL connects to databaseURL, migrates it with fsys and reports the
// resulting status. It is for `mcpgw migrate`, which has no pool of its own.
func MigrateURL(ctx context.Context, databaseURL string, fsys fs.FS) ([]Migration, Status, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, Status{}, fmt.Errorf("invalid database URL: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// Without one an unreachable host hangs until TCP gives up.
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, Status{}, fmt.Errorf("connecting to database: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return nil, Status{}, fmt.Errorf("connecting to database: %w", err)
	}
	applied, err := Migrate(ctx, pool, fsys)
	if err != nil {
		return applied, Status{}, err
	}
	st, err := ReadStatus(ctx, pool, fsys)
	return applied, st, err
}

func readApplied(ctx context.Context, conn *pgx.Conn) ([]Migration, error) {
	rows, err := conn.Query(ctx, "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("reading schema_migrations: %w", err)
	}
	done, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Migration, error) {
		var m Migration
		err := row.Scan(&m.Version, &m.Name, &m.Checksum, &m.AppliedAt)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading schema_migrations: %w", err)
	}
	return done, nil
}

// compare splits all into applied and pending against the migrations
// recorded in done, refusing recorded ones that changed or are unknown.
func compare(all, done []Migration) (Status, error) {
	byVersion := make(map[int64]Migration, len(all))
	for _, m := range all {
		byVersion[m.Version] = m
	}
	var st Status
	var unknown []string
	seen := make(map[int64]bool, len(done))
	for _, d := range done {
		seen[d.Version] = true
		st.Version = max(st.Version, d.Version)
		m, ok := byVersion[d.Version]
		if !ok {
			unknown = append(unknown, d.String())
			continue
		}
		if m.Name != d.Name || m.Checksum != d.Checksum {
			return Status{}, fmt.Errorf("%w: %s was applied with checksum %s, the file %s now has %s",
				ErrChangedMigration, d, d.Checksum, m, m.Checksum)
		}
		m.AppliedAt = d.AppliedAt
		st.Applied = append(st.Applied, m)
	}
	if len(unknown) > 0 {
		return Status{}, fmt.Errorf("%w: %s", ErrUnknownMigration, strings.Join(unknown, ", "))
	}
	for _, m := range all {
		if !seen[m.Version] {
			st.Pending = append(st.Pending, m)
		}
	}
	return st, nil
}

// migrationFile is compiled when migrations are loaded, not at the start of
// every process that links the store (the edge of the all-in-one binary).
var migrationFile = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^([0-9]{4,})_([a-z0-9][a-z0-9_]*)\.sql$`)
})

// loadMigrations reads every *.sql file at the root of fsys, in version order.
func loadMigrations(fsys fs.FS) ([]Migration, error) {
	if fsys == nil {
		return nil, errors.New("loading migrations: no file system given")
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("loading migrations: %w", err)
	}
	var all []Migration
	versions := make(map[int64]string)
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		match := migrationFile().FindStringSubmatch(e.Name())
		if match == nil {
			return nil, fmt.Errorf("loading migrations: file %q: name must be NNNN_name.sql (digits, then lowercase letters, digits and _)", e.Name())
		}
		version, err := strconv.ParseInt(match[1], 10, 64)
		if err != nil || version == 0 {
			return nil, fmt.Errorf("loading migrations: file %q: version must be a positive number", e.Name())
		}
		if other, dup := versions[version]; dup {
			return nil, fmt.Errorf("loading migrations: files %q and %q have the same version %d", other, e.Name(), version)
		}
		versions[version] = e.Name()
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("loading migrations: %w", err)
		}
		if strings.TrimSpace(string(body)) == "" {
			return nil, fmt.Errorf("loading migrations: file %q is empty", e.Name())
		}
		sum := sha256.Sum256(body)
		all = append(all, Migration{
			Version:  version,
			Name:     match[2],
			Checksum: hex.EncodeToString(sum[:]),
			sql:      string(body),
		})
	}
	if len(all) == 0 {
		return nil, errors.New("loading migrations: no NNNN_name.sql files found")
	}
	slices.SortFunc(all, func(a, b Migration) int { return cmp.Compare(a.Version, b.Version) })
	return all, nil
}
