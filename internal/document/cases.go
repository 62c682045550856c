package document

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/mcpgw/mcpgw/internal/policy"
)

// Case is one golden request → decision pair for `mcpgw policy test`, so
// teams can test their policy in their own CI (examples/policy-cases.yaml).
type Case struct {
	// Name describes the case in reports (default: its position).
	Name      string `yaml:"name,omitempty" json:"name,omitempty"`
	Principal string `yaml:"principal" json:"principal"`
	// Method defaults to the call of the item named: tools/call for Tool,
	// prompts/get for Prompt, resources/read for Resource.
	Method string `yaml:"method,omitempty" json:"method,omitempty"`
	// Backend may be omitted for a tool or prompt whose exposed name carries
	// a backend's prefix ("github__create_issue").
	Backend  string `yaml:"backend,omitempty" json:"backend,omitempty"`
	Tool     string `yaml:"tool,omitempty" json:"tool,omitempty"`
	Prompt   string `yaml:"prompt,omitempty" json:"prompt,omitempty"`
	Resource string `yaml:"resource,omitempty" json:"resource,omitempty"`
	// Expect is "allow" or "deny".
	Expect string `yaml:"expect" json:"expect"`
	// Rule, when set, must be the id of the deciding rule.
	Rule string `yaml:"rule,omitempty" json:"rule,omitempty"`
}

// CaseResult is the outcome of one case.
type CaseResult struct {
	Case     Case
	Decision policy.Decision
	// Problem is empty when the case passed, else what differed.
	Problem string
}

type caseFile struct {
	Cases []Case `yaml:"cases"`
}

// ParseCases reads a cases file ("cases: [...]"), strictly like Parse, and
// checks each case's shape. Errors are located as source:line.
func ParseCases(r io.Reader, source string) ([]Case, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", source, err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", source, MaxSize)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &ParseError{Errors: locate(source, err)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f caseFile
	if err := dec.Decode(&f); err != nil && err != io.EOF {
		return nil, &ParseError{Errors: locate(source, err)}
	}
	var errs []string
	for i := range f.Cases {
		c := &f.Cases[i]
		line := 0
		if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
			line = itemLine(root.Content[0], "cases", i, 0)
		}
		if c.Name == "" {
			c.Name = fmt.Sprintf("cases[%d]", i)
		}
		if msg := c.check(); msg != "" {
			errs = append(errs, fmt.Sprintf("%s:%d: %s: %s", source, line, c.Name, msg))
		}
	}
	if len(errs) > 0 {
		return nil, &ParseError{Errors: errs}
	}
	if len(f.Cases) == 0 {
		return nil, fmt.Errorf("%s: no cases", source)
	}
	return f.Cases, nil
}

func (c *Case) check() string {
	items := 0
	for _, s := range []string{c.Tool, c.Prompt, c.Resource} {
		if s != "" {
			items++
		}
	}
	switch {
	case c.Principal == "":
		return "principal is required"
	case c.Expect != policy.EffectAllow && c.Expect != policy.EffectDeny:
		return fmt.Sprintf("expect must be allow or deny, not %q", c.Expect)
	case items > 1:
		return "set at most one of tool, prompt and resource"
	case items == 0 && c.Method == "":
		return "set a method, or one of tool, prompt and resource"
	}
	return ""
}

// Request builds the policy request of c, resolving an omitted backend from
// the exposed name's prefix in d.
func (c Case) Request(d *Document) (policy.Request, error) {
	req := policy.Request{Method: c.Method, Backend: c.Backend}
	switch {
	case c.Tool != "":
		req.Kind, req.Name = policy.KindTool, c.Tool
	case c.Prompt != "":
		req.Kind, req.Name = policy.KindPrompt, c.Prompt
	case c.Resource != "":
		req.Kind, req.Name = policy.KindResource, c.Resource
	}
	if req.Method == "" {
		req.Method = policy.CallMethod(req.Kind)
	}
	if req.Backend == "" && (req.Kind == policy.KindTool || req.Kind == policy.KindPrompt) {
		b, ok := d.BackendOf(req.Name)
		if !ok {
			return req, fmt.Errorf("%s: no backend's prefix matches %q; set backend", c.Name, req.Name)
		}
		req.Backend = b
	}
	if req.Backend == "" && req.Kind != policy.KindNone {
		return req, fmt.Errorf("%s: set backend", c.Name)
	}
	return req, nil
}

// BackendOf returns the backend whose exposed-name prefix ("<prefix>__")
// starts name, preferring the longest prefix. Unprefixed backends never
// match: their names carry no trace of the backend.
func (d *Document) BackendOf(name string) (string, bool) {
	best, bestLen := "", -1
	for _, b := range d.Backends {
		prefix := b.Name
		if b.Prefix != nil {
			prefix = *b.Prefix
		}
		if prefix == "" || !strings.HasPrefix(name, prefix+"__") {
			continue
		}
		if len(prefix) > bestLen {
			best, bestLen = b.Name, len(prefix)
		}
	}
	return best, bestLen >= 0
}

// RunCases decides every case against p and reports each outcome; it fails
// only when a case cannot be turned into a request.
func RunCases(d *Document, p *policy.Policy, cases []Case) ([]CaseResult, error) {
	var errs []error
	out := make([]CaseResult, 0, len(cases))
	for _, c := range cases {
		req, err := c.Request(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dec := p.Decide(c.Principal, req)
		r := CaseResult{Case: c, Decision: dec}
		got := policy.EffectDeny
		if dec.Allow {
			got = policy.EffectAllow
		}
		switch {
		case got != c.Expect:
			r.Problem = fmt.Sprintf("expected %s, got %s (%s)", c.Expect, got, dec.Reason)
		case c.Rule != "" && c.Rule != dec.Rule:
			r.Problem = fmt.Sprintf("expected rule %q, got %q (%s)", c.Rule, dec.Rule, dec.Reason)
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}
