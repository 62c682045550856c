package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/controlplane/store"
)

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func testAPIKeys(t *testing.T, s Store) {
	ctx := t.Context()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	k, r, created, err := s.CreateAPIKey(ctx, meta, store.NewAPIKey{ID: "k1", Principal: "alice", SHA256: hash("secret-1"), Description: "laptop", ExpiresAt: exp})
	if err != nil || !created || !r.Committed || k.CreatedAt.IsZero() || len(r.Changes) != 2 {
		t.Fatalf("CreateAPIKey: %+v %+v created=%v, %v", k, r, created, err)
	}
	if _, _, created, err := s.CreateAPIKey(ctx, meta, store.NewAPIKey{ID: "k2", Principal: "alice", SHA256: hash("secret-2")}); err != nil || created {
		t.Fatalf("second key: created=%v, %v", created, err)
	}
	if _, _, _, err := s.CreateAPIKey(ctx, meta, store.NewAPIKey{ID: "k1", Principal: "bob", SHA256: hash("secret-3")}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("duplicate key id: %v, want ErrAlreadyExists", err)
	}
	// Only the hash is stored, and edges get it through the config.
	cfg, err := s.LoadConfig(ctx)
	if err != nil || len(cfg.APIKeys) != 2 || cfg.APIKeys[0].SHA256 != hash("secret-1") || !cfg.APIKeys[0].ExpiresAt.Equal(exp) {
		t.Fatalf("config keys: %+v, %v", cfg.APIKeys, err)
	}
	_, _, res, err := s.LoadSnapshotResources(ctx)
	if err != nil || len(res.ApiKeys) != 2 || res.ApiKeys[1].Sha256 != hash("secret-2") || res.ApiKeys[0].ExpireTime == nil {
		t.Fatalf("snapshot keys: %+v, %v", res.GetApiKeys(), err)
	}
	for _, c := range r.Changes {
		if c.Kind == store.KindAPIKey && (len(c.After) == 0 || strings.Contains(string(c.After), hash("secret-1"))) {
			t.Fatalf("key change log %s must hold metadata without the hash", c.After)
		}
	}
	got, err := s.GetAPIKey(ctx, "k1")
	if err != nil || got.Principal != "alice" || got.Description != "laptop" || !got.ExpiresAt.Equal(exp) || !got.CreatedAt.Equal(k.CreatedAt) {
		t.Fatalf("GetAPIKey: %+v, %v (created %v)", got, err, k.CreatedAt)
	}
	if _, err := s.GetAPIKey(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}

	rk, rr, err := s.RevokeAPIKey(ctx, meta, "k1")
	if err != nil || rk.RevokedAt.IsZero() || !rr.Committed {
		t.Fatalf("RevokeAPIKey: %+v %+v, %v", rk, rr, err)
	}
	if _, again, err := s.RevokeAPIKey(ctx, meta, "k1"); err != nil || again.Committed {
		t.Fatalf("second revoke: %+v, %v", again, err)
	}
	cfg, _ = s.LoadConfig(ctx)
	if len(cfg.APIKeys) != 1 || cfg.APIKeys[0].KeyID != "k2" {
		t.Fatalf("config keys after revoking k1: %+v", cfg.APIKeys)
	}
	active, err := s.ListAPIKeys(ctx, "alice", false, nil, 0)
	if err != nil || len(active) != 1 || active[0].ID != "k2" {
		t.Fatalf("active keys: %+v, %v", active, err)
	}
	all, err := s.ListAPIKeys(ctx, "", true, nil, 1)
	if err != nil || len(all) != 1 {
		t.Fatalf("first page of all keys: %+v, %v", all, err)
	}
	rest, err := s.ListAPIKeys(ctx, "", true, &store.KeyCursor{CreatedAt: all[0].CreatedAt, ID: all[0].ID}, 10)
	if err != nil || len(rest) != 1 || rest[0].ID == all[0].ID {
		t.Fatalf("second page of all keys: %+v, %v", rest, err)
	}

	// Deleting the principal deletes its keys and reports the live ones.
	_, revoked, err := s.DeletePrincipal(ctx, meta, "alice", store.WriteOptions{})
	if err != nil || !slices.Equal(revoked, []string{"k2"}) {
		t.Fatalf("DeletePrincipal: revoked %v, %v", revoked, err)
	}
	if _, err := s.GetAPIKey(ctx, "k2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("key of a deleted principal: %v", err)
	}
	if cfg, _ = s.LoadConfig(ctx); len(cfg.APIKeys) != 0 {
		t.Fatalf("config keys after deleting the principal: %+v", cfg.APIKeys)
	}
}

