package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
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

// ErrNoSecretKey is returned when a secret must be sealed and no key is
// configured.
var ErrNoSecretKey = Errorf(Unavailable, "ENTRASYNC_SECRET_KEY (setting secret_key) is not set: Graph credentials are stored "+
	"encrypted with it; make one with `openssl rand -base64 32` and keep it with your other secrets")

// errWrongKey is unseal's answer when the key does not open a credential;
// OpenGraphConnection says what to do about it.
var errWrongKey = errors.New("the key does not open the stored credential")

// keyID names a secret key without revealing it: a stored credential
// carries the id of the key that sealed it, so whether a key opens it is
// known without trying.
func keyID(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("entrasync secret key id v1"))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

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
		return nil, errWrongKey
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
	if len(c.Secret) == 0 {
		return Errorf(Invalid, "tenant %q: a Graph connection needs the app's client secret or certificate", c.Tenant)
	}
	sealed, err := seal(key, t.ID, c.Secret)
	if err != nil {
		return err
	}
	groups, _ := json.Marshal(c.Groups)
	now := formatTime(tx.now)
	_, err = tx.exec(`INSERT INTO graph_connections (tenant_id, azure_tenant_id, client_id, credential, sealed, key_id, groups, schedule,
		nested, deprovision, threshold_percent, threshold_count, authority_host, graph_url, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id) DO UPDATE SET azure_tenant_id = excluded.azure_tenant_id, client_id = excluded.client_id,
		credential = excluded.credential, sealed = excluded.sealed, key_id = excluded.key_id, groups = excluded.groups,
		schedule = excluded.schedule, nested = excluded.nested, deprovision = excluded.deprovision,
		threshold_percent = excluded.threshold_percent, threshold_count = excluded.threshold_count,
		authority_host = excluded.authority_host, graph_url = excluded.graph_url, updated_at = excluded.updated_at`,
		t.ID, c.AzureTenantID, c.ClientID, c.Credential, sealed, keyID(key), string(groups), c.Schedule, c.Nested, c.Deprovision,
		nullInt(c.ThresholdPercent), nullInt(c.ThresholdCount), c.AuthorityHost, c.GraphURL, now, now)
	return err
}

