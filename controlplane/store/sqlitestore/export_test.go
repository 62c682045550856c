package sqlitestore

import (
	"context"
	"strconv"
)

// SetSchemaVersionForTest pretends a newer mcpgw wrote the database.
func (s *Store) SetSchemaVersionForTest(ctx context.Context, v int) error {
	_, err := s.w.ExecContext(ctx, `PRAGMA user_version = `+strconv.Itoa(v))
	return err
}
