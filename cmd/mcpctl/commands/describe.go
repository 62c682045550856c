package commands

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

func newDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show one resource in detail (KIND: " + kindNames(kinds) + ")",
		Example: `  mcpctl describe role developer
  mcpctl describe node edge-eu-1        # a node by name, or by id`,
		Args:              exactArgs("KIND", "NAME"),
		ValidArgsFunction: kindCompletion(kinds),
		RunE: func(c *cobra.Command, args []string) error {
			k, err := parseKind(c, args[0], kinds)
			if err != nil {
				return err
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			defer cl.Close()
			return g.describe(c.Context(), cl, c.OutOrStdout(), k, args[1])
		},
	}
}

// fields prints "Label:  value" lines aligned like kubectl describe.
type fields struct {
	w      io.Writer
	indent string
}

func (f fields) add(label string, value any) {
	v := fmt.Sprint(value)
	if v == "" {
		v = "-"
	}
	fmt.Fprintf(f.w, "%s%-16s%s\n", f.indent, label+":", v)
}

func (g *globals) describe(ctx context.Context, cl *client, w io.Writer, k kind, name string) error {
	cctx, cancel := cl.call(ctx)
	defer cancel()
	f := fields{w: w}
	what := fmt.Sprintf("describing %s %q", k.singular, name)
	switch k.name {
	case "backends":
		r, err := cl.GetBackend(cctx, &mcpgwv1.GetBackendRequest{Name: name})
		if err != nil {
			return cl.rpcError(what, err)
		}
		b := r.GetBackend()
		f.add("Name", b.GetName())
		prefix := b.GetName() + " (default)"
		if b.Prefix != nil {
			prefix = b.GetPrefix()
			if prefix == "" {
				prefix = "(none: names unprefixed)"
			}
		}
		f.add("Prefix", prefix)
		switch t := b.GetTransport().(type) {
		case *mcpgwv1.Backend_Stdio:
			f.add("Transport", "stdio")
			f.add("Command", strings.Join(t.Stdio.GetCommand(), " "))
			f.add("Dir", t.Stdio.GetDir())
			f.add("Env", strings.Join(sortedKeys(t.Stdio.GetEnv()), ", ")+valuesHidden(len(t.Stdio.GetEnv())))
		case *mcpgwv1.Backend_Http:
			f.add("Transport", "http")
			f.add("URL", t.Http.GetUrl())
			f.add("Headers", strings.Join(sortedKeys(t.Http.GetHeaders()), ", ")+valuesHidden(len(t.Http.GetHeaders())))
		}
		timeout := "60s (default)"
		if b.GetTimeout() != nil {
			timeout = b.GetTimeout().AsDuration().String()
		}
		f.add("Timeout", timeout)
		sessions := b.GetSessions()
		if sessions == "" {
			sessions = "shared (default)"
		}
		f.add("Sessions", sessions)
		f.add("Revision", b.GetRevision())
	case "roles":
		r, err := cl.GetRole(cctx, &mcpgwv1.GetRoleRequest{Name: name})
		if err != nil {
			return cl.rpcError(what, err)
		}
		role := r.GetRole()
		f.add("Name", role.GetName())
		f.add("Description", role.GetDescription())
		f.add("Revision", role.GetRevision())
		fmt.Fprintln(w, "Rules:")
		for i, rule := range role.GetRules() {
			fmt.Fprintf(w, "  %s: %s\n", ruleID(role.GetName(), i, rule), ruleText(rule))
		}
	case "bindings":
		r, err := cl.GetBinding(cctx, &mcpgwv1.GetBindingRequest{Role: name})
		if err != nil {
			return cl.rpcError(what, err)
		}
		b := r.GetBinding()
		f.add("Role", b.GetRole())
		f.add("Revision", b.GetRevision())
		fmt.Fprintln(w, "Subjects:")
		for _, s := range b.GetSubjects() {
			fmt.Fprintf(w, "  %s\n", s)
		}
	case "principals":
		r, err := cl.GetPrincipal(cctx, &mcpgwv1.GetPrincipalRequest{Name: name})
		if err != nil {
			return cl.rpcError(what, err)
		}
		p := r.GetPrincipal()
		f.add("Name", p.GetName())
		f.add("Groups", strings.Join(p.GetGroups(), ", "))
		f.add("Revision", p.GetRevision())
		keys, err := listAll(ctx, cl, func(ctx context.Context, tok string) ([]*mcpgwv1.ApiKey, string, error) {
			r, err := cl.ListApiKeys(ctx, &mcpgwv1.ListApiKeysRequest{Principal: name, PageToken: tok})
			return r.GetApiKeys(), r.GetNextPageToken(), err
		})
		if err != nil {
			return cl.rpcError(what, err)
		}
		f.add("Active keys", len(keys))
		for _, k := range keys {
			fmt.Fprintf(w, "  %s  expires %s  %s\n", k.GetId(), g.untilText(k.GetExpireTime()), k.GetDescription())
		}
	case "keys":
		r, err := cl.GetApiKey(cctx, &mcpgwv1.GetApiKeyRequest{Id: name})
		if err != nil {
			return cl.rpcError(what, err)
		}
		k := r.GetApiKey()
		f.add("ID", k.GetId())
		f.add("Principal", k.GetPrincipal())
		f.add("Status", keyStatus(k))
		f.add("Description", k.GetDescription())
		f.add("Created", timeText(k.GetCreateTime()))
		f.add("Expires", expiryText(k.GetExpireTime().AsTime(), k.GetExpireTime() != nil))
		f.add("Revoked", timeText(k.GetRevokeTime()))
	case "tokens":
		return g.describeToken(ctx, cl, f, name)
	case "nodes":
		id, err := resolveNode(ctx, cl, name)
		if err != nil {
			return err
		}
		r, err := cl.GetNode(cctx, &mcpgwv1.GetNodeRequest{NodeId: id})
		if err != nil {
			return cl.rpcError(what, err)
		}
		g.describeNode(f, r.GetNode())
	default:
		return usagef("cannot describe %s", k.name)
	}
	return nil
}

