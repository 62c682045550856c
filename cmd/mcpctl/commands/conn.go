package commands

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/mcpgw/mcpgw/cmd/mcpctl/internal/contexts"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// Environment variables that stand in for the connection flags.
const (
	envServer  = "MCPCTL_SERVER"
	envToken   = "MCPCTL_TOKEN"
	envCAFile  = "MCPCTL_CA_FILE"
	envContext = "MCPCTL_CONTEXT"
)

// defaultRequestTimeout bounds one unary call, so an unresponsive control
// plane produces an error instead of a hang. Streams (--wait, tail) are
// bounded by their own flags.
const defaultRequestTimeout = 30 * time.Second

// globals is the state every command shares: the persistent connection
// flags and where output goes.
type globals struct {
	env
	stdout, stderr io.Writer

	server, token, caFile, context string
	insecureSkipVerify             bool
	requestTimeout                 time.Duration
}

func (g *globals) addConnectionFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&g.server, "server", "", "control plane admin address, host:port (env "+envServer+")")
	f.StringVar(&g.token, "token", "", "admin token, mcpgwadm_... (env "+envToken+"; prefer the env or a context over the flag, which other users can see in ps)")
	f.StringVar(&g.caFile, "ca-file", "", "PEM CA bundle to trust besides the system roots, e.g. the control plane's DATA_DIR/ca.crt (env "+envCAFile+")")
	f.StringVar(&g.context, "context", "", "context from the contexts file to use instead of the current one (env "+envContext+")")
	f.BoolVar(&g.insecureSkipVerify, "insecure-skip-tls-verify", false, "do not verify the control plane's certificate (unsafe: anyone on the path can read the token)")
	f.DurationVar(&g.requestTimeout, "request-timeout", defaultRequestTimeout, "bound on each call to the control plane")
}

// connSettings is the resolved connection: flags over environment over
// context.
type connSettings struct {
	server, token, caFile string
	insecureSkipVerify    bool
	contextName           string
}

func (g *globals) contextsPath() (string, error) { return contexts.Path(g.getenv) }

// settings resolves the connection settings without dialing.
func (g *globals) settings() (connSettings, error) {
	var s connSettings
	var ctx contexts.Context
	name := g.context
	if name == "" {
		name = g.getenv(envContext)
	}
	path, err := g.contextsPath()
	if err != nil {
		return s, err
	}
	f, err := contexts.Load(path)
	if err != nil {
		return s, err
	}
	if name == "" {
		name = f.CurrentContext
	}
	if name != "" {
		c, ok := f.Get(name)
		if !ok {
			return s, usagef("context %q is not in %s (see 'mcpctl config get-contexts')", name, path)
		}
		ctx = c
		s.contextName = name
		if c.Token != "" && contexts.LoosePermissions(path) {
			fmt.Fprintf(g.stderr, "mcpctl: warning: %s holds admin tokens but others can read it; run: chmod 600 %s\n", path, path)
		}
	}
	s.server = first(g.server, g.getenv(envServer), ctx.Server)
	s.token = first(g.token, g.getenv(envToken), ctx.Token)
	s.caFile = first(g.caFile, g.getenv(envCAFile), ctx.CAFile)
	s.insecureSkipVerify = g.insecureSkipVerify || ctx.InsecureSkipTLSVerify
	return s, nil
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// client is a connection to one control plane.
type client struct {
	mcpgwv1.AdminServiceClient
	conn     *grpc.ClientConn
	addr     string
	caFile   string
	timeout  time.Duration
	insecure bool
}

func (c *client) Close() error { return c.conn.Close() }

// call returns a context bounded by the request timeout, for one unary call.
func (c *client) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// dial connects to the configured control plane. The connection is lazy,
// so an unreachable server shows up as the first call's error, which
// rpcError turns into words.
func (g *globals) dial() (*client, error) {
	s, err := g.settings()
	if err != nil {
		return nil, err
	}
	if s.server == "" {
		return nil, usagef("no control plane given: pass --server, set %s, or create a context with 'mcpctl config set-context'", envServer)
	}
	if s.token == "" {
		return nil, usagef("no admin token given: pass --token, set %s, or add one to the context with 'mcpctl config set-context'", envToken)
	}
	addr, err := normalizeServer(s.server)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := g.tlsConfig(s)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithPerRPCCredentials(bearer(s.token)),
		grpc.WithUserAgent("mcpctl"),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	timeout := g.requestTimeout
	if timeout <= 0 {
		timeout = defaultRequestTimeout
	}
	return &client{
		AdminServiceClient: mcpgwv1.NewAdminServiceClient(conn),
		conn:               conn, addr: addr, caFile: s.caFile, timeout: timeout,
		insecure: s.insecureSkipVerify,
	}, nil
}

// normalizeServer accepts host:port, or a URL people paste from a browser,
// and returns host:port.
func normalizeServer(s string) (string, error) {
	s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "grpcs://"), "/")
	if strings.HasPrefix(s, "http://") {
		return "", usagef("--server %q: the admin API is served over TLS only; use host:port", s)
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "", usagef("--server %q: want host:port (e.g. cp.example.com:8443)", s)
	}
	return s, nil
}

