// Package wait provides the one context-aware sleep that retry loops and
// pacing use across mcpgw.
package wait

import (
	"context"
	"time"
)

// For sleeps for d or until ctx ends, and reports whether ctx is still
// live (false: stop). A d of zero or less does not sleep.
func For(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
