package commands

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

func newHistoryCmd(g *globals) *cobra.Command {
	var (
		limit int
		out   *outputFlag
	)
	c := &cobra.Command{
		Use:   "history [REVISION]",
		Short: "Show the config change log: who changed what, at which revision",
		Long: `List config revisions, newest first, with who made each (the admin token or
certificate) and through which call; with a REVISION, show its changes as
apply prints them.`,
		Example: `  mcpctl history
  mcpctl history 12`,
		Args: rangeArgs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			if limit < 0 {
				return usagef("--limit must be 0 (no limit) or positive")
			}
			var rev int64
			if len(args) == 1 {
				n, err := strconv.ParseInt(args[0], 10, 64)
				if err != nil || n <= 0 {
					return usagef("REVISION %q: want a positive number", args[0])
				}
				rev = n
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			defer cl.Close()
			w := c.OutOrStdout()
			if rev > 0 {
				cctx, cancel := cl.call(c.Context())
				defer cancel()
				r, err := cl.GetRevision(cctx, &mcpgwv1.GetRevisionRequest{Revision: rev})
				if err != nil {
					return cl.rpcError(fmt.Sprintf("reading revision %d", rev), err)
				}
				if done, err := writeStructured(w, out.value, r.GetRevision()); done {
					return err
				}
				x := r.GetRevision()
				f := fields{w: w}
				f.add("Revision", x.GetRevision())
				f.add("Committed", timeText(x.GetCommitTime()))
				f.add("Actor", x.GetActor())
				f.add("Operation", x.GetOperation())
				fmt.Fprintln(w, "Changes:")
				for _, ch := range x.GetChanges() {
					fmt.Fprintf(w, "  %s %s %s\n", changeMark(ch.GetAction()), changeKindWord(ch.GetKind()), ch.GetName())
					for line := range strings.SplitSeq(strings.TrimSpace(ch.GetDescription()), "\n") {
						if line != "" {
							fmt.Fprintf(w, "      %s\n", line)
						}
					}
				}
				return nil
			}
			revs, err := g.listRevisions(c.Context(), cl, limit)
			if err != nil {
				return err
			}
			if done, err := writeStructured(w, out.value, &mcpgwv1.ListRevisionsResponse{Revisions: revs}); done {
				return err
			}
			if g.noneFound(len(revs), "revisions", "the first 'mcpctl apply' makes revision 1") {
				return nil
			}
			t := newTable(w, "REVISION", "AGE", "ACTOR", "OPERATION", "CHANGES")
			for _, r := range revs {
				t.row(strconv.FormatInt(r.GetRevision(), 10), g.ageText(r.GetCommitTime()), r.GetActor(), r.GetOperation(), changesSummary(r.GetChanges()))
			}
			return t.flush()
		},
	}
	c.Flags().IntVar(&limit, "limit", 20, "at most this many revisions (0 = all)")
	out = addOutputFlag(c, "table", "table", "json", "yaml")
	return c
}

func (g *globals) listRevisions(ctx context.Context, cl *client, limit int) ([]*mcpgwv1.Revision, error) {
	var all []*mcpgwv1.Revision
	token := ""
	for {
		size := 1000
		if limit > 0 {
			size = min(size, limit-len(all))
		}
		cctx, cancel := cl.call(ctx)
		r, err := cl.ListRevisions(cctx, &mcpgwv1.ListRevisionsRequest{PageSize: int32(size), PageToken: token})
		cancel()
		if err != nil {
			return nil, cl.rpcError("listing revisions", err)
		}
		all = append(all, r.GetRevisions()...)
		token = r.GetNextPageToken()
		if token == "" || (limit > 0 && len(all) >= limit) {
			if limit > 0 && len(all) > limit {
				all = all[:limit]
			}
			return all, nil
		}
	}
}

// changesSummary is a revision's changes on one line: "+backend/github
// ~role/developer", shortened when long.
func changesSummary(chs []*mcpgwv1.Change) string {
	const show = 4
	parts := make([]string, 0, show+1)
	for i, ch := range chs {
		if i == show {
			parts = append(parts, fmt.Sprintf("(+%d more)", len(chs)-show))
			break
		}
		parts = append(parts, changeMark(ch.GetAction())+strings.ReplaceAll(changeKindWord(ch.GetKind()), " ", "-")+"/"+ch.GetName())
	}
	return strings.Join(parts, " ")
}

func changeMark(a mcpgwv1.ChangeAction) string {
	switch a {
	case mcpgwv1.ChangeAction_CHANGE_ACTION_CREATE:
		return "+"
	case mcpgwv1.ChangeAction_CHANGE_ACTION_UPDATE:
		return "~"
	case mcpgwv1.ChangeAction_CHANGE_ACTION_DELETE:
		return "-"
	}
	return "?"
}
