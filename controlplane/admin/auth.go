package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/store"
)

// AdminTokenPrefix starts every admin token, so one is never mistaken for an
// API key ("mcpgw_...") in logs, config or a paste.
const AdminTokenPrefix = "mcpgwadm_"

type actorKey struct{}

// ActorFrom returns who the authenticated caller is ("admin-token:<id>" or
// "admin-cert:<name>"), as recorded in the change log; "" outside an
// authenticated call.
func ActorFrom(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

// Authenticator checks admin credentials: a bearer admin token compared by
// its hash, or a client certificate the TLS layer verified against the
// installation CA that names an administrator (pki.AdminURIPrefix).
type Authenticator struct {
	st AdminTokens
}

// NewAuthenticator returns an Authenticator over the admin_tokens table.
func NewAuthenticator(st AdminTokens) *Authenticator { return &Authenticator{st: st} }

// errUnauthenticated is deliberately the same for a missing, malformed,
// unknown, revoked or expired token, so tokens cannot be probed.
var errUnauthenticated = status.Error(codes.Unauthenticated,
	`admin API needs "authorization: Bearer mcpgwadm_..." (an admin token) or an admin client certificate; none valid was given`)

// Authenticate is the auth interceptor's AuthFunc.
func (a *Authenticator) Authenticate(ctx context.Context) (context.Context, error) {
	if name, ok := adminCert(ctx); ok {
		return context.WithValue(ctx, actorKey{}, "admin-cert:"+name), nil
	}
	tok, err := auth.AuthFromMD(ctx, "bearer")
	if err != nil || !strings.HasPrefix(tok, AdminTokenPrefix) {
		return nil, errUnauthenticated
	}
	t, err := a.st.AuthenticateAdmin(ctx, store.HashSecret(tok))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnauthenticated
	}
	if err != nil {
		return nil, status.Error(codes.Unavailable, "checking the admin token: store unavailable")
	}
	return context.WithValue(ctx, actorKey{}, "admin-token:"+t.ID), nil
}

// adminCert returns the administrator named by a verified client
// certificate. Only chains the TLS stack verified count: an unverified
// certificate (VerifyClientCertIfGiven with none given) has no chains.
func adminCert(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	name, err := pki.AdminName(ti.State.VerifiedChains[0][0])
	return name, err == nil
}

// Interceptors returns the admin server's interceptor chain, outermost
// first: recovery (a panic becomes INTERNAL and is logged with its stack),
// logging (method, code, duration and actor; never payloads, which carry
// secrets), authentication (every AdminService call; the health service is
// open), and request validation.
func Interceptors(a *Authenticator, log *slog.Logger) []grpc.ServerOption {
	rec := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "admin RPC panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		if actor := ActorFrom(ctx); actor != "" {
			fields = append(fields, "actor", actor)
		}
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall)}
	needsAuth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != grpc_health_v1.Health_ServiceDesc.ServiceName
	})
	// Refused calls never reach the logging interceptor (it runs inside
	// authentication, to know the actor), so they are logged here: where
	// from, never what was presented.
	authenticate := func(ctx context.Context) (context.Context, error) {
		out, err := a.Authenticate(ctx)
		if err != nil {
			addr := ""
			if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
				addr = p.Addr.String()
			}
			method, _ := grpc.Method(ctx)
			log.WarnContext(ctx, "admin call refused", "peer", addr, "grpc.method", method, "code", status.Code(err).String())
		}
		return out, err
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(
			recovery.UnaryServerInterceptor(rec),
			selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(authenticate), needsAuth),
			logging.UnaryServerInterceptor(logger, logOpts...),
			validateUnary,
		),
		grpc.ChainStreamInterceptor(
			recovery.StreamServerInterceptor(rec),
			selector.StreamServerInterceptor(auth.StreamServerInterceptor(authenticate), needsAuth),
			logging.StreamServerInterceptor(logger, logOpts...),
			validateStream,
		),
	}
}
