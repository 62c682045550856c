package upstream

import (
	"strings"
	"testing"
)

func TestReadSSE(t *testing.T) {
	stream := ": comment\n\nid: 0\ndata:\n\nid: 1\nevent: message\ndata: {\"a\":\ndata: 1}\n\nid: 2\n\ndata: last\n"
	var got []string
	var last string
	if err := readSSE(strings.NewReader(stream), &last, func(e sseEvent) bool {
		got = append(got, e.id+"="+string(e.data))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	// An event cut off by the end of the stream (no blank line) is not
	// dispatched (WHATWG event stream interpretation).
	if strings.Join(got, "|") != "1={\"a\":\n1}" || last != "2" {
		t.Errorf("events %q, last id %q", got, last)
	}
}

func FuzzReadSSE(f *testing.F) {
	f.Add("id: 1\ndata: x\n\n")
	f.Add(": c\r\ndata:\r\n\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		var last string
		_ = readSSE(strings.NewReader(s), &last, func(sseEvent) bool { return true })
	})
}
