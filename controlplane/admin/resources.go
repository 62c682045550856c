package admin

// The CRUD handlers below are thin on purpose: each converts the request with
// internal/docproto, lets the store validate, diff and commit, and converts
// the result back. Their contracts are the RPC comments in admin.proto.

import (
	"context"

	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/docproto"
)

func backendProto(b store.Backend) *mcpgwv1.Backend {
	p := docproto.BackendToProto(b.Backend)
	p.Revision = b.Revision
	return p
}

func roleProto(r store.Role) *mcpgwv1.Role {
	p := docproto.RoleToProto(r.Role)
	p.Revision = r.Revision
	return p
}

func bindingProto(b store.Binding) *mcpgwv1.RoleBinding {
	p := docproto.BindingToProto(b.Binding)
	p.Revision = b.Revision
	return p
}

func principalProto(pr store.Principal) *mcpgwv1.Principal {
	p := docproto.PrincipalToProto(pr.Principal)
	p.Revision = pr.Revision
	return p
}

// stored re-reads a resource after a write so the response carries its
// stored form and revision. On a dry run (or a no-op) nothing was written:
// the response echoes the requested form at the unchanged revision.
func stored[T any](ctx context.Context, res store.Result, get func(context.Context) (T, error), echo T) (T, error) {
	if !res.Committed {
		return echo, nil
	}
	return get(ctx)
}

// Backends.

