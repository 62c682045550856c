package devmode

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mcpgw/mcpgw/controlplane/admin"
)

// CredentialsFile is the name, in the data dir, of the file that keeps the
// demo credentials between starts.
const CredentialsFile = "dev-credentials.json"

const credentialsWarning = "mcpgw dev mode only: these credentials are kept in plain text so that a restart can print them again. " +
	"A real installation never stores secrets like this: `mcpgw cp` shows its admin token once, `mcpctl keys create` shows a key once."

// credentials is what mcpgw dev remembers about the installation it made.
// The control plane itself keeps only hashes; this file is the one place the
// secrets live, which is acceptable for a local dev sandbox only.
type credentials struct {
	Warning string `json:"warning"`
	// AdminToken is given to the control plane at every start (it stores
	// its hash), so the printed token always works.
	AdminToken string `json:"admin_token"`
	// DemoKey is the demo principal's API key and DemoKeyID its id at the
	// control plane; both empty until the installation is seeded.
	DemoKey   string `json:"demo_api_key,omitempty"`
	DemoKeyID string `json:"demo_api_key_id,omitempty"`
	// CAFingerprint is the SHA-256 of the CA bundle the installation was
	// seeded under: a data dir pointed at another store (another database,
	// a switch between Postgres and the embedded store) would hold an edge
	// identity and credentials that store never issued.
	CAFingerprint string `json:"ca_sha256,omitempty"`
}

// seeded reports whether the default document and demo key were made.
func (c *credentials) seeded() bool { return c.DemoKey != "" }

// loadCredentials reads the file, or returns fresh credentials (with a new
// admin token) when it does not exist yet.
func loadCredentials(dir string) (*credentials, error) {
	path := filepath.Join(dir, CredentialsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		tok, err := newAdminToken()
		if err != nil {
			return nil, err
		}
		return &credentials{Warning: credentialsWarning, AdminToken: tok}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v): remove the data dir to start over", path, err)
	}
	if c.AdminToken == "" {
		return nil, fmt.Errorf("%s holds no admin token: remove the data dir to start over", path)
	}
	return &c, nil
}

// save writes the file atomically with mode 0600.
func (c *credentials) save(dir string) error {
	c.Warning = credentialsWarning
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".dev-credentials-*")
	if err != nil {
		return fmt.Errorf("saving dev credentials: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("saving dev credentials: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("saving dev credentials: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("saving dev credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("saving dev credentials: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, CredentialsFile)); err != nil {
		return fmt.Errorf("saving dev credentials: %w", err)
	}
	return nil
}

func newAdminToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating the admin token: %w", err)
	}
	return admin.AdminTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}
