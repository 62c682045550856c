package commands

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/mcpgw/mcpgw/cmd/internal/cli"
	"github.com/mcpgw/mcpgw/internal/pgtest"
	"github.com/mcpgw/mcpgw/migrations"
)

func runMigrate(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(t.Context(), append([]string{"migrate"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestMigrateCommand(t *testing.T) {
	url := pgtest.NewDatabase(t, pgtest.Unmigrated())
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("embedded migrations: %v, %v", files, err)
	}
	var want strings.Builder
	for _, f := range files {
		fmt.Fprintf(&want, "applied %s\n", strings.TrimSuffix(f, ".sql"))
	}
	version := strings.SplitN(files[len(files)-1], "_", 2)[0]
	version = strings.TrimLeft(version, "0")
	fmt.Fprintf(&want, "schema at version %s\n", version)

	code, out, errOut := runMigrate(t, "--database-url", url)
	if code != cli.ExitOK || out != want.String() || errOut != "" {
		t.Fatalf("first run: exit %d\nstdout:\n%s\nstderr:\n%s\nwant stdout:\n%s", code, out, errOut, want.String())
	}

	wantNoop := "nothing to do: schema at version " + version + "\n"
	code, out, errOut = runMigrate(t, "--database-url", url)
	if code != cli.ExitOK || out != wantNoop || errOut != "" {
		t.Fatalf("second run: exit %d, stdout %q, stderr %q; want 0, %q", code, out, errOut, wantNoop)
	}

	// The environment stands in for the flag.
	t.Setenv(envDatabaseURL, url)
	code, out, errOut = runMigrate(t)
	if code != cli.ExitOK || out != wantNoop {
		t.Fatalf("run with %s: exit %d, stdout %q, stderr %q", envDatabaseURL, code, out, errOut)
	}
}

func TestMigrateCommandErrors(t *testing.T) {
	t.Setenv(envDatabaseURL, "")
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no database", nil, cli.ExitUsage, "no database: give --database-url or set MCPGW_DATABASE_URL"},
		{"argument", []string{"--database-url", "postgres://x/y", "extra"}, cli.ExitUsage, "takes no arguments"},
		{"unknown flag", []string{"--databse-url", "x"}, cli.ExitUsage, "unknown flag"},
		// Port 1 on loopback refuses at once.
		{"unreachable", []string{"--database-url", "postgres://postgres:hunter2@127.0.0.1:1/mcpgw?sslmode=prefer"}, cli.ExitFailure, "connecting to database"},
		{"bad URL", []string{"--database-url", "postgres://127.0.0.1/x?sslmode=bogus"}, cli.ExitFailure, "invalid database URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runMigrate(t, tc.args...)
			if code != tc.wantCode || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errOut, tc.wantCode, tc.wantErr)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "mcpgw: ") {
				t.Errorf("stderr %q is not one 'mcpgw: ...' line", errOut)
			}
			if strings.Contains(errOut, "hunter2") {
				t.Errorf("stderr %q shows the password", errOut)
			}
		})
	}
}

func TestOneLineError(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"failed to connect to `user=u`:\n\ta: refused\n\ta: refused", "failed to connect to `user=u`: a: refused"},
		{"first\n  second\n\nthird\n", "first; second; third"},
	} {
		if got := (oneLineError{errors.New(tc.in)}).Error(); got != tc.want {
			t.Errorf("oneLineError(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
