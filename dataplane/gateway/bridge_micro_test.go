package gateway

import (
	"encoding/json"
	"reflect"
	"sync"
	"testing"
	"time"
)

// The raw rewrites of the bridge must agree with decoding and re-encoding.
func TestBridgeRewrites(t *testing.T) {
	same := func(t *testing.T, got []byte, want string) {
		t.Helper()
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%s is not JSON: %v", got, err)
		}
		if err := json.Unmarshal([]byte(want), &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("got %s\nwant %s", got, want)
		}
	}
	t.Run("legacyResult", func(t *testing.T) {
		for in, want := range map[string]string{
			`{"content":[]}`: `{"content":[]}`,
			`{"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"x"}},"content":[{"type":"text","text":"a \"resultType\": } ]"}],"resultType":"complete"}`: `{"content":[{"type":"text","text":"a \"resultType\": } ]"}]}`,
			` { "resultType" : "complete" , "_meta" : { "k" : [1,{"a":null}], "io.modelcontextprotocol/x": true } , "n": -1.5e3 } `:                            `{"_meta":{"k":[1,{"a":null}]},"n":-1.5e3}`,
			`{}`: `{}`,
		} {
			same(t, legacyResult(json.RawMessage(in)), want)
		}
		if got := string(legacyResult(json.RawMessage(`{"resultType":"complete",`))); got != `{"resultType":"complete",` {
			t.Errorf("a broken result was rewritten: %s", got)
		}
	})
	t.Run("legacyParams", func(t *testing.T) {
		got, err := legacyParams(json.RawMessage(`{"name":"t","arguments":{"_meta":{"io.modelcontextprotocol/keep":1}},"_meta":{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28"},"inputResponses":{"a":{}}}`), true)
		if err != nil {
			t.Fatal(err)
		}
		same(t, got, `{"name":"t","arguments":{"_meta":{"io.modelcontextprotocol/keep":1}},"_meta":{"progressToken":7}}`)
		got, err = legacyParams(json.RawMessage(`{"name":"t","_meta":{"io.modelcontextprotocol/clientInfo":{}}}`), false)
		if err != nil {
			t.Fatal(err)
		}
		same(t, got, `{"name":"t"}`)
		if _, err := legacyParams(json.RawMessage(`{"name":"t","_meta":{"io.modelcontextprotocol/x":}`), false); err == nil {
			t.Error("broken params accepted")
		}
	})
	t.Run("modernParams", func(t *testing.T) {
		k := func(s string) []byte { return []byte(`"` + s + `"`) }
		got, err := modernParams([]byte(`{"name":"t","_meta":{"progressToken":"p","io.modelcontextprotocol/protocolVersion":"old"}}`), k("io.modelcontextprotocol/protocolVersion"), []byte(`"2026-07-28"`), k("io.modelcontextprotocol/logLevel"), nil)
		if err != nil {
			t.Fatal(err)
		}
		same(t, got, `{"name":"t","_meta":{"progressToken":"p","io.modelcontextprotocol/protocolVersion":"2026-07-28"}}`)
		got, err = modernParams(nil, k("a"), []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		same(t, got, `{"_meta":{"a":{}}}`)
	})
}

func BenchmarkBridgeJSON(b *testing.B) {
	res := json.RawMessage(`{"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"mcp-conformance-test-server","version":"1.0.0"}},"content":[{"type":"text","text":"{\"text\":\"hello\"}"}],"resultType":"complete"}`)
	params := json.RawMessage(`{"name":"echo","arguments":{"text":"hello"}}`)
	mparams := json.RawMessage(`{"name":"leg__echo","arguments":{"text":"hello"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}`)
	b.Run("legacyResult", func(b *testing.B) {
		for range b.N {
			legacyResult(res)
		}
	})
	b.Run("modernParams", func(b *testing.B) {
		for range b.N {
			_, _ = modernParams(params, []byte(`"io.modelcontextprotocol/protocolVersion"`), []byte(`"2026-07-28"`), []byte(`"io.modelcontextprotocol/clientCapabilities"`), []byte(`{}`), []byte(`"io.modelcontextprotocol/clientInfo"`), []byte(`{"name":"x","version":"1"}`))
		}
	})
	b.Run("legacyParams", func(b *testing.B) {
		for range b.N {
			_, _ = legacyParams(mparams, false)
		}
	})
	b.Run("seal", func(b *testing.B) {
		s, _ := newSealer()
		for range b.N {
			s.seal(sealedState{call: "0123456789abcdef", round: 1}, stateBinding{principal: "p"})
		}
	})
}

// The bridge's workers: a burst leaves at most maxIdleWorkers waiting,
// they are reused, and stop joins them all.
func TestBridgeWorkers(t *testing.T) {
	br := newBridge(16)
	release := make(chan struct{})
	var started sync.WaitGroup
	const burst = maxIdleWorkers + 36
	for range burst {
		started.Add(1)
		br.run(func() { started.Done(); <-release }, func() {})
	}
	started.Wait()
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for br.idle.Load() != maxIdleWorkers {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle workers after a burst of %d, want %d", br.idle.Load(), burst, maxIdleWorkers)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ran := make(chan struct{})
	br.run(func() { close(ran) }, func() {})
	<-ran
	stopped := make(chan struct{})
	go func() { br.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not join the workers")
	}
	if n := br.idle.Load(); n != 0 {
		t.Errorf("%d workers still idle after stop", n)
	}
}