func (g *globals) tlsConfig(s connSettings) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.insecureSkipVerify {
		fmt.Fprintln(g.stderr, "mcpctl: warning: TLS verification is off (--insecure-skip-tls-verify); the admin token can be stolen by anyone on the path")
		cfg.InsecureSkipVerify = true
		return cfg, nil
	}
	if s.caFile == "" {
		return cfg, nil // system roots
	}
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", s.caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// bearer sends the admin token on every call. It requires transport
// security, so gRPC itself refuses to send the token in the clear.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// rpcError turns an RPC failure into one line that says what to do. what
// names the operation ("listing backends") for messages that need it.
func (c *client) rpcError(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: interrupted", what)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unauthenticated:
		return errors.New("the control plane refused the token; check --token or " + envToken)
	case codes.PermissionDenied:
		return fmt.Errorf("%s: permission denied: %s", what, msg)
	case codes.Unavailable:
		if strings.Contains(msg, "store unavailable") {
			// The control plane answered; its database did not.
			return fmt.Errorf("%s: the control plane at %s cannot reach its database right now (%s); retry shortly", what, c.addr, msg)
		}
		return fmt.Errorf("cannot reach the control plane at %s: %s", c.addr, c.transportHint(msg))
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: the control plane at %s did not answer within %s (raise --request-timeout?)", what, c.addr, c.timeout)
	case codes.InvalidArgument:
		if strings.HasPrefix(msg, "invalid") {
			return fmt.Errorf("%s: %s", what, msg)
		}
		return fmt.Errorf("%s: invalid: %s", what, msg)
	case codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition:
		return fmt.Errorf("%s: %s", what, msg)
	case codes.Aborted:
		if strings.Contains(msg, "retry") {
			return fmt.Errorf("%s: %s", what, msg)
		}
		return fmt.Errorf("%s: %s (someone changed it since you read it; read it again and retry)", what, msg)
	case codes.Unimplemented:
		return fmt.Errorf("%s: the control plane does not support this yet (%s)", what, msg)
	case codes.Canceled:
		return fmt.Errorf("%s: cancelled", what)
	default:
		return fmt.Errorf("%s: %s: %s", what, strings.ToLower(strings.ReplaceAll(st.Code().String(), "_", " ")), msg)
	}
}

// transportHint shortens gRPC's transport error text and adds the fix for
// the common TLS mistakes.
func (c *client) transportHint(msg string) string {
	msg = strings.TrimPrefix(msg, "connection error: desc = ")
	msg = strings.Trim(msg, `"`)
	msg = strings.TrimPrefix(msg, "transport: ")
	msg = strings.TrimPrefix(msg, "Error while dialing: ")
	switch {
	case strings.Contains(msg, "certificate signed by unknown authority"):
		if c.caFile == "" {
			return msg + " (pass --ca-file with the control plane's DATA_DIR/ca.crt)"
		}
		return msg + " (is " + c.caFile + " the CA bundle of this control plane?)"
	case strings.Contains(msg, "certificate is valid for"):
		return msg + " (connect with a name the certificate covers, or add it with mcpgw cp --tls-san)"
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return msg + " (is this the admin listener?)"
	}
	return msg
}

// isUnimplemented reports whether err says the server lacks the method.
func isUnimplemented(err error) bool { return status.Code(err) == codes.Unimplemented }
