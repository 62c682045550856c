package commands

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

func newNodesCmd(g *globals) *cobra.Command {
	o := &getOptions{}
	c := &cobra.Command{
		Use:   "nodes [NAME|ID]",
		Short: "List edges: revision applied, last seen, NACKs, audit spool (same as get nodes)",
		Args:  rangeArgs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			k, _ := lookupKind("nodes")
			return g.get(c.Context(), c.OutOrStdout(), k, name, o)
		},
	}
	o.addFlags(c)
	return c
}

func (g *globals) getNodes(ctx context.Context, cl *client, w io.Writer, id string, o *getOptions) error {
	var items []*mcpgwv1.Node
	var rev int64
	if id != "" {
		var err error
		if id, err = resolveNode(ctx, cl, id); err != nil {
			return err
		}
		cctx, cancel := cl.call(ctx)
		defer cancel()
		r, err := cl.GetNode(cctx, &mcpgwv1.GetNodeRequest{NodeId: id})
		if err != nil {
			return cl.rpcError(fmt.Sprintf("getting node %q", id), err)
		}
		items = append(items, r.GetNode())
	} else {
		var err error
		items, err = listAll(ctx, cl, func(ctx context.Context, tok string) ([]*mcpgwv1.Node, string, error) {
			r, err := cl.ListNodes(ctx, &mcpgwv1.ListNodesRequest{NodeGroup: o.nodeGroup, IncludeRevoked: o.includeAll, PageToken: tok})
			rev = max(rev, r.GetRevision())
			return r.GetNodes(), r.GetNextPageToken(), err
		})
		if err != nil {
			return cl.rpcError("listing nodes", err)
		}
	}
	var m proto.Message = &mcpgwv1.ListNodesResponse{Nodes: items, Revision: rev}
	if id != "" {
		m = items[0]
	}
	if done, err := writeStructured(w, o.out.value, m); done {
		return err
	}
	if g.noneFound(len(items), "nodes", "enroll an edge with a token from 'mcpctl join-token create'") {
		return nil
	}
	// People look nodes up by name; the server sorts by id.
	slices.SortStableFunc(items, func(a, b *mcpgwv1.Node) int {
		return cmp.Or(strings.Compare(a.GetName(), b.GetName()), strings.Compare(a.GetId(), b.GetId()))
	})
	wide := o.out.value == "wide"
	headers := []string{"NAME", "STATUS", "REVISION", "LAST SEEN", "SPOOL", "VERSION", "LAST NACK"}
	if wide {
		headers = append(headers, "ID", "GROUP", "REPLICA", "HASH", "BACKENDS", "LABELS")
	}
	t := newTable(w, headers...)
	for _, n := range items {
		row := []string{n.GetName(), nodeState(n), revisionText(n.GetAppliedRevision(), rev), g.ageText(n.GetLastSeenTime()),
			g.spoolText(n.GetStatus()), n.GetVersion(), openNackText(n)}
		if wide {
			row = append(row, n.GetId(), n.GetNodeGroup(), n.GetConnectedReplica(), shortHash(n.GetAppliedHash()),
				backendsHealthText(n.GetStatus().GetBackends()), labelsText(n.GetLabels()))
		}
		t.row(row...)
	}
	return t.flush()
}

// resolveNode accepts a node id or, since ids are long and names are what
// people see in tables, a node name that is unique among enrolled nodes.
func resolveNode(ctx context.Context, cl *client, arg string) (string, error) {
	if looksLikeUUID(arg) {
		return arg, nil
	}
	nodes, err := listAll(ctx, cl, func(ctx context.Context, tok string) ([]*mcpgwv1.Node, string, error) {
		r, err := cl.ListNodes(ctx, &mcpgwv1.ListNodesRequest{IncludeRevoked: true, PageToken: tok})
		return r.GetNodes(), r.GetNextPageToken(), err
	})
	if err != nil {
		return "", cl.rpcError(fmt.Sprintf("looking up node %q", arg), err)
	}
	var ids []string
	for _, n := range nodes {
		if n.GetName() == arg {
			ids = append(ids, n.GetId())
		}
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("no node is named or has the id %q (see 'mcpctl nodes --all')", arg)
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("%d nodes are named %q; give the id instead: %s", len(ids), arg, strings.Join(ids, ", "))
}

func looksLikeUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F'):
			return false
		}
	}
	return true
}

