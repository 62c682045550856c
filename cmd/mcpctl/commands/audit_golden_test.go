package commands

import (
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/controlplane/admin"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

const (
	nodeA = "0190c0de-0000-7000-8000-0000000000aa"
	nodeB = "0190c0de-0000-7000-8000-0000000000bb"
	nodeC = "0190c0de-0000-7000-8000-0000000000cc"
)

// auditEvents makes n events a second apart ending at end, alternating
// principals, with every third one denied.
func auditEvents(node string, end time.Time, n int) []audit.Event {
	out := make([]audit.Event, n)
	for i := range out {
		ts := end.Add(-time.Duration(n-1-i) * time.Second)
		st, dec, rule := audit.StatusOK, audit.DecisionAllow, "developer/0"
		name := []string{"github__create_issue", "github__list_repos", "github__delete_repo"}[i%3]
		if i%3 == 2 {
			st, dec, rule = audit.StatusDenied, audit.DecisionDeny, "developer/1"
		}
		out[i] = audit.Event{
			ID: audit.NewID(ts), TS: ts, NodeID: node, SessionID: "s-1", Principal: []string{"alice", "bob"}[i%2],
			Transport: audit.TransportHTTP, ProtocolVersion: "2025-11-25", ClientName: "claude-code", ClientVersion: "1.0",
			Method: "tools/call", Backend: "github", Name: name, Decision: dec, Rule: rule, PolicyRevision: 1,
			Status: st, LatencyUS: int64(1500 + 250*i), UpstreamLatencyUS: int64(1000 + 250*i), RequestBytes: 120, ResponseBytes: 480,
			ArgsSHA256: strings.Repeat("ab", 32),
		}
	}
	return out
}

// ingest seals events into chained batches of one epoch, skipping the
// seqs in skip (a batch the control plane never received), and ingests
// them the way the AuditStream server does.
func ingest(t *testing.T, st *auditdb.Store, node string, perBatch [][]audit.Event, skip map[int64]bool) {
	t.Helper()
	(&auditChain{st: st, node: node, seq: 1}).ingest(t, perBatch, skip)
}

// auditChain is one node's epoch, continued across ingest calls; seq is
// the next batch's (epochs start at 1).
type auditChain struct {
	st   *auditdb.Store
	node string
	seq  int64
	prev [32]byte
}

func (ch *auditChain) ingest(t *testing.T, perBatch [][]audit.Event, skip map[int64]bool) {
	t.Helper()
	var bs []auditdb.Batch
	for _, evs := range perBatch {
		b := auditdb.Batch{Epoch: 1, Seq: ch.seq, PrevHash: ch.prev}
		ch.seq++
		for _, e := range evs {
			b.Lines = append(e.AppendJSON(b.Lines), '\n')
			b.Count++
		}
		b.CRC = auditdb.CRC32C(b.Lines) // AuditBatch.crc32c covers the payload
		ch.prev = b.Hash()
		if !skip[b.Seq] {
			bs = append(bs, b)
		}
	}
	if _, err := ch.st.Ingest(t.Context(), ch.node, bs...); err != nil {
		t.Fatalf("ingesting audit batches: %v", err)
	}
}

func TestGoldenAudit(t *testing.T) {
	cp := startControlPlane(t)
	c := cp.cliFor(t)
	tr := newTranscript(c)
	end := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	evA := auditEvents(nodeA, end, 6)
	ingest(t, cp.audit, nodeA, [][]audit.Event{evA[:3], evA[3:]}, nil)
	evB := auditEvents(nodeB, end.Add(-time.Hour), 3)
	ingest(t, cp.audit, nodeB, [][]audit.Event{evB[:1], evB[1:2], evB[2:]}, map[int64]bool{2: true})
	// Node C's spool was full under on_full: drop: its second batch records
	// 4 lost events and when they happened (fixed times, for the golden).
	evC := auditEvents(nodeC, end.Add(-2*time.Hour), 2)
	chC := &auditChain{st: cp.audit, node: nodeC, seq: 1}
	chC.ingest(t, [][]audit.Event{evC[:1]}, nil)
	gap := auditdb.Batch{Epoch: 1, Seq: chC.seq, PrevHash: chC.prev, DroppedBefore: 4,
		GapFirst: time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC), GapLast: time.Date(2026, 1, 2, 10, 0, 5, 0, time.UTC), Count: 1}
	gap.Lines = append(evC[1].AppendJSON(nil), '\n')
	gap.CRC = auditdb.CRC32C(gap.Lines)
	if _, err := cp.audit.Ingest(t.Context(), nodeC, gap); err != nil {
		t.Fatal(err)
	}

	tr.ok("audit", "query")
	tr.ok("audit", "query", "--principal", "alice", "--decision", "deny")
	tr.ok("audit", "query", "--limit", "2", "-o", "json")
	jsonl := tr.ok("audit", "query", "--since", "3h", "--node", nodeB, "-o", "jsonl")
	tr.ok("audit", "query", "--status", "denied", "-o", "csv")
	tr.ok("audit", "query", "--since", "2026-01-01T00:00:00Z", "--until", "2026-01-02T00:00:00Z", "-o", "csv")
	tr.ok("audit", "query", "--backend", "nosuch")
	tr.run("audit", "verify")
	tr.ok("audit", "verify", "--node", nodeA)
	tr.run("audit", "verify", "--node", nodeB, "-o", "json")
	tr.run("audit", "verify", "--node", nodeC, "-o", "json")
	tr.check("audit")

	// jsonl: one event per line, keys exactly the proto field names (the
	// audit_events columns), every column present.
	lines := strings.Split(strings.TrimSuffix(jsonl, "\n"), "\n")
	if len(lines) != 2 { // seq 2 of node B never arrived
		t.Fatalf("jsonl has %d lines:\n%s", len(lines), jsonl)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, col := range []string{"id", "ts", "node_id", "session_id", "principal", "transport", "protocol_version", "client_name",
		"client_version", "method", "backend", "name", "decision", "rule", "policy_revision", "status", "error", "latency_us",
		"upstream_latency_us", "request_bytes", "response_bytes", "args_sha256", "trace_id"} {
		if _, ok := first[col]; !ok {
			t.Errorf("jsonl event lacks %q: %s", col, lines[0])
		}
	}
	if len(first) != 23 || first["id"] != evB[2].ID.String() {
		t.Errorf("jsonl event has %d keys, id %v; want 23 and the newest event %s", len(first), first["id"], evB[2].ID)
	}

	// csv parses, with the columns as header.
	out := c.mustRun("audit", "query", "-o", "csv", "--limit", "0", "--since", "3h")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(recs) != 1+10 || recs[0][0] != "id" || len(recs[0]) != 23 {
		t.Fatalf("csv: %v, %d records, header %v", err, len(recs), recs[0])
	}
}

func TestAuditWithoutAuditSupport(t *testing.T) {
	cp := startAdminWithoutAudit(t)
	c := cp.cliFor(t)
	for _, args := range [][]string{{"audit", "query"}, {"audit", "verify"}, {"audit", "tail", "--limit", "1"}} {
		code, out, errOut := c.run(args...)
		if code != exitFailure || out != "" || errOut != "mcpctl: "+errNoAudit.Error()+"\n" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and %q", args, code, out, errOut, errNoAudit)
		}
	}
}

