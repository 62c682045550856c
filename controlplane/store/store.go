package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpgw/mcpgw/migrations"
)

// NotifyChannel is the Postgres LISTEN/NOTIFY channel on which every config
// commit announces itself; the payload is the new revision in decimal. The
// notification is sent inside the committing transaction, so a listener
// never hears of a revision it cannot read yet.
const NotifyChannel = "mcpgw_config"

// Store is the control plane's config store over a pgx pool. It is safe for
// concurrent use; every method that blocks takes a ctx.
//
// The config writes (CreateBackend, ApplyDocument, CreateAPIKey, ...) are
// the embedded Writer's, shared with the embedded store.
type Store struct {
	Writer
	pool *pgxpool.Pool
}

// New returns a Store over pool. The caller owns the pool and closes it after
// the last use of the Store.
func New(pool *pgxpool.Pool) *Store {
	s := &Store{pool: pool}
	s.Writer = Writer{Begin: s.begin}
	return s
}

// Pool is the underlying pool, for the other store users in this package's
// siblings (NODE's enrollment and registry writers live in this package too).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Kind names a resource kind in the change log (config_changes.kind).
type Kind string

// Resource kinds.
const (
	KindBackend   Kind = "backend"
	KindRole      Kind = "role"
	KindBinding   Kind = "binding"
	KindPrincipal Kind = "principal"
	KindAPIKey    Kind = "api_key"
	KindJoinToken Kind = "join_token"
	KindNode      Kind = "node"
)

// kindOrder sorts changes "by kind then name" in a stable, documented order.
var kindOrder = map[Kind]int{KindBackend: 1, KindRole: 2, KindBinding: 3, KindPrincipal: 4, KindAPIKey: 5, KindJoinToken: 6, KindNode: 7}

// Action is what a change did (config_changes.action).
type Action string

// Change actions.
const (
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionDelete Action = "delete"
)

// Change is one object changed by a revision (or that a dry run would change).
type Change struct {
	Kind   Kind
	Name   string
	Action Action
	// Before and After are the object's JSON form (as in the declarative
	// document); Before is nil for a create and After nil for a delete.
	Before, After json.RawMessage
}

// Description is a readable, secret-free summary of what changed, one line
// per field.
func (c Change) Description() string { return describe(c) }

// Meta says who is writing and why; it is recorded with the revision.
type Meta struct {
	// Actor is who: "admin-token:<id>", "admin-cert:<name>", "bootstrap".
	Actor string
	// Operation is what: the RPC or command name, e.g. "ApplyPolicy".
	Operation string
}

// Result is the outcome of a config write.
type Result struct {
	// Changes made (or, on a dry run, that would be made), sorted by kind
	// then name. Empty when the write changed nothing.
	Changes []Change
	// BaseRevision is the revision the write was computed against.
	BaseRevision int64
	// Revision is the config revision afterwards: new when Committed, else
	// BaseRevision.
	Revision int64
	// Committed reports whether a new revision was committed.
	Committed bool
}

// Errors callers map to their own codes (the admin API maps them to gRPC
// codes at its boundary). Test with errors.Is / errors.As.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	// ErrInUse refuses deleting an object something else refers to, e.g. a
	// role that still has a binding.
	ErrInUse = errors.New("in use")
	// ErrStaleRevision refuses a write whose expected revision is not the
	// current one; the error is a *RevisionMismatchError.
	ErrStaleRevision = errors.New("stale expected revision")
	// ErrInvalid wraps every validation failure; the error is an
	// *InvalidConfigError listing each problem.
	ErrInvalid = errors.New("invalid configuration")
)

// RevisionMismatchError is a write refused by optimistic concurrency.
type RevisionMismatchError struct {
	// Kind and Name of the resource compared; both empty when the write
	// compared the installation's revision (ApplyDocument).
	Kind     Kind
	Name     string
	Expected int64
	Actual   int64
}

func (e *RevisionMismatchError) Error() string {
	if e.Kind == "" {
		return fmt.Sprintf("config is at revision %d, not the expected %d: it changed since you read it; re-read (or dry-run again) and retry", e.Actual, e.Expected)
	}
	return fmt.Sprintf("%s %q is at revision %d, not the expected %d: it changed since you read it; re-read and retry", e.Kind, e.Name, e.Actual, e.Expected)
}

// Is makes errors.Is(err, ErrStaleRevision) true.
func (e *RevisionMismatchError) Is(target error) bool { return target == ErrStaleRevision }

// FieldError is one validation problem, attributed to a field path such as
// "roles[0].rules[1].effect".
type FieldError struct {
	Field   string
	Message string
}

