package dataplane

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgw/mcpgw/dataplane/enforce"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/internal/document"
)

// watcher applies the config file at start and whenever it changes, as
// one transaction over backends and policy (enforce.Holder.ApplyState).
// Polling (mtimes and sizes, then a hash of the parsed document) works on
// every filesystem and with editors that replace files by rename, where
// inotify watches are easy to lose. The path may be a directory of *.yaml
// and *.yml files, as document.ParseFiles reads them.
type watcher struct {
	path    string
	mgr     *state.Manager
	holder  *enforce.Holder
	log     *slog.Logger
	reloads *prometheus.CounterVec
	// audit is the audit section the edge opened its log with; a reload
	// that changes it is applied except for that section, which needs a
	// restart (the spool and sinks are not swapped live).
	audit *document.Audit

	// Touched only by load/apply/run, which never run concurrently.
	stamp string
	hash  [32]byte
}

// loadDocument reads, merges and validates the config at path: the same
// parser and checks `mcpctl apply` and `mcpgw policy check` use, so a file
// the edge accepts is one they accept too.
func loadDocument(path string) (*document.Document, error) {
	doc, err := document.ParseFiles(path)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	return doc, nil
}

// stamp summarizes the mtimes and sizes of what ParseFiles would read, so
// an unchanged config costs a few stats per poll.
func fileStamp(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return fmt.Sprintf("%d/%d", fi.ModTime().UnixNano(), fi.Size()), nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s:%d/%d;", e.Name(), info.ModTime().UnixNano(), info.Size())
	}
	return b.String(), nil
}

// load reads the config and applies it; an error leaves the live state
// and policy alone. changed is false when the content is what is live.
func (w *watcher) load(ctx context.Context) (changed bool, err error) {
	stamp, err := fileStamp(w.path)
	if err != nil {
		return false, err
	}
	w.stamp = stamp
	doc, err := loadDocument(w.path)
	if err != nil {
		w.reloads.WithLabelValues("rejected").Inc()
		return false, err
	}
	return w.apply(ctx, doc)
}

// apply makes doc live unless it is what is live already.
func (w *watcher) apply(ctx context.Context, doc *document.Document) (changed bool, err error) {
	raw, err := json.Marshal(doc)
	if err != nil {
		return false, fmt.Errorf("hashing config: %w", err)
	}
	sum := sha256.Sum256(raw)
	if sum == w.hash {
		return false, nil
	}
	if !reflect.DeepEqual(doc.Audit, w.audit) {
		w.log.Warn("config: the audit section changed; it takes effect when the edge restarts (the rest of the config is applied now)")
	}
	warnings, err := w.holder.ApplyState(ctx, doc, state.Meta{}, w.mgr)
	if err != nil {
		w.reloads.WithLabelValues("rejected").Inc()
		return false, err
	}
	w.hash = sum
	for _, msg := range slices.Compact(warnings) {
		w.log.Warn("config: " + msg)
	}
	w.reloads.WithLabelValues("applied").Inc()
	return true, nil
}

// run polls the config until ctx ends.
func (w *watcher) run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		stamp, err := fileStamp(w.path)
		if err != nil {
			w.log.Error("config file unreadable; keeping the previous config", "path", w.path, "err", err)
			continue
		}
		if stamp == w.stamp {
			continue
		}
		changed, err := w.load(ctx)
		if err != nil {
			w.log.Error("config rejected; keeping the previous config", "path", w.path, "err", err)
			continue
		}
		if changed {
			w.log.Info("config reloaded", "path", w.path)
		}
	}
}
