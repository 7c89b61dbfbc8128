package store

import (
	"context"
	"database/sql"
	"time"
)

// OpsKey describes a key of the ops HTTP API; the key itself is never stored.
type OpsKey struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"createdAt"`
	LastUsedAt *time.Time `json:"lastUsedAt"`
	RevokedAt  *time.Time `json:"revokedAt"`
}

const opsKeyPrefix = "eso_"

// CreateOpsKey issues an ops key called name; the key is returned once.
func (tx *Tx) CreateOpsKey(name string) (OpsKey, string, error) {
	if err := ValidTenantName(name); err != nil {
		return OpsKey{}, "", Errorf(Invalid, "ops key name %q is not valid: use 1-63 lower-case letters, digits, '.', '_' or '-'", name)
	}
	secret, hash, shown := newSecret(opsKeyPrefix)
	k := OpsKey{ID: newID("ops_"), Name: name, Prefix: shown, CreatedAt: tx.now}
	_, err := tx.exec(`INSERT INTO ops_keys (id, name, hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)`,
		k.ID, name, hash, shown, formatTime(tx.now))
	if isUniqueViolation(err) {
		return OpsKey{}, "", Errorf(Conflict, "an ops key called %q exists; revoke it first or pick another name", name)
	}
	return k, secret, err
}

type opsKeyRow struct {
	ID         string         `db:"id"`
	Name       string         `db:"name"`
	Prefix     string         `db:"prefix"`
	CreatedAt  string         `db:"created_at"`
	LastUsedAt sql.NullString `db:"last_used_at"`
	RevokedAt  sql.NullString `db:"revoked_at"`
}

func (r opsKeyRow) key() OpsKey {
	return OpsKey{ID: r.ID, Name: r.Name, Prefix: r.Prefix, CreatedAt: parseTime(r.CreatedAt),
		LastUsedAt: optTime(r.LastUsedAt), RevokedAt: optTime(r.RevokedAt)}
}

// OpsKeys lists the ops keys by name.
func (db *DB) OpsKeys(ctx context.Context) ([]OpsKey, error) {
	var rows []opsKeyRow
	if err := db.read.SelectContext(ctx, &rows, `SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM ops_keys ORDER BY name`); err != nil {
		return nil, err
	}
	out := make([]OpsKey, len(rows))
	for i, r := range rows {
		out[i] = r.key()
	}
	return out, nil
}

// RevokeOpsKey revokes the ops key called name. Its name is freed for a
// new key.
func (tx *Tx) RevokeOpsKey(name string) error {
	// The name moves aside so it can be reused; the row stays for the record.
	res, err := tx.exec(`UPDATE ops_keys SET revoked_at = ?, name = name || ' (revoked ' || id || ')' WHERE name = ? AND revoked_at IS NULL`,
		formatTime(tx.now), name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Errorf(NotFound, "no ops key %q", name)
	}
	return nil
}

// AuthenticateOps returns the ops key that secret is.
func (db *DB) AuthenticateOps(ctx context.Context, secret string) (OpsKey, error) {
	var r struct {
		secretRow
		Name string `db:"name"`
	}
	err := db.checkSecret(ctx, "ops_keys", secret, &r.secretRow, &r,
		`SELECT id AS secret_id, hash, last_used_at, name FROM ops_keys WHERE hash = ? AND revoked_at IS NULL`)
	if err != nil {
		return OpsKey{}, err
	}
	return OpsKey{ID: r.SecretID, Name: r.Name}, nil
}