func testAdminTokens(t *testing.T, s Store) {
	ctx := t.Context()
	if ok, err := s.HasActiveAdminToken(ctx); err != nil || ok {
		t.Fatalf("HasActiveAdminToken on an empty store: %v, %v", ok, err)
	}
	if _, err := s.AuthenticateAdmin(ctx, hash("mcpgwadm_nobody")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown admin token: %v, want ErrNotFound", err)
	}
	// Generated candidates: the first one stored wins.
	if stored, err := s.EnsureBootstrapAdminToken(ctx, hash("mcpgwadm_first"), false); err != nil || !stored {
		t.Fatalf("first candidate: %v, %v", stored, err)
	}
	if stored, err := s.EnsureBootstrapAdminToken(ctx, hash("mcpgwadm_second"), false); err != nil || stored {
		t.Fatalf("second candidate: %v, %v", stored, err)
	}
	if tok, err := s.AuthenticateAdmin(ctx, hash("mcpgwadm_first")); err != nil || tok.ID != store.BootstrapAdminTokenID {
		t.Fatalf("AuthenticateAdmin: %+v, %v", tok, err)
	}
	if _, err := s.AuthenticateAdmin(ctx, hash("mcpgwadm_second")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("losing candidate authenticated: %v", err)
	}
	// An operator-supplied token replaces it.
	if stored, err := s.EnsureBootstrapAdminToken(ctx, hash("mcpgwadm_operator"), true); err != nil || !stored {
		t.Fatalf("replace: %v, %v", stored, err)
	}
	if _, err := s.AuthenticateAdmin(ctx, hash("mcpgwadm_first")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("replaced token still authenticates: %v", err)
	}
	if _, err := s.AuthenticateAdmin(ctx, hash("mcpgwadm_operator")); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.HasActiveAdminToken(ctx); err != nil || !ok {
		t.Fatalf("HasActiveAdminToken: %v, %v", ok, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func testJoinTokens(t *testing.T, s Store) {
	ctx := t.Context()
	jt, err := s.CreateJoinToken(ctx, store.NewJoinToken{ID: "j1", SHA256: hash("join-1"), Labels: map[string]string{"zone": "a"}, NodeGroup: "edge", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil || jt.ID != "j1" || jt.NodeGroup != "edge" || jt.Labels["zone"] != "a" || jt.CreatedAt.IsZero() {
		t.Fatalf("CreateJoinToken: %+v, %v", jt, err)
	}
	if _, err := s.CreateJoinToken(ctx, store.NewJoinToken{ID: "j1", SHA256: hash("join-x"), ExpiresAt: time.Now().Add(time.Hour)}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("duplicate join token: %v, want ErrAlreadyExists", err)
	}
	if _, err := s.CreateJoinToken(ctx, store.NewJoinToken{ID: "old", SHA256: hash("join-old"), ExpiresAt: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateJoinToken(ctx, store.NewJoinToken{ID: "j3", SHA256: hash("join-3"), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	live, err := s.ListJoinTokens(ctx, false, nil, 0)
	if err != nil || len(live) != 2 {
		t.Fatalf("live join tokens: %+v, %v", live, err)
	}

	id := uuid.New()
	n, err := s.EnrollNode(ctx, enroll(id, "join-1", map[string]string{"zone": "b", "os": "linux"}))
	if err != nil || n.ID != id || n.NodeGroup != "edge" || n.Labels["zone"] != "a" || n.Labels["os"] != "linux" || n.EnrolledAt.IsZero() {
		t.Fatalf("EnrollNode: %+v, %v", n, err)
	}
	// Single use, expiry, unknown: all refused alike.
	for name, tok := range map[string]string{"reused": "join-1", "expired": "join-old", "unknown": "join-none"} {
		if _, err := s.EnrollNode(ctx, enroll(uuid.New(), tok, nil)); !errors.Is(err, store.ErrJoinTokenRefused) {
			t.Errorf("%s token: %v, want ErrJoinTokenRefused", name, err)
		}
	}
	if _, err := s.RevokeJoinToken(ctx, "j1"); !errors.Is(err, store.ErrJoinTokenUsed) {
		t.Fatalf("revoking a used token: %v, want ErrJoinTokenUsed", err)
	}
	rv, err := s.RevokeJoinToken(ctx, "j3")
	if err != nil || rv.RevokedAt.IsZero() {
		t.Fatalf("RevokeJoinToken: %+v, %v", rv, err)
	}
	if _, err := s.EnrollNode(ctx, enroll(uuid.New(), "join-3", nil)); !errors.Is(err, store.ErrJoinTokenRefused) {
		t.Fatalf("revoked token enrolled: %v", err)
	}
	if _, err := s.RevokeJoinToken(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking an unknown token: %v, want ErrNotFound", err)
	}
	all, err := s.ListJoinTokens(ctx, true, nil, 0)
	if err != nil || len(all) != 3 {
		t.Fatalf("all join tokens: %+v, %v", all, err)
	}
	for _, tk := range all {
		if tk.ID == "j1" && (tk.UsedAt.IsZero() || tk.UsedBy != id) {
			t.Fatalf("used token: %+v, want used by %s", tk, id)
		}
	}
	if live, _ := s.ListJoinTokens(ctx, false, nil, 0); len(live) != 0 {
		t.Fatalf("live tokens after use, expiry and revocation: %+v", live)
	}
}

func enroll(id uuid.UUID, token string, labels map[string]string) store.EnrollParams {
	return store.EnrollParams{JoinTokenSHA256: hash(token), ID: id, Version: "v1", Labels: labels,
		CertSerial: "01", CertFingerprint: hash("cert-" + id.String()), CertNotAfter: time.Now().Add(24 * time.Hour)}
}

func testCA(t *testing.T, s Store) {
	ctx := t.Context()
	mk := func() (store.CARecord, error) {
		return store.CARecord{CertPEM: []byte("-----BEGIN CERTIFICATE-----\n"), KeyEncrypted: []byte{1, 2, 3, 0, 255}, KeyEncryption: "aes-256-gcm", KEKID: "kek1", NotAfter: time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)}, nil
	}
	rec, created, err := s.LoadOrCreateCA(ctx, mk)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreateCA: created=%v, %v", created, err)
	}
	again, created, err := s.LoadOrCreateCA(ctx, func() (store.CARecord, error) { return store.CARecord{}, errors.New("must not be called") })
	if err != nil || created || string(again.CertPEM) != string(rec.CertPEM) || string(again.KeyEncrypted) != string(rec.KeyEncrypted) ||
		again.KEKID != "kek1" || again.KeyEncryption != "aes-256-gcm" || !again.NotAfter.Equal(rec.NotAfter) {
		t.Fatalf("second LoadOrCreateCA: %+v created=%v, %v", again, created, err)
	}
}
