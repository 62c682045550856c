package store_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/pgtest"
	"github.com/mcpgw/mcpgw/migrations"
)

func names(ms []store.Migration) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.String())
	}
	return out
}

func queryStrings(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrateEmptyDatabaseThenNoop(t *testing.T) {
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t, pgtest.Unmigrated()))
	ctx := t.Context()

	st, err := store.ReadStatus(ctx, pool, migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 0 || len(st.Applied) != 0 || st.Current() {
		t.Fatalf("empty database: status %+v, want version 0 and everything pending", st)
	}
	wantAll := names(st.Pending)
	if len(wantAll) == 0 || wantAll[0] != "0001_config" {
		t.Fatalf("pending on empty database = %v, want to start with 0001_config", wantAll)
	}

	dayBefore := time.Now().UTC()
	applied, err := store.Migrate(ctx, pool, migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	dayAfter := time.Now().UTC()
	if got := names(applied); !slices.Equal(got, wantAll) {
		t.Fatalf("applied %v, want %v", got, wantAll)
	}
	for _, m := range applied {
		if m.AppliedAt.IsZero() || len(m.Checksum) != 64 {
			t.Errorf("applied migration %s lacks applied_at or checksum: %+v", m, m)
		}
	}

	tables := queryStrings(t, pool, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`)
	wantTables := []string{"admin_tokens", "api_keys", "audit_events", "audit_ledger", "backends", "bindings",
		"config_changes", "config_head", "join_tokens", "nodes", "pki", "principals", "roles", "rules", "schema_migrations"}
	// Later migrations add tables; these must always be there.
	for _, want := range wantTables {
		if !slices.Contains(tables, want) {
			t.Errorf("table %s missing; have %v", want, tables)
		}
	}

	// Partitions for yesterday .. today+7, UTC, where today is the day the
	// migration ran (which may be either side of midnight around it).
	parts := queryStrings(t, pool, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_events'::regclass ORDER BY 1`)
	window := func(today time.Time) []string {
		var w []string
		for d := -1; d <= 7; d++ {
			w = append(w, "audit_events_p"+today.AddDate(0, 0, d).Format("20060102"))
		}
		return w
	}
	if !slices.Equal(parts, window(dayBefore)) && !slices.Equal(parts, window(dayAfter)) {
		t.Errorf("audit partitions = %v\nwant            %v", parts, window(dayBefore))
	}

	// The ingest benchmark depends on exactly this index set.
	indexes := queryStrings(t, pool, `SELECT indexdef FROM pg_indexes WHERE tablename = 'audit_events' ORDER BY indexname`)
	wantIndexes := []string{
		"CREATE UNIQUE INDEX audit_events_pkey ON ONLY public.audit_events USING btree (ts, id)",
		"CREATE INDEX audit_events_principal_ts_idx ON ONLY public.audit_events USING btree (principal, ts)",
		"CREATE INDEX audit_events_ts_brin ON ONLY public.audit_events USING brin (ts)",
	}
	if !slices.Equal(indexes, wantIndexes) {
		t.Errorf("audit_events indexes:\n%s\nwant\n%s", strings.Join(indexes, "\n"), strings.Join(wantIndexes, "\n"))
	}

	again, err := store.Migrate(ctx, pool, migrations.FS)
	if err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if len(again) != 0 {
		t.Fatalf("second Migrate applied %v, want nothing", names(again))
	}
	st, err = store.ReadStatus(ctx, pool, migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Current() || st.Version != applied[len(applied)-1].Version || !slices.Equal(names(st.Applied), wantAll) {
		t.Fatalf("status after migrating: %+v", st)
	}
}

// TestMigrateConcurrent starts two migrators on one database at once: both
// must succeed and each migration must run exactly once. The slow second
// migration keeps the first migrator inside the lock while the other waits.
func TestMigrateConcurrent(t *testing.T) {
	fsys := fstest.MapFS{
		"0001_hits.sql":  {Data: []byte("CREATE TABLE hits (version int NOT NULL);\nINSERT INTO hits VALUES (1);")},
		"0002_slow.sql":  {Data: []byte("SELECT pg_sleep(0.3);\nINSERT INTO hits VALUES (2);")},
		"0003_third.sql": {Data: []byte("INSERT INTO hits VALUES (3);")},
	}
	for _, tc := range []struct {
		name string
		fsys fstest.MapFS
	}{{"counting", fsys}, {"embedded", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			url := pgtest.NewDatabase(t, pgtest.Unmigrated())
			var src = migrations.FS
			if tc.fsys != nil {
				src = tc.fsys
			}
			var (
				wg      sync.WaitGroup
				start   = make(chan struct{})
				applied [2][]store.Migration
				errs    [2]error
			)
			for i := range 2 {
				pool := pgtest.NewPool(t, url)
				wg.Go(func() {
					<-start
					applied[i], errs[i] = store.Migrate(t.Context(), pool, src)
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("migrator %d: %v", i, err)
				}
			}
			all := append(names(applied[0]), names(applied[1])...)
			slices.Sort(all)
			pool := pgtest.NewPool(t, url)
			st, err := store.ReadStatus(t.Context(), pool, src)
			if err != nil {
				t.Fatal(err)
			}
			if want := names(st.Applied); !st.Current() || !slices.Equal(all, want) {
				t.Fatalf("migrators applied %v and %v together, want each of %v once", names(applied[0]), names(applied[1]), want)
			}
			if tc.fsys != nil {
				hits := queryStrings(t, pool, "SELECT version::text FROM hits ORDER BY 1")
				if !slices.Equal(hits, []string{"1", "2", "3"}) {
					t.Fatalf("migration bodies ran %v times, want 1, 2, 3 once each", hits)
				}
			}
		})
	}
}

func TestMigrateBrokenMigrationRollsBack(t *testing.T) {
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t, pgtest.Unmigrated()))
	ctx := t.Context()
	fsys := fstest.MapFS{
		"0001_good.sql": {Data: []byte("CREATE TABLE good (id int);")},
		// The first two statements succeed; the third fails, and none of it
		// may survive.
		"0002_bad.sql":   {Data: []byte("CREATE TABLE partial (id int);\nINSERT INTO partial VALUES (1);\nSELECT * FROM no_such_table;")},
		"0003_later.sql": {Data: []byte("CREATE TABLE later (id int);")},
	}
	applied, err := store.Migrate(ctx, pool, fsys)
	if err == nil {
		t.Fatal("Migrate with a broken migration succeeded")
	}
	if !strings.Contains(err.Error(), "0002_bad") || !strings.Contains(err.Error(), "no_such_table") {
		t.Errorf("error %q should name the migration and the cause", err)
	}
	if got := names(applied); !slices.Equal(got, []string{"0001_good"}) {
		t.Errorf("applied %v, want [0001_good]", got)
	}
	st, err := store.ReadStatus(ctx, pool, fsys)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 1 || !slices.Equal(names(st.Pending), []string{"0002_bad", "0003_later"}) {
		t.Errorf("status after failure: version %d, pending %v; want 1, [0002_bad 0003_later]", st.Version, names(st.Pending))
	}
	left := queryStrings(t, pool, `SELECT coalesce(to_regclass('good')::text, '-') || ' ' ||
		coalesce(to_regclass('partial')::text, '-') || ' ' || coalesce(to_regclass('later')::text, '-')`)
	if !slices.Equal(left, []string{"good - -"}) {
		t.Errorf("tables good/partial/later after failure: %v, want only good", left)
	}

	// Fixing the migration (it never applied, so it may change) lets the rest through.
	fsys["0002_bad.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE partial (id int);")}
	applied, err = store.Migrate(ctx, pool, fsys)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(applied); !slices.Equal(got, []string{"0002_bad", "0003_later"}) {
		t.Errorf("after the fix applied %v, want [0002_bad 0003_later]", got)
	}
}

