package admin

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/policy"
)

const (
	defaultJoinTokenTTL = time.Hour
	maxJoinTokenTTL     = 7 * 24 * time.Hour
	// JoinTokenPrefix starts every join token.
	JoinTokenPrefix = "mcpgwjoin_"
)

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func apiKeyProto(k store.APIKey) *mcpgwv1.ApiKey {
	return &mcpgwv1.ApiKey{Id: k.ID, Principal: k.Principal, Description: k.Description,
		CreateTime: ts(k.CreatedAt), ExpireTime: ts(k.ExpiresAt), RevokeTime: ts(k.RevokedAt)}
}

// CreateApiKey mints "mcpgw_<id>_<secret>" from crypto/rand, stores only its
// SHA-256 and returns the key this once.
func (s *Server) CreateApiKey(ctx context.Context, req *mcpgwv1.CreateApiKeyRequest) (*mcpgwv1.CreateApiKeyResponse, error) {
	// Key ids are 8 random alphanumerics: a collision is rare but possible,
	// and a fresh key is as good as the first, so try again a few times.
	var lastErr error
	for range 3 {
		key, err := policy.GenerateKey(rand.Reader)
		if err != nil {
			return nil, toStatus(err)
		}
		id, err := policy.ParseKey(key)
		if err != nil {
			return nil, toStatus(fmt.Errorf("generated key is malformed: %w", err))
		}
		nk := store.NewAPIKey{ID: id, Principal: req.GetPrincipal(), SHA256: store.HashSecret(key), Description: req.GetDescription()}
		if req.GetTtl() != nil {
			nk.ExpiresAt = time.Now().Add(req.GetTtl().AsDuration()).UTC().Truncate(time.Microsecond)
		}
		k, res, created, err := s.st.CreateAPIKey(ctx, meta(ctx, "CreateApiKey"), nk)
		if errors.Is(err, store.ErrAlreadyExists) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, toStatus(err)
		}
		return &mcpgwv1.CreateApiKeyResponse{ApiKey: apiKeyProto(k), Key: key, PrincipalCreated: created, Revision: res.Revision}, nil
	}
	return nil, toStatus(fmt.Errorf("could not mint an unused key id: %w", lastErr))
}

func (s *Server) GetApiKey(ctx context.Context, req *mcpgwv1.GetApiKeyRequest) (*mcpgwv1.GetApiKeyResponse, error) {
	k, err := s.st.GetAPIKey(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.GetApiKeyResponse{ApiKey: apiKeyProto(k)}, nil
}

func (s *Server) ListApiKeys(ctx context.Context, req *mcpgwv1.ListApiKeysRequest) (*mcpgwv1.ListApiKeysResponse, error) {
	after, err := decodeTimeCursor("keys", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	n := pageSize(req.GetPageSize())
	keys, err := s.st.ListAPIKeys(ctx, req.GetPrincipal(), req.GetIncludeInactive(), after, n+1)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &mcpgwv1.ListApiKeysResponse{}
	if len(keys) > n {
		keys = keys[:n]
		out.NextPageToken = encodeTimeCursor("keys", keys[n-1].CreatedAt, keys[n-1].ID)
	}
	for _, k := range keys {
		out.ApiKeys = append(out.ApiKeys, apiKeyProto(k))
	}
	return out, nil
}

func (s *Server) RevokeApiKey(ctx context.Context, req *mcpgwv1.RevokeApiKeyRequest) (*mcpgwv1.RevokeApiKeyResponse, error) {
	k, res, err := s.st.RevokeAPIKey(ctx, meta(ctx, "RevokeApiKey"), req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.RevokeApiKeyResponse{ApiKey: apiKeyProto(k), Revision: res.Revision}, nil
}

func joinTokenProto(t store.JoinToken) *mcpgwv1.JoinToken {
	p := &mcpgwv1.JoinToken{Id: t.ID, Labels: t.Labels, NodeGroup: t.NodeGroup, Description: t.Description,
		CreateTime: ts(t.CreatedAt), ExpireTime: ts(t.ExpiresAt), UseTime: ts(t.UsedAt), RevokeTime: ts(t.RevokedAt)}
	if t.UsedAt.IsZero() {
		return p
	}
	if t.UsedBy != [16]byte{} {
		p.UsedByNodeId = t.UsedBy.String()
	}
	return p
}

// NewJoinTokenSecret mints a join token "mcpgwjoin_<id>_<secret>": the id
// names it in listings, the secret (256 bits) is what makes it a credential.
// Only the SHA-256 of the whole string is stored.
func NewJoinTokenSecret() (id, token string, err error) {
	var b [6 + 32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	id = hex.EncodeToString(b[:6])
	return id, JoinTokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(b[6:]), nil
}

// CreateJoinToken mints a single-use enrollment token, returned once.
func (s *Server) CreateJoinToken(ctx context.Context, req *mcpgwv1.CreateJoinTokenRequest) (*mcpgwv1.CreateJoinTokenResponse, error) {
	ttl := defaultJoinTokenTTL
	if req.GetTtl() != nil {
		ttl = req.GetTtl().AsDuration()
	}
	id, token, err := NewJoinTokenSecret()
	if err != nil {
		return nil, toStatus(err)
	}
	t, err := s.st.CreateJoinToken(ctx, store.NewJoinToken{ID: id, SHA256: store.HashSecret(token), Labels: req.GetLabels(),
		NodeGroup: req.GetNodeGroup(), Description: req.GetDescription(), ExpiresAt: time.Now().Add(ttl)})
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.CreateJoinTokenResponse{JoinToken: joinTokenProto(t), Token: token}, nil
}

func (s *Server) ListJoinTokens(ctx context.Context, req *mcpgwv1.ListJoinTokensRequest) (*mcpgwv1.ListJoinTokensResponse, error) {
	after, err := decodeTimeCursor("join-tokens", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	n := pageSize(req.GetPageSize())
	toks, err := s.st.ListJoinTokens(ctx, req.GetIncludeInactive(), after, n+1)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &mcpgwv1.ListJoinTokensResponse{}
	if len(toks) > n {
		toks = toks[:n]
		out.NextPageToken = encodeTimeCursor("join-tokens", toks[n-1].CreatedAt, toks[n-1].ID)
	}
	for _, t := range toks {
		out.JoinTokens = append(out.JoinTokens, joinTokenProto(t))
	}
	return out, nil
}

func (s *Server) RevokeJoinToken(ctx context.Context, req *mcpgwv1.RevokeJoinTokenRequest) (*mcpgwv1.RevokeJoinTokenResponse, error) {
	t, err := s.st.RevokeJoinToken(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.RevokeJoinTokenResponse{JoinToken: joinTokenProto(t)}, nil
}
