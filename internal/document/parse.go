package document

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// MaxSize bounds one input (a file or stdin). Configuration is small; a huge
// input is a mistake (or an attack on a control plane's admin API).
const MaxSize = 16 << 20

// ParseError lists every problem found while parsing, each located as
// "source:line: message", in input order.
type ParseError struct {
	Errors []string
}

func (e *ParseError) Error() string {
	if len(e.Errors) == 1 {
		return e.Errors[0]
	}
	return fmt.Sprintf("%d errors:\n  %s", len(e.Errors), strings.Join(e.Errors, "\n  "))
}

// Parse reads one or more YAML documents separated by "---" from r and merges
// them into one Document. Empty documents are ignored. Lists are
// concatenated; naming the same backend, role, principal or role binding
// twice is an error that names both places, and so is setting auth or audit
// twice. Unknown fields and duplicate keys are errors. source names r in
// errors (a file name, or "stdin").
func Parse(r io.Reader, source string) (*Document, error) {
	var m merger
	if err := m.parse(r, source); err != nil {
		return nil, err
	}
	return m.result()
}

// ParseFiles parses and merges files and directories (their *.yaml and *.yml
// files, not recursively, in lexical order) in the order given. "-" reads
// os.Stdin.
func ParseFiles(paths ...string) (*Document, error) {
	return ParseFilesWithStdin(os.Stdin, paths...)
}

// ParseFilesWithStdin is ParseFiles with "-" reading stdin instead of os.Stdin.
func ParseFilesWithStdin(stdin io.Reader, paths ...string) (*Document, error) {
	if len(paths) == 0 {
		return nil, errors.New("no configuration files given")
	}
	var m merger
	for _, p := range paths {
		if p == "-" {
			if err := m.parse(stdin, "stdin"); err != nil {
				return nil, err
			}
			continue
		}
		files, err := expand(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if err := m.parseFile(f); err != nil {
				return nil, err
			}
		}
	}
	return m.result()
}

// expand turns a path into the files it names.
func expand(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration directory: %w", err)
	}
	var files []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		files = append(files, filepath.Join(path, e.Name()))
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("configuration directory %s has no *.yaml or *.yml files", path)
	}
	sort.Strings(files) // ReadDir sorts already; being explicit keeps the promise visible
	return files, nil
}

func (m *merger) parseFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading configuration: %w", err)
	}
	defer f.Close()
	return m.parse(f, path)
}

// merger accumulates documents and remembers where each named item came from
// so duplicates can name both places.
type merger struct {
	doc  Document
	seen map[string]string // "backend/github" -> "a.yaml:3"
	errs []string
}

// parse decodes every document of r. The stream is decoded twice: once
// strictly into the Go types (unknown fields, duplicate keys, wrong types)
// and once into yaml.Node for the line numbers of named items, which the
// strict decoder does not expose.
func (m *merger) parse(r io.Reader, source string) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return fmt.Errorf("reading %s: %w", source, err)
	}
	if len(data) > MaxSize {
		return fmt.Errorf("%s: larger than %d bytes", source, MaxSize)
	}
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	nodes := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := nodes.Decode(&n); err == io.EOF {
			break
		} else if err != nil {
			m.errs = append(m.errs, locate(source, err)...)
			break
		}
		if !isEmpty(&n) && n.Content[0].Kind != yaml.MappingNode {
			m.errs = append(m.errs, fmt.Sprintf("%s:%d: a document must be a mapping of backends, roles, bindings, principals, auth and audit", source, n.Content[0].Line))
			var skip yaml.Node // keep the strict decoder on the same document
			if err := strict.Decode(&skip); err != nil {
				break
			}
			continue
		}
		var part Document
		err := strict.Decode(&part)
		if err != nil {
			// The document was well-formed (the node pass read it), so the
			// decoder is already past it: report and go on to the next.
			m.errs = append(m.errs, locate(source, err)...)
			continue
		}
		if isEmpty(&n) {
			continue
		}
		m.merge(&part, n.Content[0], source)
	}
	return nil
}

func isEmpty(n *yaml.Node) bool {
	if n.Kind != yaml.DocumentNode || len(n.Content) == 0 {
		return true
	}
	root := n.Content[0]
	return root.Kind == yaml.ScalarNode && root.Tag == "!!null"
}