func TestMigrateRefusesChangedOrUnknownMigrations(t *testing.T) {
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t, pgtest.Unmigrated()))
	ctx := t.Context()
	fsys := fstest.MapFS{
		"0001_a.sql": {Data: []byte("CREATE TABLE a (id int);")},
		"0002_b.sql": {Data: []byte("CREATE TABLE b (id int);")},
	}
	if _, err := store.Migrate(ctx, pool, fsys); err != nil {
		t.Fatal(err)
	}

	changed := fstest.MapFS{
		"0001_a.sql": {Data: []byte("CREATE TABLE a (id bigint);")},
		"0002_b.sql": fsys["0002_b.sql"],
		"0003_c.sql": {Data: []byte("CREATE TABLE c (id int);")},
	}
	applied, err := store.Migrate(ctx, pool, changed)
	if !errors.Is(err, store.ErrChangedMigration) || !strings.Contains(err.Error(), "0001_a") {
		t.Fatalf("Migrate with an edited applied migration: err = %v, want ErrChangedMigration naming 0001_a", err)
	}
	if len(applied) != 0 {
		t.Errorf("applied %v despite the changed migration", names(applied))
	}
	if _, err := store.ReadStatus(ctx, pool, changed); !errors.Is(err, store.ErrChangedMigration) {
		t.Errorf("ReadStatus with an edited applied migration: err = %v, want ErrChangedMigration", err)
	}
	renamed := fstest.MapFS{"0001_renamed.sql": fsys["0001_a.sql"], "0002_b.sql": fsys["0002_b.sql"]}
	if _, err := store.Migrate(ctx, pool, renamed); !errors.Is(err, store.ErrChangedMigration) {
		t.Errorf("Migrate with a renamed applied migration: err = %v, want ErrChangedMigration", err)
	}

	older := fstest.MapFS{"0001_a.sql": fsys["0001_a.sql"]}
	if _, err := store.Migrate(ctx, pool, older); !errors.Is(err, store.ErrUnknownMigration) || !strings.Contains(err.Error(), "0002_b") {
		t.Errorf("Migrate by an older binary: err = %v, want ErrUnknownMigration naming 0002_b", err)
	}
	if _, err := store.ReadStatus(ctx, pool, older); !errors.Is(err, store.ErrUnknownMigration) {
		t.Errorf("ReadStatus by an older binary: err = %v, want ErrUnknownMigration", err)
	}
	var c *string
	if err := pool.QueryRow(ctx, "SELECT to_regclass('c')::text").Scan(&c); err != nil || c != nil {
		t.Errorf("table c exists (%v, %v): a refused Migrate applied something", c, err)
	}
}

