// Package commands holds the mcpctl command tree. Commands talk to the control
// plane's AdminService over gRPC; output formatting and exit codes live here so
// that main stays a few lines.
//
// Every error reaches the user as one line on stderr (see execute): gRPC
// statuses are translated into words and hints by rpcError, usage mistakes
// are marked with cmdcli.Usage (usagef) so they exit 2, and nothing else ever prints a
// stack or a raw status.
package commands

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	cmdcli "github.com/mcpgw/mcpgw/cmd/internal/cli"
)

// Exit codes scripts can trust (cmd/internal/cli, shared with mcpgw): 0
// success, 1 the operation failed, 2 usage error.
const (
	exitOK      = cmdcli.ExitOK
	exitFailure = cmdcli.ExitFailure
	exitUsage   = cmdcli.ExitUsage
)

// usagef is an error in the command line itself (exit code 2).
func usagef(format string, a ...any) error { return cmdcli.Usage(fmt.Errorf(format, a...)) }

// Execute runs mcpctl with args and returns the exit code.
func Execute(args []string) int {
	return execute(context.Background(), args, os.Stdout, os.Stderr)
}

func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, env{getenv: os.Getenv, stdin: os.Stdin}, args, stdout, stderr)
}

// env is what a run takes from the process besides arguments and output,
// so tests can give each run its own environment without touching the
// process's.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	// age formats how long ago a time was, for table columns. nil means
	// humanAge against the wall clock; golden tests fix it, since server
	// timestamps cannot be.
	age func(time.Time) string
	// until formats how far ahead a time is ("in 89d", "expired"); nil
	// means untilNow.
	until func(time.Time) string
}

func run(ctx context.Context, e env, args []string, stdout, stderr io.Writer) int {
	if e.age == nil {
		e.age = func(t time.Time) string { return humanAge(time.Since(t)) }
	}
	if e.until == nil {
		e.until = untilNow
	}
	g := &globals{env: e, stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetIn(e.stdin)
	return cmdcli.Execute(ctx, root, args, stdout, stderr)
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "mcpctl",
		Short: "Admin CLI for the mcpgw control plane",
		Long: `mcpctl manages an mcpgw installation through its control plane's admin API:
backends, roles, bindings and principals (declaratively with apply, or one at a
time), API keys, join tokens for new edges, rollouts, policy checks and audit.

Connection settings come from flags, then MCPCTL_SERVER, MCPCTL_TOKEN and
MCPCTL_CA_FILE, then the current context (see 'mcpctl config --help').`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmdcli.Root(root)
	g.addConnectionFlags(root)
	root.AddCommand(
		newVersionCmd(g),
		newConfigCmd(g),
		newApplyCmd(g),
		newGetCmd(g),
		newDescribeCmd(g),
		newDeleteCmd(g),
		newKeysCmd(g),
		newJoinTokenCmd(g),
		newNodesCmd(g),
		newRolloutCmd(g),
		newHistoryCmd(g),
		newCheckCmd(g),
		newAuditCmd(g),
		newCompletionCmd(),
	)
	return root
}

// group builds a command that only holds subcommands: bare, it prints its
// help; with an unknown subcommand, it is a usage error.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	c.AddCommand(subs...)
	return c
}

// groupRun runs a command that only holds subcommands: cobra lands here
// when the first argument names none of them.
func groupRun(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return c.Help()
	}
	hint := ""
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's own default, which it applies only on its own path
	}
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		hint = fmt.Sprintf("; did you mean %q?", s[0])
	}
	return usagef("unknown command %q for %q%s (see '%s --help')", args[0], c.CommandPath(), hint, c.CommandPath())
}

// exactArgs requires exactly the named positional arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s needs %s, got %d argument(s) (see '%s --help')",
				c.CommandPath(), strings.Join(names, " "), len(args), c.CommandPath())
		}
		return nil
	}
}

// rangeArgs accepts between lo and hi positional arguments.
func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usagef("%s takes %d to %d arguments, got %d (see '%s --help')",
				c.CommandPath(), lo, hi, len(args), c.CommandPath())
		}
		return nil
	}
}

// noArgs rejects positional arguments with a usage error.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q (see '%s --help')", c.CommandPath(), args, c.CommandPath())
	}
	return nil
}

// humanAge renders a span the way kubectl's AGE column does: one or two
// units, coarse enough to read at a glance.
func humanAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < 10*time.Minute:
		m := int(d / time.Minute)
		if s := int((d % time.Minute) / time.Second); s != 0 {
			return fmt.Sprintf("%dm%ds", m, s)
		}
		return fmt.Sprintf("%dm", m)
	case d < 3*time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		h := int(d / time.Hour)
		if m := int((d % time.Hour) / time.Minute); h < 8 && m != 0 {
			return fmt.Sprintf("%dh%dm", h, m)
		}
		return fmt.Sprintf("%dh", h)
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}
