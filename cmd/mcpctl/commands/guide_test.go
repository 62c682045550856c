package commands

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/proctest"
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
// order, with the files it shows, against a real control plane; its `mcpgw
// edge` line as a real edge process (built from this checkout) enrolled
// with the token the guide's `join-token create` printed; and its curl
// calls with the real curl against that edge. The other shell lines (mcpgw
// cp, go install, ...) are the reader's; the test starts the control plane
// itself, with the guide's addresses, CA paths, token and state dir mapped
// to the test's. A trailing "# allow"/"# deny" is checked against check's
// decision, "# allowed"/"# denied" against a curl call's answer, and
// "# shows TEXT" against the output (retried while audit is shipped).
func TestOperatorGuide(t *testing.T) {
	steps := readGuide(t)
	cp := startControlPlane(t)
	c := newCLI(t) // nothing from the environment: the context does it all
	// The guide's demo backend is the Go SDK's everything-server (a tool
	// dependency); the edge finds it on its PATH as a reader's would.
	bin := t.TempDir()
	bins, err := proctest.Build(bin, "github.com/mcpgw/mcpgw/cmd/mcpgw", "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
	if err != nil {
		t.Fatal(err)
	}
	procs := proctest.New(t, t.TempDir())
	edgeAddr := proctest.FreeAddr(t)
	t.Chdir(t.TempDir())
	vars := map[string]string{"MCPGW_ADMIN_TOKEN": testAdminToken}
	edgeEnv := []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}
	var joinToken string
	mapArg := func(a string) string {
		a = strings.ReplaceAll(a, "127.0.0.1:7444", cp.addr)
		a = strings.ReplaceAll(a, "127.0.0.1:8080", edgeAddr)
		return strings.ReplaceAll(a, "/var/lib/mcpgw/ca.crt", cp.caFile)
	}
	capture := regexp.MustCompile(`^([A-Z_]+)=\$\((mcpctl [^$]*)\)$`)
	export := regexp.MustCompile(`^export ([A-Z_]+)=([^$]*)$`)
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
		line, into := s.line, ""
		if m := capture.FindStringSubmatch(line); m != nil {
			into, line = m[1], m[2]
		}
		if m := export.FindStringSubmatch(line); m != nil {
			vars[m[1]] = m[2]
			edgeEnv = append(edgeEnv, m[1]+"="+m[2])
			continue
		}
		words, comment := shellWords(line, vars)
		if len(words) == 0 {
			continue
		}
		where := fmt.Sprintf("%s:%d: %s", guidePath, s.lineNo, s.line)
		switch {
		case words[0] == "mcpgw" && len(words) > 1 && words[1] == "edge":
			if joinToken == "" {
				t.Fatalf("%s: no join-token create before it", where)
			}
			args := make([]string, 0, len(words)-1)
			for _, w := range words[1:] {
				switch w {
				case "cp.example.com:7443":
					w = cp.nodeAddr
				case "ca.crt":
					w = cp.caFile
				case "mcpgwjoin_...":
					w = joinToken
				case "/var/lib/mcpgw-edge":
					w = t.TempDir()
				}
				args = append(args, mapArg(w))
			}
			edge := procs.Start("edge", edgeEnv, bins[0], args...)
			proctest.WaitHTTP(t, edge, "http://"+edgeAddr+"/readyz", 30*time.Second)
			// The reader's next step, get nodes, shows the edge connected
			// once the control plane's node registry has it (it is
			// written in batches).
			waitNodes(t, c, "the edge to show as connected", func(ns []*mcpgwv1.Node, _ int64) bool {
				return len(ns) == 1 && ns[0].GetConnected()
			})
			ran = append(ran, "mcpgw edge")
			continue
		case words[0] == "curl":
			args := make([]string, 0, len(words)-1)
			for _, w := range words[1:] {
				args = append(args, mapArg(w))
			}
			guideCurl(t, where, args, comment)
			ran = append(ran, "curl")
			continue
		case words[0] != "mcpctl":
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
		if want, ok := strings.CutPrefix(comment, "shows "); ok {
			// Audit events reach the control plane a moment after the call.
			for deadline := time.Now().Add(20 * time.Second); code == exitOK && !strings.Contains(out, want) && time.Now().Before(deadline); {
				time.Sleep(100 * time.Millisecond)
				code, out, errOut = c.run(args...)
			}
			if !strings.Contains(out, want) {
				t.Errorf("%s: the output does not show %q:\n%s", where, want, out)
			}
		}
		if code != exitOK {
			t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", where, code, out, errOut)
		}
		if comment == "allow" || comment == "deny" {
			if first, _, _ := strings.Cut(out, "\n"); first != comment {
				t.Errorf("%s: decided %q, the guide says %q\n%s", where, first, comment, out)
			}
		}
		if tok := regexp.MustCompile(`mcpgwjoin_\S+`).FindString(out); args[0] == "join-token" && tok != "" {
			joinToken = tok
		}
		if into != "" {
			vars[into] = strings.TrimSpace(out)
		}
		if redirect != "" {
			if err := os.WriteFile(redirect, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if args[0] == "apply" && slices.Contains(args, "exported.yaml") && !regexp.MustCompile(`^no changes \(revision \d+\)\n$`).MatchString(out) {
			t.Errorf("%s: re-applying the export changed something:\n%s", where, out)
		}
		if args[0] == "apply" && slices.Contains(args, "--wait") && !strings.Contains(out, ": 1/1 nodes acked") {
			t.Errorf("%s: the edge did not acknowledge the change:\n%s", where, out)
		}
		ran = append(ran, strings.Join(args[:min(2, len(args))], " "))
	}
	// The walkthrough's promises: these steps are in it and were run.
	for _, want := range []string{"config set-context", "apply -f", "keys create", "join-token create", "mcpgw edge", "get nodes", "check --principal", "curl", "audit query", "rollout status", "version"} {
		if !slices.ContainsFunc(ran, func(r string) bool { return strings.HasPrefix(r, want) }) {
			t.Errorf("the guide runs no %q (ran %q)", want, ran)
		}
	}
}

// guideCurl runs the real curl and checks its answer against the guide's
// comment: "allowed" (a result) or "denied" (refused by policy). Until the
// backend has started its tools are unknown; that answer is retried.
func guideCurl(t *testing.T, where string, args []string, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command("curl", args...).Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", where, err, out)
		}
		switch {
		case strings.Contains(string(out), "not available yet") && time.Now().Before(deadline):
			time.Sleep(100 * time.Millisecond)
			continue
		case want == "allowed" && strings.Contains(string(out), `"result"`),
			want == "denied" && strings.Contains(string(out), "is not permitted"),
			want != "allowed" && want != "denied":
			return
		}
		t.Fatalf("%s: want %s, got %s", where, want, out)
	}
}

func TestShellWords(t *testing.T) {
	words, comment := shellWords(`mcpctl x --token "$TOK" --d "a b" 'c $TOK' plain # allow`, map[string]string{"TOK": "t1"})
	want := []string{"mcpctl", "x", "--token", "t1", "--d", "a b", "c $TOK", "plain"}
	if !slices.Equal(words, want) || comment != "allow" {
		t.Fatalf("shellWords = %q, %q", words, comment)
	}
}
