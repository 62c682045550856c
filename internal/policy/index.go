package policy

import (
	"slices"
	"strings"
)

// ruleSet indexes the rules of one set of bound roles so that a decision looks
// at the few rules that can match instead of all of them: first by backend
// (exact names in a map, everything else in anyBackend), then by item kind and
// name (exact names in a map, "prefix*" and "*suffix" patterns in maps probed
// once per distinct literal length, "*" in a list, other globs matched one by
// one). Methods are checked per candidate with a bit mask. A rule appears in
// as many buckets as it has patterns; candidates are re-checked, never trusted.
type ruleSet struct {
	rules      []*crule // in spec order, for Explain
	byBackend  map[string]*itemIndex
	anyBackend itemIndex
}

type itemIndex struct {
	noItems []*crule // rules that name no items: they cover every item and itemless requests
	kinds   [numKinds]kindIndex
}

type kindIndex struct {
	all        []*crule
	exact      map[string][]*crule
	prefix     map[string][]*crule
	prefixLens []int
	suffix     map[string][]*crule
	suffixLens []int
	other      []globRule
	// Small buckets are scanned instead of hashed: comparing a handful of
	// short literals costs less than hashing the name once per lookup, and
	// realistic policies have only a few patterns per backend.
	exactList, prefixList, suffixList []literalRules
}

// literalRules is one literal of a small bucket and its rules.
type literalRules struct {
	lit   string
	rules []*crule
}

// smallBucket is the size up to which a bucket is scanned linearly. It is a
// variable only so tests can force either representation.
var smallBucket = 8

// globRule is a pattern the maps cannot index. "*literal*" (the common
// "*exec*" form) is answered with strings.Contains instead of the matcher.
type globRule struct {
	pattern string
	infix   string // set when pattern is "*infix*" with no other wildcard
	rule    *crule
}

func (g *globRule) match(name string) bool {
	if g.infix != "" {
		return strings.Contains(name, g.infix)
	}
	return matchGlob(g.pattern, name)
}

// infixOf returns lit when pattern is "*lit*" and lit has no wildcard.
func infixOf(pattern string) string {
	if len(pattern) < 3 || pattern[0] != '*' || pattern[len(pattern)-1] != '*' {
		return ""
	}
	lit := pattern[1 : len(pattern)-1]
	if strings.ContainsAny(lit, "*?") {
		return ""
	}
	return lit
}

func buildRuleSet(rules []*crule) *ruleSet {
	rs := &ruleSet{rules: rules, byBackend: make(map[string]*itemIndex)}
	for _, r := range rules {
		if r.exactBackend {
			for _, b := range r.backends {
				ix := rs.byBackend[b]
				if ix == nil {
					ix = &itemIndex{}
					rs.byBackend[b] = ix
				}
				ix.add(r)
			}
			continue
		}
		rs.anyBackend.add(r)
	}
	for _, ix := range rs.byBackend {
		ix.finish()
	}
	rs.anyBackend.finish()
	return rs
}

// finish freezes the index: small maps become lists (in spec order of first
// appearance, which does not matter for correctness: the matcher keeps the
// lowest order).
func (ix *itemIndex) finish() {
	for kind := range ix.kinds {
		k := &ix.kinds[kind]
		k.exactList, k.exact = shrink(k.exact)
		k.prefixList, k.prefix = shrink(k.prefix)
		k.suffixList, k.suffix = shrink(k.suffix)
	}
}

func shrink(m map[string][]*crule) ([]literalRules, map[string][]*crule) {
	if len(m) == 0 || len(m) > smallBucket {
		return nil, m
	}
	list := make([]literalRules, 0, len(m))
	for lit, rules := range m {
		list = append(list, literalRules{lit: lit, rules: rules})
	}
	slices.SortFunc(list, func(a, b literalRules) int { return strings.Compare(a.lit, b.lit) })
	return list, nil
}

func (ix *itemIndex) add(r *crule) {
	if !r.hasItems {
		ix.noItems = appendOnce(ix.noItems, r)
		return
	}
	for kind := KindTool; kind < numKinds; kind++ {
		for _, pat := range r.items[kind] {
			ix.kinds[kind].add(pat, r)
		}
	}
}

