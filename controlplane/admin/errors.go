package admin

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mcpgw/mcpgw/controlplane/store"
)

// toStatus maps a store (or context) error to the gRPC status the contract
// promises (admin.proto, "Errors use gRPC codes"). Validation failures carry
// every field error, in the message and as BadRequest details, so mcpctl can
// print them one per line.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var inv *store.InvalidConfigError
	switch {
	case errors.As(err, &inv):
		return invalidConfig(inv)
	case errors.Is(err, store.ErrStaleRevision):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, store.ErrInUse), errors.Is(err, store.ErrJoinTokenUsed):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if store.IsConstraintViolation(err) {
		// A constraint the validation should have caught: the request is at
		// fault, and the message says which constraint.
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if store.IsUnavailable(err) {
		return status.Error(codes.Unavailable, "store unavailable: "+err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func invalidConfig(inv *store.InvalidConfigError) error {
	lines := make([]string, 0, len(inv.Errors))
	br := &errdetails.BadRequest{}
	for _, f := range inv.Errors {
		lines = append(lines, f.String())
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Message})
	}
	st := status.New(codes.InvalidArgument, "invalid configuration:\n  "+strings.Join(lines, "\n  "))
	if d, err := st.WithDetails(br); err == nil {
		st = d
	}
	return st.Err()
}

// invalidArg is an InvalidArgument naming the field at fault.
func invalidArg(field, msg string) error {
	st := status.New(codes.InvalidArgument, field+": "+msg)
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}}}); err == nil {
		st = d
	}
	return st.Err()
}
