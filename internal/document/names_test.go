package document

import (
	"regexp"
	"strings"
	"testing"
)

// The name checks are loops so that no process compiles their patterns at
// start; they must accept exactly what the patterns do.
func TestNameChecksMatchTheirPatterns(t *testing.T) {
	checks := []struct {
		pattern string
		check   func(string) bool
	}{
		{BackendNameSyntax, ValidBackendName},
		{PrefixSyntax, ValidPrefix},
		{"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", validHeaderName},
	}
	var inputs []string
	for c := 0; c < 256; c++ {
		inputs = append(inputs, string(rune(c)), "a"+string(rune(c)), string(rune(c))+"a")
	}
	for _, n := range []int{0, 1, 31, 32, 33, 64} {
		inputs = append(inputs, strings.Repeat("a", n), strings.Repeat("Z", n), "x"+strings.Repeat("-", n), strings.Repeat("_", n)+"1")
	}
	inputs = append(inputs, "github", "my-backend_2", "Upper", "-lead", "_lead", "é", "a b", "a\x00", "X-Api-Key", "a:b")
	for _, c := range checks {
		re := regexp.MustCompile(c.pattern)
		for _, in := range inputs {
			if got, want := c.check(in), re.MatchString(in); got != want {
				t.Errorf("%s: %q: check says %v, pattern %v", c.pattern, in, got, want)
			}
		}
	}
}
