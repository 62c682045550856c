// Package cli is the command line that mcpgw and mcpgw-edge share: exit
// codes, usage errors, MCPGW_<FLAG> from the environment, the version
// command and the edge command itself. mcpgw-edge is the edge alone, so a
// fleet's edges need not link the control plane, SQLite and migrations;
// both binaries build their edge from this package, so its flags cannot
// drift apart.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes that scripts can rely on.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// usageError marks errors in the command line itself (exit code 2).
type usageError struct{ Err error }

func (e usageError) Error() string { return e.Err.Error() }
func (e usageError) Unwrap() error { return e.Err }

// Root makes c a program's root command: errors are printed once, by
// Execute, as one line, and a bad flag is a usage error.
func Root(c *cobra.Command) *cobra.Command {
	c.SilenceErrors = true
	c.SilenceUsage = true
	c.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return Usage(fmt.Errorf("%w (see '%s --help')", err, c.CommandPath()))
	})
	return c
}

// Execute runs root with args until it returns or SIGINT/SIGTERM cancels
// its context, and returns the process exit code.
func Execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %s\n", root.Name(), strings.TrimRight(err.Error(), "\n"))
	var ue usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	return ExitFailure
}

// NoArgs rejects positional arguments with a usage error.
func NoArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return Usage(fmt.Errorf("%s takes no arguments, got %q", c.CommandPath(), args))
	}
	return nil
}

// FlagsFromEnv sets every flag not given on the command line from
// MCPGW_<FLAG> (upper case, dashes as underscores), when that is set.
func FlagsFromEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(fl *pflag.Flag) {
		if err != nil || fl.Changed {
			return
		}
		name := "MCPGW_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if serr := fs.Set(fl.Name, v); serr != nil {
			err = fmt.Errorf("%s=%q: %w", name, v, serr)
		}
	})
	return err
}

// Usage marks err as an error in the command line (exit code 2).
func Usage(err error) error { return usageError{Err: err} }
