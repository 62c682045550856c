package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Revision is one entry of the config change log.
type Revision struct {
	Revision  int64
	Time      time.Time
	Actor     string
	Operation string
	// Changes sorted by kind then name.
	Changes []Change
}

// GetRevision returns one change-log entry; ErrNotFound if rev was never
// committed.
func (s *Store) GetRevision(ctx context.Context, rev int64) (Revision, error) {
	revs, err := s.revisions(ctx, `WHERE revision = $1`, rev)
	if err != nil {
		return Revision{}, err
	}
	if len(revs) == 0 {
		return Revision{}, fmt.Errorf("revision %d: %w", rev, ErrNotFound)
	}
	return revs[0], nil
}

// ListRevisions lists change-log entries newest first, older than before
// (0 = from the newest), at most limit (0 = all).
func (s *Store) ListRevisions(ctx context.Context, before int64, limit int) ([]Revision, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	return s.revisions(ctx, `WHERE revision < $1 ORDER BY revision DESC`+page{Limit: limit}.limit(), before)
}

func (s *Store) revisions(ctx context.Context, where string, arg int64) ([]Revision, error) {
	var out []Revision
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT revision, ts, actor, operation FROM config_revisions `+where, arg)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Revision, error) {
			var rv Revision
			err := r.Scan(&rv.Revision, &rv.Time, &rv.Actor, &rv.Operation)
			return rv, err
		})
		if err != nil || len(out) == 0 {
			return err
		}
		idx := make(map[int64]int, len(out))
		revs := make([]int64, len(out))
		for i, rv := range out {
			idx[rv.Revision] = i
			revs[i] = rv.Revision
		}
		rows, err = tx.Query(ctx, `SELECT revision, kind, name, action, before, after FROM config_changes
			WHERE revision = ANY($1) ORDER BY id`, revs)
		if err != nil {
			return err
		}
		var (
			rev                int64
			kind, name, action string
			before, after      []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&rev, &kind, &name, &action, &before, &after}, func() error {
			i := idx[rev]
			out[i].Changes = append(out[i].Changes, Change{Kind: Kind(kind), Name: name, Action: Action(action),
				Before: cloneBytes(before), After: cloneBytes(after)})
			return nil
		})
		for i := range out {
			sortChanges(out[i].Changes)
		}
		return err
	})
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("reading the change log: %w", err)
	}
	return out, nil
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