func (f FieldError) String() string {
	if f.Field == "" {
		return f.Message
	}
	return f.Field + ": " + f.Message
}

// InvalidConfigError lists every problem found in a config a write would
// produce; nothing was written.
type InvalidConfigError struct {
	Errors []FieldError
}

func (e *InvalidConfigError) Error() string {
	s := "invalid configuration"
	for i, f := range e.Errors {
		if i == 0 {
			s += ": "
		} else {
			s += "; "
		}
		s += f.String()
	}
	return s
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidConfigError) Is(target error) bool { return target == ErrInvalid }

// notFound builds an ErrNotFound naming the resource.
func notFound(kind Kind, name string) error {
	return fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
}

// head locks the config head row for the rest of tx and returns the current
// revision. Holding that row lock serialises config writers, so the revisions
// they take commit in order (see migrations/0001_config.sql).
func head(ctx context.Context, tx pgx.Tx) (int64, error) {
	var rev int64
	if err := tx.QueryRow(ctx, `SELECT revision FROM config_head FOR UPDATE`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("locking the config head: %w", err)
	}
	return rev, nil
}

// commitRevision takes the next revision, records the revision header and
// every change, and queues the notification; tx must hold the head lock.
func commitRevision(ctx context.Context, tx pgx.Tx, meta Meta, changes []Change, apply func(rev int64) error) (int64, error) {
	var rev int64
	if err := tx.QueryRow(ctx,
		`UPDATE config_head SET revision = nextval('config_revision'), updated_at = now() RETURNING revision`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("taking the next config revision: %w", err)
	}
	if err := apply(rev); err != nil {
		return 0, err
	}
	actor := meta.Actor
	if actor == "" {
		actor = "unknown"
	}
	if _, err := tx.Exec(ctx, `INSERT INTO config_revisions (revision, actor, operation) VALUES ($1, $2, $3)`,
		rev, actor, meta.Operation); err != nil {
		return 0, fmt.Errorf("recording revision %d: %w", rev, err)
	}
	for _, c := range changes {
		if _, err := tx.Exec(ctx,
			`INSERT INTO config_changes (revision, actor, kind, name, action, before, after) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			rev, actor, string(c.Kind), c.Name, string(c.Action), jsonArg(c.Before), jsonArg(c.After)); err != nil {
			return 0, fmt.Errorf("logging change to %s %q: %w", c.Kind, c.Name, err)
		}
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, strconv.FormatInt(rev, 10)); err != nil {
		return 0, fmt.Errorf("announcing revision %d: %w", rev, err)
	}
	return rev, nil
}

// jsonArg turns an absent JSON value into SQL NULL.
func jsonArg(b json.RawMessage) any {
	if b == nil {
		return nil
	}
	return []byte(b)
}

// CurrentRevision returns the latest committed config revision (0 before the
// first change).
func (s *Store) CurrentRevision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.pool.QueryRow(ctx, `SELECT revision FROM config_head`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("reading the config revision: %w", err)
	}
	return rev, nil
}

// isUniqueViolation reports a unique or primary key conflict.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// ErrUnavailable marks a store error the caller may retry later; the
// embedded store wraps its transient failures (file locked, disk full, I/O
// error) with it.
var ErrUnavailable = errors.New("store unavailable")

// IsUnavailable reports whether err means the database could not be
// reached (connection refused or lost, timeout, or ErrUnavailable): the
// caller may retry later, and the admin API answers UNAVAILABLE.
func IsUnavailable(err error) bool {
	var ce *pgconn.ConnectError
	return errors.Is(err, ErrUnavailable) || errors.As(err, &ce) || pgconn.Timeout(err) || pgconn.SafeToRetry(err)
}

// IsConstraintViolation reports whether err is a constraint the schema
// enforces (class 23) that validation did not catch first: the request, not
// the server, is at fault.
func IsConstraintViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && len(pe.Code) == 5 && pe.Code[:2] == "23"
}

// OpenPool opens a connection pool on databaseURL and checks that the
// database answers, so a wrong URL fails at start with a clear error.
func OpenPool(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("opening the database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to the database: %w", err)
	}
	return pool, nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// MigrateSchema applies the embedded migrations (see Migrate).
func (s *Store) MigrateSchema(ctx context.Context) ([]Migration, error) {
	return Migrate(ctx, s.pool, migrations.FS)
}

// SchemaStatus compares the database with the embedded migrations (see
// ReadStatus).
func (s *Store) SchemaStatus(ctx context.Context) (Status, error) {
	return ReadStatus(ctx, s.pool, migrations.FS)
}
