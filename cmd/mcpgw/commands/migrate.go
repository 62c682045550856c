package commands

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/mcpgw/mcpgw/cmd/internal/cli"
	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/migrations"
)

// envDatabaseURL is read when --database-url is not given, so the URL (and
// any password in it) can stay out of the process list.
const envDatabaseURL = "MCPGW_DATABASE_URL"

func newMigrateCmd() *cobra.Command {
	var databaseURL string
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Apply database migrations",
		Long: `Apply the schema migrations built into this binary to a Postgres database,
in order, each in its own transaction, and say which ones it applied.

Safe to run at any time and from several places at once: migrators take an
advisory lock, and a database that is current is left alone. 'mcpgw cp'
migrates at start unless told --no-migrate, so running this is needed only
when the control plane may not change the schema itself.`,
		Example: `  mcpgw migrate --database-url postgres://mcpgw@db:5432/mcpgw
  MCPGW_DATABASE_URL=postgres://mcpgw@db:5432/mcpgw mcpgw migrate`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if databaseURL == "" {
				databaseURL = os.Getenv(envDatabaseURL)
			}
			if databaseURL == "" {
				return cli.Usage(fmt.Errorf("no database: give --database-url or set %s", envDatabaseURL))
			}
			applied, st, err := store.MigrateURL(c.Context(), databaseURL, migrations.FS)
			out := c.OutOrStdout()
			// What was applied is reported even when a later migration fails,
			// since it is now in the database.
			for _, m := range applied {
				fmt.Fprintf(out, "applied %s\n", m)
			}
			if err != nil {
				return oneLineError{err}
			}
			if len(applied) == 0 {
				_, err = fmt.Fprintf(out, "nothing to do: schema at version %d\n", st.Version)
			} else {
				_, err = fmt.Fprintf(out, "schema at version %d\n", st.Version)
			}
			return err
		},
	}
	c.Flags().StringVar(&databaseURL, "database-url", "",
		"Postgres URL, e.g. postgres://user@host:5432/db (default $"+envDatabaseURL+")")
	return c
}

// oneLineError folds a multi-line error (pgx lists every connection attempt
// on its own line, often the same one twice with sslmode=prefer) into the
// single line the command line promises.
type oneLineError struct{ err error }

var lineBreak = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\s*\n\s*`) })

func (e oneLineError) Error() string {
	lines := lineBreak().Split(e.err.Error(), -1)
	var b strings.Builder
	seen := make(map[string]bool, len(lines))
	for i, l := range lines {
		if i > 0 && (l == "" || seen[l]) {
			continue
		}
		seen[l] = true
		if i > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(l)
	}
	return b.String()
}

func (e oneLineError) Unwrap() error { return e.err }