func TestMigrateRejectsBadMigrationFiles(t *testing.T) {
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t, pgtest.Unmigrated()))
	ok := &fstest.MapFile{Data: []byte("SELECT 1;")}
	for _, tc := range []struct {
		name string
		fsys fstest.MapFS
		want string
	}{
		{"no version", fstest.MapFS{"init.sql": ok}, `"init.sql": name must be NNNN_name.sql`},
		{"short version", fstest.MapFS{"1_init.sql": ok}, `"1_init.sql": name must be`},
		{"dash", fstest.MapFS{"0001-init.sql": ok}, `name must be`},
		{"zero", fstest.MapFS{"0000_init.sql": ok}, "version must be a positive number"},
		{"duplicate", fstest.MapFS{"0001_a.sql": ok, "0001_b.sql": ok}, "have the same version 1"},
		{"empty file", fstest.MapFS{"0001_a.sql": {Data: []byte(" \n")}}, `"0001_a.sql" is empty`},
		{"nothing", fstest.MapFS{"README.md": ok}, "no NNNN_name.sql files found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := store.Migrate(t.Context(), pool, tc.fsys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if _, err := store.ReadStatus(t.Context(), pool, tc.fsys); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadStatus err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// Other files next to the migrations are ignored, not mistaken for them.
	applied, err := store.Migrate(t.Context(), pool, fstest.MapFS{"0001_a.sql": ok, "README.md": ok, "sub/0002_x.sql": ok})
	if err != nil || !slices.Equal(names(applied), []string{"0001_a"}) {
		t.Fatalf("applied %v, %v; want [0001_a]", names(applied), err)
	}
}

func TestMigrateURL(t *testing.T) {
	url := pgtest.NewDatabase(t, pgtest.Unmigrated())
	applied, st, err := store.MigrateURL(t.Context(), url, migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) == 0 || !st.Current() || st.Version != applied[len(applied)-1].Version {
		t.Fatalf("MigrateURL: applied %v, status %+v", names(applied), st)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// Port 1 on loopback refuses at once.
	_, _, err = store.MigrateURL(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable", migrations.FS)
	if err == nil || !strings.Contains(err.Error(), "connecting to database") {
		t.Fatalf("unreachable database: err = %v", err)
	}
	_, _, err = store.MigrateURL(ctx, "postgres://u:secret@127.0.0.1:5432/x?sslmode=bogus", migrations.FS)
	if err == nil || !strings.Contains(err.Error(), "invalid database URL") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("bad URL: err = %v, want 'invalid database URL' without the password", err)
	}
}

// The audit schema: events inside the partition window insert, events
// outside it are refused (no default partition), and the CHECKs hold.
func TestAuditEventsPartitions(t *testing.T) {
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	ctx := t.Context()
	insert := func(ts, decision, status string) error {
		_, err := pool.Exec(ctx, `INSERT INTO audit_events
			(id, ts, node_id, principal, transport, method, backend, name, decision, rule, policy_revision, status, latency_us)
			VALUES (gen_random_uuid(), `+ts+`, gen_random_uuid(), 'alice', 'http', 'tools/call', 'github', 'github__x',
			$1, 'developer/0', 7, $2, 1200)`, decision, status)
		return err
	}
	sqlState := func(err error) string {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return pgErr.Code
		}
		return ""
	}

	if err := insert("now()", "allow", "ok"); err != nil {
		t.Fatalf("event for now: %v", err)
	}
	err := insert("now() + interval '400 days'", "allow", "ok")
	if sqlState(err) != "23514" || !strings.Contains(err.Error(), "no partition") {
		t.Fatalf("event 400 days ahead: err = %v, want 'no partition' (23514)", err)
	}
	if err := insert("now()", "maybe", "ok"); sqlState(err) != "23514" {
		t.Errorf("decision 'maybe': err = %v, want a check violation", err)
	}
	if err := insert("now()", "deny", "upstream_unavailable"); sqlState(err) != "23514" {
		t.Errorf("status 'upstream_unavailable': err = %v, want a check violation", err)
	}
	for _, s := range []string{"ok", "error", "denied", "timeout", "cancelled", "unavailable"} {
		if err := insert("now()", "deny", s); err != nil {
			t.Errorf("status %q: %v", s, err)
		}
	}

	var created int
	ensure := "SELECT mcpgw_ensure_audit_partitions(((now() + interval '400 days') AT TIME ZONE 'UTC')::date, 2)"
	if err := pool.QueryRow(ctx, ensure).Scan(&created); err != nil || created != 2 {
		t.Fatalf("ensuring partitions 400 days ahead: created %d, err %v; want 2", created, err)
	}
	if err := pool.QueryRow(ctx, ensure).Scan(&created); err != nil || created != 0 {
		t.Fatalf("ensuring them again: created %d, err %v; want 0 (idempotent)", created, err)
	}
	if err := insert("now() + interval '400 days'", "allow", "ok"); err != nil {
		t.Fatalf("event 400 days ahead after creating its partition: %v", err)
	}
	// The new partition got the parent's indexes and constraints, and not the
	// temporary bound check.
	var nIdx, nBound int
	if err := pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM pg_indexes WHERE tablename = 'audit_events_p' || to_char(((now() + interval '400 days') AT TIME ZONE 'UTC')::date, 'YYYYMMDD')),
		(SELECT count(*) FROM pg_constraint WHERE conname LIKE 'audit_events_p%_bound')`).Scan(&nIdx, &nBound); err != nil {
		t.Fatal(err)
	}
	if nIdx != 3 || nBound != 0 {
		t.Errorf("new partition has %d indexes (want 3) and %d leftover bound checks (want 0)", nIdx, nBound)
	}
	if err := insert("now() + interval '400 days'", "nope", "ok"); sqlState(err) != "23514" {
		t.Errorf("decision check on a new partition: err = %v, want a check violation", err)
	}

	// The ledger: a replayed batch is a no-op, and its counts stay coherent.
	ledger := `INSERT INTO audit_ledger (node_id, epoch, seq, event_count, first_ts, last_ts, batch_hash, prev_hash, crc, chain_ok)
		VALUES ('00000000-0000-7000-8000-000000000001', 1, 1, 3, now(), now(), sha256('b1'), NULL, 4294967295, true)
		ON CONFLICT DO NOTHING`
	for i, want := range []int64{1, 0} {
		tag, err := pool.Exec(ctx, ledger)
		if err != nil || tag.RowsAffected() != want {
			t.Fatalf("ledger insert %d: %v rows, err %v; want %d", i+1, tag.RowsAffected(), err, want)
		}
	}
	for what, sql := range map[string]string{
		"short hash":              `INSERT INTO audit_ledger (node_id, epoch, seq, event_count, batch_hash, crc, chain_ok) VALUES (gen_random_uuid(), 1, 1, 0, '\x00', 0, true)`,
		"crc above uint32":        `INSERT INTO audit_ledger (node_id, epoch, seq, event_count, batch_hash, crc, chain_ok) VALUES (gen_random_uuid(), 1, 1, 0, sha256('x'), 4294967296, true)`,
		"more rejected than sent": `INSERT INTO audit_ledger (node_id, epoch, seq, event_count, batch_hash, crc, chain_ok, rejected_count, rejected_reason) VALUES (gen_random_uuid(), 1, 1, 1, sha256('x'), 0, true, 2, 'future')`,
		"rejected without reason": `INSERT INTO audit_ledger (node_id, epoch, seq, event_count, batch_hash, crc, chain_ok, rejected_count) VALUES (gen_random_uuid(), 1, 1, 1, sha256('x'), 0, true, 1)`,
	} {
		if _, err := pool.Exec(ctx, sql); sqlState(err) != "23514" {
			t.Errorf("ledger %s: err = %v, want a check violation", what, err)
		}
	}

	for _, bad := range []string{"0", "367", "NULL"} {
		_, err := pool.Exec(ctx, "SELECT mcpgw_ensure_audit_partitions(current_date, "+bad+")")
		if sqlState(err) != "22023" {
			t.Errorf("mcpgw_ensure_audit_partitions(_, %s): err = %v, want invalid_parameter_value", bad, err)
		}
	}
}

// The config schema's invariants, checked by the database itself so a store
// bug cannot write a row the edge would misread.
func TestConfigSchemaConstraints(t *testing.T) {
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	ctx := t.Context()
	exec := func(sql string) error {
		_, err := pool.Exec(ctx, sql)
		return err
	}
	mustFail := func(what, sql string) {
		t.Helper()
		if err := exec(sql); err == nil {
			t.Errorf("%s: accepted, want refused", what)
		}
	}

	// Revisions come from config_head in commit order, starting at 1.
	for want := int64(1); want <= 2; want++ {
		var rev int64
		if err := pool.QueryRow(ctx,
			"UPDATE config_head SET revision = nextval('config_revision'), updated_at = now() RETURNING revision").Scan(&rev); err != nil {
			t.Fatal(err)
		}
		if rev != want {
			t.Fatalf("revision %d, want %d", rev, want)
		}
	}
	mustFail("second config_head row", "INSERT INTO config_head (singleton) VALUES (false)")

	if err := exec(`INSERT INTO backends (name, stdio_command, revision) VALUES ('github', '{github-mcp-server,stdio}', 1);
		INSERT INTO backends (name, prefix, http_url, http_headers, timeout_ms, sessions, revision)
		VALUES ('search', '', 'http://127.0.0.1:9000/mcp', '{"X-Team": "core"}', 120000, 'per_principal', 2)`); err != nil {
		t.Fatalf("valid backends: %v", err)
	}
	mustFail("backend with two transports", `INSERT INTO backends (name, stdio_command, http_url, revision) VALUES ('b', '{x}', 'http://x', 1)`)
	mustFail("backend without transport", `INSERT INTO backends (name, revision) VALUES ('b', 1)`)
	mustFail("backend with empty argv", `INSERT INTO backends (name, stdio_command, revision) VALUES ('b', '{}', 1)`)
	mustFail("backend name with capitals", `INSERT INTO backends (name, http_url, revision) VALUES ('GitHub', 'http://x', 1)`)
	mustFail("backend without revision", `INSERT INTO backends (name, http_url) VALUES ('b', 'http://x')`)
	mustFail("unknown sessions mode", `INSERT INTO backends (name, http_url, sessions, revision) VALUES ('b', 'http://x', 'pooled', 1)`)

	// Foreign keys are deferred, so a transaction may write a binding before its role.
	if err := exec(`BEGIN;
		INSERT INTO bindings (role, subjects, revision) VALUES ('developer', '{user:alice,group:eng}', 2);
		INSERT INTO roles (name, revision) VALUES ('developer', 2);
		INSERT INTO rules (role, position, effect, tools, revision) VALUES ('developer', 0, 'allow', '{github__*}', 2);
		INSERT INTO rules (role, position, effect, tools, revision) VALUES ('developer', 1, 'deny', '{github__delete_*}', 2);
		COMMIT`); err != nil {
		t.Fatalf("role, rules and binding in one transaction: %v", err)
	}
	mustFail("binding to a missing role", `INSERT INTO bindings (role, subjects, revision) VALUES ('nobody', '{user:bob}', 3)`)
	mustFail("binding without subjects", `INSERT INTO bindings (role, subjects, revision) VALUES ('developer', '{}', 3)`)
	mustFail("rule with effect maybe", `INSERT INTO rules (role, position, effect, revision) VALUES ('developer', 2, 'maybe', 3)`)
	mustFail("deleting a bound role", `DELETE FROM roles WHERE name = 'developer'`)
	// ... but deleting it and its binding in one transaction, role first, works.
	if err := exec(`BEGIN; INSERT INTO roles (name, revision) VALUES ('tmp', 3);
		INSERT INTO bindings (role, subjects, revision) VALUES ('tmp', '{user:x}', 3); COMMIT;
		BEGIN; DELETE FROM roles WHERE name = 'tmp'; DELETE FROM bindings WHERE role = 'tmp'; COMMIT`); err != nil {
		t.Errorf("deleting a role before its binding in one transaction: %v", err)
	}

	if err := exec(`INSERT INTO principals (name, groups, revision) VALUES ('alice', '{eng}', 3);
		INSERT INTO api_keys (id, principal, sha256, revision) VALUES ('k1', 'alice', repeat('ab', 32), 3)`); err != nil {
		t.Fatalf("principal and key: %v", err)
	}
	mustFail("key hash in capitals", `INSERT INTO api_keys (id, principal, sha256, revision) VALUES ('k2', 'alice', repeat('AB', 32), 3)`)
	mustFail("duplicate key hash", `INSERT INTO api_keys (id, principal, sha256, revision) VALUES ('k3', 'alice', repeat('ab', 32), 3)`)
	mustFail("key of a missing principal", `INSERT INTO api_keys (id, principal, sha256, revision) VALUES ('k4', 'bob', repeat('cd', 32), 3)`)

	if err := exec(`INSERT INTO config_changes (revision, actor, kind, name, action, after)
		VALUES (2, 'bootstrap', 'role', 'developer', 'create', '{"name": "developer"}')`); err != nil {
		t.Fatalf("config change: %v", err)
	}
	mustFail("create with a before image", `INSERT INTO config_changes (revision, actor, kind, name, action, before, after)
		VALUES (2, 'x', 'role', 'r', 'create', '{}', '{}')`)
	mustFail("delete with an after image", `INSERT INTO config_changes (revision, actor, kind, name, action, before, after)
		VALUES (2, 'x', 'role', 'r', 'delete', '{}', '{}')`)

	if err := exec(`INSERT INTO nodes (id, name, labels) VALUES ('00000000-0000-7000-8000-000000000001', 'edge-1', '{"zone": "a"}');
		INSERT INTO join_tokens (id, sha256, expires_at, used_at, used_by_node)
		VALUES ('t1', repeat('01', 32), now() + interval '1 hour', now(), '00000000-0000-7000-8000-000000000001')`); err != nil {
		t.Fatalf("node and used join token: %v", err)
	}
	mustFail("node labels not an object", `INSERT INTO nodes (id, name, labels) VALUES (gen_random_uuid(), 'e', '[1]')`)
	mustFail("join token without expiry", `INSERT INTO join_tokens (id, sha256) VALUES ('t2', repeat('02', 32))`)
	mustFail("token used by a node but not used", `INSERT INTO join_tokens (id, sha256, expires_at, used_by_node)
		VALUES ('t3', repeat('03', 32), now(), '00000000-0000-7000-8000-000000000001')`)
}
