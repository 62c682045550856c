package auditdb

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/audit"
)

var awkward = []string{"", "plain", `quo"te`, `back\slash`, "new\nline", "tab\t", "\x01ctl", "héllo ✓", "\u2028sep", "bad\xffutf8", "emoji 🦀"}

func randomEvent(r *rand.Rand) audit.Event {
	pick := func() string {
		if r.IntN(40) == 0 {
			return awkward[r.IntN(len(awkward))]
		}
		return "plain value"
	}
	now := time.Now().Add(time.Duration(r.Int64N(1e12)))
	return audit.Event{
		ID: audit.NewID(now), TS: now, NodeID: pick(), SessionID: pick(), Principal: pick(),
		Transport: audit.TransportStdio, ProtocolVersion: pick(), ClientName: pick(), ClientVersion: pick(),
		Method: "m" + pick(), Backend: pick(), Name: pick(), Decision: audit.DecisionDeny, Rule: pick(),
		PolicyRevision: r.Int64N(1 << 40), Status: audit.StatusTimeout, Error: pick(),
		LatencyUS: r.Int64N(1e9), UpstreamLatencyUS: r.Int64N(1e9), RequestBytes: r.Int64N(1e9), ResponseBytes: 0,
		TraceID: pick(),
	}
}

// The canonical fast path and encoding/json decode every line the same way.
func TestDecodeEventMatchesDecodeJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fast := 0
	for range 5000 {
		e := randomEvent(r)
		line := e.AppendJSON(nil)
		got, err := decodeEvent(line)
		want, werr := audit.DecodeJSON(line)
		if (err == nil) != (werr == nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("line %s:\nfast %+v, %v\njson %+v, %v", line, got, err, want, werr)
		}
		if _, ok := decodeCanonical(line); ok {
			fast++
		}
	}
	if fast < 500 {
		t.Fatalf("only %d of 5000 lines took the fast path", fast)
	}
	t.Logf("%d of 5000 lines took the fast path", fast)
}

// Lines that are not canonical (or not valid) give the same result as
// encoding/json.
func FuzzDecodeEvent(f *testing.F) {
	e := randomEvent(rand.New(rand.NewPCG(3, 4)))
	f.Add(string(e.AppendJSON(nil)))
	f.Add(strings.Replace(string(e.AppendJSON(nil)), `"latency_us":`, `"latency_us":0`, 1))
	f.Fuzz(func(t *testing.T, line string) {
		got, err := decodeEvent([]byte(line))
		want, werr := audit.DecodeJSON([]byte(line))
		if (err == nil) != (werr == nil) {
			t.Fatalf("fast err %v, json err %v", err, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("fast %+v\njson %+v", got, want)
		}
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	e := randomEvent(rand.New(rand.NewPCG(5, 6)))
	e.NodeID, e.Error, e.Name, e.ClientName = "0190c0de-0000-7000-8000-0000000000aa", "", "github__create_issue", "claude"
	line := e.AppendJSON(nil)
	b.Run("canonical", func(b *testing.B) {
		for range b.N {
			if _, err := decodeEvent(line); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		for range b.N {
			if _, err := audit.DecodeJSON(line); err != nil {
				b.Fatal(err)
			}
		}
	})
}
