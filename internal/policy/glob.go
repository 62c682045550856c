package policy

import "unicode/utf8"

// Globs are deliberately tiny: '*' matches any run of characters (including
// '/', so "file:///docs/*" covers a whole tree) and '?' matches exactly one
// character. There are no character classes or escapes: item names never
// contain '*' or '?' in practice, and a smaller language is easier to audit.

// globKind says how a pattern is indexed: most patterns in real policies are
// exact names, "*", "prefix*" or "*suffix", which a decision answers with map
// lookups instead of running the matcher.
type globKind uint8

const (
	globExact  globKind = iota // no wildcard
	globAll                    // "*" (or "**"...)
	globPrefix                 // "abc*"
	globSuffix                 // "*abc"
	globOther                  // anything else: run matchGlob
)

// classify returns how pattern is indexed and its literal part for exact,
// prefix and suffix patterns.
func classify(pattern string) (globKind, string) {
	stars, quests := 0, 0
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '*':
			stars++
		case '?':
			quests++
		}
	}
	switch {
	case stars == 0 && quests == 0:
		return globExact, pattern
	case quests == 0 && stars == len(pattern):
		return globAll, ""
	case quests == 0 && stars == 1 && pattern[len(pattern)-1] == '*':
		return globPrefix, pattern[:len(pattern)-1]
	case quests == 0 && stars == 1 && pattern[0] == '*':
		return globSuffix, pattern[1:]
	}
	return globOther, pattern
}

// matchGlob reports whether name matches pattern. It is the classic
// backtracking matcher that remembers only the last '*', which is linear for
// patterns with one star and O(len(pattern)*len(name)) in the worst case; it
// never allocates.
func matchGlob(pattern, name string) bool {
	p, n := 0, 0
	starP, starN := -1, 0
	for n < len(name) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starN = p, n
				p++
				continue
			case '?':
				_, size := utf8.DecodeRuneInString(name[n:])
				p++
				n += size
				continue
			default:
				if c == name[n] {
					p++
					n++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last star swallow one more character and retry.
		_, size := utf8.DecodeRuneInString(name[starN:])
		starN += size
		p, n = starP+1, starN
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// MatchGlob reports whether name matches the policy glob pattern. It is
// exported so tools (mcpctl check, catalogs) use exactly the policy's semantics.
func MatchGlob(pattern, name string) bool { return matchGlob(pattern, name) }
