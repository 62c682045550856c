package commands

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/docproto"
	"github.com/mcpgw/mcpgw/internal/document"
)

type applyOptions struct {
	files      []string
	dryRun     bool
	prune      bool
	allowEmpty bool
	wait       bool
	timeout    time.Duration
	expected   int64
	out        *outputFlag
}

func newApplyCmd(g *globals) *cobra.Command {
	o := &applyOptions{}
	c := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [-f ...]",
		Short: "Apply a declarative document: upsert what it names, show the diff",
		Long: `Apply the declarative document (backends, roles, bindings, principals) to the
control plane in one new revision, and print what changed:

  + backend github      created
  ~ role developer      changed
  - binding readonly    deleted (only with --prune)

Several files, a directory (its *.yaml and *.yml files, in name order) or
stdin (-) can be given; their documents ('---' separated; empty ones ignored)
are merged. The document is parsed and checked locally first, so mistakes are
reported with file and line before anything is sent. Without --prune nothing is
deleted. API keys, join tokens and nodes are never touched.

The auth: and audit: sections configure standalone edges only and are refused.

--wait follows the rollout until every connected edge has applied the new
revision, and exits 1 if any edge rejects it (NACK) or --timeout passes.`,
		Example: `  mcpctl apply -f policy.yaml --dry-run
  mcpctl apply -f config/ --prune --wait
  mcpctl get policy -o yaml | sed s/foo/bar/ | mcpctl apply -f -`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.apply(c.Context(), c.OutOrStdout(), o)
		},
	}
	f := c.Flags()
	f.StringSliceVarP(&o.files, "filename", "f", nil, "file, directory or - (stdin) holding the document; repeatable")
	f.BoolVar(&o.dryRun, "dry-run", false, "validate and show the diff; change nothing")
	f.BoolVar(&o.prune, "prune", false, "also delete backends, roles, bindings and principals the document omits")
	f.BoolVar(&o.allowEmpty, "allow-empty", false, "with --prune, allow an empty document (deletes everything)")
	f.BoolVar(&o.wait, "wait", false, "wait until every connected edge applied the new revision; exit 1 on a NACK or timeout")
	f.DurationVar(&o.timeout, "timeout", 60*time.Second, "with --wait: how long to wait")
	f.Int64Var(&o.expected, "expected-revision", 0, "apply only if the installation is still at this revision (e.g. the one a dry run showed)")
	o.out = addOutputFlag(c, "text", "text", "json")
	_ = c.MarkFlagFilename("filename", "yaml", "yml")
	return c
}

func (g *globals) apply(ctx context.Context, w io.Writer, o *applyOptions) error {
	if len(o.files) == 0 {
		return usagef("apply needs -f FILE, -f DIR or -f - (see 'mcpctl apply --help')")
	}
	if o.wait && o.dryRun {
		return usagef("--wait and --dry-run do not go together: a dry run makes no revision to wait for")
	}
	if o.wait && o.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	if o.expected < 0 {
		return usagef("--expected-revision must be positive")
	}
	doc, err := g.readDocument(o.files)
	if err != nil {
		return err
	}
	if err := fleetOnly(doc); err != nil {
		return err
	}
	pd := docproto.DocumentToProto(*doc)
	if o.prune && !o.allowEmpty && len(pd.GetBackends())+len(pd.GetRoles())+len(pd.GetBindings())+len(pd.GetPrincipals()) == 0 {
		return fmt.Errorf("the document is empty: with --prune that deletes every backend, role, binding and principal; pass --allow-empty if that is what you want")
	}
	cl, err := g.dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	cctx, cancel := cl.call(ctx)
	defer cancel()
	r, err := cl.ApplyPolicy(cctx, &mcpgwv1.ApplyPolicyRequest{Document: pd, DryRun: o.dryRun, Prune: o.prune, ExpectedRevision: o.expected})
	if err != nil {
		return cl.rpcError("applying the document", err)
	}
	progress := w
	if o.out.value == "json" {
		if err := writeJSON(w, r); err != nil {
			return err
		}
		progress = g.stderr // keep stdout one JSON document
	} else {
		printDiff(w, r)
	}
	if o.wait {
		return g.followRollout(ctx, cl, progress, r.GetRevision(), "", o.timeout, false)
	}
	return nil
}

// printDiff prints one line per change and then the outcome.
func printDiff(w io.Writer, r *mcpgwv1.ApplyPolicyResponse) {
	for _, ch := range r.GetChanges() {
		fmt.Fprintf(w, "%s %s %s\n", changeMark(ch.GetAction()), changeKindWord(ch.GetKind()), ch.GetName())
		// What an update changed is worth reading; a create or delete
		// would only list every field of the resource.
		if d := strings.TrimSpace(ch.GetDescription()); d != "" && ch.GetAction() == mcpgwv1.ChangeAction_CHANGE_ACTION_UPDATE {
			for line := range strings.SplitSeq(d, "\n") {
				fmt.Fprintf(w, "    %s\n", line)
			}
		}
	}
	n := len(r.GetChanges())
	switch {
	case n == 0:
		fmt.Fprintf(w, "no changes (revision %d)\n", r.GetRevision())
	case !r.GetCommitted():
		fmt.Fprintf(w, "dry run: would apply %s to revision %d\n", plural(n, "change", "changes"), r.GetBaseRevision())
	default:
		fmt.Fprintf(w, "applied revision %d\n", r.GetRevision())
	}
}

// fleetOnly refuses what a control plane cannot take: the edge-local
// sections and key hashes, which a standalone edge's file may hold.
func fleetOnly(d *document.Document) error {
	var what string
	switch {
	case d.Auth != nil && d.Audit != nil:
		what = "auth: and audit: sections, which configure"
	case d.Auth != nil:
		what = "an auth: section, which configures"
	case d.Audit != nil:
		what = "an audit: section, which configures"
	}
	if what != "" {
		return fmt.Errorf("the document has %s a standalone edge (its --config file) and cannot be applied to a control plane; remove them and apply again", what)
	}
	for _, p := range d.Principals {
		if p.APIKeySHA256 != "" {
			return fmt.Errorf("principal %q has api_key_sha256: with a control plane, API keys are made with 'mcpctl keys create', never applied; remove the field and apply again", p.Name)
		}
	}
	return nil
}

// readDocument parses every -f argument (files, directories, "-" for
// stdin) into one merged document with internal/document, the parser
// standalone edges use, whose errors name the file and line. Whole-document
// validation is left to the control plane: a document applied on its own
// may refer to what is already stored (bindings of existing roles), and
// the server checks the merged result with the edges' compiler.
func (g *globals) readDocument(args []string) (*document.Document, error) {
	if n := slices.Index(args, "-"); n >= 0 && slices.Index(args[n+1:], "-") >= 0 {
		return nil, usagef("-f - given twice")
	}
	d, err := document.ParseFilesWithStdin(g.stdin, args...)
	if err != nil {
		return nil, err
	}
	return d, nil
}
