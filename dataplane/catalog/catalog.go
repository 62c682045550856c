// Package catalog merges the tools, prompts, resources and resource
// templates of every backend into the one catalog an edge serves: it names
// items (`<prefix>__<name>`, always valid for `^[a-zA-Z0-9_-]{1,64}$`),
// reports collisions, routes exposed names and resource URIs back to their
// backend, and pages lists with gateway-owned opaque cursors.
//
// A Catalog is immutable; the edge builds a new one whenever a backend's
// lists change and swaps it in with the rest of its live state.
package catalog

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Kind is one of the four listable item kinds.
type Kind int

// The item kinds, in the order lists are served.
const (
	Tools Kind = iota
	Prompts
	Resources
	Templates
	numKinds
)

var kindInfo = [numKinds]struct {
	listMethod, useMethod, field, changed string
}{
	Tools:     {"tools/list", "tools/call", "tools", "notifications/tools/list_changed"},
	Prompts:   {"prompts/list", "prompts/get", "prompts", "notifications/prompts/list_changed"},
	Resources: {"resources/list", "resources/read", "resources", "notifications/resources/list_changed"},
	Templates: {"resources/templates/list", "resources/read", "resourceTemplates", "notifications/resources/list_changed"},
}

// ListMethod is the MCP method that lists k.
func (k Kind) ListMethod() string { return kindInfo[k].listMethod }

// UseMethod is the method whose permission decides whether an item of k
// is listed (DESIGN §5: a caller never sees what it cannot use).
func (k Kind) UseMethod() string { return kindInfo[k].useMethod }

// ResultField is the member of the list result holding the items.
func (k Kind) ResultField() string { return kindInfo[k].field }

// ChangedNotification is the list_changed notification for k.
func (k Kind) ChangedNotification() string { return kindInfo[k].changed }

// Kinds lists every kind.
func Kinds() []Kind { return []Kind{Tools, Prompts, Resources, Templates} }

// KindOfList returns the kind a list method returns.
func KindOfList(method string) (Kind, bool) {
	for k := range numKinds {
		if kindInfo[k].listMethod == method {
			return k, true
		}
	}
	return 0, false
}

// Lists is what one backend offers, as raw item objects in its own order.
type Lists [numKinds][]json.RawMessage

// Source is one backend's place in the catalog.
type Source struct {
	Backend string
	// Prefix for exposed tool and prompt names; "" exposes them unprefixed.
	Prefix string
	Lists  *Lists // nil while the backend is down
}

// Item is one exposed entry.
type Item struct {
	Kind    Kind
	Backend string
	// Name is the exposed name (tools, prompts), the URI (resources) or the
	// URI template (templates).
	Name string
	// Original is the backend's own name or URI.
	Original string
	// JSON is the item as served: the backend's object with the exposed name.
	JSON json.RawMessage
	tmpl *regexp.Regexp
}

// Catalog is an immutable merged view of all backends.
type Catalog struct {
	items     [numKinds][]*Item
	byName    [2]map[string]*Item      // Tools, Prompts by exposed name
	resources map[string]*Item         // by URI
	pos       [numKinds]map[string]int // exposed name → index in items
	// Conflicts explains every item dropped because another backend already
	// exposes the same name or URI.
	Conflicts []string
	// unlisted are the sources whose lists are not in (starting or down),
	// with their prefixes, so a request for an item they may serve can
	// wait for them instead of being refused as unknown.
	unlisted []Source
}

