package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"regexp"
	"time"
)

// Tenant is one customer: its own users, groups and tokens.
type Tenant struct {
	ID        int64
	Name      string
	CreatedAt time.Time
}

var tenantNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidTenantName reports whether name can name a tenant.
func ValidTenantName(name string) error {
	if !tenantNameRE.MatchString(name) {
		return Errorf(Invalid, "tenant name %q is not valid: use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

type tenantRow struct {
	ID        int64  `db:"id"`
	Name      string `db:"name"`
	CreatedAt string `db:"created_at"`
}

func (r tenantRow) tenant() Tenant {
	return Tenant{ID: r.ID, Name: r.Name, CreatedAt: parseTime(r.CreatedAt)}
}

// CreateTenant creates a tenant.
func (tx *Tx) CreateTenant(name string) (Tenant, error) {
	if err := ValidTenantName(name); err != nil {
		return Tenant{}, err
	}
	var id int64
	err := tx.get(&id, `INSERT INTO tenants (name, created_at) VALUES (?, ?) RETURNING id`, name, formatTime(tx.now))
	if isUniqueViolation(err) {
		return Tenant{}, Errorf(Conflict, "tenant %q already exists", name)
	}
	if err != nil {
		return Tenant{}, err
	}
	return Tenant{ID: id, Name: name, CreatedAt: tx.now}, nil
}

// Tenant returns the tenant called name.
func (db *DB) Tenant(ctx context.Context, name string) (Tenant, error) {
	return tenantByName(ctx, db.read, name)
}

// Tenant returns the tenant called name, as this transaction sees it.
func (tx *Tx) Tenant(name string) (Tenant, error) { return tenantByName(tx.ctx, tx.tx, name) }

func tenantByName(ctx context.Context, q queryer, name string) (Tenant, error) {
	var r tenantRow
	err := q.GetContext(ctx, &r, q.Rebind(`SELECT id, name, created_at FROM tenants WHERE name = ?`), name)
	if errors.Is(err, sql.ErrNoRows) {
		return Tenant{}, Errorf(NotFound, "no tenant %q", name)
	}
	if err != nil {
		return Tenant{}, err
	}
	return r.tenant(), nil
}

// TenantSummary is a tenant with its sizes, for listings.
type TenantSummary struct {
	Tenant
	Users  int
	Groups int
	Tokens int // active (unrevoked) tokens
}

// Tenants lists every tenant by name.
func (db *DB) Tenants(ctx context.Context) ([]TenantSummary, error) {
	var rows []struct {
		tenantRow
		Users  int `db:"users"`
		Groups int `db:"groups"`
		Tokens int `db:"tokens"`
	}
	err := db.read.SelectContext(ctx, &rows, `SELECT t.id, t.name, t.created_at,
		(SELECT COUNT(*) FROM users u WHERE u.tenant_id = t.id) AS users,
		(SELECT COUNT(*) FROM groups g WHERE g.tenant_id = t.id) AS groups,
		(SELECT COUNT(*) FROM scim_tokens k WHERE k.tenant_id = t.id AND k.revoked_at IS NULL) AS tokens
		FROM tenants t ORDER BY t.name`)
	if err != nil {
		return nil, err
	}
	out := make([]TenantSummary, len(rows))
	for i, r := range rows {
		out[i] = TenantSummary{Tenant: r.tenant(), Users: r.Users, Groups: r.Groups, Tokens: r.Tokens}
	}
	return out, nil
}

// HasTenants reports whether any tenant exists.
func (tx *Tx) HasTenants() (bool, error) {
	var n int
	err := tx.get(&n, `SELECT COUNT(*) FROM (SELECT 1 FROM tenants LIMIT 1) AS t`)
	return n > 0, err
}

// DeleteTenant deletes a tenant and everything it holds.
func (tx *Tx) DeleteTenant(name string) error {
	res, err := tx.exec(`DELETE FROM tenants WHERE name = ?`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Errorf(NotFound, "no tenant %q", name)
	}
	return nil
}

// Token describes a SCIM secret token; the secret itself is never stored.
type Token struct {
	ID         string     `json:"id"`
	Tenant     string     `json:"tenant"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"createdAt"`
	LastUsedAt *time.Time `json:"lastUsedAt"`
	RevokedAt  *time.Time `json:"revokedAt"`
}

const tokenPrefix = "es_"

// newSecret makes a 256-bit random secret with a recognisable prefix, its
// SHA-256 and the short prefix shown in listings.
func newSecret(prefix string) (secret string, hash []byte, shown string) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	secret = prefix + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(secret))
	return secret, sum[:], secret[:len(prefix)+6]
}

func newID(prefix string) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

// CreateToken issues a secret token for tenant. The secret is returned once.
func (tx *Tx) CreateToken(t Tenant) (Token, string, error) {
	secret, hash, shown := newSecret(tokenPrefix)
	tok := Token{ID: newID("tok_"), Tenant: t.Name, Prefix: shown, CreatedAt: tx.now}
	_, err := tx.exec(`INSERT INTO scim_tokens (id, tenant_id, hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)`,
		tok.ID, t.ID, hash, tok.Prefix, formatTime(tx.now))
	if err != nil {
		return Token{}, "", err
	}
	return tok, secret, nil
}

type tokenRow struct {
	ID         string         `db:"id"`
	Tenant     string         `db:"tenant"`
	Prefix     string         `db:"prefix"`
	CreatedAt  string         `db:"created_at"`
	LastUsedAt sql.NullString `db:"last_used_at"`
	RevokedAt  sql.NullString `db:"revoked_at"`
}

func optTime(s sql.NullString) *time.Time {
	if !s.Valid {
		return nil
	}
	t := parseTime(s.String)
	return &t
}

// Tokens lists a tenant's tokens, newest first.
func (db *DB) Tokens(ctx context.Context, tenant string) ([]Token, error) {
	t, err := db.Tenant(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var rows []tokenRow
	err = db.read.SelectContext(ctx, &rows, db.read.Rebind(`SELECT k.id, ? AS tenant, k.prefix, k.created_at, k.last_used_at, k.revoked_at
		FROM scim_tokens k WHERE k.tenant_id = ? ORDER BY k.created_at DESC, k.id`), t.Name, t.ID)
	if err != nil {
		return nil, err
	}
	out := make([]Token, len(rows))
	for i, r := range rows {
		out[i] = Token{ID: r.ID, Tenant: r.Tenant, Prefix: r.Prefix, CreatedAt: parseTime(r.CreatedAt),
			LastUsedAt: optTime(r.LastUsedAt), RevokedAt: optTime(r.RevokedAt)}
	}
	return out, nil
}

// RevokeToken revokes a token; from then on it authenticates nothing.
func (tx *Tx) RevokeToken(id string) (Token, error) {
	var r tokenRow
	err := tx.get(&r, `SELECT k.id, t.name AS tenant, k.prefix, k.created_at, k.last_used_at, k.revoked_at
		FROM scim_tokens k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, Errorf(NotFound, "no token %q", id)
	}
	if err != nil {
		return Token{}, err
	}
	if !r.RevokedAt.Valid {
		if _, err := tx.exec(`UPDATE scim_tokens SET revoked_at = ? WHERE id = ?`, formatTime(tx.now), id); err != nil {
			return Token{}, err
		}
		r.RevokedAt = sql.NullString{String: formatTime(tx.now), Valid: true}
	}
	return Token{ID: r.ID, Tenant: r.Tenant, Prefix: r.Prefix, CreatedAt: parseTime(r.CreatedAt),
		LastUsedAt: optTime(r.LastUsedAt), RevokedAt: optTime(r.RevokedAt)}, nil
}

// lastUsedGranularity bounds how often authentication stamps last_used_at:
// a write per request would put every SCIM read in the writer's queue.
const lastUsedGranularity = time.Minute

// Authenticate returns the tenant that secret belongs to and the token's
// id (for logs: the id names the token without revealing it). It fails
// with NotFound for an unknown or revoked token; it never caches, so a
// revocation takes effect on the next request, in every process.
func (db *DB) Authenticate(ctx context.Context, secret string) (Tenant, string, error) {
	var r struct {
		secretRow
		tenantRow
	}
	err := db.checkSecret(ctx, "scim_tokens", secret, &r.secretRow, &r, `SELECT k.id AS secret_id, k.hash, k.last_used_at, t.id, t.name, t.created_at
		FROM scim_tokens k JOIN tenants t ON t.id = k.tenant_id WHERE k.hash = ? AND k.revoked_at IS NULL`)
	if err != nil {
		return Tenant{}, "", err
	}
	return r.tenant(), r.SecretID, nil
}

// secretRow is what checkSecret needs of a hashed-secret row.
type secretRow struct {
	SecretID   string         `db:"secret_id"`
	Hash       []byte         `db:"hash"`
	LastUsedAt sql.NullString `db:"last_used_at"`
}

// checkSecret finds the unrevoked row whose hash is secret's SHA-256 with
// query (one ? for the hash) into dest, whose secretRow is sr, and stamps
// its last use now and then (see stamps: within seconds, never inline).
func (db *DB) checkSecret(ctx context.Context, table, secret string, sr *secretRow, dest any, query string) error {
	sum := sha256.Sum256([]byte(secret))
	err := db.read.GetContext(ctx, dest, db.read.Rebind(query), sum[:])
	if errors.Is(err, sql.ErrNoRows) {
		return Errorf(NotFound, "unknown or revoked key")
	}
	if err != nil {
		return err
	}
	// The lookup was by hash; compare again in constant time so no timing of
	// the index lookup decides acceptance on its own.
	if subtle.ConstantTimeCompare(sr.Hash, sum[:]) != 1 {
		return Errorf(NotFound, "unknown or revoked key")
	}
	now := db.now().UTC().Truncate(time.Millisecond)
	if !sr.LastUsedAt.Valid || now.Sub(parseTime(sr.LastUsedAt.String)) >= lastUsedGranularity {
		// Recorded in memory and written in the background with every other
		// due stamp: a request never waits for the writer (or fails) for it.
		db.stamp(table, sr.SecretID, now)
	}
	return nil
}

// FirstStart reports whether this is the database's first start, and
// records that it has started; it is true once in a database's life.
func (tx *Tx) FirstStart() (bool, error) {
	res, err := tx.exec(`INSERT INTO meta (key, value) VALUES ('first_start', ?) ON CONFLICT DO NOTHING`, formatTime(tx.now))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// InstallationID is a random id made once per database: the nodes that
// share a database share it (Redis keys are namespaced with it).
func (db *DB) InstallationID(ctx context.Context) (string, error) {
	err := db.Write(ctx, func(tx *Tx) error {
		_, err := tx.exec(`INSERT INTO meta (key, value) VALUES ('installation_id', ?) ON CONFLICT DO NOTHING`, newID("")[:16])
		return err
	})
	if err != nil {
		return "", err
	}
	var id string
	err = db.read.GetContext(ctx, &id, `SELECT value FROM meta WHERE key = 'installation_id'`)
	return id, err
}
