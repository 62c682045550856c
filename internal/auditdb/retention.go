package auditdb

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpgw/mcpgw/migrations"
)

// DefaultDaysAhead is how many UTC days after today partition maintenance
// keeps created, so ingest never waits on DDL at midnight.
const DefaultDaysAhead = 7

// Maintenance says what one MaintainPartitions call did.
type Maintenance struct {
	// Locked is false when another replica held the maintenance lock and
	// this call did nothing.
	Locked bool
	// Created counts partitions created; Dropped names those dropped.
	Created int
	Dropped []string
	// Pruned counts audit_ledger rows pruned: rows of a (node, epoch)
	// prefix whose events had all expired, folded into its
	// audit_ledger_pruned row.
	Pruned int64
}

// MaintainPartitions creates the daily partitions from yesterday through
// today + daysAhead, and drops whole days that ended before the retention
// period (Options.Retention) began. One replica at a time does it: the
// others find advisory lock (LockClass, LockAuditPartitions) taken and
// return with Locked false.
//
// A day is detached with DETACH PARTITION ... CONCURRENTLY, which must run
// outside a transaction and takes only SHARE UPDATE EXCLUSIVE on
// audit_events, so concurrent ingest and queries are never blocked by it
// (a plain DETACH or DROP of an attached partition takes ACCESS EXCLUSIVE
// on the parent). A detach interrupted by a crash leaves the partition
// "detach pending"; the next run FINALIZEs it.
//
// Then it prunes the ledger: per (node, epoch), the rows whose events all
// fell in the dropped days, in chunks (pruneLedger). Ingest and replays
// consult what is kept of them (audit_ledger_pruned), so a pruned batch is
// never stored twice and the batch after it still links.
func (s *Store) MaintainPartitions(ctx context.Context, daysAhead int) (Maintenance, error) {
	var m Maintenance
	if daysAhead < 0 || daysAhead > 365 {
		return m, fmt.Errorf("audit partitions: days ahead %d is not between 0 and 365", daysAhead)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return m, fmt.Errorf("audit partitions: acquiring a connection: %w", err)
	}
	// The session-level lock belongs to this connection: release it and
	// give the connection back only after unlocking, even when ctx ended.
	defer conn.Release()
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, migrations.LockClass, migrations.LockAuditPartitions).Scan(&m.Locked); err != nil {
		return m, fmt.Errorf("audit partitions: taking the maintenance lock: %w", err)
	}
	if !m.Locked {
		return m, nil
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1, $2)`, migrations.LockClass, migrations.LockAuditPartitions); err != nil {
			// A connection that cannot unlock must not go back to the pool
			// still holding the lock.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()

	now := s.opts.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	if err := conn.QueryRow(ctx, `SELECT mcpgw_ensure_audit_partitions($1::date, $2)`,
		today.AddDate(0, 0, -1).Format(time.DateOnly), daysAhead+2).Scan(&m.Created); err != nil {
		return m, fmt.Errorf("audit partitions: creating days ahead: %w", err)
	}

	parts, err := listPartitions(ctx, conn.Conn())
	if err != nil {
		return m, err
	}
	cutoff := now.Add(-s.opts.Retention)
	for _, p := range parts {
		if p.day.AddDate(0, 0, 1).After(cutoff) {
			continue // some of the day is still retained
		}
		q := `ALTER TABLE audit_events DETACH PARTITION ` + pgx.Identifier{p.name}.Sanitize() + ` CONCURRENTLY`
		if p.detachPending {
			q = `ALTER TABLE audit_events DETACH PARTITION ` + pgx.Identifier{p.name}.Sanitize() + ` FINALIZE`
		}
		if p.attached {
			if _, err := conn.Exec(ctx, q); err != nil {
				return m, fmt.Errorf("audit partitions: detaching %s: %w", p.name, err)
			}
		}
		if _, err := conn.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{p.name}.Sanitize()); err != nil {
			return m, fmt.Errorf("audit partitions: dropping %s: %w", p.name, err)
		}
		m.Dropped = append(m.Dropped, p.name)
	}
	if len(m.Dropped) > 0 {
		// Ingest's cache of ensured days may name a dropped day.
		s.mu.Lock()
		clear(s.days)
		s.mu.Unlock()
	}
	m.Pruned, err = pruneLedger(ctx, conn.Conn(), cutoff.Truncate(24*time.Hour))
	return m, err
}

type partition struct {
	name          string
	day           time.Time
	attached      bool
	detachPending bool
}

// listPartitions returns the audit_events_pYYYYMMDD tables, attached or
// left detached by an interrupted run, oldest first. The name gives the
// day, so no partition bound decoding is needed.
func listPartitions(ctx context.Context, conn *pgx.Conn) ([]partition, error) {
	rows, err := conn.Query(ctx, `SELECT c.relname, i.inhrelid IS NOT NULL, coalesce(i.inhdetachpending, false)
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
		LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = 'audit_events'::regclass
		WHERE c.relkind = 'r' AND c.relname ~ '^audit_events_p[0-9]{8}$'`)
	if err != nil {
		return nil, fmt.Errorf("audit partitions: listing: %w", err)
	}
	defer rows.Close()
	var out []partition
	for rows.Next() {
		var p partition
		if err := rows.Scan(&p.name, &p.attached, &p.detachPending); err != nil {
			return nil, fmt.Errorf("audit partitions: listing: %w", err)
		}
		day, err := time.Parse("20060102", strings.TrimPrefix(p.name, "audit_events_p"))
		if err != nil {
			return nil, errors.New("audit partitions: unexpected partition name " + p.name)
		}
		p.day = day
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit partitions: listing: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].day.Before(out[j].day) })
	return out, nil
}