func nullInt(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

// RemoveGraphConnection removes a tenant's Graph connection and the delta
// links the store keeps for it. The users and groups it pulled stay as
// they are.
func (tx *Tx) RemoveGraphConnection(tenant string) error {
	t, err := tx.Tenant(tenant)
	if err != nil {
		return err
	}
	res, err := tx.exec(`DELETE FROM graph_connections WHERE tenant_id = ?`, t.ID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNoConnection(tenant)
	}
	_, err = tx.exec(`DELETE FROM delta_tokens WHERE tenant_id = ?`, t.ID)
	return err
}

func errNoConnection(tenant string) error {
	return Errorf(NotFound, "tenant %q has no Graph connection; add one with `entrasync tenant graph %s ...`", tenant, tenant)
}

type graphConnRow struct {
	TenantID         int64          `db:"tenant_id"`
	Tenant           string         `db:"tenant"`
	AzureTenantID    string         `db:"azure_tenant_id"`
	ClientID         string         `db:"client_id"`
	Credential       string         `db:"credential"`
	Sealed           []byte         `db:"sealed"`
	KeyID            sql.NullString `db:"key_id"`
	Groups           string         `db:"groups"`
	Schedule         string         `db:"schedule"`
	Nested           bool           `db:"nested"`
	Deprovision      string         `db:"deprovision"`
	ThresholdPercent sql.NullInt64  `db:"threshold_percent"`
	ThresholdCount   sql.NullInt64  `db:"threshold_count"`
	AuthorityHost    string         `db:"authority_host"`
	GraphURL         string         `db:"graph_url"`
	CreatedAt        string         `db:"created_at"`
	UpdatedAt        string         `db:"updated_at"`
}

const graphConnSelect = `SELECT c.tenant_id, t.name AS tenant, c.azure_tenant_id, c.client_id, c.credential, c.sealed, c.key_id, c.groups,
	c.schedule, c.nested, c.deprovision, c.threshold_percent, c.threshold_count, c.authority_host, c.graph_url, c.created_at, c.updated_at
	FROM graph_connections c JOIN tenants t ON t.id = c.tenant_id`

// conn turns a row into a connection, its secret left sealed (Secret nil).
func (r graphConnRow) conn() (GraphConnection, error) {
	c := GraphConnection{Tenant: r.Tenant, AzureTenantID: r.AzureTenantID, ClientID: r.ClientID, Credential: r.Credential,
		Schedule: r.Schedule, Nested: r.Nested, Deprovision: r.Deprovision, ThresholdPercent: int(r.ThresholdPercent.Int64),
		ThresholdCount: int(r.ThresholdCount.Int64), AuthorityHost: r.AuthorityHost, GraphURL: r.GraphURL,
		CreatedAt: parseTime(r.CreatedAt), UpdatedAt: parseTime(r.UpdatedAt)}
	if err := json.Unmarshal([]byte(r.Groups), &c.Groups); err != nil {
		return GraphConnection{}, err
	}
	return c, nil
}

// open opens the row's secret with key. It fails with Unavailable, naming
// the setting and the ways out, when there is no key or key is not the one
// the credential was sealed with.
func (r graphConnRow) open(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, Errorf(Unavailable, "tenant %q: its Graph credential cannot be opened: ENTRASYNC_SECRET_KEY (setting secret_key) is not set; "+
			"set the key the credential was stored with, or give the credential again with %s", r.Tenant, giveAgain(r.Tenant))
	}
	if r.KeyID.Valid && r.KeyID.String != keyID(key) {
		return nil, wrongKey(r.Tenant)
	}
	secret, err := unseal(key, r.TenantID, r.Sealed)
	if errors.Is(err, errWrongKey) {
		if r.KeyID.Valid { // the right key, yet it does not open: the stored bytes are damaged
			return nil, Errorf(Unavailable, "tenant %q: its stored Graph credential is damaged and cannot be opened; give it again with %s",
				r.Tenant, giveAgain(r.Tenant))
		}
		return nil, wrongKey(r.Tenant)
	}
	return secret, err
}

// opens reports whether key opens the row's secret, by its key id when
// it has one.
func (r graphConnRow) opens(key []byte) bool {
	if len(key) == 0 {
		return false
	}
	if r.KeyID.Valid {
		return r.KeyID.String == keyID(key)
	}
	_, err := unseal(key, r.TenantID, r.Sealed)
	return err == nil
}

func wrongKey(tenant string) error {
	return Errorf(Unavailable, "tenant %q: ENTRASYNC_SECRET_KEY (setting secret_key) is not the key its Graph credential was stored with; "+
		"set the key it was stored with, re-seal with `entrasync rekey --old-key-env VAR` (VAR holding the old key), or give the credential again with %s",
		tenant, giveAgain(tenant))
}

func giveAgain(tenant string) string {
	return "`entrasync tenant graph " + tenant + " --client-secret-env VAR` (or --client-secret-file F, --certificate F)"
}

func (db *DB) graphConnRow(ctx context.Context, tenant string) (graphConnRow, error) {
	var r graphConnRow
	err := db.read.GetContext(ctx, &r, db.read.Rebind(graphConnSelect+` WHERE t.name = ?`), tenant)
	if errors.Is(err, sql.ErrNoRows) {
		if _, terr := db.Tenant(ctx, tenant); terr != nil {
			return graphConnRow{}, terr
		}
		return graphConnRow{}, errNoConnection(tenant)
	}
	return r, err
}

// GraphConnection returns a tenant's connection with its secret sealed
// (Secret nil), for showing or changing it.
func (db *DB) GraphConnection(ctx context.Context, tenant string) (GraphConnection, error) {
	r, err := db.graphConnRow(ctx, tenant)
	if err != nil {
		return GraphConnection{}, err
	}
	return r.conn()
}

