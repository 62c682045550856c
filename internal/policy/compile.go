package policy

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Name syntax. Principal and group names allow '@', '.' and '+' so e-mail
// addresses and directory names work unchanged; ':' is excluded because it
// separates a subject's kind from its name. Each is shown as the pattern it
// checks.
var (
	principalNameSyntax = name(alnum, alnum+"._@+-", 1, 128) // ^[A-Za-z0-9][A-Za-z0-9._@+-]*$
	roleNameSyntax      = name(alnum, alnum+"._-", 1, 64)    // ^[A-Za-z0-9][A-Za-z0-9._-]*$
	ruleIDSyntax        = name(alnum, alnum+"._/:-", 1, 128) // ^[A-Za-z0-9][A-Za-z0-9._/:-]*$
	// Exposed tool and prompt names satisfy ^[a-zA-Z0-9_-]{1,64}$ (DESIGN
	// §4.2); '.' and '/' are allowed too because the MCP spec allows them in
	// tool names and a backend exposed unprefixed may use them.
	itemGlobSyntax    = name("", alnum+"_./*?-", 1, 256)                            // ^[A-Za-z0-9_./*?-]*$
	backendGlobSyntax = name("", "abcdefghijklmnopqrstuvwxyz0123456789_*?-", 1, 64) // ^[a-z0-9_*?-]*$
	methodGlobSyntax  = name("", alnum+"_/*?", 1, 128)                              // ^[A-Za-z0-9_/*?]*$
)

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// nameSyntax is an ASCII name: a length range, the bytes allowed first (any
// of rest if first is empty) and after. A loop rather than a regexp: these
// six patterns, compiled in init, were 0.7 MB of heap with counted
// repetitions ({0,127}) and still 17 KB without, in every process linking
// this package.
type nameSyntax struct {
	first, rest [128]bool
	min, max    int
}

func name(first, rest string, minLen, maxLen int) *nameSyntax {
	n := &nameSyntax{min: minLen, max: maxLen}
	if first == "" {
		first = rest
	}
	for i := 0; i < len(first); i++ {
		n.first[first[i]] = true
	}
	for i := 0; i < len(rest); i++ {
		n.rest[rest[i]] = true
	}
	return n
}

// MatchString reports whether s has an allowed length and bytes.
func (n *nameSyntax) MatchString(s string) bool {
	if len(s) < n.min || len(s) > n.max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 128 || (i == 0 && !n.first[c]) || (i > 0 && !n.rest[c]) {
			return false
		}
	}
	return true
}

// Policy is a compiled, immutable policy. It is safe for concurrent use and
// never changes after Compile; a new revision is a new Policy. All methods
// accept a nil receiver, which denies everything.
type Policy struct {
	revision   int64
	roles      []*crole
	principals map[string]*principalEntry
	keys       map[[32]byte]keyEntry
}

type crole struct {
	name  string
	rules []*crule
}

// crule is a compiled rule. Everything a decision needs is precomputed,
// including the reason text, so deciding never formats or allocates.
type crule struct {
	id     string
	role   string
	deny   bool
	order  int // position in the spec; the first matching rule is reported
	reason string
	src    Rule

	anyMethod   bool
	methodMask  uint64   // bits of knownMethods this rule covers
	methodGlobs []string // the rule's patterns, for methods not in knownMethods

	anyBackend   bool
	exactBackend bool // every backend pattern is a literal name
	backends     []string

	hasItems bool
	items    [numKinds][]string
}

type principalEntry struct {
	subjects []string
	roles    []boundRole
	rs       *ruleSet
}

// boundRole is a role bound to a principal and the subjects that bind it, for
// Explain.
type boundRole struct {
	role *crole
	via  []string
}

type keyEntry struct {
	principal string
	expiresAt time.Time
}

