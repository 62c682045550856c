package commands

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// parseLifetime reads a lifetime flag: a Go duration ("36h", "90m") or a
// whole number of days ("90d"), since key lifetimes are thought of in days.
func parseLifetime(flag, s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, usagef("--%s %q: want a positive number of days like 90d, or a duration like 36h", flag, s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, usagef("--%s %q: want a positive duration like 36h, or days like 90d", flag, s)
	}
	return v, nil
}

// createdKey is the -o json shape of keys create, promised to scripts.
type createdKey struct {
	Principal        string `json:"principal"`
	Key              string `json:"key"`
	ID               string `json:"id"`
	ExpireTime       string `json:"expire_time,omitempty"`
	PrincipalCreated bool   `json:"principal_created"`
	Revision         int64  `json:"revision"`
}

func newKeysCmd(g *globals) *cobra.Command {
	return group("keys", "Create and revoke API keys for principals", newKeysCreateCmd(g), newKeysRevokeCmd(g))
}

func newKeysCreateCmd(g *globals) *cobra.Command {
	var (
		principal, expires, description string
		out                             *outputFlag
	)
	c := &cobra.Command{
		Use:   "create --principal NAME [--expires 90d] [--description TEXT]",
		Short: "Mint an API key for a principal (created if it does not exist); the key is shown once",
		Long: `Mint an API key for a principal, creating the principal (with no groups) if it
does not exist. The key is printed once, on stdout, and cannot be shown again:
the control plane keeps only its SHA-256. Clients send it as a bearer token.`,
		Example: `  mcpctl keys create --principal alice --expires 90d
  KEY=$(mcpctl keys create --principal ci-bot --description "CI pipeline")
  mcpctl keys create --principal alice -o json | jq -r .key`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if principal == "" {
				return usagef("keys create needs --principal NAME")
			}
			req := &mcpgwv1.CreateApiKeyRequest{Principal: principal, Description: description}
			if expires != "" {
				d, err := parseLifetime("expires", expires)
				if err != nil {
					return err
				}
				req.Ttl = durationpb.New(d)
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			defer cl.Close()
			cctx, cancel := cl.call(c.Context())
			defer cancel()
			r, err := cl.CreateApiKey(cctx, req)
			if err != nil {
				return cl.rpcError(fmt.Sprintf("creating a key for %q", principal), err)
			}
			k := r.GetApiKey()
			if r.GetPrincipalCreated() {
				fmt.Fprintf(g.stderr, "created principal %q (no groups; bind it to a role with apply)\n", k.GetPrincipal())
			}
			fmt.Fprintf(g.stderr, "created key %s for principal %q, expires %s (revision %d)\n", k.GetId(), k.GetPrincipal(), expiryText(k.GetExpireTime().AsTime(), k.GetExpireTime() != nil), r.GetRevision())
			fmt.Fprintln(g.stderr, "warning: this is the only time the key is shown; store it now (it cannot be recovered, only revoked)")
			w := c.OutOrStdout()
			if out.value == "json" {
				v := createdKey{Principal: k.GetPrincipal(), Key: r.GetKey(), ID: k.GetId(), PrincipalCreated: r.GetPrincipalCreated(), Revision: r.GetRevision()}
				if k.GetExpireTime() != nil {
					v.ExpireTime = timeText(k.GetExpireTime())
				}
				return writePlainJSON(w, v)
			}
			// The key alone on stdout, so KEY=$(mcpctl keys create ...) works.
			_, err = fmt.Fprintln(w, r.GetKey())
			return err
		},
	}
	c.Flags().StringVar(&principal, "principal", "", "principal the key authenticates as (required)")
	c.Flags().StringVar(&expires, "expires", "", "lifetime, e.g. 90d or 36h (default: never expires)")
	c.Flags().StringVar(&description, "description", "", "what the key is for")
	out = addOutputFlag(c, "text", "text", "json")
	return c
}

func expiryText(t time.Time, set bool) string {
	if !set {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func newKeysRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key; edges refuse it once they apply the new revision",
		Args:  exactArgs("ID"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			defer cl.Close()
			cctx, cancel := cl.call(c.Context())
			defer cancel()
			r, err := cl.RevokeApiKey(cctx, &mcpgwv1.RevokeApiKeyRequest{Id: args[0]})
			if err != nil {
				return cl.rpcError(fmt.Sprintf("revoking key %q", args[0]), err)
			}
			fmt.Fprintf(c.OutOrStdout(), "key %s of principal %q revoked (revision %d)\n", r.GetApiKey().GetId(), r.GetApiKey().GetPrincipal(), r.GetRevision())
			return nil
		},
	}
}
