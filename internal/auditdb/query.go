package auditdb

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mcpgw/mcpgw/internal/audit"
)

// Filter selects audit events; zero fields match everything. Since is
// inclusive, Until exclusive.
type Filter struct {
	Since, Until time.Time
	Principal    string
	Node         string // a node UUID
	Backend      string
	Name         string
	Method       string
	Status       string
	Decision     string
}

// Query limits.
const (
	DefaultQueryLimit = 100
	MaxQueryLimit     = 1000
)

// Query returns events matching f, newest first, at most limit (0 means
// DefaultQueryLimit), and a token for the next page ("" at the end). Pages
// are keyset-paginated on (ts, id), so they stay correct and cheap while
// events are being added.
func (s *Store) Query(ctx context.Context, f Filter, pageToken string, limit int) ([]audit.Event, string, error) {
	if limit == 0 {
		limit = DefaultQueryLimit
	}
	if limit < 0 || limit > MaxQueryLimit {
		return nil, "", fmt.Errorf("audit query: limit %d is not between 1 and %d", limit, MaxQueryLimit)
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if !f.Since.IsZero() {
		add("ts >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		add("ts < ?", f.Until)
	}
	if f.Node != "" {
		id, err := uuid.Parse(f.Node)
		if err != nil {
			return nil, "", fmt.Errorf("audit query: node %q is not a UUID", f.Node)
		}
		add("node_id = ?", id)
	}
	switch f.Status {
	case "", audit.StatusOK, audit.StatusError, audit.StatusDenied, audit.StatusTimeout, audit.StatusCancelled, audit.StatusUnavailable:
	default:
		return nil, "", fmt.Errorf("audit query: status %q is not one of ok, error, denied, timeout, cancelled, unavailable", f.Status)
	}
	switch f.Decision {
	case "", audit.DecisionAllow, audit.DecisionDeny:
	default:
		return nil, "", fmt.Errorf("audit query: decision %q is not allow or deny", f.Decision)
	}
	for _, c := range []struct{ col, v string }{
		{"principal", f.Principal}, {"backend", f.Backend}, {"name", f.Name},
		{"method", f.Method}, {"status", f.Status}, {"decision", f.Decision},
	} {
		if c.v != "" {
			add(c.col+" = ?", c.v)
		}
	}
	if pageToken != "" {
		ts, id, err := decodePageToken(pageToken)
		if err != nil {
			return nil, "", err
		}
		args = append(args, ts, id)
		where = append(where, fmt.Sprintf("(ts, id) < ($%d, $%d)", len(args)-1, len(args)))
	}
	sql := "SELECT " + strings.Join(eventColumns, ", ") + " FROM audit_events"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit+1)
	sql += fmt.Sprintf(" ORDER BY ts DESC, id DESC LIMIT $%d", len(args))

	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("audit query: %w", err)
	}
	events, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, "", fmt.Errorf("audit query: %w", err)
	}
	next := ""
	if len(events) > limit {
		events = events[:limit]
		last := events[limit-1]
		next = encodePageToken(last.TS, last.ID)
	}
	return events, next, nil
}

func scanEvent(row pgx.CollectableRow) (audit.Event, error) {
	var e audit.Event
	var node uuid.UUID
	var session, principal, proto, cname, cver, backend, name, rule, errText, args, trace *string
	var rev, upstream *int64
	err := row.Scan(&e.ID, &e.TS, &node, &session, &principal, &e.Transport, &proto, &cname, &cver,
		&e.Method, &backend, &name, &e.Decision, &rule, &rev, &e.Status, &errText, &e.LatencyUS,
		&upstream, &e.RequestBytes, &e.ResponseBytes, &args, &trace)
	if err != nil {
		return e, err
	}
	e.TS = e.TS.UTC()
	e.NodeID = node.String()
	for _, p := range []struct {
		dst *string
		src *string
	}{
		{&e.SessionID, session}, {&e.Principal, principal}, {&e.ProtocolVersion, proto},
		{&e.ClientName, cname}, {&e.ClientVersion, cver}, {&e.Backend, backend}, {&e.Name, name},
		{&e.Rule, rule}, {&e.Error, errText}, {&e.ArgsSHA256, args}, {&e.TraceID, trace},
	} {
		if p.src != nil {
			*p.dst = *p.src
		}
	}
	if rev != nil {
		e.PolicyRevision = *rev
	}
	if upstream != nil {
		e.UpstreamLatencyUS = *upstream
	}
	return e, nil
}

// A page token is the (ts, id) of the last event of a page: 8 bytes of
// Unix µs and the 16-byte id, base64url.
func encodePageToken(ts time.Time, id uuid.UUID) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(ts.UnixMicro()))
	b = append(b, id[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(tok string) (time.Time, uuid.UUID, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 24 {
		return time.Time{}, uuid.Nil, errors.New("audit query: malformed page token")
	}
	var id uuid.UUID
	copy(id[:], b[8:])
	return time.UnixMicro(int64(binary.BigEndian.Uint64(b))).UTC(), id, nil
}