// Compile validates spec and builds its immutable, indexed form. It reports
// every problem at once as a *CompileError. revision is carried into every
// Decision (and from there into audit events).
func Compile(spec Spec, revision int64) (*Policy, error) {
	var errs errorList
	p := &Policy{
		revision:   revision,
		principals: make(map[string]*principalEntry),
		keys:       make(map[[32]byte]keyEntry),
	}

	// Principals.
	known := make(map[string]bool, len(spec.Principals))
	principalAt := make(map[string]int, len(spec.Principals))
	keyAt := make(map[[32]byte]string)
	for i, pr := range spec.Principals {
		path := fmt.Sprintf("principals[%d]", i)
		if pr.Name != "" {
			path += " " + strconv.Quote(pr.Name)
		}
		switch {
		case pr.Name == "":
			errs.add(path, "name is required")
		case !principalNameSyntax.MatchString(pr.Name):
			errs.add(path, "bad name %q: use letters, digits and . _ @ + - (at most 128, starting with a letter or digit)", pr.Name)
		}
		if j, dup := principalAt[pr.Name]; dup && pr.Name != "" {
			errs.add(path, "duplicate principal %q (also principals[%d])", pr.Name, j)
		} else {
			principalAt[pr.Name] = i
		}
		for g, group := range pr.Groups {
			if !principalNameSyntax.MatchString(group) {
				errs.add(fmt.Sprintf("%s: groups[%d]", path, g), "bad group name %q: use letters, digits and . _ @ + -", group)
			}
		}
		if pr.APIKeySHA256 != "" {
			sum, err := parseKeyHash(pr.APIKeySHA256)
			if err != nil {
				errs.add(path+": api_key_sha256", "%v", err)
			} else if other, dup := keyAt[sum]; dup {
				errs.add(path+": api_key_sha256", "key hash already used by %s", other)
			} else {
				keyAt[sum] = path
				p.keys[sum] = keyEntry{principal: pr.Name}
			}
		}
		known[pr.Name] = true
	}
	for i, k := range spec.Keys {
		path := fmt.Sprintf("keys[%d]", i)
		if k.Principal == "" {
			errs.add(path, "principal is required")
		} else if !principalNameSyntax.MatchString(k.Principal) {
			errs.add(path, "bad principal name %q", k.Principal)
		}
		sum, err := parseKeyHash(k.SHA256)
		if err != nil {
			errs.add(path+": sha256", "%v", err)
			continue
		}
		if other, dup := keyAt[sum]; dup {
			errs.add(path+": sha256", "key hash already used by %s", other)
			continue
		}
		keyAt[sum] = path
		p.keys[sum] = keyEntry{principal: k.Principal, expiresAt: k.ExpiresAt}
	}

	// Roles and rules.
	roleIdx := make(map[string]int, len(spec.Roles))
	ruleIDAt := make(map[string]string)
	order := 0
	for i, r := range spec.Roles {
		path := fmt.Sprintf("roles[%d]", i)
		if r.Name != "" {
			path += " " + strconv.Quote(r.Name)
		}
		switch {
		case r.Name == "":
			errs.add(path, "name is required")
		case !roleNameSyntax.MatchString(r.Name):
			errs.add(path, "bad name %q: use letters, digits and . _ - (at most 64, starting with a letter or digit)", r.Name)
		}
		if j, dup := roleIdx[r.Name]; dup && r.Name != "" {
			errs.add(path, "duplicate role %q (also roles[%d])", r.Name, j)
		} else {
			roleIdx[r.Name] = i
		}
		cr := &crole{name: r.Name}
		p.roles = append(p.roles, cr)
		for j, rule := range r.Rules {
			rpath := fmt.Sprintf("%s: rules[%d]", path, j)
			c := compileRule(&errs, rpath, r.Name, j, rule)
			c.order = order
			order++
			if other, dup := ruleIDAt[c.id]; dup {
				errs.add(rpath, "duplicate rule id %q (also %s)", c.id, other)
			} else {
				ruleIDAt[c.id] = rpath
			}
			cr.rules = append(cr.rules, c)
		}
	}

	// Bindings: subject -> roles it grants, in spec role order.
	bySubject := make(map[string][]int)
	var users []string
	for i, b := range spec.Bindings {
		path := fmt.Sprintf("bindings[%d]", i)
		ri, roleOK := roleIdx[b.Role]
		switch {
		case b.Role == "":
			errs.add(path, "role is required")
		case !roleOK:
			errs.add(path, "unknown role %q", b.Role)
		}
		if len(b.Subjects) == 0 {
			errs.add(path, "subjects is empty: bind at least one \"user:NAME\" or \"group:NAME\"")
		}
		for j, s := range b.Subjects {
			kind, name, found := strings.Cut(s, ":")
			if !found || (kind != "user" && kind != "group") || !principalNameSyntax.MatchString(name) {
				errs.add(fmt.Sprintf("%s: subjects[%d]", path, j), "bad subject %q: must be \"user:NAME\" or \"group:NAME\"", s)
				continue
			}
			if kind == "user" && !known[name] {
				// Fleet mode: principals made by `mcpctl keys create`
				// need not be listed; their only subject is user:NAME.
				users = append(users, name)
			}
			if roleOK {
				bySubject[s] = append(bySubject[s], ri)
			}
		}
	}

	if len(errs) > 0 {
		return nil, &CompileError{Errors: errs}
	}

	// Every principal that can have a role gets its rule set now, so Decide
	// never computes or caches anything: a principal absent from the map is
	// bound to nothing. Principals with the same roles share one rule set.
	shared := make(map[string]*ruleSet)
	addPrincipal := func(name string, groups []string) {
		subjects := []string{"user:" + name}
		for _, g := range groups {
			subjects = append(subjects, "group:"+g)
		}
		via := make(map[int][]string)
		for _, s := range subjects {
			for _, ri := range bySubject[s] {
				if !slices.Contains(via[ri], s) {
					via[ri] = append(via[ri], s)
				}
			}
		}
		e := &principalEntry{subjects: subjects}
		idx := make([]int, 0, len(via))
		for ri := range via {
			idx = append(idx, ri)
		}
		slices.Sort(idx)
		var key strings.Builder
		for _, ri := range idx {
			e.roles = append(e.roles, boundRole{role: p.roles[ri], via: via[ri]})
			key.WriteString(strconv.Itoa(ri))
			key.WriteByte(',')
		}
		if len(idx) > 0 {
			rs, ok := shared[key.String()]
			if !ok {
				var rules []*crule
				for _, ri := range idx {
					rules = append(rules, p.roles[ri].rules...)
				}
				rs = buildRuleSet(rules)
				shared[key.String()] = rs
			}
			e.rs = rs
		}
		p.principals[name] = e
	}
	for _, pr := range spec.Principals {
		addPrincipal(pr.Name, pr.Groups)
	}
	for _, name := range users {
		if _, done := p.principals[name]; !done {
			addPrincipal(name, nil)
		}
	}
	return p, nil
}

