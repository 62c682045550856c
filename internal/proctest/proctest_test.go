package proctest_test

import (
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/proctest"
)

func TestStartKillAndLog(t *testing.T) {
	ps := proctest.New(t, t.TempDir(), "PROCTEST_WORD=hello")
	p := ps.Start("sh", []string{"PROCTEST_OTHER=world"}, "/bin/sh", "-c", `echo "$PROCTEST_WORD $PROCTEST_OTHER"; exec sleep 30`)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(p.Log)
		if strings.Contains(string(b), "hello world") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %s holds %q", p.Log, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p.Exited() {
		t.Fatal("exited before it was killed")
	}
	p.Kill(syscall.SIGTERM)
	if !p.Exited() {
		t.Fatal("Kill returned before the process exited")
	}
	// A restart of the same name keeps the first log.
	q := ps.Start("sh", nil, "/bin/sh", "-c", "exit 3")
	<-q.Done()
	if q.Log == p.Log {
		t.Errorf("the second process reused %s", p.Log)
	}
	if q.ExitCode() != 3 {
		t.Errorf("exit code %d, want 3", q.ExitCode())
	}
}

func TestWaitHTTP(t *testing.T) {
	addr := proctest.FreeAddr(t)
	ps := proctest.New(t, t.TempDir())
	p := ps.Start("sleeper", nil, "/bin/sh", "-c", "exec sleep 30")
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = srv.ListenAndServe()
	}()
	t.Cleanup(func() { srv.Close() })
	if d := proctest.WaitHTTP(t, p, "http://"+addr+"/", 10*time.Second); d < 50*time.Millisecond {
		t.Errorf("ready after %v, before the server listened", d)
	}
}