// Build merges sources in order; on a name collision the earlier source
// keeps the name and the conflict is reported.
func Build(sources []Source) *Catalog {
	c := &Catalog{
		byName:    [2]map[string]*Item{make(map[string]*Item), make(map[string]*Item)},
		resources: make(map[string]*Item),
	}
	templates := make(map[string]*Item)
	for _, s := range sources {
		if s.Lists == nil {
			c.unlisted = append(c.unlisted, Source{Backend: s.Backend, Prefix: s.Prefix})
			continue
		}
		for k := range numKinds {
			for _, raw := range s.Lists[k] {
				it, err := newItem(k, s, raw)
				if err != nil {
					c.Conflicts = append(c.Conflicts, fmt.Sprintf("backend %q: skipping a %s item: %v", s.Backend, k.ResultField(), err))
					continue
				}
				var index map[string]*Item
				switch k {
				case Tools, Prompts:
					index = c.byName[k]
				case Resources:
					index = c.resources
				case Templates:
					index = templates
				}
				if prev, dup := index[it.Name]; dup {
					if prev.Backend != it.Backend {
						c.Conflicts = append(c.Conflicts, fmt.Sprintf("%s %q is exposed by both backend %q and backend %q; keeping %q's",
							strings.TrimSuffix(k.ResultField(), "s"), it.Name, prev.Backend, it.Backend, prev.Backend))
					}
					continue
				}
				index[it.Name] = it
				if c.pos[k] == nil {
					c.pos[k] = make(map[string]int)
				}
				c.pos[k][it.Name] = len(c.items[k])
				c.items[k] = append(c.items[k], it)
			}
		}
	}
	return c
}

func newItem(k Kind, s Source, raw json.RawMessage) (*Item, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	it := &Item{Kind: k, Backend: s.Backend, JSON: raw}
	key := map[Kind]string{Tools: "name", Prompts: "name", Resources: "uri", Templates: "uriTemplate"}[k]
	if err := json.Unmarshal(obj[key], &it.Original); err != nil || it.Original == "" {
		return nil, fmt.Errorf("missing %q", key)
	}
	switch k {
	case Tools, Prompts:
		it.Name = ExposedName(s.Prefix, it.Original)
		if it.Name != it.Original {
			obj["name"], _ = json.Marshal(it.Name)
			b, err := json.Marshal(obj)
			if err != nil {
				return nil, err
			}
			it.JSON = b
		}
	case Resources:
		it.Name = it.Original
	case Templates:
		it.Name = it.Original
		re, err := compileTemplate(it.Original)
		if err != nil {
			return nil, err
		}
		it.tmpl = re
	}
	return it, nil
}

// maxName is the longest name common clients accept.
const maxName = 64

// ExposedName is the name a backend's tool or prompt gets in the catalog:
// "<prefix>__<name>" (or name alone for an empty prefix). A result that is
// too long or has characters outside [a-zA-Z0-9_-] is sanitized and given a
// stable 8-hex-digit hash suffix of the unsanitized name, so it stays unique
// and the same across restarts and edges.
func ExposedName(prefix, name string) string {
	n := name
	if prefix != "" {
		n = prefix + "__" + name
	}
	if len(n) <= maxName && validName(n) {
		return n
	}
	var sb strings.Builder
	for _, r := range n {
		if r < 128 && validByte(byte(r)) {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	s := sb.String()
	sum := sha256.Sum256([]byte(n))
	suffix := "_" + hex.EncodeToString(sum[:4])
	if len(s) > maxName-len(suffix) {
		s = s[:maxName-len(suffix)]
	}
	return s + suffix
}

func validByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !validByte(s[i]) {
			return false
		}
	}
	return true
}

// Lookup finds a tool or prompt by exposed name.
func (c *Catalog) Lookup(k Kind, name string) (*Item, bool) {
	if k != Tools && k != Prompts {
		return nil, false
	}
	it, ok := c.byName[k][name]
	return it, ok
}

// Unlisted returns the backends whose lists are not in the catalog (still
// starting, or down) that could expose an item of kind k called name: for
// tools and prompts a backend whose prefix the name carries, or an
// unprefixed one; for resources any. The result is empty once every
// backend that could serve it has been listed.
func (c *Catalog) Unlisted(k Kind, name string) []string {
	var out []string
	for _, s := range c.unlisted {
		if (k == Tools || k == Prompts) && s.Prefix != "" && !strings.HasPrefix(name, s.Prefix+"__") {
			continue
		}
		out = append(out, s.Backend)
	}
	return out
}