// compileRule validates one rule and builds its compiled form.
func compileRule(errs *errorList, path, role string, index int, r Rule) *crule {
	c := &crule{id: r.ID, role: role, src: r}
	if c.id == "" {
		c.id = role + "/" + strconv.Itoa(index)
	} else if !ruleIDSyntax.MatchString(c.id) {
		errs.add(path+".id", "bad rule id %q: use letters, digits and . _ / : - (at most 128)", c.id)
	}
	switch r.Effect {
	case EffectAllow:
		c.reason = fmt.Sprintf("allowed by rule %q of role %q", c.id, role)
	case EffectDeny:
		c.deny = true
		c.reason = fmt.Sprintf("denied by rule %q of role %q", c.id, role)
	case "":
		errs.add(path+".effect", "effect is required: allow or deny")
	default:
		errs.add(path+".effect", "bad effect %q: must be allow or deny", r.Effect)
	}

	c.anyMethod = len(r.Methods) == 0
	for i, m := range r.Methods {
		mpath := fmt.Sprintf("%s.methods[%d]", path, i)
		if !methodGlobSyntax.MatchString(m) {
			errs.add(mpath, "bad method %q: an MCP method name such as tools/call, or a glob such as tools/*", m)
			continue
		}
		if kind, _ := classify(m); kind == globExact {
			id, ok := methodIDs[m]
			switch {
			case !ok:
				errs.add(mpath, "unknown method %q (known: %s)", m, strings.Join(ruleMethods(), ", "))
			case IsHousekeeping(m):
				errs.add(mpath, "%s is protocol housekeeping, open to every principal; list results are filtered by the tools/call, prompts/get and resources/read decisions", m)
			default:
				c.methodMask |= 1 << id
			}
			continue
		}
		matched := false
		for id, known := range knownMethods {
			if !IsHousekeeping(known) && matchGlob(m, known) {
				c.methodMask |= 1 << id
				matched = true
			}
		}
		if !matched {
			errs.add(mpath, "method glob %q matches no method a rule can govern (known: %s)", m, strings.Join(ruleMethods(), ", "))
		}
		c.methodGlobs = append(c.methodGlobs, m)
	}

	c.anyBackend = len(r.Backends) == 0
	c.exactBackend = !c.anyBackend
	for i, b := range r.Backends {
		if !backendGlobSyntax.MatchString(b) {
			errs.add(fmt.Sprintf("%s.backends[%d]", path, i), "bad backend %q: a backend name (a-z 0-9 _ -) or a glob of one", b)
			continue
		}
		if kind, _ := classify(b); kind != globExact {
			c.exactBackend = false
		}
		c.backends = append(c.backends, b)
	}

	check := func(field string, kind ItemKind, pats []string, ok func(string) bool, hint string) {
		for i, g := range pats {
			if !ok(g) {
				errs.add(fmt.Sprintf("%s.%s[%d]", path, field, i), "bad glob %q: %s", g, hint)
				continue
			}
			c.items[kind] = append(c.items[kind], g)
		}
		if len(pats) > 0 {
			c.hasItems = true
		}
	}
	check("tools", KindTool, r.Tools, itemGlobSyntax.MatchString, "use letters, digits, _ - . / and the wildcards * and ?")
	check("prompts", KindPrompt, r.Prompts, itemGlobSyntax.MatchString, "use letters, digits, _ - . / and the wildcards * and ?")
	check("resources", KindResource, r.Resources, validURIGlob, "a URI or URI glob without spaces or control characters")
	return c
}

