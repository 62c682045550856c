package commands

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// getOptions are the flags of get (and nodes).
type getOptions struct {
	out            *outputFlag
	principal      string // keys: only this principal's
	includeAll     bool   // keys, tokens, nodes: also inactive / revoked
	nodeGroup      string // nodes: only this group
	allowedOutputs []string
}

func newGetCmd(g *globals) *cobra.Command {
	o := &getOptions{}
	allowed := append(append([]kind{}, kinds...), policyKind)
	c := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List resources, or show one (KIND: " + kindNames(allowed) + ")",
		Long: `List resources of one kind, or show one by name, as a table (default), a wide
table, JSON (proto field names) or YAML.

For backends, roles, bindings and principals, -o yaml prints a declarative
document ("backends: [...]") that 'mcpctl apply -f' accepts unchanged, and
'get policy -o yaml' exports the whole configuration that way.`,
		Example: `  mcpctl get backends
  mcpctl get roles developer -o yaml
  mcpctl get keys --principal alice --all
  mcpctl get policy -o yaml > policy.yaml`,
		Args:              rangeArgs(1, 2),
		ValidArgsFunction: kindCompletion(allowed),
		RunE: func(c *cobra.Command, args []string) error {
			k, err := parseKind(c, args[0], allowed)
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			return g.get(c.Context(), c.OutOrStdout(), k, name, o)
		},
	}
	o.addFlags(c)
	return c
}

func (o *getOptions) addFlags(c *cobra.Command) {
	o.out = addOutputFlag(c, "table", "table", "wide", "json", "yaml")
	c.Flags().StringVar(&o.principal, "principal", "", "keys: only the keys of this principal")
	c.Flags().BoolVarP(&o.includeAll, "all", "A", false, "keys and tokens: include revoked, used and expired ones; nodes: include revoked nodes")
	c.Flags().StringVar(&o.nodeGroup, "node-group", "", "nodes: only nodes of this group")
}

func (g *globals) get(ctx context.Context, w io.Writer, k kind, name string, o *getOptions) error {
	if o.principal != "" && k.name != "keys" {
		return usagef("--principal only applies to keys")
	}
	cl, err := g.dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	switch k.name {
	case "backends":
		return g.getBackends(ctx, cl, w, name, o.out.value)
	case "roles":
		return g.getRoles(ctx, cl, w, name, o.out.value)
	case "bindings":
		return g.getBindings(ctx, cl, w, name, o.out.value)
	case "principals":
		return g.getPrincipals(ctx, cl, w, name, o.out.value)
	case "keys":
		return g.getKeys(ctx, cl, w, name, o)
	case "nodes":
		return g.getNodes(ctx, cl, w, name, o)
	case "tokens":
		return g.getTokens(ctx, cl, w, name, o)
	case "policy":
		if name != "" {
			return usagef("get policy takes no NAME")
		}
		return g.getPolicy(ctx, cl, w, o.out.value)
	}
	return usagef("unknown kind %q", k.name)
}

// writeStructured handles -o json and -o yaml for non-document output;
// it reports false for table formats.
func writeStructured(w io.Writer, format string, m proto.Message) (bool, error) {
	switch format {
	case "json":
		return true, writeJSON(w, m)
	case "yaml":
		return true, writeProtoYAML(w, m)
	}
	return false, nil
}

func (g *globals) getBackends(ctx context.Context, cl *client, w io.Writer, name, format string) error {
	var items []*mcpgwv1.Backend
	var rev int64
	if name != "" {
		cctx, cancel := cl.call(ctx)
		defer cancel()
		r, err := cl.GetBackend(cctx, &mcpgwv1.GetBackendRequest{Name: name})
		if err != nil {
			return cl.rpcError(fmt.Sprintf("getting backend %q", name), err)
		}
		items = append(items, r.GetBackend())
	} else {
		var err error
		items, err = listAll(ctx, cl, func(ctx context.Context, tok string) ([]*mcpgwv1.Backend, string, error) {
			r, err := cl.ListBackends(ctx, &mcpgwv1.ListBackendsRequest{PageToken: tok})
			rev = max(rev, r.GetRevision())
			return r.GetBackends(), r.GetNextPageToken(), err
		})
		if err != nil {
			return cl.rpcError("listing backends", err)
		}
	}
	switch format {
	case "yaml":
		return writeDocumentYAML(w, &mcpgwv1.PolicyDocument{Backends: items})
	case "json":
		if name != "" {
			return writeJSON(w, items[0])
		}
		return writeJSON(w, &mcpgwv1.ListBackendsResponse{Backends: items, Revision: rev})
	}
	if g.noneFound(len(items), "backends", "add some with 'mcpctl apply -f FILE'") {
		return nil
	}
	wide := format == "wide"
	headers := []string{"NAME", "TRANSPORT", "TARGET", "PREFIX", "TIMEOUT", "REVISION"}
	if wide {
		headers = append(headers, "SESSIONS", "ENV/HEADERS")
	}
	t := newTable(w, headers...)
	for _, b := range items {
		transport, target, vars := backendTarget(b)
		prefix := b.GetName()
		if b.Prefix != nil {
			prefix = b.GetPrefix()
			if prefix == "" {
				prefix = "(none)"
			}
		}
		timeout := "60s (default)"
		if b.GetTimeout() != nil {
			timeout = b.GetTimeout().AsDuration().String()
		}
		row := []string{b.GetName(), transport, target, prefix, timeout, strconv.FormatInt(b.GetRevision(), 10)}
		if wide {
			sessions := b.GetSessions()
			if sessions == "" {
				sessions = "shared"
			}
			row = append(row, sessions, strings.Join(vars, ","))
		}
		t.row(row...)
	}
	return t.flush()
}