func (m *merger) merge(part *Document, root *yaml.Node, source string) {
	if m.seen == nil {
		m.seen = make(map[string]string)
	}
	at := func(section string, i int, fallback int) string {
		return fmt.Sprintf("%s:%d", source, itemLine(root, section, i, fallback))
	}
	claim := func(kind, name, where string) {
		key := kind + "/" + name
		if first, dup := m.seen[key]; dup {
			m.errs = append(m.errs, fmt.Sprintf("%s: %s %q is already defined at %s", where, kind, name, first))
			return
		}
		m.seen[key] = where
	}
	for i, b := range part.Backends {
		claim("backend", b.Name, at("backends", i, root.Line))
	}
	for i, r := range part.Roles {
		claim("role", r.Name, at("roles", i, root.Line))
	}
	for i, b := range part.Bindings {
		// The store keeps one binding per role; two would silently become one.
		claim("binding of role", b.Role, at("bindings", i, root.Line))
	}
	for i, p := range part.Principals {
		claim("principal", p.Name, at("principals", i, root.Line))
	}
	if part.Auth != nil {
		claim("section", "auth", fmt.Sprintf("%s:%d", source, keyLine(root, "auth", root.Line)))
		m.doc.Auth = part.Auth
	}
	if part.Audit != nil {
		claim("section", "audit", fmt.Sprintf("%s:%d", source, keyLine(root, "audit", root.Line)))
		m.doc.Audit = part.Audit
	}
	m.doc.Backends = append(m.doc.Backends, part.Backends...)
	m.doc.Roles = append(m.doc.Roles, part.Roles...)
	m.doc.Bindings = append(m.doc.Bindings, part.Bindings...)
	m.doc.Principals = append(m.doc.Principals, part.Principals...)
}

// keyLine returns the line of a top-level key of root.
func keyLine(root *yaml.Node, key string, fallback int) int {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == key {
			return root.Content[i].Line
		}
	}
	return fallback
}

// itemLine returns the line of item i of the top-level list section.
func itemLine(root *yaml.Node, section string, i, fallback int) int {
	for k := 0; k+1 < len(root.Content); k += 2 {
		if root.Content[k].Value != section {
			continue
		}
		seq := root.Content[k+1]
		if seq.Kind == yaml.SequenceNode && i < len(seq.Content) {
			return seq.Content[i].Line
		}
		return root.Content[k].Line
	}
	return fallback
}

func (m *merger) result() (*Document, error) {
	if len(m.errs) > 0 {
		return nil, &ParseError{Errors: m.errs}
	}
	d := m.doc
	d.normalize()
	return &d, nil
}

// The decoder's message shapes, compiled on the first error rather than at
// every start of every process that parses a document.
var (
	lineRE         = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^line (\d+): `) })
	unknownFieldRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`field (\S+) not found in type (\S+)`) })
)

// typeNames turns Go type names in decoder messages into the document's words.
var typeNames = map[string]string{
	"document.Document":       "the document (known: backends, roles, bindings, principals, auth, audit)",
	"document.Backend":        "a backend",
	"document.StdioTransport": "stdio",
	"document.HTTPTransport":  "http",
	"document.Auth":           "auth",
	"document.AnonymousAuth":  "auth.anonymous",
	"document.Audit":          "audit",
	"policy.Role":             "a role",
	"policy.Rule":             "a rule",
	"policy.Binding":          "a binding",
	"policy.Principal":        "a principal",
	"document.Case":           "a case",
	"document.caseFile":       "the cases file (known: cases)",
}

// locate rewrites a yaml.v3 error as "source:line: message" lines.
func locate(source string, err error) []string {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	out := make([]string, 0, len(msgs))
	for _, msg := range msgs {
		msg = unknownFieldRE().ReplaceAllStringFunc(msg, func(s string) string {
			sub := unknownFieldRE().FindStringSubmatch(s)
			where := typeNames[sub[2]]
			if where == "" {
				where = sub[2]
			}
			return "unknown field " + strconv.Quote(sub[1]) + " in " + where
		})
		if loc := lineRE().FindStringSubmatch(msg); loc != nil {
			out = append(out, source+":"+loc[1]+": "+msg[len(loc[0]):])
			continue
		}
		out = append(out, source+": "+msg)
	}
	return out
}