func nodeState(n *mcpgwv1.Node) string {
	switch {
	case n.GetRevokeTime() != nil:
		return "revoked"
	case n.GetConnected():
		return "connected"
	}
	return "disconnected"
}

// revisionText shows the applied revision, and how far behind it is when
// the current one is known.
func revisionText(applied, current int64) string {
	if applied == 0 {
		return "none"
	}
	if current > applied {
		return fmt.Sprintf("%d (current %d)", applied, current)
	}
	return strconv.FormatInt(applied, 10)
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// openNackText is the table's LAST NACK: empty once the node applied the
// rejected revision or a later one (an edge whose environment was fixed and
// that was restarted ACKs the revision it had rejected), so the column
// shows only rejections that still hold the node back.
func openNackText(n *mcpgwv1.Node) string {
	if r := n.GetLastNack(); r != nil && r.GetRevision() <= n.GetAppliedRevision() {
		return ""
	}
	return nackText(n.GetLastNack())
}

func nackText(r *mcpgwv1.ConfigRejection) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("rev %d: %s", r.GetRevision(), oneLine(r.GetError()))
}

func (g *globals) spoolText(st *mcpgwv1.EdgeStatus) string {
	s := st.GetAuditSpool()
	if s == nil {
		return ""
	}
	txt := fmt.Sprintf("%s/%d batches", bytesText(s.GetDepthBytes()), s.GetDepthBatches())
	// How long the oldest batch has waited says more about a stuck
	// pipeline than the depth: a deep spool draining fast is fine.
	if at, ok := oldestUnacked(st); ok {
		txt += ", oldest " + g.age(at)
	}
	return txt
}

// oldestUnacked is when the oldest unacknowledged batch of the report was
// spooled: the age the edge reported is as of its report_time, which may
// be a status interval old (or much older for a node that went away).
func oldestUnacked(st *mcpgwv1.EdgeStatus) (time.Time, bool) {
	age := st.GetAuditSpool().GetOldestUnackedAge()
	if age == nil || age.AsDuration() <= 0 || st.GetReportTime() == nil {
		return time.Time{}, false
	}
	return st.GetReportTime().AsTime().Add(-age.AsDuration()), true
}

func backendsHealthText(bs []*mcpgwv1.BackendHealth) string {
	parts := make([]string, 0, len(bs))
	for _, b := range bs {
		state := strings.ToLower(strings.TrimPrefix(b.GetState().String(), "BACKEND_STATE_"))
		parts = append(parts, b.GetName()+"="+state)
	}
	return strings.Join(parts, ",")
}

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// oneLine folds a multi-line message so it fits a table cell or a log line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func newRolloutCmd(g *globals) *cobra.Command {
	var (
		revision  int64
		watch     bool
		timeout   time.Duration
		nodeGroup string
		out       *outputFlag
	)
	status := &cobra.Command{
		Use:   "status",
		Short: "Show which connected edges applied a revision; --watch follows it until they all answer",
		Long: `Show how a revision is rolling out to the connected edges: how many applied it,
how many rejected it (NACK, with the node and the error) and how many have not
answered yet. Without --revision it follows the current revision.

With --watch, mcpctl follows the rollout until no connected edge is pending and
exits 1 if any edge rejected it or --timeout passed first. With -o json it prints
the rollout state as JSON (with --watch, one line per change).`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if revision < 0 {
				return usagef("--revision must be positive")
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			defer cl.Close()
			if watch {
				return g.followRollout(c.Context(), cl, c.OutOrStdout(), revision, nodeGroup, timeout, out.value == "json")
			}
			return g.rolloutSnapshot(c.Context(), cl, c.OutOrStdout(), revision, nodeGroup, out.value == "json")
		},
	}
	status.Flags().Int64Var(&revision, "revision", 0, "revision to follow (default: the current one)")
	status.Flags().BoolVarP(&watch, "watch", "w", false, "follow until every connected edge answered; exit 1 on a NACK or timeout")
	status.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "with --watch: how long to wait")
	status.Flags().StringVar(&nodeGroup, "node-group", "", "only edges of this node group")
	out = addOutputFlag(status, "text", "text", "json")
	return group("rollout", "Follow config rollouts to the edges", status)
}

