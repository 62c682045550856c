// Package policy is the RBAC model both planes share: it compiles principals,
// roles, bindings and key hashes into an immutable, indexed Policy and decides
// requests against it. The control plane compiles with the same code the edge
// enforces with, so a bad policy is rejected at apply time (Compile reports
// every problem as a *CompileError with per-field paths).
//
// Decide is the one decision function: calls are decided directly, list
// results item by item through Visible, which asks exactly the question of
// the call the item stands for. Deny overrides allow; anything not allowed is
// denied; protocol housekeeping (IsHousekeeping) is open to every
// authenticated principal; a nil Policy denies everything. Decide does not
// allocate and looks only at the rules that can match, so its cost barely
// grows with the size of the policy (docs/benchmarks.md). Explain is the slow
// path that shows its working for `mcpctl check`.
//
// The package is pure: no I/O, no logging, no goroutines.
package policy