func (s *Server) CreateBackend(ctx context.Context, req *mcpgwv1.CreateBackendRequest) (*mcpgwv1.CreateBackendResponse, error) {
	b := docproto.BackendFromProto(req.GetBackend())
	res, err := s.st.CreateBackend(ctx, meta(ctx, "CreateBackend"), b, store.WriteOptions{DryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	out, err := stored(ctx, res, func(ctx context.Context) (store.Backend, error) { return s.st.GetBackend(ctx, b.Name) }, store.Backend{Backend: b})
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.CreateBackendResponse{Backend: backendProto(out), Revision: res.Revision}, nil
}

func (s *Server) GetBackend(ctx context.Context, req *mcpgwv1.GetBackendRequest) (*mcpgwv1.GetBackendResponse, error) {
	b, err := s.st.GetBackend(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.GetBackendResponse{Backend: backendProto(b)}, nil
}

func (s *Server) ListBackends(ctx context.Context, req *mcpgwv1.ListBackendsRequest) (*mcpgwv1.ListBackendsResponse, error) {
	after, err := decodeToken("backends", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	n := pageSize(req.GetPageSize())
	items, rev, err := s.st.ListBackends(ctx, after, n+1)
	if err != nil {
		return nil, toStatus(err)
	}
	items, next := nextToken(items, n, "backends", func(b store.Backend) string { return b.Name })
	out := &mcpgwv1.ListBackendsResponse{NextPageToken: next, Revision: rev}
	for _, b := range items {
		out.Backends = append(out.Backends, backendProto(b))
	}
	return out, nil
}

func (s *Server) UpdateBackend(ctx context.Context, req *mcpgwv1.UpdateBackendRequest) (*mcpgwv1.UpdateBackendResponse, error) {
	b := docproto.BackendFromProto(req.GetBackend())
	res, err := s.st.UpdateBackend(ctx, meta(ctx, "UpdateBackend"), b, store.WriteOptions{ExpectedRevision: req.GetExpectedRevision(), DryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	out, err := s.st.GetBackend(ctx, b.Name)
	if err != nil {
		return nil, toStatus(err)
	}
	if !res.Committed {
		out.Backend = b // a dry run shows what it would store
	}
	return &mcpgwv1.UpdateBackendResponse{Backend: backendProto(out), Revision: res.Revision}, nil
}

func (s *Server) DeleteBackend(ctx context.Context, req *mcpgwv1.DeleteBackendRequest) (*mcpgwv1.DeleteBackendResponse, error) {
	res, err := s.st.DeleteBackend(ctx, meta(ctx, "DeleteBackend"), req.GetName(), store.WriteOptions{ExpectedRevision: req.GetExpectedRevision(), DryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.DeleteBackendResponse{Revision: res.Revision}, nil
}

// Roles.

func (s *Server) CreateRole(ctx context.Context, req *mcpgwv1.CreateRoleRequest) (*mcpgwv1.CreateRoleResponse, error) {
	r := docproto.RoleFromProto(req.GetRole())
	res, err := s.st.CreateRole(ctx, meta(ctx, "CreateRole"), r, store.WriteOptions{DryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	out, err := stored(ctx, res, func(ctx context.Context) (store.Role, error) { return s.st.GetRole(ctx, r.Name) }, store.Role{Role: r})
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.CreateRoleResponse{Role: roleProto(out), Revision: res.Revision}, nil
}

func (s *Server) GetRole(ctx context.Context, req *mcpgwv1.GetRoleRequest) (*mcpgwv1.GetRoleResponse, error) {
	r, err := s.st.GetRole(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.GetRoleResponse{Role: roleProto(r)}, nil
}

func (s *Server) ListRoles(ctx context.Context, req *mcpgwv1.ListRolesRequest) (*mcpgwv1.ListRolesResponse, error) {
	after, err := decodeToken("roles", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	n := pageSize(req.GetPageSize())
	items, rev, err := s.st.ListRoles(ctx, after, n+1)
	if err != nil {
		return nil, toStatus(err)
	}
	items, next := nextToken(items, n, "roles", func(r store.Role) string { return r.Name })
	out := &mcpgwv1.ListRolesResponse{NextPageToken: next, Revision: rev}
	for _, r := range items {
		out.Roles = append(out.Roles, roleProto(r))
	}
	return out, nil
}

func (s *Server) UpdateRole(ctx context.Context, req *mcpgwv1.UpdateRoleRequest) (*mcpgwv1.UpdateRoleResponse, error) {
	r := docproto.RoleFromProto(req.GetRole())
	res, err := s.st.UpdateRole(ctx, meta(ctx, "UpdateRole"), r, store.WriteOptions{ExpectedRevision: req.GetExpectedRevision(), DryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	out, err := s.st.GetRole(ctx, r.Name)
	if err != nil {
		return nil, toStatus(err)
	}
	if !res.Committed {
		out.Role = r
	}
	return &mcpgwv1.UpdateRoleResponse{Role: roleProto(out), Revision: res.Revision}, nil
}

func (s *Server) DeleteRole(ctx context.Context, req *mcpgwv1.DeleteRoleRequest) (*mcpgwv1.DeleteRoleResponse, error) {
	res, err := s.st.DeleteRole(ctx, meta(ctx, "DeleteRole"), req.GetName(), store.WriteOptions{ExpectedRevision: req.GetExpectedRevision(), DryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.DeleteRoleResponse{Revision: res.Revision}, nil
}

// Bindings.

func (s *Server) CreateBinding(ctx context.Context, req *mcpgwv1.CreateBindingRequest) (*mcpgwv1.CreateBindingResponse, error) {
	b := docproto.BindingFromProto(req.GetBinding())
	res, err := s.st.CreateBinding(ctx, meta(ctx, "CreateBinding"), b, store.WriteOptions{DryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	out, err := stored(ctx, res, func(ctx context.Context) (store.Binding, error) { return s.st.GetBinding(ctx, b.Role) }, store.Binding{Binding: b})
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.CreateBindingResponse{Binding: bindingProto(out), Revision: res.Revision}, nil
}

func (s *Server) GetBinding(ctx context.Context, req *mcpgwv1.GetBindingRequest) (*mcpgwv1.GetBindingResponse, error) {
	b, err := s.st.GetBinding(ctx, req.GetRole())
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.GetBindingResponse{Binding: bindingProto(b)}, nil
}

func (s *Server) ListBindings(ctx context.Context, req *mcpgwv1.ListBindingsRequest) (*mcpgwv1.ListBindingsResponse, error) {
	after, err := decodeToken("bindings", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	n := pageSize(req.GetPageSize())
	items, rev, err := s.st.ListBindings(ctx, after, n+1)
	if err != nil {
		return nil, toStatus(err)
	}
	items, next := nextToken(items, n, "bindings", func(b store.Binding) string { return b.Role })
	out := &mcpgwv1.ListBindingsResponse{NextPageToken: next, Revision: rev}
	for _, b := range items {
		out.Bindings = append(out.Bindings, bindingProto(b))
	}
	return out, nil
}

func (s *Server) UpdateBinding(ctx context.Context, req *mcpgwv1.UpdateBindingRequest) (*mcpgwv1.UpdateBindingResponse, error) {
	b := docproto.BindingFromProto(req.GetBinding())
	res, err := s.st.UpdateBinding(ctx, meta(ctx, "UpdateBinding"), b, store.WriteOptions{ExpectedRevision: req.GetExpectedRevision(), DryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	out, err := s.st.GetBinding(ctx, b.Role)
	if err != nil {
		return nil, toStatus(err)
	}
	if !res.Committed {
		out.Binding = b
	}
	return &mcpgwv1.UpdateBindingResponse{Binding: bindingProto(out), Revision: res.Revision}, nil
}

func (s *Server) DeleteBinding(ctx context.Context, req *mcpgwv1.DeleteBindingRequest) (*mcpgwv1.DeleteBindingResponse, error) {
	res, err := s.st.DeleteBinding(ctx, meta(ctx, "DeleteBinding"), req.GetRole(), store.WriteOptions{ExpectedRevision: req.GetExpectedRevision(), DryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.DeleteBindingResponse{Revision: res.Revision}, nil
}

// Principals.

func (s *Server) CreatePrincipal(ctx context.Context, req *mcpgwv1.CreatePrincipalRequest) (*mcpgwv1.CreatePrincipalResponse, error) {
	p := docproto.PrincipalFromProto(req.GetPrincipal())
	res, err := s.st.CreatePrincipal(ctx, meta(ctx, "CreatePrincipal"), p, store.WriteOptions{DryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	out, err := stored(ctx, res, func(ctx context.Context) (store.Principal, error) { return s.st.GetPrincipal(ctx, p.Name) }, store.Principal{Principal: p})
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.CreatePrincipalResponse{Principal: principalProto(out), Revision: res.Revision}, nil
}

func (s *Server) GetPrincipal(ctx context.Context, req *mcpgwv1.GetPrincipalRequest) (*mcpgwv1.GetPrincipalResponse, error) {
	p, err := s.st.GetPrincipal(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.GetPrincipalResponse{Principal: principalProto(p)}, nil
}

func (s *Server) ListPrincipals(ctx context.Context, req *mcpgwv1.ListPrincipalsRequest) (*mcpgwv1.ListPrincipalsResponse, error) {
	after, err := decodeToken("principals", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	n := pageSize(req.GetPageSize())
	items, rev, err := s.st.ListPrincipals(ctx, after, n+1)
	if err != nil {
		return nil, toStatus(err)
	}
	items, next := nextToken(items, n, "principals", func(p store.Principal) string { return p.Name })
	out := &mcpgwv1.ListPrincipalsResponse{NextPageToken: next, Revision: rev}
	for _, p := range items {
		out.Principals = append(out.Principals, principalProto(p))
	}
	return out, nil
}

func (s *Server) UpdatePrincipal(ctx context.Context, req *mcpgwv1.UpdatePrincipalRequest) (*mcpgwv1.UpdatePrincipalResponse, error) {
	p := docproto.PrincipalFromProto(req.GetPrincipal())
	res, err := s.st.UpdatePrincipal(ctx, meta(ctx, "UpdatePrincipal"), p, store.WriteOptions{ExpectedRevision: req.GetExpectedRevision(), DryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	out, err := s.st.GetPrincipal(ctx, p.Name)
	if err != nil {
		return nil, toStatus(err)
	}
	if !res.Committed {
		out.Principal = p
	}
	return &mcpgwv1.UpdatePrincipalResponse{Principal: principalProto(out), Revision: res.Revision}, nil
}

func (s *Server) DeletePrincipal(ctx context.Context, req *mcpgwv1.DeletePrincipalRequest) (*mcpgwv1.DeletePrincipalResponse, error) {
	res, revoked, err := s.st.DeletePrincipal(ctx, meta(ctx, "DeletePrincipal"), req.GetName(), store.WriteOptions{ExpectedRevision: req.GetExpectedRevision(), DryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.DeletePrincipalResponse{Revision: res.Revision, RevokedApiKeyIds: revoked}, nil
}
