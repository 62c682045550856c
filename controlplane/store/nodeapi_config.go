package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// LoadSnapshotResources reads everything edges enforce (backends, principals,
// roles with their rules, bindings, live API key hashes) at one revision, in
// one REPEATABLE READ transaction so the result is exactly the config as of
// config_head.revision. Lists come sorted by key in byte order (COLLATE "C",
// the order Go and every replica agree on) and resource revisions are left
// 0, so equal config encodes to equal bytes wherever it is read. The result's
// NodeGroup is empty: snapshots stamp it per group.
//
// Revoked API keys are left out; expired ones stay in, with their expiry,
// because the set must not change with the clock without a new revision (the
// edge enforces expiry itself).
func (s *NodeStore) LoadSnapshotResources(ctx context.Context) (revision int64, commitTime time.Time, res *mcpgwv1.SnapshotResources, err error) {
	res = &mcpgwv1.SnapshotResources{}
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT revision, updated_at FROM config_head`).Scan(&revision, &commitTime); err != nil {
			return fmt.Errorf("reading config head: %w", err)
		}
		var err error
		if res.Backends, err = snapLoadBackends(ctx, tx); err != nil {
			return err
		}
		if res.Principals, err = snapLoadPrincipals(ctx, tx); err != nil {
			return err
		}
		if res.Roles, err = snapLoadRoles(ctx, tx); err != nil {
			return err
		}
		if res.Bindings, err = snapLoadBindings(ctx, tx); err != nil {
			return err
		}
		if res.ApiKeys, err = snapLoadAPIKeyHashes(ctx, tx); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, nil, fmt.Errorf("loading config for snapshots: %w", err)
	}
	return revision, commitTime, res, nil
}

func snapLoadBackends(ctx context.Context, tx pgx.Tx) ([]*mcpgwv1.Backend, error) {
	rows, err := tx.Query(ctx, `SELECT name, prefix, stdio_command, stdio_env, stdio_dir, http_url, http_headers,
		timeout_ms, sessions FROM backends ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("reading backends: %w", err)
	}
	var out []*mcpgwv1.Backend
	for rows.Next() {
		var (
			b         mcpgwv1.Backend
			prefix    *string
			command   []string
			env       map[string]string
			dir       *string
			url       *string
			headers   map[string]string
			timeoutMS int64
		)
		if err := rows.Scan(&b.Name, &prefix, &command, &env, &dir, &url, &headers, &timeoutMS, &b.Sessions); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading backends: %w", err)
		}
		b.Prefix = prefix
		switch {
		case command != nil:
			st := &mcpgwv1.StdioTransport{Command: command, Env: env}
			if dir != nil {
				st.Dir = *dir
			}
			b.Transport = &mcpgwv1.Backend_Stdio{Stdio: st}
		case url != nil:
			b.Transport = &mcpgwv1.Backend_Http{Http: &mcpgwv1.HttpTransport{Url: *url, Headers: headers}}
		}
		if timeoutMS > 0 {
			b.Timeout = durationpb.New(time.Duration(timeoutMS) * time.Millisecond)
		}
		out = append(out, &b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading backends: %w", err)
	}
	return out, nil
}

func snapLoadPrincipals(ctx context.Context, tx pgx.Tx) ([]*mcpgwv1.Principal, error) {
	rows, err := tx.Query(ctx, `SELECT name, groups FROM principals ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("reading principals: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*mcpgwv1.Principal, error) {
		var p mcpgwv1.Principal
		err := r.Scan(&p.Name, &p.Groups)
		return &p, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading principals: %w", err)
	}
	return out, nil
}

func snapLoadRoles(ctx context.Context, tx pgx.Tx) ([]*mcpgwv1.Role, error) {
	rows, err := tx.Query(ctx, `SELECT name, description FROM roles ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("reading roles: %w", err)
	}
	roles, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*mcpgwv1.Role, error) {
		var role mcpgwv1.Role
		err := r.Scan(&role.Name, &role.Description)
		return &role, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading roles: %w", err)
	}
	byName := make(map[string]*mcpgwv1.Role, len(roles))
	for _, r := range roles {
		byName[r.Name] = r
	}
	rows, err = tx.Query(ctx, `SELECT role, id, effect, methods, backends, tools, prompts, resources
		FROM rules ORDER BY role COLLATE "C", position`)
	if err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	for rows.Next() {
		var role string
		var rule mcpgwv1.Rule
		if err := rows.Scan(&role, &rule.Id, &rule.Effect, &rule.Methods, &rule.Backends, &rule.Tools, &rule.Prompts, &rule.Resources); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading rules: %w", err)
		}
		if r := byName[role]; r != nil {
			r.Rules = append(r.Rules, snapEmptyListsNil(&rule))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	return roles, nil
}

// snapEmptyListsNil makes '{}' and an absent list one value, so that encodings
// never differ by how a list was stored.
func snapEmptyListsNil(r *mcpgwv1.Rule) *mcpgwv1.Rule {
	for _, l := range []*[]string{&r.Methods, &r.Backends, &r.Tools, &r.Prompts, &r.Resources} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return r
}

func snapLoadBindings(ctx context.Context, tx pgx.Tx) ([]*mcpgwv1.RoleBinding, error) {
	rows, err := tx.Query(ctx, `SELECT role, subjects FROM bindings ORDER BY role COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("reading bindings: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*mcpgwv1.RoleBinding, error) {
		var b mcpgwv1.RoleBinding
		err := r.Scan(&b.Role, &b.Subjects)
		return &b, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading bindings: %w", err)
	}
	return out, nil
}

func snapLoadAPIKeyHashes(ctx context.Context, tx pgx.Tx) ([]*mcpgwv1.ApiKeyHash, error) {
	rows, err := tx.Query(ctx, `SELECT id, principal, sha256, expires_at FROM api_keys
		WHERE revoked_at IS NULL ORDER BY id COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("reading api key hashes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*mcpgwv1.ApiKeyHash, error) {
		var k mcpgwv1.ApiKeyHash
		var expires *time.Time
		if err := r.Scan(&k.KeyId, &k.Principal, &k.Sha256, &expires); err != nil {
			return nil, err
		}
		if expires != nil {
			k.ExpireTime = timestamppb.New(*expires)
		}
		return &k, nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading api key hashes: %w", err)
	}
	return out, nil
}
