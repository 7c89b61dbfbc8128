package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// GraphConnection is how entrasync reaches a tenant's Microsoft Graph.
type GraphConnection struct {
	Tenant        string
	AzureTenantID string   // the customer's Entra directory id
	ClientID      string   // the app registration's client id
	Credential    string   // "secret" or "certificate"
	Secret        []byte   // the client secret, or the certificate PEM with its key; never printed
	Groups        []string // assigned group object ids
	Schedule      string   // cron spec
	Nested        bool     // expand nested groups
	Deprovision   string   // "deactivate" or "delete"
	// The accidental-deletion guard: a run deprovisioning more than this
	// is held. One of the two is set; percent is of the active users the
	// pull manages.
	ThresholdPercent int
	ThresholdCount   int
	AuthorityHost    string
	GraphURL         string
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// ErrNoSecretKey is returned when a secret must be sealed or opened and no
// key is configured.
var ErrNoSecretKey = Errorf(Invalid, "ENTRASYNC_SECRET_KEY is not set: Graph credentials are stored encrypted with it; make one with `openssl rand -base64 32`")

// seal encrypts plaintext with AES-256-GCM; the tenant id is bound in as
// additional data, so a sealed secret cannot be moved to another tenant.
func seal(key []byte, tenant int64, plaintext []byte) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append([]byte{1}, nonce...) // version 1
	return gcm.Seal(out, nonce, plaintext, sealAD(tenant)), nil
}

func unseal(key []byte, tenant int64, sealed []byte) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+gcm.NonceSize() || sealed[0] != 1 {
		return nil, Errorf(Invalid, "the stored Graph credential is not in a known format")
	}
	nonce, ct := sealed[1:1+gcm.NonceSize()], sealed[1+gcm.NonceSize():]
	pt, err := gcm.Open(nil, nonce, ct, sealAD(tenant))
	if err != nil {
		return nil, Errorf(Invalid, "the stored Graph credential cannot be decrypted: ENTRASYNC_SECRET_KEY is not the key it was stored with")
	}
	return pt, nil
}

func sealAD(tenant int64) []byte {
	return []byte("entrasync graph credential, tenant " + strconv.FormatInt(tenant, 10))
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) == 0 {
		return nil, ErrNoSecretKey
	}
	if len(key) != 32 {
		return nil, Errorf(Invalid, "the secret key must be 32 bytes, not %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// SaveGraphConnection creates or replaces a tenant's Graph connection,
// sealing its secret with key.
func (tx *Tx) SaveGraphConnection(c GraphConnection, key []byte) error {
	t, err := tx.Tenant(c.Tenant)
	if err != nil {
		return err
	}
	sealed, err := seal(key, t.ID, c.Secret)
	if err != nil {
		return err
	}
	groups, _ := json.Marshal(c.Groups)
	now := formatTime(tx.now)
	_, err = tx.exec(`INSERT INTO graph_connections (tenant_id, azure_tenant_id, client_id, credential, sealed, groups, schedule,
		nested, deprovision, threshold_percent, threshold_count, authority_host, graph_url, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id) DO UPDATE SET azure_tenant_id = excluded.azure_tenant_id, client_id = excluded.client_id,
		credential = excluded.credential, sealed = excluded.sealed, groups = excluded.groups, schedule = excluded.schedule,
		nested = excluded.nested, deprovision = excluded.deprovision, threshold_percent = excluded.threshold_percent,
		threshold_count = excluded.threshold_count, authority_host = excluded.authority_host, graph_url = excluded.graph_url,
		updated_at = excluded.updated_at`,
		t.ID, c.AzureTenantID, c.ClientID, c.Credential, sealed, string(groups), c.Schedule, c.Nested, c.Deprovision,
		nullInt(c.ThresholdPercent), nullInt(c.ThresholdCount), c.AuthorityHost, c.GraphURL, now, now)
	return err
}

func nullInt(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

type graphConnRow struct {
	TenantID         int64         `db:"tenant_id"`
	Tenant           string        `db:"tenant"`
	AzureTenantID    string        `db:"azure_tenant_id"`
	ClientID         string        `db:"client_id"`
	Credential       string        `db:"credential"`
	Sealed           []byte        `db:"sealed"`
	Groups           string        `db:"groups"`
	Schedule         string        `db:"schedule"`
	Nested           bool          `db:"nested"`
	Deprovision      string        `db:"deprovision"`
	ThresholdPercent sql.NullInt64 `db:"threshold_percent"`
	ThresholdCount   sql.NullInt64 `db:"threshold_count"`
	AuthorityHost    string        `db:"authority_host"`
	GraphURL         string        `db:"graph_url"`
	CreatedAt        string        `db:"created_at"`
	UpdatedAt        string        `db:"updated_at"`
}

const graphConnSelect = `SELECT c.tenant_id, t.name AS tenant, c.azure_tenant_id, c.client_id, c.credential, c.sealed, c.groups,
	c.schedule, c.nested, c.deprovision, c.threshold_percent, c.threshold_count, c.authority_host, c.graph_url, c.created_at, c.updated_at
	FROM graph_connections c JOIN tenants t ON t.id = c.tenant_id`

// conn turns a row into a connection; with a key it opens the secret,
// without one Secret stays nil.
func (r graphConnRow) conn(key []byte) (GraphConnection, error) {
	c := GraphConnection{Tenant: r.Tenant, AzureTenantID: r.AzureTenantID, ClientID: r.ClientID, Credential: r.Credential,
		Schedule: r.Schedule, Nested: r.Nested, Deprovision: r.Deprovision, ThresholdPercent: int(r.ThresholdPercent.Int64),
		ThresholdCount: int(r.ThresholdCount.Int64), AuthorityHost: r.AuthorityHost, GraphURL: r.GraphURL,
		CreatedAt: parseTime(r.CreatedAt), UpdatedAt: parseTime(r.UpdatedAt)}
	if err := json.Unmarshal([]byte(r.Groups), &c.Groups); err != nil {
		return GraphConnection{}, err
	}
	if key != nil {
		secret, err := unseal(key, r.TenantID, r.Sealed)
		if err != nil {
			return GraphConnection{}, err
		}
		c.Secret = secret
	}
	return c, nil
}

// GraphConnection returns a tenant's connection. With key nil the secret
// is left sealed (Secret nil), for showing the connection.
func (db *DB) GraphConnection(ctx context.Context, tenant string, key []byte) (GraphConnection, error) {
	var r graphConnRow
	err := db.read.GetContext(ctx, &r, db.read.Rebind(graphConnSelect+` WHERE t.name = ?`), tenant)
	if errors.Is(err, sql.ErrNoRows) {
		if _, terr := db.Tenant(ctx, tenant); terr != nil {
			return GraphConnection{}, terr
		}
		return GraphConnection{}, Errorf(NotFound, "tenant %q has no Graph connection; add one with `entrasync tenant graph %s ...`", tenant, tenant)
	}
	if err != nil {
		return GraphConnection{}, err
	}
	return r.conn(key)
}

// GraphConnections lists every connection, secrets sealed, for scheduling.
func (db *DB) GraphConnections(ctx context.Context) ([]GraphConnection, error) {
	var rows []graphConnRow
	if err := db.read.SelectContext(ctx, &rows, graphConnSelect+` ORDER BY t.name`); err != nil {
		return nil, err
	}
	out := make([]GraphConnection, 0, len(rows))
	for _, r := range rows {
		c, err := r.conn(nil)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
