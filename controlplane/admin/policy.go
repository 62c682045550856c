package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/docproto"
	"github.com/mcpgw/mcpgw/internal/policy"
)

var kindProto = map[store.Kind]mcpgwv1.ResourceKind{
	store.KindBackend:   mcpgwv1.ResourceKind_RESOURCE_KIND_BACKEND,
	store.KindRole:      mcpgwv1.ResourceKind_RESOURCE_KIND_ROLE,
	store.KindBinding:   mcpgwv1.ResourceKind_RESOURCE_KIND_BINDING,
	store.KindPrincipal: mcpgwv1.ResourceKind_RESOURCE_KIND_PRINCIPAL,
	store.KindAPIKey:    mcpgwv1.ResourceKind_RESOURCE_KIND_API_KEY,
	store.KindJoinToken: mcpgwv1.ResourceKind_RESOURCE_KIND_JOIN_TOKEN,
	store.KindNode:      mcpgwv1.ResourceKind_RESOURCE_KIND_NODE,
}

var actionProto = map[store.Action]mcpgwv1.ChangeAction{
	store.ActionCreate: mcpgwv1.ChangeAction_CHANGE_ACTION_CREATE,
	store.ActionUpdate: mcpgwv1.ChangeAction_CHANGE_ACTION_UPDATE,
	store.ActionDelete: mcpgwv1.ChangeAction_CHANGE_ACTION_DELETE,
}

func changesProto(cs []store.Change) []*mcpgwv1.Change {
	out := make([]*mcpgwv1.Change, 0, len(cs))
	for _, c := range cs {
		out = append(out, &mcpgwv1.Change{Kind: kindProto[c.Kind], Name: c.Name, Action: actionProto[c.Action], Description: c.Description()})
	}
	return out
}

// ApplyPolicy upserts a whole document (and with prune deletes what it
// omits) in one revision and returns the diff.
func (s *Server) ApplyPolicy(ctx context.Context, req *mcpgwv1.ApplyPolicyRequest) (*mcpgwv1.ApplyPolicyResponse, error) {
	doc := docproto.DocumentFromProto(req.GetDocument())
	res, err := s.st.ApplyDocument(ctx, meta(ctx, "ApplyPolicy"), doc, store.ApplyOptions{
		Prune: req.GetPrune(), DryRun: req.GetDryRun(), ExpectedRevision: req.GetExpectedRevision(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.ApplyPolicyResponse{Changes: changesProto(res.Changes), BaseRevision: res.BaseRevision, Revision: res.Revision, Committed: res.Committed}, nil
}

// GetPolicy returns the whole config as one document at one revision.
func (s *Server) GetPolicy(ctx context.Context, _ *mcpgwv1.GetPolicyRequest) (*mcpgwv1.GetPolicyResponse, error) {
	cfg, err := s.st.LoadConfig(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	doc := &mcpgwv1.PolicyDocument{}
	for _, b := range cfg.Backends {
		doc.Backends = append(doc.Backends, backendProto(b))
	}
	for _, r := range cfg.Roles {
		doc.Roles = append(doc.Roles, roleProto(r))
	}
	for _, b := range cfg.Bindings {
		doc.Bindings = append(doc.Bindings, bindingProto(b))
	}
	for _, p := range cfg.Principals {
		doc.Principals = append(doc.Principals, principalProto(p))
	}
	return &mcpgwv1.GetPolicyResponse{Document: doc, Revision: cfg.Revision}, nil
}

func revisionProto(r store.Revision) *mcpgwv1.Revision {
	return &mcpgwv1.Revision{Revision: r.Revision, CommitTime: timestamppb.New(r.Time), Actor: r.Actor, Operation: r.Operation, Changes: changesProto(r.Changes)}
}

// GetRevision returns one change-log entry.
func (s *Server) GetRevision(ctx context.Context, req *mcpgwv1.GetRevisionRequest) (*mcpgwv1.GetRevisionResponse, error) {
	r, err := s.st.GetRevision(ctx, req.GetRevision())
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.GetRevisionResponse{Revision: revisionProto(r)}, nil
}

// ListRevisions lists the change log, newest first.
func (s *Server) ListRevisions(ctx context.Context, req *mcpgwv1.ListRevisionsRequest) (*mcpgwv1.ListRevisionsResponse, error) {
	pos, err := decodeToken("revisions", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	var before int64
	if pos != "" {
		if before, err = strconv.ParseInt(pos, 10, 64); err != nil {
			return nil, invalidArg("page_token", "malformed page token")
		}
	}
	n := pageSize(req.GetPageSize())
	revs, err := s.st.ListRevisions(ctx, before, n+1)
	if err != nil {
		return nil, toStatus(err)
	}
	revs, next := nextToken(revs, n, "revisions", func(r store.Revision) string { return strconv.FormatInt(r.Revision, 10) })
	out := &mcpgwv1.ListRevisionsResponse{NextPageToken: next}
	for _, r := range revs {
		out.Revisions = append(out.Revisions, revisionProto(r))
	}
	return out, nil
}

// Check evaluates one request against the current policy with the edges'
// decision function and explains the result.
func (s *Server) Check(ctx context.Context, req *mcpgwv1.CheckRequest) (*mcpgwv1.CheckResponse, error) {
	if a := req.GetArgumentsJson(); a != "" {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(a), &obj); err != nil {
			return nil, invalidArg("arguments_json", "must be a JSON object: "+err.Error())
		}
	}
	cfg, err := s.st.LoadConfig(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if _, ok := cfg.Principal(req.GetPrincipal()); !ok {
		return nil, status.Errorf(codes.NotFound, "principal %q does not exist", req.GetPrincipal())
	}
	pol, err := policy.Compile(cfg.PolicySpec(), cfg.Revision)
	if err != nil {
		// The store refuses invalid policy, so this is a bug, not bad input.
		return nil, status.Errorf(codes.Internal, "stored policy at revision %d does not compile: %v", cfg.Revision, err)
	}
	backend := req.GetBackend()
	kind := policy.KindOf(req.GetMethod())
	if backend == "" && req.GetName() != "" && kind != policy.KindResource {
		backend = backendOf(cfg, req.GetName())
	}
	preq := policy.Request{Method: req.GetMethod(), Backend: backend, Kind: kind, Name: req.GetName()}
	x := pol.Explain(req.GetPrincipal(), preq)
	lines := x.Lines()
	if backend == "" && req.GetName() != "" {
		lines = append([]string{fmt.Sprintf("no backend given and none could be derived from %q; rules naming backends do not match", req.GetName())}, lines...)
	}
	decision := "deny"
	if x.Decision.Allow {
		decision = "allow"
	}
	return &mcpgwv1.CheckResponse{Decision: decision, Rule: x.Decision.Rule, Revision: cfg.Revision, Backend: backend, Explanation: lines}, nil
}

// backendOf finds the backend whose exposed-name prefix ("<prefix>__")
// starts name; the longest prefix wins. Unprefixed backends cannot be found
// this way (CheckRequest.backend covers them).
func backendOf(cfg *store.Config, name string) string {
	best, bestLen := "", -1
	for _, b := range cfg.Backends {
		prefix := b.Name
		if b.Prefix != nil {
			prefix = *b.Prefix
		}
		if prefix == "" {
			continue
		}
		if strings.HasPrefix(name, prefix+"__") && len(prefix) > bestLen {
			best, bestLen = b.Name, len(prefix)
		}
	}
	return best
}