func valuesHidden(n int) string {
	if n == 0 {
		return ""
	}
	return " (values hidden; see get -o yaml)"
}

func ruleText(r *mcpgwv1.Rule) string {
	parts := []string{r.GetEffect()}
	add := func(label string, vs []string) {
		if len(vs) > 0 {
			parts = append(parts, label+"="+strings.Join(vs, ","))
		}
	}
	add("methods", r.GetMethods())
	add("backends", r.GetBackends())
	add("tools", r.GetTools())
	add("prompts", r.GetPrompts())
	add("resources", r.GetResources())
	if len(parts) == 1 {
		parts = append(parts, "everything")
	}
	return strings.Join(parts, " ")
}

func (g *globals) describeToken(ctx context.Context, cl *client, f fields, id string) error {
	items, err := listAll(ctx, cl, func(ctx context.Context, tok string) ([]*mcpgwv1.JoinToken, string, error) {
		r, err := cl.ListJoinTokens(ctx, &mcpgwv1.ListJoinTokensRequest{IncludeInactive: true, PageToken: tok})
		return r.GetJoinTokens(), r.GetNextPageToken(), err
	})
	if err != nil {
		return cl.rpcError(fmt.Sprintf("describing join token %q", id), err)
	}
	for _, t := range items {
		if t.GetId() != id {
			continue
		}
		f.add("ID", t.GetId())
		f.add("Status", tokenStatus(t))
		group := t.GetNodeGroup()
		if group == "" {
			group = "default"
		}
		f.add("Node group", group)
		f.add("Labels", labelsText(t.GetLabels()))
		f.add("Description", t.GetDescription())
		f.add("Created", timeText(t.GetCreateTime()))
		f.add("Expires", timeText(t.GetExpireTime()))
		f.add("Used", timeText(t.GetUseTime()))
		f.add("Used by node", t.GetUsedByNodeId())
		f.add("Revoked", timeText(t.GetRevokeTime()))
		return nil
	}
	return fmt.Errorf("describing join token %q: not found", id)
}

func (g *globals) describeNode(f fields, n *mcpgwv1.Node) {
	f.add("ID", n.GetId())
	f.add("Name", n.GetName())
	f.add("Status", nodeState(n))
	f.add("Node group", n.GetNodeGroup())
	f.add("Labels", labelsText(n.GetLabels()))
	f.add("Version", n.GetVersion())
	f.add("Replica", n.GetConnectedReplica())
	f.add("Enrolled", timeText(n.GetEnrollTime()))
	f.add("Cert expires", timeText(n.GetCertificateExpireTime()))
	f.add("Last seen", timeText(n.GetLastSeenTime()))
	f.add("Revision", revisionText(n.GetAppliedRevision(), 0))
	f.add("Hash", n.GetAppliedHash())
	if r := n.GetLastNack(); r != nil {
		f.add("Last NACK", nackText(r))
		for _, re := range r.GetRejected() {
			fmt.Fprintf(f.w, "  %s %q: %s\n", changeKindWord(re.GetKind()), re.GetName(), oneLine(re.GetError()))
		}
	} else {
		f.add("Last NACK", "")
	}
	if n.GetRevokeTime() != nil {
		f.add("Revoked", timeText(n.GetRevokeTime()))
	}
	st := n.GetStatus()
	if st == nil {
		f.add("Status report", "none yet")
		return
	}
	f.add("Reported", timeText(st.GetReportTime()))
	if s := st.GetAuditSpool(); s != nil {
		oldest := "none"
		if at, ok := oldestUnacked(st); ok {
			oldest = "for " + g.age(at)
		}
		f.add("Audit spool", fmt.Sprintf("%s in %d batches (limit %s, oldest unacked %s, epoch %d)",
			bytesText(s.GetDepthBytes()), s.GetDepthBatches(), bytesText(s.GetLimitBytes()),
			oldest, s.GetEpoch()))
	}
	if c := st.GetCounters(); c != nil {
		f.add("Counters", fmt.Sprintf("requests=%d denied=%d errors=%d audit_dropped=%d audit_refused=%d sessions=%d applied=%d rejected=%d",
			c.GetRequests(), c.GetDenied(), c.GetErrors(), c.GetAuditDropped(), c.GetAuditRefused(),
			c.GetActiveSessions(), c.GetConfigApplied(), c.GetConfigRejected()))
	}
	fmt.Fprintln(f.w, "Backends:")
	for _, b := range st.GetBackends() {
		state := strings.ToLower(strings.TrimPrefix(b.GetState().String(), "BACKEND_STATE_"))
		line := fmt.Sprintf("  %s: %s", b.GetName(), state)
		if b.GetError() != "" {
			line += ": " + oneLine(b.GetError())
		}
		fmt.Fprintln(f.w, line)
	}
}