// backendTarget summarizes how a backend is reached. Env and header values
// are left out: they may hold secrets (or references to them), and a
// table is what people paste into tickets.
func backendTarget(b *mcpgwv1.Backend) (transport, target string, vars []string) {
	switch t := b.GetTransport().(type) {
	case *mcpgwv1.Backend_Stdio:
		return "stdio", strings.Join(t.Stdio.GetCommand(), " "), sortedKeys(t.Stdio.GetEnv())
	case *mcpgwv1.Backend_Http:
		return "http", t.Http.GetUrl(), sortedKeys(t.Http.GetHeaders())
	}
	return "", "", nil
}

func (g *globals) getRoles(ctx context.Context, cl *client, w io.Writer, name, format string) error {
	var items []*mcpgwv1.Role
	var rev int64
	if name != "" {
		cctx, cancel := cl.call(ctx)
		defer cancel()
		r, err := cl.GetRole(cctx, &mcpgwv1.GetRoleRequest{Name: name})
		if err != nil {
			return cl.rpcError(fmt.Sprintf("getting role %q", name), err)
		}
		items = append(items, r.GetRole())
	} else {
		var err error
		items, err = listAll(ctx, cl, func(ctx context.Context, tok string) ([]*mcpgwv1.Role, string, error) {
			r, err := cl.ListRoles(ctx, &mcpgwv1.ListRolesRequest{PageToken: tok})
			rev = max(rev, r.GetRevision())
			return r.GetRoles(), r.GetNextPageToken(), err
		})
		if err != nil {
			return cl.rpcError("listing roles", err)
		}
	}
	switch format {
	case "yaml":
		return writeDocumentYAML(w, &mcpgwv1.PolicyDocument{Roles: items})
	case "json":
		if name != "" {
			return writeJSON(w, items[0])
		}
		return writeJSON(w, &mcpgwv1.ListRolesResponse{Roles: items, Revision: rev})
	}
	if g.noneFound(len(items), "roles", "add some with 'mcpctl apply -f FILE'") {
		return nil
	}
	if format == "wide" {
		t := newTable(w, "ROLE", "RULE", "EFFECT", "METHODS", "BACKENDS", "TOOLS", "PROMPTS", "RESOURCES")
		for _, r := range items {
			for i, rule := range r.GetRules() {
				t.row(r.GetName(), ruleID(r.GetName(), i, rule), rule.GetEffect(),
					joinOr(rule.GetMethods(), "*"), joinOr(rule.GetBackends(), "*"),
					strings.Join(rule.GetTools(), ","), strings.Join(rule.GetPrompts(), ","), strings.Join(rule.GetResources(), ","))
			}
		}
		return t.flush()
	}
	t := newTable(w, "NAME", "RULES", "DESCRIPTION", "REVISION")
	for _, r := range items {
		t.row(r.GetName(), strconv.Itoa(len(r.GetRules())), r.GetDescription(), strconv.FormatInt(r.GetRevision(), 10))
	}
	return t.flush()
}

// ruleID is the id a rule is known by: its own, or the "<role>/<index>"
// default internal/policy assigns.
func ruleID(role string, i int, r *mcpgwv1.Rule) string {
	if r.GetId() != "" {
		return r.GetId()
	}
	return fmt.Sprintf("%s/%d", role, i)
}

