package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpgw/mcpgw/migrations"
)

// CARecord is the installation CA as stored: its certificate and its private
// key encrypted under the key-encryption key (controlplane/pki does the
// cryptography; the store only keeps bytes).
type CARecord struct {
	CertPEM       []byte
	KeyEncrypted  []byte
	KeyEncryption string
	KEKID         string
	NotAfter      time.Time
}

// caName is the pki row of the installation CA.
const caName = "ca"

// LoadOrCreateCA returns the stored CA, or, if there is none, stores the one
// create makes. Replicas serialise on an advisory lock (migrations.LockPKI)
// held for the transaction, so replicas starting together create exactly one
// CA and the others read it.
func (s *Store) LoadOrCreateCA(ctx context.Context, create func() (CARecord, error)) (rec CARecord, created bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, migrations.LockClass, migrations.LockPKI); err != nil {
			return fmt.Errorf("taking the PKI lock: %w", err)
		}
		var certPEM string
		err := tx.QueryRow(ctx, `SELECT cert_pem, key_encrypted, key_encryption, kek_id, not_after FROM pki WHERE name = $1`, caName).
			Scan(&certPEM, &rec.KeyEncrypted, &rec.KeyEncryption, &rec.KEKID, &rec.NotAfter)
		if err == nil {
			rec.CertPEM = []byte(certPEM)
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("reading the CA: %w", err)
		}
		if rec, err = create(); err != nil {
			return fmt.Errorf("creating the CA: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pki (name, cert_pem, key_encrypted, key_encryption, kek_id, not_after)
			VALUES ($1, $2, $3, $4, $5, $6)`, caName, string(rec.CertPEM), rec.KeyEncrypted, rec.KeyEncryption, rec.KEKID, rec.NotAfter); err != nil {
			return fmt.Errorf("storing the CA: %w", err)
		}
		created = true
		return nil
	})
	if err != nil {
		return CARecord{}, false, err
	}
	return rec, created, nil
}
