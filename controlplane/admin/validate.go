package admin

import (
	"context"

	"google.golang.org/grpc"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// validateRequest checks the shape of a request (required fields present,
// numbers in range) before a handler runs, so handlers can trust it. What a
// resource means is checked later, by the store, against the whole config.
// The generated messages have no Validate methods (no protoc-gen-validate in
// this build), so the rules live here, one case per request type.
func validateRequest(req any) error {
	type paged interface{ GetPageSize() int32 }
	if p, ok := req.(paged); ok && p.GetPageSize() < 0 {
		return invalidArg("page_size", "must not be negative")
	}
	type conditional interface{ GetExpectedRevision() int64 }
	if c, ok := req.(conditional); ok && c.GetExpectedRevision() < 0 {
		return invalidArg("expected_revision", "must not be negative")
	}
	switch r := req.(type) {
	case *mcpgwv1.CreateBackendRequest:
		return required("backend", r.GetBackend() != nil)
	case *mcpgwv1.UpdateBackendRequest:
		return firstErr(required("backend", r.GetBackend() != nil), required("backend.name", r.GetBackend().GetName() != ""))
	case *mcpgwv1.GetBackendRequest:
		return required("name", r.GetName() != "")
	case *mcpgwv1.DeleteBackendRequest:
		return required("name", r.GetName() != "")
	case *mcpgwv1.CreateRoleRequest:
		return required("role", r.GetRole() != nil)
	case *mcpgwv1.UpdateRoleRequest:
		return firstErr(required("role", r.GetRole() != nil), required("role.name", r.GetRole().GetName() != ""))
	case *mcpgwv1.GetRoleRequest:
		return required("name", r.GetName() != "")
	case *mcpgwv1.DeleteRoleRequest:
		return required("name", r.GetName() != "")
	case *mcpgwv1.CreateBindingRequest:
		return required("binding", r.GetBinding() != nil)
	case *mcpgwv1.UpdateBindingRequest:
		return firstErr(required("binding", r.GetBinding() != nil), required("binding.role", r.GetBinding().GetRole() != ""))
	case *mcpgwv1.GetBindingRequest:
		return required("role", r.GetRole() != "")
	case *mcpgwv1.DeleteBindingRequest:
		return required("role", r.GetRole() != "")
	case *mcpgwv1.CreatePrincipalRequest:
		return required("principal", r.GetPrincipal() != nil)
	case *mcpgwv1.UpdatePrincipalRequest:
		return firstErr(required("principal", r.GetPrincipal() != nil), required("principal.name", r.GetPrincipal().GetName() != ""))
	case *mcpgwv1.GetPrincipalRequest:
		return required("name", r.GetName() != "")
	case *mcpgwv1.DeletePrincipalRequest:
		return required("name", r.GetName() != "")
	case *mcpgwv1.CreateApiKeyRequest:
		if r.GetTtl() != nil && r.GetTtl().AsDuration() <= 0 {
			return invalidArg("ttl", "must be positive when set")
		}
		return required("principal", r.GetPrincipal() != "")
	case *mcpgwv1.GetApiKeyRequest:
		return required("id", r.GetId() != "")
	case *mcpgwv1.RevokeApiKeyRequest:
		return required("id", r.GetId() != "")
	case *mcpgwv1.CreateJoinTokenRequest:
		if r.GetTtl() != nil && (r.GetTtl().AsDuration() <= 0 || r.GetTtl().AsDuration() > maxJoinTokenTTL) {
			return invalidArg("ttl", "must be positive and at most 7 days")
		}
	case *mcpgwv1.RevokeJoinTokenRequest:
		return required("id", r.GetId() != "")
	case *mcpgwv1.GetNodeRequest:
		return required("node_id", r.GetNodeId() != "")
	case *mcpgwv1.RevokeNodeRequest:
		return required("node_id", r.GetNodeId() != "")
	case *mcpgwv1.ApplyPolicyRequest:
		return required("document", r.GetDocument() != nil)
	case *mcpgwv1.GetRevisionRequest:
		if r.GetRevision() <= 0 {
			return invalidArg("revision", "required, and positive")
		}
	case *mcpgwv1.CheckRequest:
		return firstErr(required("principal", r.GetPrincipal() != ""), required("method", r.GetMethod() != ""))
	case *mcpgwv1.WatchRolloutRequest:
		if r.GetRevision() < 0 {
			return invalidArg("revision", "must not be negative")
		}
	}
	return nil
}

func required(field string, ok bool) error {
	if !ok {
		return invalidArg(field, "required")
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func validateUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// validateStream checks the request of server-streaming calls (the only
// kind AdminService has), which arrives with the first RecvMsg.
func validateStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &validatingStream{ServerStream: ss})
}

type validatingStream struct{ grpc.ServerStream }

func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return validateRequest(m)
}