// OpenGraphConnection returns a tenant's connection with its secret opened
// with key. Without a key, or with a key that is not the one the secret was
// sealed with, it fails with code Unavailable and a message that names
// ENTRASYNC_SECRET_KEY and what to do.
func (db *DB) OpenGraphConnection(ctx context.Context, tenant string, key []byte) (GraphConnection, error) {
	r, err := db.graphConnRow(ctx, tenant)
	if err != nil {
		return GraphConnection{}, err
	}
	c, err := r.conn()
	if err != nil {
		return GraphConnection{}, err
	}
	if c.Secret, err = r.open(key); err != nil {
		return GraphConnection{}, err
	}
	return c, nil
}

// GraphConnections lists every connection, secrets sealed, for scheduling.
func (db *DB) GraphConnections(ctx context.Context) ([]GraphConnection, error) {
	var rows []graphConnRow
	if err := db.read.SelectContext(ctx, &rows, graphConnSelect+` ORDER BY t.name`); err != nil {
		return nil, err
	}
	out := make([]GraphConnection, 0, len(rows))
	for _, r := range rows {
		c, err := r.conn()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// UnopenableConnections lists, by name, the tenants whose Graph credential
// key cannot open (every connected tenant when key is empty): their runs
// are refused until the key, or the credential, is fixed.
func (db *DB) UnopenableConnections(ctx context.Context, key []byte) ([]string, error) {
	var rows []graphConnRow
	if err := db.read.SelectContext(ctx, &rows, graphConnSelect+` ORDER BY t.name`); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rows {
		if !r.opens(key) {
			out = append(out, r.Tenant)
		}
	}
	return out, nil
}

// Rekey re-seals every stored Graph credential from oldKey to newKey, all
// or nothing. A credential newKey already opens counts as done, so a
// second Rekey changes nothing. It fails with Unavailable, naming the
// tenants, when oldKey does not open some credential newKey cannot open
// either. It returns how many credentials it re-sealed.
func (tx *Tx) Rekey(oldKey, newKey []byte) (int, error) {
	if len(newKey) == 0 {
		return 0, ErrNoSecretKey
	}
	if len(oldKey) == 0 {
		return 0, Errorf(Invalid, "the old key is empty: give the key the credentials were stored with")
	}
	var rows []graphConnRow
	if err := tx.selectRows(&rows, graphConnSelect+` ORDER BY t.name`); err != nil {
		return 0, err
	}
	var unopened []string
	resealed := 0
	for _, r := range rows {
		if r.opens(newKey) {
			if !r.KeyID.Valid { // sealed before key ids: record it now
				if _, err := tx.exec(`UPDATE graph_connections SET key_id = ? WHERE tenant_id = ?`, keyID(newKey), r.TenantID); err != nil {
					return 0, err
				}
			}
			continue
		}
		secret, err := unseal(oldKey, r.TenantID, r.Sealed)
		if errors.Is(err, errWrongKey) {
			unopened = append(unopened, r.Tenant)
			continue
		}
		if err != nil {
			return 0, err
		}
		sealed, err := seal(newKey, r.TenantID, secret)
		if err != nil {
			return 0, err
		}
		if _, err := tx.exec(`UPDATE graph_connections SET sealed = ?, key_id = ?, updated_at = ? WHERE tenant_id = ?`,
			sealed, keyID(newKey), formatTime(tx.now), r.TenantID); err != nil {
			return 0, err
		}
		resealed++
	}
	if len(unopened) > 0 {
		return 0, Errorf(Unavailable, "the old key does not open the Graph credential of tenant(s) %s; nothing was re-sealed: "+
			"give the key they were stored with, or give their credentials again with %s",
			strings.Join(unopened, ", "), giveAgain("NAME"))
	}
	return resealed, nil
}
