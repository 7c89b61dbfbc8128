package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// OpsRole is what an ops key may do; each role may do what the ones before
// it may.
type OpsRole string

const (
	OpsRead  OpsRole = "read"  // read runs and status
	OpsSync  OpsRole = "sync"  // also start runs
	OpsAdmin OpsRole = "admin" // also full runs and runs that confirm deletions over the threshold
)

var opsRoles = []OpsRole{OpsRead, OpsSync, OpsAdmin}

// ParseOpsRole reads a role's name.
func ParseOpsRole(s string) (OpsRole, error) {
	if r := OpsRole(s); slices.Contains(opsRoles, r) {
		return r, nil
	}
	return "", Errorf(Invalid, "ops key role %q is not one of %s", s, roleList())
}

// Allows reports whether a key with role r may do what need may.
func (r OpsRole) Allows(need OpsRole) bool {
	have, want := slices.Index(opsRoles, r), slices.Index(opsRoles, need)
	return have >= 0 && want >= 0 && have >= want
}

// OpsKey describes a key of the ops HTTP API; the key itself is never stored.
type OpsKey struct {
	ID     string  `json:"id"`
	Name   string  `json:"name"`
	Prefix string  `json:"prefix"`
	Role   OpsRole `json:"role"`
	// Tenants are the tenants the key may act on, by name; nil means every
	// tenant. A deleted tenant leaves the list.
	Tenants    []string   `json:"tenants"`
	CreatedAt  time.Time  `json:"createdAt"`
	LastUsedAt *time.Time `json:"lastUsedAt"`
	RevokedAt  *time.Time `json:"revokedAt"`
}

// AllTenants reports whether the key may act on every tenant.
func (k OpsKey) AllTenants() bool { return k.Tenants == nil }

// Covers reports whether the key may act on tenant.
func (k OpsKey) Covers(tenant string) bool {
	return k.AllTenants() || slices.Contains(k.Tenants, tenant)
}

const opsKeyPrefix = "eso_"

