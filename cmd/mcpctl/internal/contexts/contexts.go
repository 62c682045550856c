// Package contexts reads and writes mcpctl's contexts file: named connection
// settings (server, admin token, CA bundle) and which one is current, in the
// spirit of kubectl's kubeconfig. The file holds admin tokens, so it is
// always written with mode 0600 and replaced atomically, never rewritten in
// place where a crash could leave half a file.
package contexts

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EnvConfig names the variable that overrides the file's location.
const EnvConfig = "MCPCTL_CONFIG"

// Context is one named set of connection settings. Empty fields mean "not
// set here", so flags and environment variables can fill them in.
type Context struct {
	Name   string `yaml:"name"`
	Server string `yaml:"server,omitempty"`
	Token  string `yaml:"token,omitempty"`
	CAFile string `yaml:"ca-file,omitempty"`
	// InsecureSkipTLSVerify is kept per context so a lab setup does not
	// need the flag on every command; it still warns every time it is used.
	InsecureSkipTLSVerify bool `yaml:"insecure-skip-tls-verify,omitempty"`
}

// File is the whole contexts file.
type File struct {
	CurrentContext string    `yaml:"current-context,omitempty"`
	Contexts       []Context `yaml:"contexts,omitempty"`
}

// Path returns where the file lives: $MCPCTL_CONFIG, else
// $XDG_CONFIG_HOME/mcpctl/config.yaml, else ~/.config/mcpctl/config.yaml.
// getenv is os.Getenv in production; tests pass their own.
func Path(getenv func(string) string) (string, error) {
	if p := getenv(EnvConfig); p != "" {
		return p, nil
	}
	if x := getenv("XDG_CONFIG_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "mcpctl", "config.yaml"), nil
	}
	home := getenv("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the contexts file: set %s or HOME: %w", EnvConfig, err)
		}
		home = h
	}
	return filepath.Join(home, ".config", "mcpctl", "config.yaml"), nil
}

// Load reads the file at path. A missing file is an empty File, not an
// error: a fresh machine simply has no contexts yet.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading contexts file: %w", err)
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) /* empty file */ {
		return nil, fmt.Errorf("parsing contexts file %s: %w", path, err)
	}
	seen := map[string]bool{}
	for _, c := range f.Contexts {
		if c.Name == "" {
			return nil, fmt.Errorf("contexts file %s: a context has no name", path)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("contexts file %s: context %q appears twice", path, c.Name)
		}
		seen[c.Name] = true
	}
	return &f, nil
}

// Save writes f to path with mode 0600 (directory 0700), replacing any
// previous file atomically.
func Save(path string, f *File) error {
	b, err := yaml.Marshal(f)
	if err != nil {
		return fmt.Errorf("encoding contexts file: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("writing contexts file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	// CreateTemp uses 0600 today; say it explicitly, since the file holds
	// admin tokens and must never be readable by others.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("writing contexts file: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("writing contexts file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing contexts file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing contexts file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing contexts file: %w", err)
	}
	return nil
}

// Get returns the context named name.
func (f *File) Get(name string) (Context, bool) {
	i := f.index(name)
	if i < 0 {
		return Context{}, false
	}
	return f.Contexts[i], true
}

// Set merges c into the context of the same name, creating it if needed:
// fields left empty in c keep their stored values, as with kubectl
// set-context.
func (f *File) Set(c Context) {
	i := f.index(c.Name)
	if i < 0 {
		f.Contexts = append(f.Contexts, c)
		slices.SortFunc(f.Contexts, func(a, b Context) int { return strings.Compare(a.Name, b.Name) })
		return
	}
	old := &f.Contexts[i]
	if c.Server != "" {
		old.Server = c.Server
	}
	if c.Token != "" {
		old.Token = c.Token
	}
	if c.CAFile != "" {
		old.CAFile = c.CAFile
	}
	if c.InsecureSkipTLSVerify {
		old.InsecureSkipTLSVerify = true
	}
}

// Delete removes the context named name and reports whether it existed.
// Deleting the current context also clears current-context.
func (f *File) Delete(name string) bool {
	i := f.index(name)
	if i < 0 {
		return false
	}
	f.Contexts = slices.Delete(f.Contexts, i, i+1)
	if f.CurrentContext == name {
		f.CurrentContext = ""
	}
	return true
}

func (f *File) index(name string) int {
	return slices.IndexFunc(f.Contexts, func(c Context) bool { return c.Name == name })
}

// LoosePermissions reports whether the file at path can be read by users
// other than its owner, which matters because it holds admin tokens.
func LoosePermissions(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().Perm()&0o077 != 0
}
