package cpclient

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// The last-known-good cache is one file: a magic line, the applied
// snapshot as a Snapshot message with its payload uncompressed, and a
// SHA-256 over both. It is replaced atomically (temp file, fsync, rename,
// fsync of the directory), so a crash leaves the old file or the new one,
// and anything else that is found there (torn, truncated, edited,
// unreadable) is treated as no cache at all.
const (
	lkgFile  = "lkg.snapshot"
	lkgMagic = "MCPGWLKG1\n"
)

// errNoLKG means there is no usable cache.
var errNoLKG = errors.New("no last-known-good config")

// writeLKG stores s (payload uncompressed) as the last-known-good config.
func writeLKG(dir string, s *mcpgwv1.Snapshot) error {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	if err != nil {
		return fmt.Errorf("encoding last-known-good config: %w", err)
	}
	buf := make([]byte, 0, len(lkgMagic)+len(body)+sha256.Size)
	buf = append(buf, lkgMagic...)
	buf = append(buf, body...)
	sum := sha256.Sum256(buf)
	buf = append(buf, sum[:]...)
	if err := writeFileAtomic(dir, lkgFile, buf, 0o600); err != nil {
		return fmt.Errorf("writing last-known-good config: %w", err)
	}
	return nil
}

// readLKG returns the cached snapshot or an error wrapping errNoLKG.
func readLKG(dir string) (*mcpgwv1.Snapshot, error) {
	b, err := os.ReadFile(filepath.Join(dir, lkgFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoLKG, err)
	}
	if len(b) < len(lkgMagic)+sha256.Size || !bytes.HasPrefix(b, []byte(lkgMagic)) {
		return nil, fmt.Errorf("%w: %s is not a cache file", errNoLKG, lkgFile)
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("%w: %s fails its checksum", errNoLKG, lkgFile)
	}
	var s mcpgwv1.Snapshot
	if err := proto.Unmarshal(body[len(lkgMagic):], &s); err != nil {
		return nil, fmt.Errorf("%w: decoding %s: %w", errNoLKG, lkgFile, err)
	}
	return &s, nil
}

// writeFileAtomic replaces dir/name with data so that readers and crashes
// see either the old content or the new, never a mix.
func writeFileAtomic(dir, name string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
