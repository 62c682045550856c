package dataplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/internal/document"
)

// watcher applies the config file at start and whenever it changes.
// Polling (mtime and size, then a content hash) works on every filesystem
// and with editors that replace files by rename, where inotify watches are
// easy to lose.
type watcher struct {
	path    string
	mgr     *state.Manager
	log     *slog.Logger
	reloads *prometheus.CounterVec

	// Touched only by load/run, which never run concurrently.
	mtime time.Time
	size  int64
	hash  [32]byte
}

// load reads and applies the file; an error leaves the live state alone.
func (w *watcher) load(ctx context.Context) error {
	fi, err := os.Stat(w.path)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(w.path)
	if err != nil {
		return err
	}
	w.mtime, w.size = fi.ModTime(), fi.Size()
	sum := sha256.Sum256(raw)
	if sum == w.hash {
		return nil
	}
	w.hash = sum
	doc, err := parseDocument(raw)
	if err != nil {
		w.reloads.WithLabelValues("rejected").Inc()
		return err
	}
	warnings, err := w.mgr.Apply(ctx, doc)
	if err != nil {
		w.reloads.WithLabelValues("rejected").Inc()
		return err
	}
	for _, msg := range warnings {
		w.log.Warn("config: " + msg)
	}
	w.reloads.WithLabelValues("applied").Inc()
	return nil
}

// run polls the file until ctx ends.
func (w *watcher) run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fi, err := os.Stat(w.path)
		if err != nil {
			w.log.Error("config file unreadable; keeping the previous config", "path", w.path, "err", err)
			continue
		}
		if fi.ModTime().Equal(w.mtime) && fi.Size() == w.size {
			continue
		}
		if err := w.load(ctx); err != nil {
			w.log.Error("config rejected; keeping the previous config", "path", w.path, "err", err)
			continue
		}
		w.log.Info("config reloaded", "path", w.path)
	}
}

// parseDocument decodes one or more YAML documents strictly (unknown
// fields are errors) and merges them.
//
// TODO(issue 2): use document.ParseFiles once it lands; this stand-in
// accepts the same shape.
func parseDocument(raw []byte) (*document.Document, error) {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var out document.Document
	for {
		var d document.Document
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parsing config: %w", err)
		}
		out.Backends = append(out.Backends, d.Backends...)
		out.Roles = append(out.Roles, d.Roles...)
		out.Bindings = append(out.Bindings, d.Bindings...)
		out.Principals = append(out.Principals, d.Principals...)
		if d.Auth != nil {
			out.Auth = d.Auth
		}
		if d.Audit != nil {
			out.Audit = d.Audit
		}
	}
	return &out, nil
}
