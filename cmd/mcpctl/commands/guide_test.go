package commands

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// guidePath is the operator guide, relative to this package.
var guidePath = filepath.Join("..", "..", "..", "docs", "operator-guide.md")

// guideStep is one thing the guide tells the reader to do: write a file
// (a ```yaml file=NAME block) or run a shell line.
type guideStep struct {
	file, body string // a file to write
	line       string // a shell line
	lineNo     int
}

func readGuide(t *testing.T) []guideStep {
	t.Helper()
	f, err := os.Open(guidePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []guideStep
	var (
		inBlock     bool
		lang, file  string
		body        strings.Builder
		pending     string
		pendingLine int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			if !inBlock {
				inBlock = true
				info := strings.Fields(strings.TrimPrefix(line, "```"))
				lang, file = "", ""
				if len(info) > 0 {
					lang, info = info[0], info[1:]
				}
				for _, kv := range info {
					if v, ok := strings.CutPrefix(kv, "file="); ok {
						file = v
					}
				}
				body.Reset()
				continue
			}
			inBlock = false
			if lang == "yaml" && file != "" {
				steps = append(steps, guideStep{file: file, body: body.String(), lineNo: n})
			}
			continue
		}
		if !inBlock {
			continue
		}
		if lang == "yaml" {
			body.WriteString(line + "\n")
			continue
		}
		if lang != "sh" {
			continue
		}
		if pending == "" {
			pendingLine = n
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			pending += cont
			continue
		}
		steps = append(steps, guideStep{line: pending + line, lineNo: pendingLine})
		pending = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return steps
}

// shellWords splits a line the way sh would for the simple lines the guide
// uses: quotes, $VAR expansion, a trailing "# comment" (returned apart).
func shellWords(line string, vars map[string]string) (words []string, comment string) {
	var cur strings.Builder
	inWord := false
	quote := byte(0)
	flush := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case quote == '\'':
			if ch == '\'' {
				quote = 0
			} else {
				cur.WriteByte(ch)
			}
		case ch == '\'' || ch == '"' && quote == 0:
			quote, inWord = ch, true
		case ch == '"' && quote == '"':
			quote = 0
		case ch == '$' && quote != '\'':
			j := i + 1
			for j < len(line) && (line[j] == '_' || line[j] >= 'A' && line[j] <= 'Z' || line[j] >= '0' && line[j] <= '9') {
				j++
			}
			cur.WriteString(vars[line[i+1:j]])
			inWord = true
			i = j - 1
		case quote == 0 && ch == '#' && !inWord:
			return words, strings.TrimSpace(line[i+1:])
		case quote == 0 && (ch == ' ' || ch == '\t'):
			flush()
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	flush()
	return words, ""
}

// TestOperatorGuide runs every mcpctl command of docs/operator-guide.md, in
// order, with the files it shows, against a real control plane. The other
// shell lines (mcpgw cp, go install, ...) are the reader's; the test starts
// the control plane itself, with the guide's admin address, CA path and
// token mapped to the test's.
func TestOperatorGuide(t *testing.T) {
	steps := readGuide(t)
	cp := startControlPlane(t)
	c := newCLI(t) // nothing from the environment: the context does it all
	t.Chdir(t.TempDir())
	vars := map[string]string{"MCPGW_ADMIN_TOKEN": testAdminToken}
	mapArg := func(a string) string {
		a = strings.ReplaceAll(a, "127.0.0.1:7444", cp.addr)
		return strings.ReplaceAll(a, "/var/lib/mcpgw/ca.crt", cp.caFile)
	}
	var ran []string
	for _, s := range steps {
		if s.file != "" {
			if err := os.MkdirAll(filepath.Dir(s.file), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.file, []byte(s.body), 0o600); err != nil {
				t.Fatal(err)
			}
			continue
		}
		words, comment := shellWords(s.line, vars)
		if len(words) == 0 || words[0] != "mcpctl" {
			continue
		}
		var redirect string
		if n := len(words); n >= 3 && words[n-2] == ">" {
			redirect, words = words[n-1], words[:n-2]
		}
		args := make([]string, 0, len(words)-1)
		for _, w := range words[1:] {
			args = append(args, mapArg(w))
		}
		code, out, errOut := c.run(args...)
		if code != exitOK {
			t.Fatalf("%s:%d: %s: exit %d\nstdout:\n%s\nstderr:\n%s", guidePath, s.lineNo, s.line, code, out, errOut)
		}
		if comment == "allow" || comment == "deny" {
			if first, _, _ := strings.Cut(out, "\n"); first != comment {
				t.Errorf("%s:%d: %s: decided %q, the guide says %q\n%s", guidePath, s.lineNo, s.line, first, comment, out)
			}
		}
		if redirect != "" {
			if err := os.WriteFile(redirect, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if args[0] == "apply" && slices.Contains(args, "exported.yaml") && out != "no changes (revision 1)\n" {
			t.Errorf("%s:%d: re-applying the export changed something:\n%s", guidePath, s.lineNo, out)
		}
		ran = append(ran, strings.Join(args[:min(2, len(args))], " "))
	}
	// The walkthrough's promises: these steps are in it and were run.
	for _, want := range []string{"config set-context", "apply -f", "keys create", "join-token create", "get nodes", "check --principal", "audit query", "rollout status", "version"} {
		if !slices.ContainsFunc(ran, func(r string) bool { return strings.HasPrefix(r, want) }) {
			t.Errorf("the guide runs no %q (ran %q)", want, ran)
		}
	}
}

func TestShellWords(t *testing.T) {
	words, comment := shellWords(`mcpctl x --token "$TOK" --d "a b" 'c $TOK' plain # allow`, map[string]string{"TOK": "t1"})
	want := []string{"mcpctl", "x", "--token", "t1", "--d", "a b", "c $TOK", "plain"}
	if !slices.Equal(words, want) || comment != "allow" {
		t.Fatalf("shellWords = %q, %q", words, comment)
	}
}