func (k *kindIndex) add(pattern string, r *crule) {
	kind, lit := classify(pattern)
	switch kind {
	case globExact:
		if k.exact == nil {
			k.exact = make(map[string][]*crule)
		}
		k.exact[lit] = appendOnce(k.exact[lit], r)
	case globAll:
		k.all = appendOnce(k.all, r)
	case globPrefix:
		if k.prefix == nil {
			k.prefix = make(map[string][]*crule)
		}
		k.prefix[lit] = appendOnce(k.prefix[lit], r)
		k.prefixLens = insertLen(k.prefixLens, len(lit))
	case globSuffix:
		if k.suffix == nil {
			k.suffix = make(map[string][]*crule)
		}
		k.suffix[lit] = appendOnce(k.suffix[lit], r)
		k.suffixLens = insertLen(k.suffixLens, len(lit))
	default:
		k.other = append(k.other, globRule{pattern: pattern, infix: infixOf(pattern), rule: r})
	}
}

// appendOnce keeps a bucket free of the same rule twice (a rule listing two
// patterns that land in one bucket); rules arrive in spec order, so checking
// the last element is enough.
func appendOnce(list []*crule, r *crule) []*crule {
	if n := len(list); n > 0 && list[n-1] == r {
		return list
	}
	return append(list, r)
}

func insertLen(lens []int, n int) []int {
	i, found := slices.BinarySearch(lens, n)
	if found {
		return lens
	}
	return slices.Insert(lens, i, n)
}

// matcher accumulates the first matching deny and allow rule (by spec order)
// over the candidate buckets of one request.
type matcher struct {
	methodID int // -1 when the method is not in knownMethods
	method   string
	backend  string
	deny     *crule
	allow    *crule
}

func (m *matcher) consider(r *crule, checkBackend bool) {
	if r.deny {
		if m.deny != nil && m.deny.order <= r.order {
			return
		}
	} else if m.allow != nil && m.allow.order <= r.order {
		return
	}
	if !r.matchMethod(m.methodID, m.method) {
		return
	}
	if checkBackend && !r.matchBackend(m.backend) {
		return
	}
	if r.deny {
		m.deny = r
	} else {
		m.allow = r
	}
}

func (m *matcher) considerAll(list []*crule, checkBackend bool) {
	for _, r := range list {
		m.consider(r, checkBackend)
	}
}

func (r *crule) matchMethod(id int, method string) bool {
	if r.anyMethod {
		return true
	}
	if id >= 0 {
		return r.methodMask&(1<<uint(id)) != 0
	}
	for _, g := range r.methodGlobs {
		if matchGlob(g, method) {
			return true
		}
	}
	return false
}

func (r *crule) matchBackend(backend string) bool {
	if r.anyBackend {
		return true
	}
	for _, b := range r.backends {
		if matchGlob(b, backend) {
			return true
		}
	}
	return false
}

// matchItem reports whether the rule covers the request's item; used by
// Explain, while decisions get the same answer from the index.
func (r *crule) matchItem(kind ItemKind, name string) bool {
	if !r.hasItems {
		return true
	}
	if kind == KindNone || kind >= numKinds {
		return false
	}
	for _, g := range r.items[kind] {
		if matchGlob(g, name) {
			return true
		}
	}
	return false
}

func (ix *itemIndex) collect(m *matcher, kind ItemKind, name string, checkBackend bool) {
	m.considerAll(ix.noItems, checkBackend)
	if kind == KindNone || kind >= numKinds {
		return
	}
	k := &ix.kinds[kind]
	m.considerAll(k.all, checkBackend)
	for i := range k.exactList {
		if k.exactList[i].lit == name {
			m.considerAll(k.exactList[i].rules, checkBackend)
		}
	}
	for i := range k.prefixList {
		if strings.HasPrefix(name, k.prefixList[i].lit) {
			m.considerAll(k.prefixList[i].rules, checkBackend)
		}
	}
	for i := range k.suffixList {
		if strings.HasSuffix(name, k.suffixList[i].lit) {
			m.considerAll(k.suffixList[i].rules, checkBackend)
		}
	}
	if k.exact != nil {
		m.considerAll(k.exact[name], checkBackend)
	}
	if k.prefix != nil {
		for _, n := range k.prefixLens {
			if n > len(name) {
				break
			}
			m.considerAll(k.prefix[name[:n]], checkBackend)
		}
	}
	if k.suffix != nil {
		for _, n := range k.suffixLens {
			if n > len(name) {
				break
			}
			m.considerAll(k.suffix[name[len(name)-n:]], checkBackend)
		}
	}
	for i := range k.other {
		if k.other[i].match(name) {
			m.consider(k.other[i].rule, checkBackend)
		}
	}
}

func (rs *ruleSet) decide(m *matcher, kind ItemKind, name string) {
	if len(rs.byBackend) > 0 {
		if ix := rs.byBackend[m.backend]; ix != nil {
			ix.collect(m, kind, name, false)
		}
	}
	rs.anyBackend.collect(m, kind, name, true)
}