func (g *globals) getBindings(ctx context.Context, cl *client, w io.Writer, name, format string) error {
	var items []*mcpgwv1.RoleBinding
	var rev int64
	if name != "" {
		cctx, cancel := cl.call(ctx)
		defer cancel()
		r, err := cl.GetBinding(cctx, &mcpgwv1.GetBindingRequest{Role: name})
		if err != nil {
			return cl.rpcError(fmt.Sprintf("getting the binding of role %q", name), err)
		}
		items = append(items, r.GetBinding())
	} else {
		var err error
		items, err = listAll(ctx, cl, func(ctx context.Context, tok string) ([]*mcpgwv1.RoleBinding, string, error) {
			r, err := cl.ListBindings(ctx, &mcpgwv1.ListBindingsRequest{PageToken: tok})
			rev = max(rev, r.GetRevision())
			return r.GetBindings(), r.GetNextPageToken(), err
		})
		if err != nil {
			return cl.rpcError("listing bindings", err)
		}
	}
	switch format {
	case "yaml":
		return writeDocumentYAML(w, &mcpgwv1.PolicyDocument{Bindings: items})
	case "json":
		if name != "" {
			return writeJSON(w, items[0])
		}
		return writeJSON(w, &mcpgwv1.ListBindingsResponse{Bindings: items, Revision: rev})
	}
	if g.noneFound(len(items), "bindings", "add some with 'mcpctl apply -f FILE'") {
		return nil
	}
	t := newTable(w, "ROLE", "SUBJECTS", "REVISION")
	for _, b := range items {
		t.row(b.GetRole(), strings.Join(b.GetSubjects(), ","), strconv.FormatInt(b.GetRevision(), 10))
	}
	return t.flush()
}

func (g *globals) getPrincipals(ctx context.Context, cl *client, w io.Writer, name, format string) error {
	var items []*mcpgwv1.Principal
	var rev int64
	if name != "" {
		cctx, cancel := cl.call(ctx)
		defer cancel()
		r, err := cl.GetPrincipal(cctx, &mcpgwv1.GetPrincipalRequest{Name: name})
		if err != nil {
			return cl.rpcError(fmt.Sprintf("getting principal %q", name), err)
		}
		items = append(items, r.GetPrincipal())
	} else {
		var err error
		items, err = listAll(ctx, cl, func(ctx context.Context, tok string) ([]*mcpgwv1.Principal, string, error) {
			r, err := cl.ListPrincipals(ctx, &mcpgwv1.ListPrincipalsRequest{PageToken: tok})
			rev = max(rev, r.GetRevision())
			return r.GetPrincipals(), r.GetNextPageToken(), err
		})
		if err != nil {
			return cl.rpcError("listing principals", err)
		}
	}
	switch format {
	case "yaml":
		return writeDocumentYAML(w, &mcpgwv1.PolicyDocument{Principals: items})
	case "json":
		if name != "" {
			return writeJSON(w, items[0])
		}
		return writeJSON(w, &mcpgwv1.ListPrincipalsResponse{Principals: items, Revision: rev})
	}
	if g.noneFound(len(items), "principals", "add some with 'mcpctl apply -f FILE' or 'mcpctl keys create'") {
		return nil
	}
	t := newTable(w, "NAME", "GROUPS", "REVISION")
	for _, p := range items {
		t.row(p.GetName(), strings.Join(p.GetGroups(), ","), strconv.FormatInt(p.GetRevision(), 10))
	}
	return t.flush()
}

func (g *globals) getKeys(ctx context.Context, cl *client, w io.Writer, name string, o *getOptions) error {
	var items []*mcpgwv1.ApiKey
	if name != "" {
		cctx, cancel := cl.call(ctx)
		defer cancel()
		r, err := cl.GetApiKey(cctx, &mcpgwv1.GetApiKeyRequest{Id: name})
		if err != nil {
			return cl.rpcError(fmt.Sprintf("getting key %q", name), err)
		}
		items = append(items, r.GetApiKey())
	} else {
		var err error
		items, err = listAll(ctx, cl, func(ctx context.Context, tok string) ([]*mcpgwv1.ApiKey, string, error) {
			r, err := cl.ListApiKeys(ctx, &mcpgwv1.ListApiKeysRequest{Principal: o.principal, IncludeInactive: o.includeAll, PageToken: tok})
			return r.GetApiKeys(), r.GetNextPageToken(), err
		})
		if err != nil {
			return cl.rpcError("listing keys", err)
		}
	}
	var m proto.Message = &mcpgwv1.ListApiKeysResponse{ApiKeys: items}
	if name != "" {
		m = items[0]
	}
	if done, err := writeStructured(w, o.out.value, m); done {
		return err
	}
	if g.noneFound(len(items), "API keys", "create one with 'mcpctl keys create --principal NAME'; --all shows revoked and expired ones") {
		return nil
	}
	headers := []string{"ID", "PRINCIPAL", "STATUS", "AGE", "EXPIRES", "DESCRIPTION"}
	if o.out.value == "wide" {
		headers = append(headers, "CREATED", "EXPIRE TIME", "REVOKED")
	}
	t := newTable(w, headers...)
	for _, k := range items {
		row := []string{k.GetId(), k.GetPrincipal(), keyStatus(k), g.ageText(k.GetCreateTime()), g.untilText(k.GetExpireTime()), k.GetDescription()}
		if o.out.value == "wide" {
			row = append(row, timeText(k.GetCreateTime()), timeText(k.GetExpireTime()), timeText(k.GetRevokeTime()))
		}
		t.row(row...)
	}
	return t.flush()
}

