package commands

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// errNoAudit is what the audit commands say when the control plane has
// the AdminService but not its audit half yet.
var errNoAudit = errors.New("the control plane does not support audit queries yet")

// tailLiveHeader is the response header TailAudit sends once it is live
// (controlplane/admin.TailLiveHeader; a test keeps them equal).
const tailLiveHeader = "mcpgw-tail-live"

// Allowed values of the word fields (audit.proto), checked here so a typo
// is a usage error rather than a query that silently matches nothing.
var (
	auditStatuses  = []string{"ok", "error", "denied", "timeout", "cancelled", "unavailable"}
	auditDecisions = []string{"allow", "deny"}
)

type auditFilterFlags struct {
	since, until                                           string
	principal, node, backend, name, method, status, decide string
	session                                                string
}

func (f *auditFilterFlags) add(c *cobra.Command, withTimes bool) {
	fl := c.Flags()
	if withTimes {
		fl.StringVar(&f.since, "since", "1h", `events at or after this: a duration back from now ("15m", "2d") or an RFC 3339 time; "" for no bound`)
		fl.StringVar(&f.until, "until", "", "events before this: a duration back from now or an RFC 3339 time")
	}
	fl.StringVar(&f.principal, "principal", "", "only this principal")
	fl.StringVar(&f.node, "node", "", "only this node id")
	fl.StringVar(&f.backend, "backend", "", "only this backend")
	fl.StringVar(&f.name, "name", "", "only this item (exposed tool or prompt name, or resource URI)")
	fl.StringVar(&f.method, "method", "", "only this method, e.g. tools/call")
	fl.StringVar(&f.status, "status", "", "only this status: "+strings.Join(auditStatuses, "|"))
	fl.StringVar(&f.decide, "decision", "", "only this decision: allow|deny")
	fl.StringVar(&f.session, "session", "", "only this downstream session id")
}

// filter builds the AuditFilter; now anchors relative times.
func (f *auditFilterFlags) filter(now time.Time) (*mcpgwv1.AuditFilter, error) {
	if f.status != "" && !slices.Contains(auditStatuses, f.status) {
		return nil, usagef("--status %q: want one of %s", f.status, strings.Join(auditStatuses, ", "))
	}
	if f.decide != "" && !slices.Contains(auditDecisions, f.decide) {
		return nil, usagef("--decision %q: want allow or deny", f.decide)
	}
	af := &mcpgwv1.AuditFilter{
		Principal: f.principal, NodeId: f.node, Backend: f.backend, Name: f.name,
		Method: f.method, Status: f.status, Decision: f.decide, SessionId: f.session,
	}
	var err error
	if af.StartTime, err = pointInTime("since", f.since, now); err != nil {
		return nil, err
	}
	if af.EndTime, err = pointInTime("until", f.until, now); err != nil {
		return nil, err
	}
	if af.StartTime != nil && af.EndTime != nil && !af.EndTime.AsTime().After(af.StartTime.AsTime()) {
		return nil, usagef("--until must be after --since")
	}
	return af, nil
}

// pointInTime reads "15m"/"2d" (that long before now) or an RFC 3339 time.
func pointInTime(flag, s string, now time.Time) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return timestamppb.New(t), nil
	}
	d, err := parseLifetime(flag, s)
	if err != nil {
		return nil, usagef("--%s %q: want a duration back from now (15m, 2d) or an RFC 3339 time (2026-01-02T15:04:05Z)", flag, s)
	}
	return timestamppb.New(now.Add(-d)), nil
}

func newAuditCmd(g *globals) *cobra.Command {
	return group("audit", "Query, follow and verify the audit log", newAuditQueryCmd(g), newAuditTailCmd(g), newAuditVerifyCmd(g))
}

