package auditlog

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/document"
)

func TestOpenDocument(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "audit.jsonl")
	l, closeFn, err := OpenDocument(context.Background(), document.Audit{File: file, OnFull: "drop"}, "", testNode.String(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if l.cfg.Durability != DurabilitySync || l.cfg.OnFull != OnFullDrop || l.cfg.Dir != filepath.Join(dir, "audit-spool") {
		t.Fatalf("config from document: %+v", l.cfg)
	}
	if _, err := os.Stat(filepath.Join(dir, "audit-spool", epochFile)); err != nil {
		t.Fatalf("spool not created next to the file: %v", err)
	}
	// The flush policy comes from the document: with always, every
	// spool write is flushed before its caller is released.
	always, closeAlways, err := OpenDocument(context.Background(), document.Audit{File: filepath.Join(t.TempDir(), "b.jsonl"), Fsync: "always"}, "", testNode.String(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer closeAlways()
	if always.cfg.Fsync != FsyncAlways {
		t.Fatalf("fsync from document: %q", always.cfg.Fsync)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- always.Run(ctx) }()
	for i := range 20 {
		if err := always.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if st := always.Stats(); st.Fsyncs < st.Writes || st.Writes == 0 {
		t.Errorf("fsync: always made %d fsyncs for %d spool writes", st.Fsyncs, st.Writes)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	iv, closeIv, err := OpenDocument(context.Background(), document.Audit{File: filepath.Join(t.TempDir(), "c.jsonl"), FsyncInterval: document.Duration(250 * time.Millisecond)}, "", testNode.String(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	closeIv()
	iv.lock.Close()
	if iv.cfg.Fsync != FsyncInterval || iv.cfg.FsyncInterval != 250*time.Millisecond {
		t.Errorf("fsync_interval from document: %q every %v", iv.cfg.Fsync, iv.cfg.FsyncInterval)
	}
	for _, tc := range []struct {
		a    document.Audit
		want string
	}{
		{document.Audit{}, "audit.file or audit.postgres_url"},
		{document.Audit{File: file, Durability: "eventually"}, "durability"},
		{document.Audit{File: file, OnFull: "block"}, "on_full"},
		{document.Audit{File: file, Fsync: "sometimes"}, "fsync"},
		{document.Audit{PostgresURL: "postgres://x@127.0.0.1:1/db"}, "spool_dir"},
		{document.Audit{PostgresURL: "postgres://x@127.0.0.1:1/db", SpoolDir: t.TempDir()}, ""},
		{document.Audit{PostgresURL: "::nonsense::", SpoolDir: t.TempDir()}, "not a valid Postgres URL"},
	} {
		_, c, err := OpenDocument(context.Background(), tc.a, "", testNode.String(), quietLogger())
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.a, err)
			} else {
				c()
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want it to mention %q", tc.a, err, tc.want)
		}
	}
}
