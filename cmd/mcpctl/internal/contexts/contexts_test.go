package contexts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"explicit", map[string]string{EnvConfig: "/etc/mcpctl.yaml", "XDG_CONFIG_HOME": "/x", "HOME": "/h"}, "/etc/mcpctl.yaml"},
		{"xdg", map[string]string{"XDG_CONFIG_HOME": "/x", "HOME": "/h"}, "/x/mcpctl/config.yaml"},
		// The XDG spec says relative values are invalid and must be ignored.
		{"relative xdg", map[string]string{"XDG_CONFIG_HOME": "x", "HOME": "/h"}, "/h/.config/mcpctl/config.yaml"},
		{"home", map[string]string{"HOME": "/h"}, "/h/.config/mcpctl/config.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Path(func(k string) string { return tc.env[k] })
			if err != nil || got != tc.want {
				t.Fatalf("Path = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestSaveLoadRoundTripAndMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "config.yaml")

	f, err := Load(path)
	if err != nil || len(f.Contexts) != 0 || f.CurrentContext != "" {
		t.Fatalf("Load of a missing file = %+v, %v; want empty", f, err)
	}
	f.Set(Context{Name: "prod", Server: "cp:8443", Token: "mcpgwadm_secret", CAFile: "/ca.crt"})
	f.Set(Context{Name: "dev", Server: "127.0.0.1:9443"})
	f.CurrentContext = "prod"
	if err := Save(path, f); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", st.Mode().Perm())
	}
	if dst, _ := os.Stat(filepath.Dir(path)); dst.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", dst.Mode().Perm())
	}
	if LoosePermissions(path) {
		t.Error("LoosePermissions of a 0600 file")
	}

	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.CurrentContext != "prod" || len(got.Contexts) != 2 || got.Contexts[0].Name != "dev" {
		t.Fatalf("loaded %+v", got)
	}
	prod, _ := got.Get("prod")
	if prod != (Context{Name: "prod", Server: "cp:8443", Token: "mcpgwadm_secret", CAFile: "/ca.crt"}) {
		t.Fatalf("prod = %+v", prod)
	}

	// Set merges: fields left empty keep their values.
	got.Set(Context{Name: "prod", Token: "mcpgwadm_rotated"})
	prod, _ = got.Get("prod")
	if prod.Server != "cp:8443" || prod.Token != "mcpgwadm_rotated" || prod.CAFile != "/ca.crt" {
		t.Fatalf("after merge prod = %+v", prod)
	}

	if !got.Delete("prod") || got.CurrentContext != "" || got.Delete("prod") {
		t.Fatalf("Delete: %+v", got)
	}

	// No temporary files are left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only config.yaml", len(entries))
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if !LoosePermissions(path) {
		t.Error("LoosePermissions of a 0644 file = false")
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"unknown field", "contexts:\n  - name: a\n    sever: x\n", "field sever not found"},
		{"duplicate", "contexts:\n  - name: a\n  - name: a\n", `context "a" appears twice`},
		{"no name", "contexts:\n  - server: x:1\n", "a context has no name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v; want an error containing %q", err, tc.want)
			}
		})
	}
	empty := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if f, err := Load(empty); err != nil || len(f.Contexts) != 0 {
		t.Fatalf("Load of an empty file = %+v, %v", f, err)
	}
}
