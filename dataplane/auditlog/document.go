package auditlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/document"
)

// OpenDocument opens the Log a standalone edge's audit section describes:
// a file sink when audit.file is set, a Postgres sink when
// audit.postgres_url is set (at least one is required), and the spool in
// audit.spool_dir, else next to the file, else in stateDir. node is the
// edge's node UUID, which its events carry. The returned close releases
// what the Log used (the Postgres pool); call it after Run returned.
func OpenDocument(ctx context.Context, a document.Audit, stateDir, node string, logger *slog.Logger) (*Log, func(), error) {
	if a.File == "" && a.PostgresURL == "" {
		return nil, nil, errors.New("audit: set audit.file or audit.postgres_url (or both)")
	}
	if a.MaxFileBytes < 0 || a.SpoolMaxBytes < 0 {
		return nil, nil, errors.New("audit: max_file_bytes and spool_max_bytes must not be negative")
	}
	dir := a.SpoolDir
	switch {
	case dir != "":
	case a.File != "":
		dir = filepath.Join(filepath.Dir(a.File), "audit-spool")
	case stateDir != "":
		dir = filepath.Join(stateDir, "audit-spool")
	default:
		return nil, nil, errors.New("audit: set audit.spool_dir (no audit.file or state dir to put the spool next to)")
	}
	cfg := Config{
		Dir:           dir,
		MaxBytes:      a.SpoolMaxBytes,
		Durability:    Durability(a.Durability),
		OnFull:        OnFull(a.OnFull),
		Fsync:         FsyncPolicy(a.Fsync),
		FsyncInterval: time.Duration(a.FsyncInterval),
		Logger:        logger,
	}
	var sinks []Sink
	closeFn := func() {}
	if a.File != "" {
		fs, err := NewFileSink(a.File, a.MaxFileBytes, 0)
		if err != nil {
			return nil, nil, err
		}
		sinks = append(sinks, fs)
		prev := closeFn
		closeFn = func() { fs.Close(); prev() }
	}
	if a.PostgresURL != "" {
		store, err := auditdb.Open(ctx, a.PostgresURL, auditdb.Options{})
		if err != nil {
			closeFn()
			return nil, nil, err
		}
		ps, err := NewPostgresSink(store, node)
		if err != nil {
			store.Close()
			closeFn()
			return nil, nil, err
		}
		sinks = append(sinks, ps)
		prev := closeFn
		closeFn = func() { store.Close(); prev() }
	}
	l, err := Open(cfg, sinks...)
	if err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("opening the audit log: %w", err)
	}
	return l, closeFn, nil
}
