package commands

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

// transcript records a session of mcpctl commands the way a terminal shows
// them, with volatile values masked, for comparison with a golden file.
type transcript struct {
	c     *cli
	b     strings.Builder
	masks []mask
}

type mask struct {
	re   *regexp.Regexp
	with string
	// keepWidth pads the replacement to the masked value's length, so
	// table columns stay aligned as they were.
	keepWidth bool
}

// Masks for values that differ on every run. Each replaces a value of fixed
// width (ids, tokens, times to the second) so table alignment stays
// deterministic.
// Secrets go first, whole, before any id inside them is masked.
var secrets = []mask{
	{re: regexp.MustCompile(`mcpgw_[A-Za-z0-9]+_[A-Za-z0-9_-]+`), with: "<API-KEY>"},
	{re: regexp.MustCompile(`mcpgwjoin_[A-Za-z0-9]+_[A-Za-z0-9_-]+`), with: "<JOIN-TOKEN>"},
}

var volatile = []mask{
	{re: regexp.MustCompile(`\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`), with: "<UUID>", keepWidth: true},
	// The audit table starts each row with a millisecond time.
	{re: regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`), with: "<TIME>", keepWidth: true},
	// Elsewhere fractional seconds vary in length (protojson trims zeros),
	// so only whole-second times keep their width.
	{re: regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z`), with: "<TIME>"},
	{re: regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), with: "<TIME>", keepWidth: true},
	{re: regexp.MustCompile(`\bdevel(-[0-9a-f]+)?\b`), with: "<VERSION>"},
	{re: regexp.MustCompile(regexp.QuoteMeta(os.TempDir()) + `/Test[^/ ]+/[0-9]+`), with: "<TMP>"},
	{re: regexp.MustCompile(`127\.0\.0\.1:[0-9]+`), with: "<ADDR>"},
	{re: regexp.MustCompile(`\(go1\.[0-9.]+ [a-z0-9]+/[a-z0-9]+\)`), with: "(<GO>)"},
}

func newTranscript(c *cli, extra ...mask) *transcript {
	return &transcript{c: c, masks: append(append([]mask{}, extra...), volatile...)}
}

func (tr *transcript) mask(s string) string {
	for _, m := range append(append([]mask{}, secrets...), tr.masks...) {
		s = m.re.ReplaceAllStringFunc(s, func(v string) string {
			if m.keepWidth && len(v) > len(m.with) {
				return m.with + strings.Repeat("~", len(v)-len(m.with))
			}
			return m.with
		})
	}
	return s
}

// run executes one command, records it, and returns its exit code and
// unmasked stdout.
func (tr *transcript) run(args ...string) (int, string) {
	tr.c.t.Helper()
	code, out, errOut := tr.c.run(args...)
	tr.record(args, code, out, errOut)
	return code, out
}

// ok is run for a command that must succeed.
func (tr *transcript) ok(args ...string) string {
	tr.c.t.Helper()
	code, out := tr.run(args...)
	if code != exitOK {
		tr.c.t.Fatalf("mcpctl %s: exit %d\n%s", strings.Join(args, " "), code, tr.b.String())
	}
	return out
}

// learn masks a value the test found out (an id the server minted)
// everywhere in the transcript, also where it appeared before. Ids have a
// fixed width, which the mask keeps.
func (tr *transcript) learn(value, as string) {
	if value != "" {
		tr.masks = append([]mask{{re: regexp.MustCompile(regexp.QuoteMeta(value)), with: as, keepWidth: true}}, tr.masks...)
	}
}

// learnPath masks a path, whose length varies between runs.
func (tr *transcript) learnPath(path, as string) {
	tr.masks = append([]mask{{re: regexp.MustCompile(regexp.QuoteMeta(path)), with: as}}, tr.masks...)
}

// record keeps the raw output; masking happens in check, so values learned
// later are masked in earlier commands too.
func (tr *transcript) record(args []string, code int, out, errOut string) {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	fmt.Fprintf(&tr.b, "$ mcpctl %s\n", strings.Join(quoted, " "))
	tr.b.WriteString(out)
	if errOut != "" {
		for line := range strings.SplitSeq(strings.TrimSuffix(errOut, "\n"), "\n") {
			fmt.Fprintf(&tr.b, "stderr> %s\n", line)
		}
	}
	if code != exitOK {
		fmt.Fprintf(&tr.b, "[exit %d]\n", code)
	}
	tr.b.WriteString("\n")
}

// check compares the transcript with testdata/<name>.golden, or rewrites
// it with -update.
func (tr *transcript) check(name string) {
	t := tr.c.t
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	got := tr.mask(tr.b.String())
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff shows the first differing lines, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want: %q\n  got:  %q\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}
