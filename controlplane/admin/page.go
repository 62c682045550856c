package admin

import (
	"encoding/base64"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/controlplane/store"
)

// Page sizes (admin.proto, "List calls page with page_size").
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

func pageSize(n int32) int {
	switch {
	case n <= 0:
		return defaultPageSize
	case n > maxPageSize:
		return maxPageSize
	}
	return int(n)
}

// Page tokens are keyset positions, not offsets, so they never expire and
// never skip or repeat a row when others are inserted meanwhile. They are
// base64url of "<list>:<position>" so a token of one list is refused by
// another.

func encodeToken(list, pos string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(list + ":" + pos))
}

func decodeToken(list, tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	pos, ok := strings.CutPrefix(string(b), list+":")
	if err != nil || !ok {
		return "", invalidArg("page_token", "not a page token of this list; pass next_page_token unchanged")
	}
	return pos, nil
}

// timeCursor encodes a (created_at, id) position of the newest-first lists.
func encodeTimeCursor(list string, t time.Time, id string) string {
	return encodeToken(list, t.UTC().Format(time.RFC3339Nano)+"|"+id)
}

func decodeTimeCursor(list, tok string) (*store.KeyCursor, error) {
	pos, err := decodeToken(list, tok)
	if err != nil || pos == "" {
		return nil, err
	}
	ts, id, ok := strings.Cut(pos, "|")
	t, perr := time.Parse(time.RFC3339Nano, ts)
	if !ok || perr != nil {
		return nil, invalidArg("page_token", "malformed page token")
	}
	return &store.KeyCursor{CreatedAt: t, ID: id}, nil
}

func decodeNodeCursor(tok string) (uuid.UUID, error) {
	pos, err := decodeToken("nodes", tok)
	if err != nil || pos == "" {
		return uuid.Nil, err
	}
	id, perr := uuid.Parse(pos)
	if perr != nil {
		return uuid.Nil, invalidArg("page_token", "malformed page token")
	}
	return id, nil
}

// nextToken returns the token after the last of n items fetched with limit
// n+1 (one extra, to know whether another page exists), and trims the extra.
func nextToken[T any](items []T, limit int, list string, key func(T) string) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, encodeToken(list, key(items[limit-1]))
}
