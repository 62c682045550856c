package audit

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func sampleEvent() Event {
	ts := time.Date(2026, 11, 26, 23, 40, 1, 123456789, time.UTC)
	return Event{
		ID: NewID(ts), TS: ts, NodeID: "edge-1", SessionID: "s1", Principal: "alice",
		Transport: TransportHTTP, ProtocolVersion: "2025-11-25", ClientName: "claude",
		ClientVersion: "1.0", Method: "tools/call", Backend: "github", Name: "github__create_issue",
		Decision: DecisionAllow, Rule: "developer/0", PolicyRevision: 7, Status: StatusOK,
		LatencyUS: 1200, UpstreamLatencyUS: 1000, RequestBytes: 210, ResponseBytes: 512,
		ArgsSHA256: strings.Repeat("ab", 32), TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
	}
}

func TestNewIDIsV7WithTimestamp(t *testing.T) {
	ts := time.UnixMilli(1_790_000_000_123)
	seen := map[uuid.UUID]bool{}
	for i := 0; i < 1000; i++ {
		id := NewID(ts)
		if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
			t.Fatalf("id %s: version %d variant %v", id, id.Version(), id.Variant())
		}
		sec, nsec := id.Time().UnixTime()
		if got := time.Unix(sec, nsec).UnixMilli(); got != ts.UnixMilli() {
			t.Fatalf("id %s encodes %d ms, want %d", id, got, ts.UnixMilli())
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
}

func TestCanonicalJSONRoundTrip(t *testing.T) {
	e := sampleEvent()
	b := e.AppendJSON(nil)
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	got, err := DecodeJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	want := e
	want.TS = want.TS.Truncate(time.Microsecond)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	// Encoding is canonical: re-encoding the decoded event gives the same bytes.
	if b2 := got.AppendJSON(nil); !bytes.Equal(b, b2) {
		t.Fatalf("not canonical:\n%s\n%s", b, b2)
	}
	// Field order is the column order of DESIGN §6.
	wantOrder := []string{"id", "ts", "node_id", "session_id", "principal", "transport", "protocol_version",
		"client_name", "client_version", "method", "backend", "name", "decision", "rule", "policy_revision",
		"status", "error", "latency_us", "upstream_latency_us", "request_bytes", "response_bytes", "args_sha256", "trace_id"}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for i := 0; dec.More(); i++ {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(wantOrder) || k != wantOrder[i] {
			t.Fatalf("key %d is %v, want %q", i, k, wantOrder[i])
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStringEscaping(t *testing.T) {
	for _, s := range []string{"plain", `q"uote`, `back\slash`, "nl\nnl", "ctl\x01\x1f", "uni é ☃ 🎉", "bad\xffutf8", "ls\u2028ps\u2029", ""} {
		b := appendString(nil, s)
		if !json.Valid(b) {
			t.Fatalf("%q encoded to invalid JSON %s", s, b)
		}
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(s) // encoding/json's view of the same string
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Fatalf("%q: decoded %q, want %q", s, back, wantBack)
		}
	}
}

func TestValidate(t *testing.T) {
	cases := map[string]func(*Event){
		"nil id":        func(e *Event) { e.ID = uuid.Nil },
		"v4 id":         func(e *Event) { e.ID = uuid.New() },
		"zero ts":       func(e *Event) { e.TS = time.Time{} },
		"bad decision":  func(e *Event) { e.Decision = "maybe" },
		"bad status":    func(e *Event) { e.Status = "OK" },
		"no method":     func(e *Event) { e.Method = "" },
		"negative size": func(e *Event) { e.RequestBytes = -1 },
		"bad digest":    func(e *Event) { e.ArgsSHA256 = "ABC" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			e := sampleEvent()
			mutate(&e)
			if err := e.Validate(); err == nil {
				t.Fatal("Validate accepted an invalid event")
			}
		})
	}
	e := sampleEvent()
	if err := e.Validate(); err != nil {
		t.Fatalf("valid event refused: %v", err)
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	e := sampleEvent()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSON(buf[:0])
	}
}

func BenchmarkEncodingJSON(b *testing.B) {
	e := sampleEvent()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = json.Marshal(&e)
	}
}
