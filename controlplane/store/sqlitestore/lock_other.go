//go:build !unix

package sqlitestore

import (
	"fmt"
	"os"
)

// lockFile cannot guard the database on this platform.
func lockFile(path, db string) (*os.File, error) {
	return nil, fmt.Errorf("the embedded store needs flock(2) to guard %s, which this platform lacks", db)
}