func TestTailLiveHeaderMatchesControlPlane(t *testing.T) {
	if tailLiveHeader != admin.TailLiveHeader {
		t.Fatalf("mcpctl waits for header %q, the control plane sends %q", tailLiveHeader, admin.TailLiveHeader)
	}
}

// TestAuditTail follows events committed after the tail started, filtered
// by principal, and stops after --limit; once as jsonl for scripts, once
// as a table for people.
func TestAuditTail(t *testing.T) {
	cp := startControlPlane(t)
	c := cp.cliFor(t)
	type result struct {
		code        int
		out, errOut string
	}
	jsonl, table := make(chan result, 1), make(chan result, 1)
	go func() {
		code, out, errOut := c.run("audit", "tail", "--principal", "alice", "--limit", "2", "-o", "jsonl")
		jsonl <- result{code, out, errOut}
	}()
	go func() {
		code, out, errOut := c.run("audit", "tail", "--principal", "bob", "--decision", "allow", "--limit", "1")
		table <- result{code, out, errOut}
	}()
	chain := &auditChain{st: cp.audit, node: nodeA, seq: 1}
	deadline := time.After(30 * time.Second)
	for pending := 2; pending > 0; {
		select {
		case r := <-jsonl:
			pending--
			lines := strings.Split(strings.TrimSuffix(r.out, "\n"), "\n")
			if r.code != exitOK || len(lines) != 2 || r.errOut != "" {
				t.Fatalf("audit tail -o jsonl: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.errOut)
			}
			for _, l := range lines {
				var e map[string]any
				if err := json.Unmarshal([]byte(l), &e); err != nil || e["principal"] != "alice" || len(e) != 23 {
					t.Fatalf("audit tail printed %q (%v), want alice's events only, every column", l, err)
				}
			}
		case r := <-table:
			pending--
			lines := strings.Split(strings.TrimSuffix(r.out, "\n"), "\n")
			if r.code != exitOK || len(lines) != 2 || !strings.HasPrefix(lines[0], "TIME ") ||
				!regexpMatch(`^\S+  bob +tools/call +github__list_repos +allow +ok `, lines[1]) ||
				r.errOut != "following audit events committed from now on (Ctrl-C to stop)\n" {
				t.Fatalf("audit tail: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.errOut)
			}
		case <-deadline:
			t.Fatal("audit tail printed nothing within 30s while events were committed")
		case <-time.After(200 * time.Millisecond):
			// Keep committing until the tails have seen enough: they only
			// report what commits after they are live.
			chain.ingest(t, [][]audit.Event{auditEvents(nodeA, time.Now().UTC(), 2)}, nil)
		}
	}
}