func keyStatus(k *mcpgwv1.ApiKey) string {
	switch {
	case k.GetRevokeTime() != nil:
		return "revoked"
	case k.GetExpireTime() != nil && !k.GetExpireTime().AsTime().After(time.Now()):
		return "expired"
	}
	return "active"
}

func (g *globals) getTokens(ctx context.Context, cl *client, w io.Writer, name string, o *getOptions) error {
	items, err := listAll(ctx, cl, func(ctx context.Context, tok string) ([]*mcpgwv1.JoinToken, string, error) {
		// Looking one up by id must find it whatever its state.
		r, err := cl.ListJoinTokens(ctx, &mcpgwv1.ListJoinTokensRequest{IncludeInactive: o.includeAll || name != "", PageToken: tok})
		return r.GetJoinTokens(), r.GetNextPageToken(), err
	})
	if err != nil {
		return cl.rpcError("listing join tokens", err)
	}
	var m proto.Message = &mcpgwv1.ListJoinTokensResponse{JoinTokens: items}
	if name != "" {
		var found *mcpgwv1.JoinToken
		for _, t := range items {
			if t.GetId() == name {
				found = t
			}
		}
		if found == nil {
			return fmt.Errorf("getting join token %q: not found", name)
		}
		items, m = []*mcpgwv1.JoinToken{found}, found
	}
	if done, err := writeStructured(w, o.out.value, m); done {
		return err
	}
	if g.noneFound(len(items), "join tokens", "create one with 'mcpctl join-token create'; --all shows used, expired and revoked ones") {
		return nil
	}
	headers := []string{"ID", "NODE GROUP", "LABELS", "STATUS", "AGE", "EXPIRES", "USED BY"}
	if o.out.value == "wide" {
		headers = append(headers, "DESCRIPTION", "CREATED", "EXPIRE TIME")
	}
	t := newTable(w, headers...)
	for _, jt := range items {
		group := jt.GetNodeGroup()
		if group == "" {
			group = "default"
		}
		row := []string{jt.GetId(), group, labelsText(jt.GetLabels()), tokenStatus(jt), g.ageText(jt.GetCreateTime()), g.untilText(jt.GetExpireTime()), jt.GetUsedByNodeId()}
		if o.out.value == "wide" {
			row = append(row, jt.GetDescription(), timeText(jt.GetCreateTime()), timeText(jt.GetExpireTime()))
		}
		t.row(row...)
	}
	return t.flush()
}

func tokenStatus(t *mcpgwv1.JoinToken) string {
	switch {
	case t.GetRevokeTime() != nil:
		return "revoked"
	case t.GetUseTime() != nil:
		return "used"
	case t.GetExpireTime() != nil && !t.GetExpireTime().AsTime().After(time.Now()):
		return "expired"
	}
	return "unused"
}

func (g *globals) getPolicy(ctx context.Context, cl *client, w io.Writer, format string) error {
	cctx, cancel := cl.call(ctx)
	defer cancel()
	r, err := cl.GetPolicy(cctx, &mcpgwv1.GetPolicyRequest{})
	if err != nil {
		return cl.rpcError("reading the policy", err)
	}
	switch format {
	case "yaml":
		return writeDocumentYAML(w, r.GetDocument())
	case "json":
		return writeJSON(w, r)
	}
	d := r.GetDocument()
	fmt.Fprintf(w, "revision %d: %s, %s, %s, %s\n", r.GetRevision(),
		plural(len(d.GetBackends()), "backend", "backends"), plural(len(d.GetRoles()), "role", "roles"),
		plural(len(d.GetBindings()), "binding", "bindings"), plural(len(d.GetPrincipals()), "principal", "principals"))
	fmt.Fprintln(w, "(use -o yaml to export it as a document for apply -f)")
	return nil
}

// noneFound tells people on stderr, where it does not disturb scripts
// reading the table, that an empty table is not a failure, and what to do.
func (g *globals) noneFound(n int, what, hint string) bool {
	if n == 0 {
		fmt.Fprintf(g.stderr, "no %s found; %s\n", what, hint)
	}
	return n == 0
}
