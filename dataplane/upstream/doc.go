// Package upstream connects the edge to its backends: MCP servers run as
// supervised child processes (stdio) or reached over Streamable HTTP.
//
// A Backend owns one logical connection to one server at a time: for stdio
// the running child process, for HTTP the current upstream session. The edge
// mints its own JSON-RPC ids on every connection, so ids chosen by different
// downstream clients can never collide upstream, and it rewrites progress
// tokens the same way. Responses come back as raw result or error bytes; the
// caller writes them under the downstream id.
//
// Messages a backend sends in the course of a call (progress, log messages,
// server→client requests such as sampling) go to that call's Sink. Over HTTP
// they arrive on the call's own response stream, so they are attributed
// exactly. Over stdio nothing ties them to a call except progress tokens, so
// a server→client request is given to the only call in flight on the
// process; with several in flight it cannot be attributed and the backend
// gets an error reply instead of a guess (see docs/edge.md).
//
// Every goroutine here is started from Backend.Run or from a Call and is
// joined before they return.
package upstream
