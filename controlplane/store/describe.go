package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// describe renders a change for people: one line per changed leaf, e.g.
// "rules[1].tools[0]: + github__delete_*". Values of a stdio backend's env
// and an HTTP backend's headers are never shown (they may hold credentials
// pasted in by mistake; "${env:NAME}" references are shown, being names).
func describe(c Change) string {
	before, after := flatten(c.Before), flatten(c.After)
	keys := make([]string, 0, len(before)+len(after))
	for k := range before {
		keys = append(keys, k)
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var lines []string
	for _, k := range keys {
		b, inB := before[k]
		a, inA := after[k]
		switch {
		case inB && inA && b == a:
		case inB && inA:
			lines = append(lines, fmt.Sprintf("%s: %s → %s", k, shown(k, b), shown(k, a)))
		case inA:
			lines = append(lines, fmt.Sprintf("%s: + %s", k, shown(k, a)))
		default:
			lines = append(lines, fmt.Sprintf("%s: - %s", k, shown(k, b)))
		}
	}
	return strings.Join(lines, "\n")
}

// shown hides values that may be secrets.
func shown(path, v string) string {
	if strings.Contains(path, "stdio.env.") || strings.Contains(path, "http.headers.") {
		if strings.HasPrefix(v, `"${env:`) && !strings.Contains(strings.TrimSuffix(strings.TrimPrefix(v, `"${env:`), `}"`), "$") {
			return v
		}
		return "(value hidden)"
	}
	return v
}

// flatten maps each leaf path of a JSON document to its JSON text.
func flatten(doc json.RawMessage) map[string]string {
	out := map[string]string{}
	if doc == nil {
		return out
	}
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		out[""] = string(doc)
		return out
	}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", prefix, i), e)
			}
		default:
			b, _ := json.Marshal(x)
			out[prefix] = string(b)
		}
	}
	walk("", v)
	return out
}
