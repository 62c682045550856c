package document

import (
	"fmt"
	"strings"
)

// Values of stdio env and http headers may reference the edge's environment
// as ${env:NAME}, so secrets stay out of files, the control plane's store and
// audit. "$${" is a literal "${". Any other "${" is an error, so a typo such
// as "${GITHUB_TOKEN}" fails loudly instead of being sent as a literal.

// ExpandEnv replaces every ${env:NAME} in value with lookup(NAME). A missing
// variable is an error naming it; errors never include the value.
func ExpandEnv(value string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(value, "${") {
		return value, nil
	}
	var b strings.Builder
	err := scanRefs(value, func(lit string) { b.WriteString(lit) }, func(name string) error {
		v, ok := lookup(name)
		if !ok {
			return fmt.Errorf("environment variable %s is not set", name)
		}
		b.WriteString(v)
		return nil
	})
	if err != nil {
		return "", err
	}
	return b.String(), nil
}

// EnvRefs returns the variable names value references, or a syntax error.
func EnvRefs(value string) ([]string, error) {
	var names []string
	err := scanRefs(value, func(string) {}, func(name string) error {
		names = append(names, name)
		return nil
	})
	return names, err
}

// scanRefs walks value, calling lit for literal runs and ref for each
// reference. Syntax errors give the byte offset, not the text around it,
// because the text may be a secret.
func scanRefs(value string, lit func(string), ref func(string) error) error {
	for {
		i := strings.Index(value, "${")
		if i < 0 {
			lit(value)
			return nil
		}
		if i > 0 && value[i-1] == '$' {
			// "$${" is an escaped "${".
			lit(value[:i-1] + "${")
			value = value[i+2:]
			continue
		}
		lit(value[:i])
		rest := value[i+2:]
		end := strings.IndexByte(rest, '}')
		body, ok := strings.CutPrefix(rest[:max(end, 0)], "env:")
		if end < 0 || !ok {
			return fmt.Errorf(`bad reference: only ${env:NAME} is supported (write $${ for a literal "${")`)
		}
		if !validEnvName(body) {
			return fmt.Errorf("bad reference: ${env:NAME} needs a variable name of letters, digits and _, not starting with a digit")
		}
		if err := ref(body); err != nil {
			return err
		}
		value = rest[end+1:]
	}
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Resolve returns a copy of b with every ${env:NAME} in its stdio env and
// http headers replaced through lookup (os.LookupEnv in the edge). The edge
// calls it when it starts a backend, so resolved secrets live only in that
// process's memory. Errors name the backend and field, never a value.
func (b *Backend) Resolve(lookup func(string) (string, bool)) (Backend, error) {
	out := *b
	expand := func(field string, in map[string]string) (map[string]string, error) {
		if in == nil {
			return nil, nil
		}
		m := make(map[string]string, len(in))
		for _, k := range sortedKeys(in) {
			v, err := ExpandEnv(in[k], lookup)
			if err != nil {
				return nil, fmt.Errorf("backend %q: %s.%s: %w", b.Name, field, k, err)
			}
			m[k] = v
		}
		return m, nil
	}
	if b.Stdio != nil {
		s := *b.Stdio
		env, err := expand("stdio.env", s.Env)
		if err != nil {
			return Backend{}, err
		}
		s.Env = env
		s.Command = append([]string(nil), s.Command...)
		out.Stdio = &s
	}
	if b.HTTP != nil {
		h := *b.HTTP
		headers, err := expand("http.headers", h.Headers)
		if err != nil {
			return Backend{}, err
		}
		h.Headers = headers
		out.HTTP = &h
	}
	return out, nil
}
