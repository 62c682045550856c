package store

import (
	"errors"

	"github.com/mcpgw/mcpgw/internal/policy"
)

// compileErrors runs the edges' own compiler over the config's policy, with
// the stored key hashes, so a policy an edge would refuse is refused here.
func compileErrors(c *Config) []FieldError {
	spec := c.PolicySpec()
	for _, k := range c.APIKeys {
		spec.Keys = append(spec.Keys, policy.Key{Principal: k.Principal, SHA256: k.SHA256, ExpiresAt: k.ExpiresAt})
	}
	_, err := policy.Compile(spec, c.Revision)
	if err == nil {
		return nil
	}
	var ce *policy.CompileError
	if !errors.As(err, &ce) {
		return []FieldError{{Message: err.Error()}}
	}
	out := make([]FieldError, 0, len(ce.Errors))
	for _, fe := range ce.Errors {
		out = append(out, FieldError{Field: fe.Path, Message: fe.Msg})
	}
	return out
}
