package enforce_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/auditlog"
	"github.com/mcpgw/mcpgw/dataplane/enforce"
	"github.com/mcpgw/mcpgw/dataplane/gateway"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/dataplane/upstream"
	"github.com/mcpgw/mcpgw/internal/document"
)

// childEnv makes the test binary an edge process (see TestMain).
const childEnv = "MCPGW_ENFORCE_TEST_EDGE"

// runChildEdge serves an edge with this package's seams and a sync audit
// log until it is killed. Its argument is "config|spool|audit file|addr
// file"; it writes its address to the addr file once it serves.
func runChildEdge(arg string) error {
	parts := strings.Split(arg, "|")
	if len(parts) != 4 {
		return fmt.Errorf("bad %s %q", childEnv, arg)
	}
	cfgPath, spool, auditFile, addrFile := parts[0], parts[1], parts[2], parts[3]
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	doc, err := document.ParseFiles(cfgPath)
	if err != nil {
		return err
	}
	mgr := state.NewManager(upstream.Options{Logger: log, Client: &http.Client{Transport: upstream.NewTransport(64)}, ClientInfo: []byte(`{"name":"mcpgw","version":"test"}`)}, nil)
	holder := enforce.NewHolder(log, nil)
	auth, err := enforce.NewAuthenticator(holder, enforce.AuthOptions{})
	if err != nil {
		return err
	}
	sink, err := auditlog.NewFileSink(auditFile, 0, 0)
	if err != nil {
		return err
	}
	alog, err := auditlog.Open(auditlog.Config{Dir: spool, Durability: auditlog.DurabilitySync, Logger: log}, sink)
	if err != nil {
		return err
	}
	node, err := enforce.StandaloneNodeID("crash-test")
	if err != nil {
		return err
	}
	rec, err := enforce.NewRecorder(enforce.RecorderOptions{Log: alog, NodeID: node, Holder: holder})
	if err != nil {
		return err
	}
	gw := gateway.New(mgr, gateway.Options{Logger: log, Auth: auth, Decider: enforce.NewDecider(holder), Record: rec})
	mgr.SetNotifier(gw)
	holder.SetNotifier(gw)
	errc := make(chan error, 3)
	go func() { errc <- mgr.Run(ctx) }()
	go func() { errc <- gw.Run(ctx) }()
	go func() { errc <- alog.Run(ctx) }()
	if _, err := holder.ApplyState(ctx, doc, state.Meta{}, mgr); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { errc <- http.Serve(l, gw) }()
	if err := os.WriteFile(addrFile+".tmp", []byte(l.Addr().String()), 0o600); err != nil {
		return err
	}
	if err := os.Rename(addrFile+".tmp", addrFile); err != nil {
		return err
	}
	return <-errc
}

// With durability sync, an edge killed with SIGKILL under load loses no
// event of a call whose answer a client received: every answered audit id
// is in the spool, and reaches the file once a new log delivers it.
func TestSIGKILLLosesNoAnsweredEvent(t *testing.T) {
	key, sum := newKey(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "mcpgw.yaml")
	if err := os.WriteFile(cfgPath, []byte(strings.ReplaceAll(oneBackendConfig(sum), "AUDITFILE", filepath.Join(dir, "unused.jsonl"))), 0o600); err != nil {
		t.Fatal(err)
	}
	spool, auditFile, addrFile := filepath.Join(dir, "spool"), filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "addr")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join([]string{cfgPath, spool, auditFile, addrFile}, "|"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	var addr []byte
	for deadline := time.Now().Add(20 * time.Second); ; {
		var err error
		if addr, err = os.ReadFile(addrFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the edge process did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	url := "http://" + string(addr) + "/mcp"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	waitListed(t, client, url, key, "github__test_simple_text")

	var (
		mu       sync.Mutex // guards answered
		answered []string
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for range 16 {
		sid := initSession(t, client, url, key)
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := rawPost(client, url, key, sid, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"github__test_simple_text","arguments":{}}}`, i+2))
				if err != nil {
					return // the edge is gone
				}
				if id := resp.Header.Get("Mcpgw-Audit-Id"); id != "" {
					mu.Lock()
					answered = append(answered, id)
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(700 * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	close(stop)
	wg.Wait()
	if len(answered) < 10 {
		t.Fatalf("only %d calls answered before the kill", len(answered))
	}

	// A new log on the same spool delivers what the killed edge wrote.
	openLog(t, auditlog.Config{Dir: spool}, auditFile)
	seen := map[string]bool{}
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, ev := range readEvents(t, auditFile) {
			seen[ev.ID.String()] = true
		}
		var missing []string
		for _, id := range answered {
			if !seen[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			t.Logf("%d answered calls, %d events in the file", len(answered), len(seen))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d answered calls have no event after SIGKILL, e.g. %s", len(missing), len(answered), missing[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
