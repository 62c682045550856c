package enforce

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/gateway"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// ErrUnauthenticated is the one answer to a request whose credential is
// missing, malformed, unknown or expired. It is deliberately the same for
// all of them, so a caller learns nothing about which part was wrong (an id
// that exists, a secret that was close).
var ErrUnauthenticated = errors.New("a valid API key is required")

// Challenge is the WWW-Authenticate value a 401 carries (RFC 6750).
const Challenge = `Bearer realm="mcpgw"`

// EnvAPIKey is where a stdio edge finds the key its client acts with.
const EnvAPIKey = "MCPGW_API_KEY"

// AuthOptions configure an Authenticator.
type AuthOptions struct {
	// StdioPrincipal is the principal a stdio client acts as (--principal).
	StdioPrincipal string
	// StdioKey is an API key the stdio client acts with ($MCPGW_API_KEY);
	// it is checked against the policy's key hashes like an HTTP bearer.
	// At most one of StdioPrincipal and StdioKey may be set.
	StdioKey string
	// Now is the clock for key expiry (default time.Now).
	Now func() time.Time
}

// Authenticator implements gateway.Authenticator over a Holder.
type Authenticator struct {
	h              *Holder
	stdioPrincipal string
	stdioKey       string
	now            func() time.Time
}

var _ gateway.Authenticator = (*Authenticator)(nil)

// NewAuthenticator returns an Authenticator that finds principals in h's
// live policy.
func NewAuthenticator(h *Holder, o AuthOptions) (*Authenticator, error) {
	if o.StdioPrincipal != "" && o.StdioKey != "" {
		return nil, errors.New("stdio identity: give a principal or an API key, not both")
	}
	if o.StdioPrincipal != "" && !policy.ValidPrincipalName(o.StdioPrincipal) {
		return nil, fmt.Errorf("stdio identity: %q is not a valid principal name", o.StdioPrincipal)
	}
	if o.StdioKey != "" {
		if _, err := policy.ParseKey(o.StdioKey); err != nil {
			// ParseKey's errors never include the secret.
			return nil, fmt.Errorf("stdio identity: %s: %w", EnvAPIKey, err)
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Authenticator{h: h, stdioPrincipal: o.StdioPrincipal, stdioKey: o.StdioKey, now: o.Now}, nil
}

// Authenticate implements gateway.Authenticator.
func (a *Authenticator) Authenticate(_ context.Context, c gateway.Credentials) (gateway.Principal, error) {
	g := a.h.Load()
	if c.Transport == "stdio" {
		return a.stdio(g)
	}
	vals := c.Header["Authorization"]
	switch {
	case len(vals) == 0:
		// Only a request with no credential at all may be anonymous: one
		// that presents a bad key is refused, never downgraded.
		if g != nil && g.Anonymous != "" {
			return gateway.Principal{Name: g.Anonymous}, nil
		}
		return gateway.Principal{}, ErrUnauthenticated
	case len(vals) > 1:
		return gateway.Principal{}, ErrUnauthenticated
	}
	v := vals[0]
	const scheme = "Bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return gateway.Principal{}, ErrUnauthenticated
	}
	// Optional blanks only (RFC 9110 OWS); anything else is part of the
	// presented credential and makes it wrong.
	return a.byKey(g, strings.Trim(v[len(scheme):], " \t"))
}

func (a *Authenticator) stdio(g *Generation) (gateway.Principal, error) {
	switch {
	case a.stdioKey != "":
		p, err := a.byKey(g, a.stdioKey)
		if err != nil {
			return p, fmt.Errorf("%s: %w", EnvAPIKey, err)
		}
		return p, nil
	case a.stdioPrincipal != "":
		return gateway.Principal{Name: a.stdioPrincipal}, nil
	case g != nil && g.Anonymous != "":
		return gateway.Principal{Name: g.Anonymous}, nil
	}
	return gateway.Principal{}, fmt.Errorf("no stdio identity: give --principal NAME or set %s (or enable auth.anonymous)", EnvAPIKey)
}

// byKey finds the principal of key by the SHA-256 of the whole key string.
func (a *Authenticator) byKey(g *Generation, key string) (gateway.Principal, error) {
	if g == nil {
		return gateway.Principal{}, ErrUnauthenticated
	}
	if _, err := policy.ParseKey(key); err != nil {
		return gateway.Principal{}, ErrUnauthenticated
	}
	// Hash from a stack buffer: []byte(key) would allocate on every request.
	var buf [328]byte // the longest key ParseKey accepts
	var sum [32]byte
	if len(key) <= len(buf) {
		sum = sha256.Sum256(append(buf[:0], key...))
	} else {
		sum = sha256.Sum256([]byte(key))
	}
	name, ok := g.Policy.Authenticate(sum, a.now())
	if !ok {
		return gateway.Principal{}, ErrUnauthenticated
	}
	return gateway.Principal{Name: name}, nil
}

// WithChallenge adds the WWW-Authenticate challenge to every 401 that next
// writes. The gateway sets the same challenge itself now (dataplane.Run
// does not wrap it); this stays for handlers that do not.
func WithChallenge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&challengeWriter{ResponseWriter: w}, r)
	})
}

type challengeWriter struct{ http.ResponseWriter }

func (c *challengeWriter) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		c.Header()["Www-Authenticate"] = []string{Challenge}
	}
	c.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer (flushing SSE).
func (c *challengeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