// ruleMethods lists the methods a rule may name, for error messages.
func ruleMethods() []string {
	var out []string
	for _, m := range knownMethods {
		if !IsHousekeeping(m) {
			out = append(out, m)
		}
	}
	return out
}

func validURIGlob(s string) bool {
	if s == "" || len(s) > 2048 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// parseKeyHash decodes the hex SHA-256 of a whole API key string.
func parseKeyHash(s string) ([32]byte, error) {
	var sum [32]byte
	if strings.HasPrefix(s, keyPrefix) {
		// Pasting the key itself is an easy mistake; say so without echoing it.
		return sum, fmt.Errorf("this is an API key, not its hash: store the hex SHA-256 of the whole key (mcpgw keygen prints it)")
	}
	if len(s) != 64 {
		return sum, fmt.Errorf("must be 64 lowercase hex digits (the SHA-256 of the whole key), got %d characters", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return sum, fmt.Errorf("must be 64 lowercase hex digits (the SHA-256 of the whole key), found %q at %d", c, i)
		}
	}
	if _, err := hex.Decode(sum[:], []byte(s)); err != nil {
		return sum, fmt.Errorf("decoding key hash: %w", err)
	}
	return sum, nil
}

// ValidPrincipalName reports whether name is acceptable as a principal or
// group name, so other packages (the document's auth.anonymous.principal,
// `mcpctl keys create`) apply the same rule as Compile.
func ValidPrincipalName(name string) bool { return principalNameSyntax.MatchString(name) }