func newAuditQueryCmd(g *globals) *cobra.Command {
	var (
		f     auditFilterFlags
		limit int
		out   *outputFlag
	)
	c := &cobra.Command{
		Use:   "query [filters]",
		Short: "Print committed audit events, newest first",
		Example: `  mcpctl audit query --since 1h --principal alice
  mcpctl audit query --decision deny --since 1d -o jsonl | jq .name
  mcpctl audit query --since 2026-11-01T00:00:00Z --until 2026-11-02T00:00:00Z --limit 0 -o csv > nov1.csv`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit must be 0 (no limit) or positive")
			}
			af, err := f.filter(time.Now())
			if err != nil {
				return err
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			defer cl.Close()
			w := c.OutOrStdout()
			p, err := newEventPrinter(w, out.value, g)
			if err != nil {
				return err
			}
			token := ""
			n := 0
			for {
				size := 1000
				if limit > 0 {
					size = min(size, limit-n)
				}
				cctx, cancel := cl.call(c.Context())
				r, err := cl.QueryAudit(cctx, &mcpgwv1.QueryAuditRequest{Filter: af, PageSize: int32(size), PageToken: token})
				cancel()
				if isUnimplemented(err) {
					return errNoAudit
				}
				if err != nil {
					return cl.rpcError("querying audit events", err)
				}
				for _, e := range r.GetEvents() {
					if limit > 0 && n >= limit {
						break
					}
					if err := p.event(e); err != nil {
						return err
					}
					n++
				}
				token = r.GetNextPageToken()
				if token == "" || (limit > 0 && n >= limit) {
					break
				}
			}
			return p.close()
		},
	}
	f.add(c, true)
	c.Flags().IntVar(&limit, "limit", 100, "at most this many events (0 = all)")
	out = addOutputFlag(c, "table", "table", "json", "jsonl", "csv")
	return c
}

func newAuditTailCmd(g *globals) *cobra.Command {
	var (
		f     auditFilterFlags
		limit int
		out   *outputFlag
	)
	c := &cobra.Command{
		Use:   "tail [filters]",
		Short: "Follow audit events as the control plane commits them (Ctrl-C to stop)",
		Example: `  mcpctl audit tail --decision deny
  mcpctl audit tail --principal alice -o jsonl`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit must be 0 (no limit) or positive")
			}
			af, err := f.filter(time.Now())
			if err != nil {
				return err
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			defer cl.Close()
			p, err := newEventPrinter(c.OutOrStdout(), out.value, g)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(c.Context())
			defer cancel()
			stream, err := cl.TailAudit(ctx, &mcpgwv1.TailAuditRequest{Filter: af})
			if err != nil {
				return tailError(cl, err)
			}
			// The control plane sends its headers once the tail is live:
			// from then on every committed event is streamed.
			if md, err := stream.Header(); err == nil && len(md.Get(tailLiveHeader)) > 0 && out.value == "table" {
				fmt.Fprintln(g.stderr, "following audit events committed from now on (Ctrl-C to stop)")
			}
			n := 0
			for {
				r, err := stream.Recv()
				if err != nil {
					if c.Context().Err() != nil {
						return p.close() // interrupted: a normal way to stop tailing
					}
					if errors.Is(err, io.EOF) {
						return p.close()
					}
					return tailError(cl, err)
				}
				for _, e := range r.GetEvents() {
					if err := p.event(e); err != nil {
						return err
					}
					n++
					if limit > 0 && n >= limit {
						return p.close()
					}
				}
				// A person watching wants each event as it comes.
				if err := p.flush(); err != nil {
					return err
				}
			}
		},
	}
	f.add(c, false)
	c.Flags().IntVar(&limit, "limit", 0, "stop after this many events (0 = follow until interrupted)")
	out = addOutputFlag(c, "table", "table", "jsonl")
	return c
}

