//go:build unix

package sqlitestore

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive, non-blocking flock on path (created if
// missing). The kernel drops it when the process dies, so a crashed control
// plane never leaves a stale lock behind.
func lockFile(path, db string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another mcpgw control plane is using %s (the embedded store allows one; use Postgres for several replicas)", ErrLocked, db)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return f, nil
}
