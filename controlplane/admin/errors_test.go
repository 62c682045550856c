package admin_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"

	"github.com/mcpgw/mcpgw/controlplane/admin"
	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// With the database unreachable, calls fail with UNAVAILABLE (retry later),
// not INTERNAL.
func TestStoreDownIsUnavailable(t *testing.T) {
	// Port 1 on loopback: nothing listens, the connection is refused at once.
	pool, err := pgxpool.New(t.Context(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	srv := admin.New(admin.Options{Store: store.New(pool)})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = srv.GetBackend(ctx, &mcpgwv1.GetBackendRequest{Name: "x"})
	wantCode(t, err, codes.Unavailable, "read with the store down")
	_, err = srv.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: &mcpgwv1.PolicyDocument{}})
	wantCode(t, err, codes.Unavailable, "write with the store down")
}
