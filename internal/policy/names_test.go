package policy

import (
	"regexp"
	"strings"
	"testing"
)

// The name checks are loops so that no process compiles their patterns at
// start; they must accept exactly what the patterns (and lengths) do.
func TestNameSyntaxMatchesPatterns(t *testing.T) {
	checks := []struct {
		n        *nameSyntax
		pattern  string
		min, max int
	}{
		{principalNameSyntax, `^[A-Za-z0-9][A-Za-z0-9._@+-]*$`, 1, 128},
		{roleNameSyntax, `^[A-Za-z0-9][A-Za-z0-9._-]*$`, 1, 64},
		{ruleIDSyntax, `^[A-Za-z0-9][A-Za-z0-9._/:-]*$`, 1, 128},
		{itemGlobSyntax, `^[A-Za-z0-9_./*?-]*$`, 1, 256},
		{backendGlobSyntax, `^[a-z0-9_*?-]*$`, 1, 64},
		{methodGlobSyntax, `^[A-Za-z0-9_/*?]*$`, 1, 128},
	}
	inputs := []string{"", "alice@example.com", "ci-bot+x", "tools/call", "github__*", "a:b", "é", "a\x80"}
	for c := 0; c < 256; c++ {
		inputs = append(inputs, string(rune(c)), "a"+string(rune(c)), string([]byte{byte(c)}), "a"+string([]byte{byte(c)}))
	}
	for _, n := range []int{63, 64, 65, 127, 128, 129, 255, 256, 257} {
		inputs = append(inputs, strings.Repeat("a", n))
	}
	for _, c := range checks {
		re := regexp.MustCompile(c.pattern)
		for _, in := range inputs {
			want := len(in) >= c.min && len(in) <= c.max && re.MatchString(in)
			if got := c.n.MatchString(in); got != want {
				t.Errorf("%s {%d,%d}: %q: check says %v, pattern %v", c.pattern, c.min, c.max, in, got, want)
			}
		}
	}
}
