package main

// These tests build mcpgw-edge and mcpgw and hold the edge binary to its
// promise: `mcpgw-edge FLAGS` is `mcpgw edge FLAGS` (same help, flags,
// environment, exit codes and version), and it links none of what only
// the control plane and dev mode need.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/proctest"
)

var bins struct{ edge, mcpgw string }

func TestMain(m *testing.M) {
	proctest.Main(m, func(dir string) error {
		b, err := proctest.Build(dir, "github.com/mcpgw/mcpgw/cmd/mcpgw-edge", "github.com/mcpgw/mcpgw/cmd/mcpgw")
		if err != nil {
			return err
		}
		bins.edge, bins.mcpgw = b[0], b[1]
		return nil
	})
}

// run runs a binary to completion and returns its stdout, stderr and exit
// code.
func run(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %q: %v", bin, args, err)
	}
	return out.String(), errOut.String(), code
}

// helpSections splits `--help` output into its description and its
// "Flags:" block, with the command's own name taken out.
func helpSections(t *testing.T, help, name string) (desc, flags string) {
	t.Helper()
	desc, rest, ok := strings.Cut(help, "\nUsage:\n")
	_, flags, ok2 := strings.Cut(rest, "\nFlags:\n")
	if !ok || !ok2 {
		t.Fatalf("help without Usage: or Flags:\n%s", help)
	}
	flags, _, _ = strings.Cut(flags, "\n\n")
	return desc, strings.ReplaceAll(strings.TrimRight(flags, "\n"), "help for "+name, "help for NAME")
}

func TestHelpMatchesMcpgwEdge(t *testing.T) {
	edgeHelp, _, code := run(t, bins.edge, "--help")
	if code != 0 {
		t.Fatalf("mcpgw-edge --help exited %d", code)
	}
	mcpgwHelp, _, code := run(t, bins.mcpgw, "edge", "--help")
	if code != 0 {
		t.Fatalf("mcpgw edge --help exited %d", code)
	}
	d1, f1 := helpSections(t, edgeHelp, "mcpgw-edge")
	d2, f2 := helpSections(t, mcpgwHelp, "edge")
	if d1 != d2 {
		t.Errorf("descriptions differ:\nmcpgw-edge:\n%s\nmcpgw edge:\n%s", d1, d2)
	}
	if f1 != f2 {
		t.Errorf("flags differ:\nmcpgw-edge:\n%s\nmcpgw edge:\n%s", f1, f2)
	}
	for _, flag := range []string{"--config", "--control-plane", "--join-token", "--listen", "--stdio", "--audit-durability"} {
		if !strings.Contains(f1, flag+" ") {
			t.Errorf("mcpgw-edge --help lists no %s", flag)
		}
	}
	if !strings.Contains(edgeHelp, "  mcpgw-edge --config mcpgw.yaml\n") || strings.Contains(edgeHelp, "mcpgw edge") {
		t.Errorf("mcpgw-edge's examples must invoke mcpgw-edge:\n%s", edgeHelp)
	}
}

func TestVersion(t *testing.T) {
	out, _, code := run(t, bins.edge, "version")
	want, _, _ := run(t, bins.mcpgw, "version")
	if code != 0 || !strings.HasPrefix(want, "mcpgw ") || out != "mcpgw-edge "+strings.TrimPrefix(want, "mcpgw ") {
		t.Errorf("mcpgw-edge version: exit %d, %q; mcpgw version: %q", code, out, want)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"stray"},
		{"--no-such-flag"},
		{"--log-level", "loud"},
		{"--config", "x.yaml", "--control-plane", "cp:7443"},
	} {
		_, errOut, code := run(t, bins.edge, args...)
		_, mcpgwErr, mcpgwCode := run(t, bins.mcpgw, append([]string{"edge"}, args...)...)
		if code != 2 || !strings.HasPrefix(errOut, "mcpgw-edge: ") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("mcpgw-edge %q: exit %d, stderr %q; want exit 2 and one line", args, code, errOut)
		}
		if mcpgwCode != code {
			t.Errorf("%q: mcpgw edge exits %d (%q), mcpgw-edge %d", args, mcpgwCode, mcpgwErr, code)
		}
	}
}

// TestServes starts mcpgw-edge on a config file with its listen address
// from the environment, as `mcpgw edge` takes it, checks the GC target it
// runs at (the edge's default, or GOGC when set) and stops it with
// SIGTERM.
func TestServes(t *testing.T) {
	for _, tc := range []struct {
		gogc string // "" leaves GOGC unset
		want string // go_gc_gogc_percent
	}{
		{"", "200"},
		{"50", "50"},
	} {
		t.Run("GOGC="+tc.gogc, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "mcpgw.yaml")
			if err := os.WriteFile(cfg, []byte("backends: []\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bins.edge, "--config", cfg, "--state-dir", dir)
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GOGC=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, "MCPGW_LISTEN=127.0.0.1:0")
			if tc.gogc != "" {
				cmd.Env = append(cmd.Env, "GOGC="+tc.gogc)
			}
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			addr := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					var l struct{ Msg, Listener, Addr string }
					if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "listening" && l.Listener == "mcp" {
						addr <- l.Addr
					}
				}
			}()
			select {
			case a := <-addr:
				if body := get(t, "http://"+a+"/healthz"); body == "" {
					t.Error("/healthz: empty body")
				}
				metrics := get(t, "http://"+a+"/metrics")
				if !strings.Contains(metrics, "\ngo_gc_gogc_percent "+tc.want+"\n") {
					i := strings.Index(metrics, "\ngo_gc_gogc_percent ")
					t.Errorf("GC target: want go_gc_gogc_percent %s, /metrics has %q", tc.want, metrics[max(i, 0):min(max(i, 0)+40, len(metrics))])
				}
			case <-time.After(30 * time.Second):
				t.Fatal("mcpgw-edge logged no mcp listener in 30s")
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("mcpgw-edge after SIGTERM: %v", err)
			}
		})
	}
}

// get returns url's body, failing the test unless the status is 200.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("%s: %s", url, resp.Status)
	}
	return string(b)
}

// TestLinksOnlyTheEdge is why mcpgw-edge exists: every package it links
// is initialized and mapped at every start, so the control plane, the
// embedded store and dev mode (with the MCP SDK its demo backend uses)
// must stay out of it. (The migrations package is in: internal/auditdb
// takes its advisory-lock numbers from there.)
func TestLinksOnlyTheEdge(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/mcpgw/mcpgw/cmd/mcpgw-edge").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	banned := []string{
		"github.com/mcpgw/mcpgw/controlplane",
		"github.com/mcpgw/mcpgw/internal/devmode",
		"github.com/mcpgw/mcpgw/internal/demo",
		"github.com/mcpgw/mcpgw/cmd/mcpgw/",
		"modernc.org/",
		"github.com/modelcontextprotocol/go-sdk/",
	}
	n := 0
	for _, pkg := range strings.Fields(string(out)) {
		n++
		for _, b := range banned {
			if pkg == b || strings.HasPrefix(pkg, strings.TrimSuffix(b, "/")+"/") {
				t.Errorf("mcpgw-edge links %s", pkg)
			}
		}
	}
	if n < 50 {
		t.Fatalf("go list -deps listed %d packages; expected the edge's", n)
	}
}
