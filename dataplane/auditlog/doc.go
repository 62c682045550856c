// Package auditlog is the edge's audit pipeline (DESIGN §6): Record takes one
// event per request from the hot path, one writer at a time (the writer
// goroutine, or a sync caller that finds no write in progress and writes its
// own batch) seals events into hash-chained batches and appends them to a
// crash-safe disk spool (group commit, CRC per record), and one goroutine per Sink delivers spooled
// batches (a JSON-lines file, Postgres through internal/auditdb, later the
// control plane's AuditStream) and acknowledges them, after which spool
// segments are deleted.
//
// Durability is a choice: in sync mode Record returns only once the event is
// in the spool, so the gateway releases a response only after its audit
// event survives a crash of the process; in async mode Record never blocks.
// A full spool refuses (ErrAuditUnavailable) or drops with a gap record that
// travels in the stream, so a loss is never silent. docs/audit.md describes
// the formats and the guarantees.
package auditlog
