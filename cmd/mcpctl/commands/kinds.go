package commands

import (
	"context"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// kind is a resource kind as people type it on the command line.
type kind struct {
	name     string // canonical, plural: what `get` lists
	singular string // for messages: `backend "github" deleted`
	aliases  []string
	// config kinds are sections of the declarative document, so -o yaml
	// prints something `apply -f` accepts.
	config bool
}

var kinds = []kind{
	{name: "backends", singular: "backend", aliases: []string{"backend", "be"}, config: true},
	{name: "roles", singular: "role", aliases: []string{"role"}, config: true},
	{name: "bindings", singular: "binding", aliases: []string{"binding", "rolebindings", "rolebinding"}, config: true},
	{name: "principals", singular: "principal", aliases: []string{"principal", "users", "user"}, config: true},
	{name: "keys", singular: "key", aliases: []string{"key", "apikeys", "apikey", "api-keys", "api-key"}},
	{name: "nodes", singular: "node", aliases: []string{"node", "edges", "edge"}},
	{name: "tokens", singular: "join token", aliases: []string{"token", "join-tokens", "join-token", "jointokens"}},
}

// policyKind is `get policy`: the whole config as one document.
var policyKind = kind{name: "policy", singular: "policy", aliases: []string{"all", "document"}, config: true}

func lookupKind(s string, extra ...kind) (kind, bool) {
	s = strings.ToLower(s)
	for _, k := range append(slices.Clone(kinds), extra...) {
		if s == k.name || slices.Contains(k.aliases, s) {
			return k, true
		}
	}
	return kind{}, false
}

func kindNames(ks []kind) string {
	names := make([]string, 0, len(ks))
	for _, k := range ks {
		names = append(names, k.name)
	}
	return strings.Join(names, "|")
}

func parseKind(c *cobra.Command, s string, allowed []kind) (kind, error) {
	k, ok := lookupKind(s, policyKind)
	if !ok || !slices.ContainsFunc(allowed, func(a kind) bool { return a.name == k.name }) {
		return kind{}, usagef("unknown kind %q for %q (want %s)", s, c.CommandPath(), kindNames(allowed))
	}
	return k, nil
}

// kindCompletion completes the KIND argument, then nothing.
func kindCompletion(allowed []kind) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names := make([]string, 0, len(allowed))
		for _, k := range allowed {
			names = append(names, k.name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// changeKindWord is how a diff line names a resource kind.
func changeKindWord(k mcpgwv1.ResourceKind) string {
	switch k {
	case mcpgwv1.ResourceKind_RESOURCE_KIND_BACKEND:
		return "backend"
	case mcpgwv1.ResourceKind_RESOURCE_KIND_ROLE:
		return "role"
	case mcpgwv1.ResourceKind_RESOURCE_KIND_BINDING:
		return "binding"
	case mcpgwv1.ResourceKind_RESOURCE_KIND_PRINCIPAL:
		return "principal"
	case mcpgwv1.ResourceKind_RESOURCE_KIND_API_KEY:
		return "key"
	case mcpgwv1.ResourceKind_RESOURCE_KIND_JOIN_TOKEN:
		return "join token"
	case mcpgwv1.ResourceKind_RESOURCE_KIND_NODE:
		return "node"
	}
	return "resource"
}

// pageFetch fetches one page given a page token and returns the items and
// the next token.
type pageFetch[T any] func(ctx context.Context, token string) ([]T, string, error)

// listAll follows next_page_token to the end. Each page is its own call,
// bounded by the request timeout.
func listAll[T any](ctx context.Context, cl *client, fetch pageFetch[T]) ([]T, error) {
	var all []T
	token := ""
	for {
		cctx, cancel := cl.call(ctx)
		items, next, err := fetch(cctx, token)
		cancel()
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if next == "" {
			return all, nil
		}
		token = next
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func labelsText(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}