// Resource finds the backend serving uri: a listed resource first, then a
// template spelled exactly so (completion refers to templates by their
// template string), then the first template (in catalog order) that
// matches.
func (c *Catalog) Resource(uri string) (*Item, bool) {
	if it, ok := c.resources[uri]; ok {
		return it, true
	}
	for _, it := range c.items[Templates] {
		if it.Name == uri {
			return it, true
		}
	}
	for _, it := range c.items[Templates] {
		if it.tmpl.MatchString(uri) {
			return it, true
		}
	}
	return nil, false
}

// Items returns the items of kind k in catalog order. The slice is shared
// and must not be modified.
func (c *Catalog) Items(k Kind) []*Item { return c.items[k] }

// Backends returns the names of backends with at least one item of kind k,
// in catalog order.
func (c *Catalog) Backends(k Kind) []string {
	var out []string
	seen := map[string]bool{}
	for _, it := range c.items[k] {
		if !seen[it.Backend] {
			seen[it.Backend] = true
			out = append(out, it.Backend)
		}
	}
	return out
}

// Equal reports whether c and o serve the same items of kind k, so a
// rebuild only announces the lists that really changed.
func (c *Catalog) Equal(o *Catalog, k Kind) bool {
	if o == nil || len(c.items[k]) != len(o.items[k]) {
		return false
	}
	for i, it := range c.items[k] {
		if it.Backend != o.items[k][i].Backend || string(it.JSON) != string(o.items[k][i].JSON) {
			return false
		}
	}
	return true
}

// Page returns up to size items of kind k starting at cursor ("" for the
// first page) that keep says may be shown, and the cursor of the next page
// ("" when done). Cursors are the gateway's own and opaque: they name the
// last item served (and its offset as a fallback), so a page boundary stays
// put when a backend joins or leaves the catalog between two pages.
func (c *Catalog) Page(k Kind, cursor string, size int, keep func(*Item) bool) ([]*Item, string, error) {
	start := 0
	if cursor != "" {
		off, last, err := decodeCursor(k, cursor)
		if err != nil {
			return nil, "", err
		}
		start = off
		if i, ok := c.pos[k][last]; ok {
			start = i + 1
		}
	}
	items := c.items[k]
	var out []*Item
	i := start
	for ; i < len(items) && len(out) < size; i++ {
		if keep == nil || keep(items[i]) {
			out = append(out, items[i])
		}
	}
	next := ""
	if i < len(items) {
		next = encodeCursor(k, i, items[i-1].Name)
	}
	return out, next, nil
}

func encodeCursor(k Kind, offset int, last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("mcpgw2:" + strconv.Itoa(int(k)) + ":" + strconv.Itoa(offset) + ":" + last))
}

func decodeCursor(k Kind, cursor string) (int, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err == nil {
		parts := strings.SplitN(string(b), ":", 4)
		if len(parts) == 4 && parts[0] == "mcpgw2" && parts[1] == strconv.Itoa(int(k)) {
			if n, err := strconv.Atoi(parts[2]); err == nil && n >= 0 {
				return n, parts[3], nil
			}
		}
	}
	return 0, "", fmt.Errorf("invalid cursor %q", cursor)
}

// compileTemplate turns an RFC 6570 URI template into a matcher: simple
// expressions match one path segment, reserved ({+x}) and fragment ({#x})
// expansions match anything, other operators match the rest lazily.
func compileTemplate(t string) (*regexp.Regexp, error) {
	var sb strings.Builder
	sb.WriteString("^")
	for t != "" {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			sb.WriteString(regexp.QuoteMeta(t))
			break
		}
		sb.WriteString(regexp.QuoteMeta(t[:i]))
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unclosed expression in URI template %q", t)
		}
		expr := t[i+1 : i+j]
		switch {
		case expr == "":
			return nil, fmt.Errorf("empty expression in URI template")
		case expr[0] == '+' || expr[0] == '#':
			sb.WriteString(".*")
		case strings.ContainsRune("./;?&", rune(expr[0])):
			sb.WriteString(".*?")
		default:
			sb.WriteString("[^/?#]+")
		}
		t = t[i+j+1:]
	}
	sb.WriteString("$")
	return regexp.Compile(sb.String())
}
