package mcpwire

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/golden/*.txtar from what Scan returns")

// archive is a txtar archive: a comment, then files introduced by
// "-- name --" lines. It is parsed here rather than with
// golang.org/x/tools/txtar to keep the module's dependencies as they are.
type archive struct {
	comment []byte
	files   []archiveFile
}

type archiveFile struct {
	name string
	data []byte
}

func parseArchive(data []byte) archive {
	var a archive
	cur := &a.comment
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		t := strings.TrimRight(string(line), "\n")
		if strings.HasPrefix(t, "-- ") && strings.HasSuffix(t, " --") && len(t) >= 6 {
			a.files = append(a.files, archiveFile{name: strings.TrimSpace(t[3 : len(t)-3])})
			cur = &a.files[len(a.files)-1].data
			continue
		}
		*cur = append(*cur, line...)
	}
	return a
}

func (a archive) format() []byte {
	var b bytes.Buffer
	b.Write(a.comment)
	for _, f := range a.files {
		b.WriteString("-- " + f.name + " --\n")
		b.Write(f.data)
		if len(f.data) > 0 && f.data[len(f.data)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// TestGolden scans the "input.json" of each testdata/golden/*.txtar (minus
// the newline txtar adds after it) and compares the summary with "want".
// Run with -update to rewrite the want sections, then review the diff.
func TestGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "golden", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 10 {
		t.Fatalf("found %d golden files, want at least 10", len(paths))
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			a := parseArchive(raw)
			in, want := -1, -1
			for i, f := range a.files {
				switch f.name {
				case "input.json":
					in = i
				case "want":
					want = i
				}
			}
			if in < 0 {
				t.Fatalf("%s has no input.json section", path)
			}
			body := bytes.TrimSuffix(a.files[in].data, []byte("\n"))
			var env Envelope
			got := summary(&env, Scan(body, &env))
			if *update {
				if want < 0 {
					a.files = append(a.files, archiveFile{name: "want"})
					want = len(a.files) - 1
				}
				a.files[want].data = []byte(got)
				if err := os.WriteFile(path, a.format(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want < 0 {
				t.Fatalf("%s has no want section (run with -update)", path)
			}
			if got != string(a.files[want].data) {
				t.Errorf("%s:\n got:\n%s\nwant:\n%s", path, got, a.files[want].data)
			}
		})
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	src := "comment\n-- a --\nx\n-- b --\n-- c --\ny\nz\n"
	a := parseArchive([]byte(src))
	if len(a.files) != 3 || a.files[0].name != "a" || string(a.files[2].data) != "y\nz\n" || string(a.comment) != "comment\n" {
		t.Fatalf("parse: %+v", a)
	}
	if got := string(a.format()); got != src {
		t.Errorf("format: got %q, want %q", got, src)
	}
}