func tailError(cl *client, err error) error {
	if isUnimplemented(err) {
		return errNoAudit
	}
	return cl.rpcError("following audit events", err)
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var (
		node string
		out  *outputFlag
	)
	c := &cobra.Command{
		Use:   "verify [--node ID]",
		Short: "Check that the control plane holds every audit batch each edge sealed, unaltered",
		Long: `Check each node's audit chain against the ledger: no missing batches, no broken
hash links, no CRC failures, stored event counts equal to what the edges sent,
and no events dropped at the edge. Exits 1 if any chain is incomplete.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			defer cl.Close()
			cctx, cancel := cl.call(c.Context())
			defer cancel()
			r, err := cl.VerifyAudit(cctx, &mcpgwv1.VerifyAuditRequest{NodeId: node})
			if isUnimplemented(err) {
				return errNoAudit
			}
			if err != nil {
				return cl.rpcError("verifying the audit log", err)
			}
			w := c.OutOrStdout()
			if out.value == "json" {
				if err := writeJSON(w, r); err != nil {
					return err
				}
			} else {
				printVerify(w, r)
			}
			if !r.GetComplete() {
				return fmt.Errorf("audit chain incomplete for %s", plural(countIncomplete(r), "node", "nodes"))
			}
			return nil
		},
	}
	c.Flags().StringVar(&node, "node", "", "only this node id (default: every node in the ledger)")
	out = addOutputFlag(c, "table", "table", "json")
	return c
}

func countIncomplete(r *mcpgwv1.VerifyAuditResponse) int {
	n := 0
	for _, rep := range r.GetReports() {
		if !rep.GetComplete() {
			n++
		}
	}
	return n
}

func printVerify(w io.Writer, r *mcpgwv1.VerifyAuditResponse) {
	t := newTable(w, "NODE", "EPOCH", "BATCHES", "EVENTS", "STORED", "EXPIRED", "REJECTED", "DROPPED", "STATUS")
	for _, rep := range r.GetReports() {
		for _, e := range rep.GetEpochs() {
			t.row(rep.GetNodeId(), strconv.FormatUint(e.GetEpoch(), 10),
				fmt.Sprintf("%d (%d-%d)", e.GetBatches(), e.GetFirstSeq(), e.GetLastSeq()),
				strconv.FormatUint(e.GetLedgerEvents(), 10), strconv.FormatUint(e.GetStoredEvents(), 10),
				strconv.FormatUint(e.GetExpiredEvents(), 10), strconv.FormatUint(e.GetRejectedEvents(), 10),
				strconv.FormatUint(e.GetDroppedEvents(), 10), epochStatus(e)+prunedText(e))
		}
		if len(rep.GetEpochs()) == 0 {
			t.row(rep.GetNodeId(), "", "0", "0", "0", "0", "0", "0", completeWord(rep.GetComplete()))
		}
	}
	_ = t.flush()
	switch n := len(r.GetReports()); {
	case !r.GetComplete():
	case n == 0:
		fmt.Fprintln(w, "no audit chains yet: no node has shipped audit")
	case n == 1:
		fmt.Fprintln(w, "the chain is complete")
	default:
		fmt.Fprintf(w, "all %d chains are complete\n", n)
	}
}

// prunedText says which part of an epoch's ledger retention has folded
// into a summary, so an operator reading the counts knows the rows behind
// them are gone on purpose.
func prunedText(e *mcpgwv1.AuditEpochReport) string {
	if e.GetPrunedThroughSeq() == 0 {
		return ""
	}
	return fmt.Sprintf(" (ledger rows %d-%d pruned by retention: %d batches kept as a summary)", e.GetFirstSeq(), e.GetPrunedThroughSeq(), e.GetPrunedBatches())
}

func completeWord(ok bool) string {
	if ok {
		return "complete"
	}
	return "INCOMPLETE"
}

// epochStatus names what is wrong with an epoch, most serious first.
func epochStatus(e *mcpgwv1.AuditEpochReport) string {
	if e.GetComplete() {
		return "complete"
	}
	var why []string
	if n := len(e.GetBrokenLinks()); n > 0 {
		why = append(why, fmt.Sprintf("broken links at seq %s", joinUints(e.GetBrokenLinks())))
	}
	if n := len(e.GetCrcFailures()); n > 0 {
		why = append(why, fmt.Sprintf("CRC failures at seq %s", joinUints(e.GetCrcFailures())))
	}
	if len(e.GetMissing()) > 0 {
		var rs []string
		for _, m := range e.GetMissing() {
			rs = append(rs, fmt.Sprintf("%d-%d", m.GetFirst(), m.GetLast()))
		}
		why = append(why, "missing batches "+strings.Join(rs, ","))
	}
	if e.GetDroppedEvents() > 0 {
		why = append(why, droppedText(e))
	}
	if len(why) == 0 {
		why = append(why, "stored events differ from the ledger")
	}
	return "INCOMPLETE: " + strings.Join(why, "; ")
}

// droppedText says how many events the edge dropped and, where it sent
// the times, when: "5 events dropped at the edge (3 at 10:00:00Z–10:00:02Z
// before seq 4, 2 at an unrecorded time before seq 9)".
func droppedText(e *mcpgwv1.AuditEpochReport) string {
	s := fmt.Sprintf("%d events dropped at the edge", e.GetDroppedEvents())
	var gaps []string
	for _, g := range e.GetGaps() {
		when := "at an unrecorded time"
		if g.GetFirstEventTime() != nil {
			first, last := g.GetFirstEventTime().AsTime().UTC(), g.GetLastEventTime().AsTime().UTC()
			when = fmt.Sprintf("%s–%s", first.Format(time.RFC3339), last.Format(time.RFC3339))
		}
		gaps = append(gaps, fmt.Sprintf("%d %s before seq %d", g.GetEvents(), when, g.GetSeq()))
	}
	if len(gaps) == 0 {
		return s
	}
	return s + " (" + strings.Join(gaps, ", ") + ")"
}

func joinUints(vs []uint64) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.FormatUint(v, 10)
	}
	return strings.Join(s, ",")
}

// eventPrinter writes audit events in one of the output formats. Table
// and CSV are written row by row (no buffering of a whole result), so a
// large query or a long tail streams.
type eventPrinter struct {
	w      io.Writer
	format string
	g      *globals
	csv    *csv.Writer
	events []*mcpgwv1.AuditEvent // json only: one document needs them all
	header bool
}

func newEventPrinter(w io.Writer, format string, g *globals) (*eventPrinter, error) {
	p := &eventPrinter{w: w, format: format, g: g}
	if format == "csv" {
		p.csv = csv.NewWriter(w)
	}
	return p, nil
}

// auditColumns are the AuditEvent fields in proto order: the audit_events
// columns, and the CSV header.
var auditColumns = func() []protoreflect.FieldDescriptor {
	fs := (&mcpgwv1.AuditEvent{}).ProtoReflect().Descriptor().Fields()
	out := make([]protoreflect.FieldDescriptor, fs.Len())
	for i := range fs.Len() {
		out[i] = fs.Get(i)
	}
	return out
}()

func (p *eventPrinter) event(e *mcpgwv1.AuditEvent) error {
	switch p.format {
	case "json":
		p.events = append(p.events, e)
		return nil
	case "jsonl":
		b, err := protoJSON(e, true)
		if err != nil {
			return err
		}
		_, err = p.w.Write(append(b, '\n'))
		return err
	case "csv":
		if !p.header {
			p.header = true
			names := make([]string, len(auditColumns))
			for i, f := range auditColumns {
				names[i] = string(f.Name())
			}
			if err := p.csv.Write(names); err != nil {
				return err
			}
		}
		return p.csv.Write(csvRow(e))
	}
	if !p.header {
		p.header = true
		fmt.Fprintln(p.w, eventTableHeader)
	}
	_, err := fmt.Fprintln(p.w, eventTableRow(e))
	return err
}

// The event table uses fixed column widths rather than tabwriter so rows
// can be printed as they arrive (tail) without re-aligning earlier ones.
var eventTableHeader = fmt.Sprintf("%-24s  %-12s  %-16s  %-32s  %-8s  %-11s  %9s  %s",
	"TIME", "PRINCIPAL", "METHOD", "NAME", "DECISION", "STATUS", "LATENCY", "RULE")

func eventTableRow(e *mcpgwv1.AuditEvent) string {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	return fmt.Sprintf("%-24s  %-12s  %-16s  %-32s  %-8s  %-11s  %9s  %s",
		e.GetTs().AsTime().UTC().Format("2006-01-02T15:04:05.000Z"), dash(e.GetPrincipal()), dash(e.GetMethod()),
		dash(e.GetName()), dash(e.GetDecision()), dash(e.GetStatus()),
		(time.Duration(e.GetLatencyUs()) * time.Microsecond).String(), dash(e.GetRule()))
}

func csvRow(e *mcpgwv1.AuditEvent) []string {
	m := e.ProtoReflect()
	row := make([]string, len(auditColumns))
	for i, f := range auditColumns {
		v := m.Get(f)
		switch f.Kind() {
		case protoreflect.MessageKind: // ts
			if m.Has(f) {
				row[i] = e.GetTs().AsTime().UTC().Format(time.RFC3339Nano)
			}
		case protoreflect.Int64Kind:
			row[i] = strconv.FormatInt(v.Int(), 10)
		default:
			row[i] = v.String()
		}
	}
	return row
}

func (p *eventPrinter) flush() error {
	if p.csv != nil {
		p.csv.Flush()
		return p.csv.Error()
	}
	return nil
}

func (p *eventPrinter) close() error {
	switch p.format {
	case "json":
		return writeJSONEvents(p.w, p.events)
	case "csv":
		if !p.header { // an empty result still gets its header
			p.header = true
			names := make([]string, len(auditColumns))
			for i, f := range auditColumns {
				names[i] = string(f.Name())
			}
			if err := p.csv.Write(names); err != nil {
				return err
			}
		}
		return p.flush()
	case "table":
		if !p.header {
			fmt.Fprintln(p.g.stderr, "no matching audit events")
		}
	}
	return nil
}

func writeJSONEvents(w io.Writer, events []*mcpgwv1.AuditEvent) error {
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i, e := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		j, err := protoJSON(e, true)
		if err != nil {
			return err
		}
		b.Write(j)
	}
	b.WriteString("]}")
	return writeIndented(w, []byte(b.String()))
}
