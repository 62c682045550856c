package mcpwire

import (
	"encoding/json"
	"strings"
	"testing"
)

// jsonEnvelope is what the hot path would decode with encoding/json to read
// the same fields Scan reads: the reference the benchmarks compare against.
type jsonEnvelope struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  *struct {
		Name      string          `json:"name"`
		URI       string          `json:"uri"`
		Cursor    string          `json:"cursor"`
		Arguments json.RawMessage `json:"arguments"`
		Meta      *struct {
			ProgressToken      json.RawMessage `json:"progressToken"`
			ProtocolVersion    string          `json:"io.modelcontextprotocol/protocolVersion"`
			ClientCapabilities json.RawMessage `json:"io.modelcontextprotocol/clientCapabilities"`
		} `json:"_meta"`
	} `json:"params"`
	Result *struct {
		NextCursor string `json:"nextCursor"`
		ResultType string `json:"resultType"`
	} `json:"result"`
	Error json.RawMessage `json:"error"`
}

// benchBodies: a typical small tools/call (~200 B), a call with 10 KiB of
// arguments and a 100 KiB tools/call result.
func benchBodies() []struct {
	name string
	body []byte
} {
	small := `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"github__create_issue","arguments":{"owner":"mcpgw","repo":"mcpgw","title":"Edge drops progress"},"_meta":{"progressToken":"tok-1"}}}`
	var args strings.Builder
	args.WriteString(`{"query":"select","rows":[`)
	for i := 0; args.Len() < 10<<10; i++ {
		if i > 0 {
			args.WriteByte(',')
		}
		args.WriteString(`{"id":12345,"name":"row name with \"quotes\" and \u00e9","tags":["a","b"],"score":0.75,"ok":true}`)
	}
	args.WriteString(`]}`)
	mid := `{"jsonrpc":"2.0","id":"req-7","method":"tools/call","params":{"name":"db__query","arguments":` + args.String() + `,"_meta":{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	var text strings.Builder
	for text.Len() < 100<<10 {
		text.WriteString(`line of tool output with a tab\t and a quote \" in it. `)
	}
	big := `{"jsonrpc":"2.0","id":"req-8","result":{"content":[{"type":"text","text":"` + text.String() + `"}],"isError":false,"resultType":"complete"}}`
	return []struct {
		name string
		body []byte
	}{
		{"small_call", []byte(small)},
		{"10KiB_args", []byte(mid)},
		{"100KiB_result", []byte(big)},
	}
}

func BenchmarkScan(b *testing.B) {
	for _, bb := range benchBodies() {
		b.Run(bb.name+"/mcpwire", func(b *testing.B) {
			b.SetBytes(int64(len(bb.body)))
			b.ReportAllocs()
			var env Envelope
			for b.Loop() {
				if err := Scan(bb.body, &env); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bb.name+"/encoding_json", func(b *testing.B) {
			b.SetBytes(int64(len(bb.body)))
			b.ReportAllocs()
			for b.Loop() {
				var env jsonEnvelope
				if err := json.Unmarshal(bb.body, &env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The sizes the benchmark claims must hold, and both decoders must read
// the same values, or the comparison is meaningless.
func TestBenchBodies(t *testing.T) {
	want := map[string][2]int{"small_call": {150, 260}, "10KiB_args": {10 << 10, 12 << 10}, "100KiB_result": {100 << 10, 110 << 10}}
	for _, bb := range benchBodies() {
		if n := len(bb.body); n < want[bb.name][0] || n > want[bb.name][1] {
			t.Errorf("%s is %d bytes, want %v", bb.name, n, want[bb.name])
		}
		var env Envelope
		if err := Scan(bb.body, &env); err != nil {
			t.Fatalf("%s: %v", bb.name, err)
		}
		var je jsonEnvelope
		if err := json.Unmarshal(bb.body, &je); err != nil {
			t.Fatal(err)
		}
		if env.MethodString() != je.Method || string(env.ID) != string(je.ID) {
			t.Errorf("%s: mcpwire and encoding/json disagree: %q/%s vs %q/%s", bb.name, env.MethodString(), env.ID, je.Method, je.ID)
		}
	}
}