// rolloutSnapshot prints the rollout state once: the first message of
// WatchRollout, which the server sends at once.
func (g *globals) rolloutSnapshot(ctx context.Context, cl *client, w io.Writer, revision int64, group string, asJSON bool) error {
	cctx, cancel := cl.call(ctx)
	defer cancel()
	stream, err := cl.WatchRollout(cctx, &mcpgwv1.WatchRolloutRequest{Revision: revision, NodeGroup: group})
	if err != nil {
		return cl.rpcError("reading the rollout", err)
	}
	st, err := stream.Recv()
	if err != nil {
		return cl.rpcError("reading the rollout", err)
	}
	if asJSON {
		return writeJSON(w, st)
	}
	fmt.Fprintln(w, rolloutLine(st))
	for _, r := range st.GetRejections() {
		fmt.Fprintln(w, rejectionLine(r))
	}
	return nil
}

// followRollout follows WatchRollout until the rollout is done, printing a
// progress line whenever the counts change and each NACK once. It fails if
// any node rejected the revision or the timeout passed first.
//
// With asJSON, every state the server sends is printed as one JSON line
// (the WatchRolloutResponse, proto field names) instead.
func (g *globals) followRollout(ctx context.Context, cl *client, w io.Writer, revision int64, group string, timeout time.Duration, asJSON bool) error {
	if timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stream, err := cl.WatchRollout(wctx, &mcpgwv1.WatchRolloutRequest{Revision: revision, NodeGroup: group})
	if err != nil {
		return cl.rpcError("following the rollout", err)
	}
	var last *mcpgwv1.WatchRolloutResponse
	lastLine := ""
	reported := map[string]bool{}
	for {
		st, err := stream.Recv()
		if err != nil {
			// The server may notice the propagated deadline a moment before
			// the local context does; either way it is our --timeout.
			if ctx.Err() == nil && (wctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded) {
				return timeoutError(timeout, revision, last)
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("following the rollout: the control plane ended the stream before the rollout finished")
			}
			return cl.rpcError("following the rollout", err)
		}
		last = st
		if asJSON {
			b, err := protoJSON(st, false)
			if err != nil {
				return err
			}
			if _, err := w.Write(append(b, '\n')); err != nil {
				return err
			}
		} else if line := rolloutLine(st); line != lastLine {
			fmt.Fprintln(w, line)
			lastLine = line
		}
		for _, r := range st.GetRejections() {
			if key := r.GetNodeId() + "/" + strconv.FormatInt(r.GetRejection().GetRevision(), 10); !asJSON && !reported[key] {
				reported[key] = true
				fmt.Fprintln(w, rejectionLine(r))
			}
		}
		if !st.GetDone() {
			continue
		}
		if st.GetNacked() > 0 {
			return fmt.Errorf("rollout of revision %d failed: %s rejected it", st.GetRevision(), plural(int(st.GetNacked()), "node", "nodes"))
		}
		return nil
	}
}

func timeoutError(timeout time.Duration, revision int64, st *mcpgwv1.WatchRolloutResponse) error {
	if st == nil {
		return fmt.Errorf("timed out after %s waiting for the rollout of revision %d to start", timeout, revision)
	}
	return fmt.Errorf("timed out after %s waiting for revision %d: %d/%d nodes acked, %d pending", timeout, st.GetRevision(), st.GetAcked(), st.GetTotal(), st.GetPending())
}

func rolloutLine(st *mcpgwv1.WatchRolloutResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "revision %d: ", st.GetRevision())
	if st.GetTotal() == 0 {
		b.WriteString("no connected nodes")
	} else {
		fmt.Fprintf(&b, "%d/%d nodes acked", st.GetAcked(), st.GetTotal())
		if st.GetNacked() > 0 {
			fmt.Fprintf(&b, ", %d nacked", st.GetNacked())
		}
		if st.GetPending() > 0 {
			fmt.Fprintf(&b, ", %d pending", st.GetPending())
		}
	}
	if st.GetDisconnected() > 0 {
		fmt.Fprintf(&b, " (%d disconnected, not counted)", st.GetDisconnected())
	}
	return b.String()
}

func rejectionLine(r *mcpgwv1.NodeRejection) string {
	name := r.GetNodeName()
	if name == "" || name == r.GetNodeId() {
		name = r.GetNodeId()
	} else {
		name += " (" + r.GetNodeId() + ")"
	}
	line := fmt.Sprintf("  NACK from node %s for revision %d: %s", name, r.GetRejection().GetRevision(), oneLine(r.GetRejection().GetError()))
	for _, re := range r.GetRejection().GetRejected() {
		line += fmt.Sprintf("\n    %s %q: %s", changeKindWord(re.GetKind()), re.GetName(), oneLine(re.GetError()))
	}
	return line
}
