package devmode

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// Headings of the banner's sections; tests find the sections by them.
const (
	HeadingURL        = "MCP URL (Streamable HTTP):"
	HeadingAdminToken = "Admin token:"
	HeadingMcpctl     = "mcpctl context (paste to point mcpctl at this control plane):"
	HeadingHTTPConfig = `MCP client config, HTTP (e.g. a project's .mcp.json; VS Code's .vscode/mcp.json calls the map "servers"):`
	HeadingStdio      = "MCP client config, stdio (e.g. Claude Desktop's claude_desktop_config.json):"
)

// printBanner prints what a newcomer needs, the demo key first and alone on
// its line so that `mcpgw dev | head -n1` captures it.
func printBanner(w io.Writer, r Ready) error {
	httpCfg, err := json.MarshalIndent(map[string]any{"mcpServers": map[string]any{"mcpgw-dev": map[string]any{
		"type": "http", "url": r.MCPURL, "headers": map[string]string{"Authorization": "Bearer " + r.APIKey},
	}}}, "", "  ")
	if err != nil {
		return err
	}
	stdioCfg, err := json.MarshalIndent(map[string]any{"mcpServers": map[string]any{"mcpgw-dev": map[string]any{
		"command": r.Executable, "args": stdioArgs(r), "env": map[string]string{stdioKeyEnv: r.APIKey},
	}}}, "", "  ")
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", r.APIKey)
	fmt.Fprintf(&b, "^ the demo API key (principal %q). DEV MODE ONLY: it and the admin token are kept in plain text in\n  %s (mode 0600) so that a restart prints them again.\n\n",
		DemoPrincipal, filepath.Join(r.DataDir, CredentialsFile))
	fmt.Fprintf(&b, "%s\n  %s\n  send the header  Authorization: Bearer <the demo API key>\n", HeadingURL, r.MCPURL)
	fmt.Fprintf(&b, "  the demo key lists %d tools: %s\n\n", len(r.Tools), strings.Join(r.Tools, ", "))
	fmt.Fprintf(&b, "%s\n  %s\n\n", HeadingAdminToken, r.AdminToken)
	fmt.Fprintf(&b, "%s\n  %s\n  (mcpctl itself: go install ./cmd/mcpctl in a checkout of mcpgw)\n\n", HeadingMcpctl, McpctlLine(r))
	fmt.Fprintf(&b, "%s\n%s\n\n", HeadingHTTPConfig, httpCfg)
	fmt.Fprintf(&b, "%s\n%s\n", HeadingStdio, stdioCfg)
	fmt.Fprintf(&b, "  (it runs a local stdio edge that forwards to %s with the demo key; mcpgw dev must be running)\n", r.MCPURL)
	if strings.Contains(r.Executable, "go-build") {
		fmt.Fprintf(&b, "  note: %s is a temporary `go run` build; for a lasting config build mcpgw (go build ./cmd/mcpgw) and use its path.\n", r.Executable)
	}
	fmt.Fprintf(&b, "\nPress Ctrl-C to stop everything. State stays in %s; the next start prints the same credentials.\n", r.DataDir)
	_, err = io.WriteString(w, b.String())
	return err
}

// McpctlLine is the ready-to-paste command that creates the mcpctl context
// for this installation and makes it the current one.
func McpctlLine(r Ready) string {
	return fmt.Sprintf("mcpctl config set-context %s --server %s --token %s --ca-file %s && mcpctl config use-context %s",
		ContextName, shellQuote(r.AdminAddr), shellQuote(r.AdminToken), shellQuote(r.CAFile), ContextName)
}

func stdioArgs(r Ready) []string {
	return []string{"edge", "--stdio", "--config", r.StdioConfig, "--principal", stdioEdgePrincipal,
		"--state-dir", filepath.Join(r.DataDir, stdioStateDir)}
}

// writeStdioConfig writes the config of the edge a stdio client launches:
// a standalone edge in front of this installation's edge over HTTP, with
// the key from its environment, so the stdio client is governed by the
// same policy and audit as HTTP clients. It lets everything through; the
// installation's edge decides. Rewritten at every start because the URL
// may change (--listen).
func writeStdioConfig(r Ready) error {
	empty := ""
	doc := document.Document{
		Backends: []document.Backend{{
			Name:   "mcpgw-dev",
			Prefix: &empty, // the installation's edge already prefixes names
			HTTP: &document.HTTPTransport{URL: r.MCPURL, Headers: map[string]string{
				"Authorization": "Bearer ${env:" + stdioKeyEnv + "}",
			}},
		}},
		Roles: []policy.Role{{
			Name: "passthrough", Description: "the mcpgw dev edge behind this one enforces the policy",
			Rules: []policy.Rule{{ID: "passthrough", Effect: policy.EffectAllow}},
		}},
		Bindings:   []policy.Binding{{Role: "passthrough", Subjects: []string{"user:" + stdioEdgePrincipal}}},
		Principals: []policy.Principal{{Name: stdioEdgePrincipal}},
	}
	y, err := document.Marshal(&doc)
	if err != nil {
		return fmt.Errorf("writing the stdio edge's config: %w", err)
	}
	text := "# Written by mcpgw dev at every start: the config of the edge that a stdio MCP client\n" +
		"# launches (see the stdio client config mcpgw dev prints). It forwards to mcpgw dev's edge\n" +
		"# with the key in $" + stdioKeyEnv + ", so that edge's policy and audit apply.\n" + string(y)
	tmp := r.StdioConfig + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return fmt.Errorf("writing the stdio edge's config: %w", err)
	}
	if err := os.Rename(tmp, r.StdioConfig); err != nil {
		return fmt.Errorf("writing the stdio edge's config: %w", err)
	}
	return nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=@,+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
