package dataplane_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden protocol exchanges in testdata/golden")

// A golden exchange file is a txtar archive: a comment, then pairs of
// "NN-request" and "NN-response" files. A request is optional header lines
// ("Name: value"), a blank line, and the JSON body. A response is the status
// code, the headers the edge's contract covers, a blank line and the body
// (JSON indented). "$SESSION" stands for the session id the first exchange
// got. Run `go test ./dataplane -run TestGolden -update` to rewrite
// responses after a deliberate change, and review the diff.

type archive struct {
	comment string
	files   []archiveFile
}

type archiveFile struct {
	name string
	data string
}

func parseArchive(s string) archive {
	var a archive
	lines := strings.SplitAfter(s, "\n")
	cur := -1
	for _, l := range lines {
		t := strings.TrimRight(l, "\n")
		if strings.HasPrefix(t, "-- ") && strings.HasSuffix(t, " --") && len(t) > 6 {
			a.files = append(a.files, archiveFile{name: t[3 : len(t)-3]})
			cur = len(a.files) - 1
			continue
		}
		if cur < 0 {
			a.comment += l
		} else {
			a.files[cur].data += l
		}
	}
	return a
}

func (a archive) format() string {
	var b strings.Builder
	b.WriteString(a.comment)
	for _, f := range a.files {
		fmt.Fprintf(&b, "-- %s --\n", f.name)
		b.WriteString(f.data)
		if !strings.HasSuffix(f.data, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// contractHeaders are the response headers golden files record.
var contractHeaders = []string{"Content-Type", "Mcp-Session-Id", "Allow"}

func TestGolden(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.txtar"))
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev"), nil)
	waitTools(t, connect(t, e.URL, nil), everythingTools)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			a := parseArchive(string(raw))
			session := ""
			changed := false
			for i := 0; i+1 < len(a.files); i += 2 {
				req, want := a.files[i], &a.files[i+1]
				if !strings.HasSuffix(req.name, "-request") || !strings.HasSuffix(want.name, "-response") {
					t.Fatalf("files %s, %s: want an NN-request, NN-response pair", req.name, want.name)
				}
				got := exchange(t, e, strings.ReplaceAll(req.data, "$SESSION", session))
				if session == "" {
					if m := regexp.MustCompile(`Mcp-Session-Id: ([0-9a-f]{32})`).FindStringSubmatch(got); m != nil {
						session = m[1]
					}
				}
				if session != "" {
					got = strings.ReplaceAll(got, session, "$SESSION")
				}
				if got != want.data {
					if *update {
						want.data = got
						changed = true
						continue
					}
					t.Errorf("%s:\n--- got ---\n%s--- want ---\n%s", want.name, got, want.data)
				}
			}
			if changed {
				if err := os.WriteFile(file, []byte(a.format()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// exchange POSTs (or sends the method named by an X-Method header) one
// request and renders the response.
func exchange(t *testing.T, e *edge, spec string) string {
	t.Helper()
	head, body, _ := strings.Cut(spec, "\n\n")
	if !strings.Contains(spec, "\n\n") {
		head, body = "", spec
	}
	method := "POST"
	hdr := http.Header{}
	for _, l := range strings.Split(head, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			if k == "X-Method" {
				method = v
				continue
			}
			hdr.Set(k, v)
		}
	}
	var rd io.Reader
	if body = strings.TrimSpace(body); body != "" {
		rd = strings.NewReader(body)
		if hdr.Get("Content-Type") == "" {
			hdr.Set("Content-Type", "application/json")
		}
	}
	if hdr.Get("Accept") == "" {
		hdr.Set("Accept", "application/json, text/event-stream")
	}
	req, err := http.NewRequest(method, e.URL, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", resp.StatusCode)
	names := append([]string(nil), contractHeaders...)
	sort.Strings(names)
	for _, h := range names {
		if v := resp.Header.Get(h); v != "" {
			fmt.Fprintf(&b, "%s: %s\n", h, v)
		}
	}
	b.WriteString("\n")
	var ind bytes.Buffer
	if json.Indent(&ind, bytes.TrimSpace(rb), "", "  ") == nil {
		b.Write(ind.Bytes())
		b.WriteString("\n")
	} else if len(rb) > 0 {
		b.Write(rb)
		if !bytes.HasSuffix(rb, []byte("\n")) {
			b.WriteString("\n")
		}
	}
	return b.String()
}
