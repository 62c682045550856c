package devmode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/docproto"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// Names in the default document.
const (
	DemoBackend   = "demo"
	DemoRole      = "demo"
	DemoPrincipal = "demo"
)

// defaultDocument is what a new dev installation starts with: the demo
// backend launched from this very binary, and a principal allowed to use
// everything it offers.
func defaultDocument(exe string) document.Document {
	return document.Document{
		Backends: []document.Backend{demoBackend(exe)},
		Roles: []policy.Role{{
			Name:        DemoRole,
			Description: "Everything the demo backend offers (mcpgw dev default)",
			Rules:       []policy.Rule{{ID: "demo-all", Effect: policy.EffectAllow, Backends: []string{DemoBackend}}},
		}},
		Bindings:   []policy.Binding{{Role: DemoRole, Subjects: []string{"user:" + DemoPrincipal}}},
		Principals: []policy.Principal{{Name: DemoPrincipal}},
	}
}

func demoBackend(exe string) document.Backend {
	return document.Backend{Name: DemoBackend, Stdio: &document.StdioTransport{Command: []string{exe, "demo-backend"}}}
}

// adminClient is a connection to the control plane's admin API, made the
// way mcpctl makes it: TLS verified against the installation CA, the admin
// token as a bearer credential.
type adminClient struct {
	mcpgwv1.AdminServiceClient
	conn *grpc.ClientConn
}

func dialAdmin(addr, caFile, token string) (*adminClient, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(grpccreds.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})),
		grpc.WithPerRPCCredentials(bearer(token)),
		grpc.WithUserAgent("mcpgw-dev"))
	if err != nil {
		return nil, fmt.Errorf("connecting to the admin API at %s: %w", addr, err)
	}
	return &adminClient{AdminServiceClient: mcpgwv1.NewAdminServiceClient(conn), conn: conn}, nil
}

func (c *adminClient) Close() error { return c.conn.Close() }

// bearer sends the admin token on every call, over TLS only.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// seed applies the default document and creates the demo key, the first
// time. A seeded installation whose key the store no longer knows (the
// data dir outlived its database) is seeded again rather than printing a
// key that cannot work.
func seed(ctx context.Context, c *adminClient, creds *credentials, exe string) (changed bool, err error) {
	if creds.seeded() {
		_, err := c.GetApiKey(ctx, &mcpgwv1.GetApiKeyRequest{Id: creds.DemoKeyID})
		switch status.Code(err) {
		case codes.OK:
			return false, nil
		case codes.NotFound:
		default:
			return false, fmt.Errorf("looking up the demo key: %w", err)
		}
	}
	if _, err := c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: docproto.DocumentToProto(defaultDocument(exe))}); err != nil {
		return false, fmt.Errorf("applying the default document: %w", err)
	}
	key, err := c.CreateApiKey(ctx, &mcpgwv1.CreateApiKeyRequest{Principal: DemoPrincipal, Description: "mcpgw dev demo key"})
	if err != nil {
		return false, fmt.Errorf("creating the demo key: %w", err)
	}
	creds.DemoKey, creds.DemoKeyID = key.GetKey(), key.GetApiKey().GetId()
	return true, nil
}

// refreshDemoBackend points the demo backend at the running binary when it
// moved (each `go run` builds into a new temporary directory), and leaves
// everything else as the user configured it: a demo backend the user
// removed or changed stays as it is.
func refreshDemoBackend(ctx context.Context, c *adminClient, exe string) error {
	got, err := c.GetBackend(ctx, &mcpgwv1.GetBackendRequest{Name: DemoBackend})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the demo backend: %w", err)
	}
	cmd := got.GetBackend().GetStdio().GetCommand()
	if len(cmd) != 2 || cmd[1] != "demo-backend" || cmd[0] == exe || !isMCPGW(cmd[0]) {
		return nil
	}
	b := docproto.BackendFromProto(got.GetBackend())
	b.Stdio.Command = []string{exe, "demo-backend"}
	_, err = c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: docproto.DocumentToProto(document.Document{Backends: []document.Backend{b}})})
	if err != nil {
		return fmt.Errorf("pointing the demo backend at %s: %w", exe, err)
	}
	return nil
}

// isMCPGW reports whether path names an mcpgw binary (one that mcpgw dev
// itself put in the demo backend's command).
func isMCPGW(path string) bool {
	base := path[strings.LastIndexByte(path, '/')+1:]
	return slices.Contains([]string{"mcpgw", "mcpgw.test", "mcpgw.exe"}, base)
}

// joinToken makes a single-use token for the in-process edge's first
// enrollment; it expires soon because it is used at once.
func joinToken(ctx context.Context, c *adminClient) (string, error) {
	res, err := c.CreateJoinToken(ctx, &mcpgwv1.CreateJoinTokenRequest{
		Ttl:         durationpb.New(10 * time.Minute),
		Labels:      map[string]string{"mcpgw-dev": "true"},
		Description: "mcpgw dev: the in-process edge",
	})
	if err != nil {
		return "", fmt.Errorf("creating a join token for the edge: %w", err)
	}
	return res.GetToken(), nil
}