// CreateOpsKey issues an ops key called name with role, for the named
// tenants (none: every tenant); the key is returned once.
func (tx *Tx) CreateOpsKey(name string, role OpsRole, tenants []string) (OpsKey, string, error) {
	if err := ValidTenantName(name); err != nil {
		return OpsKey{}, "", Errorf(Invalid, "ops key name %q is not valid: use 1-63 lower-case letters, digits, '.', '_' or '-'", name)
	}
	if _, err := ParseOpsRole(string(role)); err != nil {
		return OpsKey{}, "", err
	}
	var scope any // NULL: every tenant
	var names []string
	if len(tenants) > 0 {
		ids := []int64{}
		for _, n := range tenants {
			if slices.Contains(names, n) {
				continue
			}
			t, err := tx.Tenant(n)
			if err != nil {
				return OpsKey{}, "", err
			}
			ids, names = append(ids, t.ID), append(names, n)
		}
		slices.Sort(ids)
		slices.Sort(names)
		b, _ := json.Marshal(ids)
		scope = string(b)
	}
	secret, hash, shown := newSecret(opsKeyPrefix)
	k := OpsKey{ID: newID("ops_"), Name: name, Prefix: shown, Role: role, Tenants: names, CreatedAt: tx.now}
	_, err := tx.exec(`INSERT INTO ops_keys (id, name, hash, prefix, role, tenants, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		k.ID, name, hash, shown, string(role), scope, formatTime(tx.now))
	if isUniqueViolation(err) {
		return OpsKey{}, "", Errorf(Conflict, "an ops key called %q exists; revoke it first or pick another name", name)
	}
	return k, secret, err
}

type opsKeyRow struct {
	ID         string         `db:"id"`
	Name       string         `db:"name"`
	Prefix     string         `db:"prefix"`
	Role       string         `db:"role"`
	Tenants    sql.NullString `db:"tenants"`
	CreatedAt  string         `db:"created_at"`
	LastUsedAt sql.NullString `db:"last_used_at"`
	RevokedAt  sql.NullString `db:"revoked_at"`
}

const opsKeyColumns = `id, name, prefix, role, tenants, created_at, last_used_at, revoked_at`

// key turns a row into an OpsKey; names maps tenant ids to names.
func (r opsKeyRow) key(names map[int64]string) (OpsKey, error) {
	k := OpsKey{ID: r.ID, Name: r.Name, Prefix: r.Prefix, Role: OpsRole(r.Role), CreatedAt: parseTime(r.CreatedAt),
		LastUsedAt: optTime(r.LastUsedAt), RevokedAt: optTime(r.RevokedAt)}
	if r.Tenants.Valid {
		ids, err := r.tenantIDs()
		if err != nil {
			return OpsKey{}, err
		}
		k.Tenants = []string{} // scoped, even when every tenant it named is gone
		for _, id := range ids {
			if n, ok := names[id]; ok {
				k.Tenants = append(k.Tenants, n)
			}
		}
		slices.Sort(k.Tenants)
	}
	return k, nil
}

func (r opsKeyRow) tenantIDs() ([]int64, error) {
	var ids []int64
	if !r.Tenants.Valid {
		return nil, nil
	}
	err := json.Unmarshal([]byte(r.Tenants.String), &ids)
	return ids, err
}

// tenantNames maps the ids of tenants to their names (all of them when
// ids is nil); ids of deleted tenants are left out.
func (db *DB) tenantNames(ctx context.Context, ids []int64) (map[int64]string, error) {
	q, args := `SELECT id, name, created_at FROM tenants`, []any{}
	if ids != nil {
		if len(ids) == 0 {
			return map[int64]string{}, nil
		}
		var err error
		if q, args, err = inQuery(q+` WHERE id IN (?)`, ids); err != nil {
			return nil, err
		}
	}
	var rows []tenantRow
	if err := db.read.SelectContext(ctx, &rows, db.read.Rebind(q), args...); err != nil {
		return nil, err
	}
	out := make(map[int64]string, len(rows))
	for _, r := range rows {
		out[r.ID] = r.Name
	}
	return out, nil
}

// OpsKeys lists the ops keys by name.
func (db *DB) OpsKeys(ctx context.Context) ([]OpsKey, error) {
	var rows []opsKeyRow
	if err := db.read.SelectContext(ctx, &rows, `SELECT `+opsKeyColumns+` FROM ops_keys ORDER BY name`); err != nil {
		return nil, err
	}
	names, err := db.tenantNames(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make([]OpsKey, len(rows))
	for i, r := range rows {
		if out[i], err = r.key(names); err != nil {
			return nil, err
		}
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

// AuthenticateOps returns the ops key that secret is, with its role and
// tenants. It fails with NotFound for an unknown or revoked key.
func (db *DB) AuthenticateOps(ctx context.Context, secret string) (OpsKey, error) {
	var r struct {
		secretRow
		Name      string         `db:"name"`
		Prefix    string         `db:"prefix"`
		Role      string         `db:"role"`
		Tenants   sql.NullString `db:"tenants"`
		CreatedAt string         `db:"created_at"`
	}
	err := db.checkSecret(ctx, "ops_keys", secret, &r.secretRow, &r,
		`SELECT id AS secret_id, hash, last_used_at, name, prefix, role, tenants, created_at FROM ops_keys WHERE hash = ? AND revoked_at IS NULL`)
	if err != nil {
		return OpsKey{}, err
	}
	row := opsKeyRow{ID: r.SecretID, Name: r.Name, Prefix: r.Prefix, Role: r.Role, Tenants: r.Tenants, CreatedAt: r.CreatedAt, LastUsedAt: r.LastUsedAt}
	ids, err := row.tenantIDs()
	if err != nil {
		return OpsKey{}, err
	}
	names, err := db.tenantNames(ctx, ids)
	if err != nil {
		return OpsKey{}, err
	}
	return row.key(names)
}

// roleList is the roles' names for messages.
func roleList() string {
	s := make([]string, len(opsRoles))
	for i, r := range opsRoles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}
