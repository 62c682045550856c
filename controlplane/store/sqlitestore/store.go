package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	// The pure-Go SQLite driver, registered as "sqlite".
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

//go:embed schema/*.sql
var schemaFS embed.FS

// ErrLocked means another process holds the database: the embedded store
// serves one control plane only.
var ErrLocked = errors.New("embedded store locked")

// defaultBusyTimeout is how long a statement waits for SQLite's own file
// locks; within the process the writer is a single connection, so only
// another program holding the file (a backup) makes it wait.
const defaultBusyTimeout = 5 * time.Second

// readConns bounds the read pool; SQLite in WAL mode lets them all read
// while the writer writes.
const readConns = 4

// Options tune a Store.
type Options struct {
	// Audit bounds what audit ingest accepts and how long events are kept
	// (Retention, MaxFuture and the clock, as in auditdb).
	Audit auditdb.Options
	// BusyTimeout is how long a statement waits for a lock held outside
	// this store (e.g. a backup with the sqlite3 shell). Default 5s.
	BusyTimeout time.Duration
}

// Store is the embedded control-plane store on one SQLite file. It is safe
// for concurrent use by one process; Open refuses a second process.
type Store struct {
	store.Writer

	path string
	lock *os.File
	// w is the single writer connection; r the read pool.
	w, r  *sql.DB
	audit auditdb.Options

	// mu guards listeners and nextListener: the in-process subscribers
	// to config commits (ListenConfig), standing in for pg_notify.
	mu           sync.Mutex
	listeners    map[int]func(int64)
	nextListener int
}

// Open opens (creating if needed) the database at path, takes the
// single-replica lock (path + ".lock"), applies the schema, and returns the
// Store. Close releases everything.
func Open(ctx context.Context, path string, opts Options) (_ *Store, err error) {
	if path == "" {
		return nil, errors.New("embedded store: no database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("embedded store %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("embedded store: creating %s: %w", filepath.Dir(abs), err)
	}
	lock, err := lockFile(abs+".lock", abs)
	if err != nil {
		return nil, err
	}
	s := &Store{path: abs, lock: lock, audit: opts.Audit, listeners: map[int]func(int64){}}
	s.Writer = store.Writer{Begin: s.beginConfig}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// Owner-only access: the file holds key hashes and the CA's (encrypted)
	// private key. Creating it before SQLite does also makes its -wal and
	// -shm files 0600, since SQLite gives them the database file's mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded store: opening %s: %w", abs, err)
	}
	f.Close()
	if err := os.Chmod(abs, 0o600); err != nil {
		return nil, fmt.Errorf("embedded store: restricting %s: %w", abs, err)
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = defaultBusyTimeout
	}
	if s.w, err = openDB(abs, true, busy); err != nil {
		return nil, err
	}
	if s.r, err = openDB(abs, false, busy); err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// openDB opens one pool on path: the writer (one connection, BEGIN
// IMMEDIATE) or the reader (a few connections).
func openDB(path string, writer bool, busy time.Duration) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.Itoa(int(busy/time.Millisecond))+")")
	q.Add("_pragma", "foreign_keys(1)")
	if writer {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(FULL)")
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("embedded store: opening %s: %w", path, err)
	}
	if writer {
		db.SetMaxOpenConns(1)
	} else {
		db.SetMaxOpenConns(readConns)
	}
	// Connections live as long as the store: each carries its pragmas.
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("embedded store: opening %s: %w", path, err)
	}
	return db, nil
}

// Close closes the database and releases the lock.
func (s *Store) Close() error {
	var errs []error
	for _, db := range []*sql.DB{s.r, s.w} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
	}
	return errors.Join(errs...)
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.r.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

// SchemaVersion is the schema version this build applies.
func SchemaVersion() int { return len(schemaFiles()) }

func schemaFiles() []string {
	names, err := fs.Glob(schemaFS, "schema/*.sql")
	if err != nil {
		panic(err) // a constant pattern
	}
	slices.Sort(names)
	return names
}

// migrate applies the schema files after the database's user_version, each
// in its own transaction with the version bump, so a crash leaves the
// database at a whole version.
func (s *Store) migrate(ctx context.Context) error {
	var have int
	if err := s.w.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&have); err != nil {
		return fmt.Errorf("embedded store: reading the schema version: %w", err)
	}
	files := schemaFiles()
	if have > len(files) {
		return fmt.Errorf("embedded store %s: schema version %d is newer than this mcpgw knows (%d); use a newer mcpgw", s.path, have, len(files))
	}
	for i := have; i < len(files); i++ {
		body, err := schemaFS.ReadFile(files[i])
		if err != nil {
			return err
		}
		err = s.writeTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			if i == 0 {
				if _, err := tx.ExecContext(ctx, `INSERT INTO config_head (singleton, revision, updated_at) VALUES (1, 0, ?)`, us(now())); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, `PRAGMA user_version = `+strconv.Itoa(i+1))
			return err
		})
		if err != nil {
			return fmt.Errorf("embedded store: applying %s: %w", strings.TrimPrefix(files[i], "schema/"), err)
		}
	}
	return nil
}

// writeTx runs fn in a write transaction on the writer connection.
func (s *Store) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return transient(fmt.Errorf("embedded store: beginning a write: %w", err))
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return transient(err)
	}
	if err := tx.Commit(); err != nil {
		return transient(fmt.Errorf("embedded store: committing: %w", err))
	}
	return nil
}

// readTx runs fn in a read transaction: one consistent snapshot.
func (s *Store) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return transient(fmt.Errorf("embedded store: beginning a read: %w", err))
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to keep
	return transient(fn(tx))
}

// transient marks the SQLite failures a caller may retry (a lock held too
// long by another program, a full disk, an I/O error) as
// store.ErrUnavailable, so the admin API answers UNAVAILABLE as it does
// when Postgres is down.
func transient(err error) error {
	var se *sqlite.Error
	if err == nil || errors.Is(err, store.ErrUnavailable) || !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff { // the primary result code
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN:
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// now is the store's clock: UTC, microseconds (what the columns hold).
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// us is a time as stored; ts converts back.
func us(t time.Time) int64 { return t.UnixMicro() }

func ts(v int64) time.Time { return time.UnixMicro(v).UTC() }

// nullUS stores the zero time as NULL.
func nullUS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// nullTS reads a nullable time column; NULL is the zero time.
func nullTS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return ts(v.Int64)
}

// nullText stores "" (or an empty document) as NULL.
func nullText[T ~string | ~[]byte](v T) any {
	if len(v) == 0 {
		return nil
	}
	return string(v)
}
