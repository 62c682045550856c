// Package enforce is the edge's identity, policy and audit seams: the
// Holder keeps the compiled policy of the live document, and the
// Authenticator, Decider and Recorder plug it into the gateway's request
// chain (authenticate → decide → forward → record, see gateway.Options).
//
//   - Authenticator maps `Authorization: Bearer mcpgw_<id>_<secret>` to a
//     principal by the SHA-256 of the whole key (a map lookup, so no secret
//     is compared byte by byte), or, when the document opts in, maps a
//     request carrying no credential at all to a named principal. stdio
//     clients act as the edge's configured principal or key.
//   - Decider answers the gateway with internal/policy's decision, for
//     calls and, item by item, for list results, from the policy carried by
//     the request's own state snapshot.
//   - Recorder turns each gateway.Request into one audit.Event (DESIGN §6)
//     and hands it to the audit log (dataplane/auditlog), whose durability
//     mode decides whether the response waits for it.
//
// Nothing here starts a goroutine; all of it is safe for concurrent use.
// docs/security.md describes the behaviour for operators.
package enforce
