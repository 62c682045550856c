// Package document parses and validates the declarative YAML configuration
// (backends, roles, bindings, principals, auth, audit) that `mcpctl apply`
// and a standalone edge read. Parsing is strict: unknown fields and duplicate
// keys are errors with line numbers, so a typo never silently weakens policy.
package document
