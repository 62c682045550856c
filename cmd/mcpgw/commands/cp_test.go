package commands

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/cmd/internal/cli"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

// lockedBuffer is written by the command's goroutines and read by the test.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestCPCommandStartsAndStops(t *testing.T) {
	dbURL := pgtest.NewDatabase(t, pgtest.Unmigrated())
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut lockedBuffer
	code := make(chan int, 1)
	go func() {
		code <- execute(ctx, []string{"cp", "--database-url", dbURL, "--data-dir", dir,
			"--node-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, &out, &errOut)
	}()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(errOut.String(), "control plane replica serving") {
		select {
		case c := <-code:
			t.Fatalf("mcpgw cp exited %d early:\n%s", c, errOut.String())
		case <-deadline:
			t.Fatalf("mcpgw cp not serving after 30s:\n%s", errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	stderr := errOut.String()
	if !strings.Contains(stderr, "generated the bootstrap admin token") || !strings.Contains(stderr, filepath.Join(dir, "ca.crt")) {
		t.Errorf("stderr lacks the token notice or the CA path:\n%s", stderr)
	}
	if strings.Count(stderr, "mcpgwadm_") != 1 {
		t.Errorf("the admin token must appear exactly once (never in logs):\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.crt")); err != nil {
		t.Error(err)
	}
	cancel()
	select {
	case c := <-code:
		if c != cli.ExitOK {
			t.Fatalf("exit %d after shutdown:\n%s", c, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mcpgw cp did not stop")
	}
}

func TestCPCommandErrors(t *testing.T) {
	run := func(env map[string]string, args ...string) (int, string) {
		for k, v := range env {
			t.Setenv(k, v)
		}
		var out, errOut lockedBuffer
		c := execute(t.Context(), append([]string{"cp"}, args...), &out, &errOut)
		return c, errOut.String()
	}
	c, msg := run(nil)
	if c != cli.ExitUsage || strings.Count(strings.TrimSpace(msg), "\n") != 0 || !strings.Contains(msg, "--database-url") || !strings.Contains(msg, "--data-dir") {
		t.Errorf("no flags: exit %d, %q", c, msg)
	}
	c, msg = run(map[string]string{"MCPGW_ADMIN_TOKEN": "short"}, "--database-url", "postgres://x/y", "--data-dir", t.TempDir())
	if c != cli.ExitUsage || !strings.Contains(msg, "MCPGW_ADMIN_TOKEN") || strings.Contains(msg, "short") {
		t.Errorf("bad env token: exit %d, %q", c, msg)
	}
	for arg, want := range map[string]string{"12h": "at least 2 days", "0d": "number of days", "week": "number of days"} {
		c, msg = run(nil, "--database-url", "postgres://x/y", "--data-dir", t.TempDir(), "--audit-retention", arg)
		if c != cli.ExitUsage || !strings.Contains(msg, want) {
			t.Errorf("--audit-retention %s: exit %d, %q", arg, c, msg)
		}
	}
	var dv daysValue
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "72h": 72 * time.Hour} {
		if err := dv.Set(in); err != nil || time.Duration(dv) != want || (in == "30d" && dv.String() != in) {
			t.Errorf("--audit-retention %s = %v (%s), %v", in, time.Duration(dv), dv.String(), err)
		}
	}
	t.Setenv("MCPGW_ADMIN_TOKEN", "")
	bare := pgtest.NewDatabase(t, pgtest.Unmigrated())
	c, msg = run(map[string]string{"MCPGW_DATABASE_URL": bare, "MCPGW_NO_MIGRATE": "true"}, "--data-dir", t.TempDir(),
		"--node-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "error")
	if c != cli.ExitFailure || !strings.Contains(msg, "mcpgw migrate") {
		t.Errorf("--no-migrate on an empty database: exit %d, %q", c, msg)
	}
}

func TestCPCommandEmbeddedStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut lockedBuffer
	code := make(chan int, 1)
	go func() {
		code <- execute(ctx, []string{"cp", "--store", "sqlite", "--data-dir", dir,
			"--node-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, &out, &errOut)
	}()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(errOut.String(), "control plane replica serving") {
		select {
		case c := <-code:
			t.Fatalf("mcpgw cp --store sqlite exited %d early:\n%s", c, errOut.String())
		case <-deadline:
			t.Fatalf("mcpgw cp --store sqlite not serving after 30s:\n%s", errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "mcpgw.db")); err != nil {
		t.Errorf("embedded store file: %v", err)
	}
	// A second replica on the same data dir is refused with a clear error.
	var errOut2 lockedBuffer
	c := execute(ctx, []string{"cp", "--store", "sqlite", "--data-dir", dir, "--node-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, &out, &errOut2)
	if c != cli.ExitFailure || !strings.Contains(errOut2.String(), "another mcpgw control plane is using "+filepath.Join(dir, "mcpgw.db")) {
		t.Errorf("second replica: exit %d, %q", c, errOut2.String())
	}
	cancel()
	select {
	case c := <-code:
		if c != cli.ExitOK {
			t.Fatalf("exit %d after shutdown:\n%s", c, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mcpgw cp did not stop")
	}
}

func TestCPCommandStoreFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "mysql", "--data-dir", t.TempDir()}, `--store "mysql"`},
		{[]string{"--store", "sqlite", "--database-url", "postgres://x/y", "--data-dir", t.TempDir()}, "exclude each other"},
		{[]string{"--store", "sqlite"}, "--data-dir"},
	} {
		var out, errOut lockedBuffer
		if c := execute(t.Context(), append([]string{"cp"}, tc.args...), &out, &errOut); c != cli.ExitUsage || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want usage error with %q", tc.args, c, errOut.String(), tc.want)
		}
	}
}
