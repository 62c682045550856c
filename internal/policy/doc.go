// Package policy is the RBAC model both planes share: it compiles principals,
// roles and bindings into an immutable, indexed Policy and decides requests
// against it. Deny overrides allow; anything not allowed is denied; a nil
// Policy denies everything. The package is pure: no I/O, no logging, no goroutines.
package policy
