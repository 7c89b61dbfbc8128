package store

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"slices"
	"testing"

	"github.com/jmoiron/sqlx"
)

// TestMigrationFromBeforeKeyChecks: a database made before key checks and
// ops-key scopes opens; its credential opens with its key and is known
// unopenable with another (tried, as it has no key id); its ops key is an
// admin key for every tenant.
func TestMigrationFromBeforeKeyChecks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	key, other := []byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210fedcba9876543210")

	old, err := sqlx.Open("sqlite", "file:"+filepath.ToSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	mustExec := func(q string, args ...any) {
		t.Helper()
		if _, err := old.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	mustExec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`)
	for v, name := range []string{"0001_init.sql", "0002_pull.sql"} {
		body, err := migrations.ReadFile("migrations/sqlite/" + name)
		if err != nil {
			t.Fatal(err)
		}
		mustExec(string(body))
		mustExec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, '2025-01-01T00:00:00.000Z')`, v+1)
	}
	mustExec(`INSERT INTO tenants (id, name, created_at) VALUES (1, 'acme', '2025-01-01T00:00:00.000Z')`)
	sealed, err := seal(key, 1, []byte("the-old-secret"))
	if err != nil {
		t.Fatal(err)
	}
	mustExec(`INSERT INTO graph_connections (tenant_id, azure_tenant_id, client_id, credential, sealed, groups, schedule, nested,
		deprovision, threshold_percent, authority_host, graph_url, created_at, updated_at)
		VALUES (1, 't', 'c', 'secret', ?, '["g"]', '@every 40m', 0, 'deactivate', 20, 'https://a', 'https://g', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z')`,
		sealed)
	opsSecret := "eso_an-old-key"
	hash := sha256.Sum256([]byte(opsSecret))
	mustExec(`INSERT INTO ops_keys (id, name, hash, prefix, created_at) VALUES ('ops_1', 'old', ?, 'eso_an', '2025-01-01T00:00:00.000Z')`, hash[:])
	old.Close()

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if c, err := db.OpenGraphConnection(ctx, "acme", key); err != nil || string(c.Secret) != "the-old-secret" {
		t.Fatalf("old credential with its key: %+v %v", c, err)
	}
	if _, err := db.OpenGraphConnection(ctx, "acme", other); ErrorCode(err) != Unavailable {
		t.Fatalf("old credential with another key: %v", err)
	}
	if got, err := db.UnopenableConnections(ctx, key); err != nil || len(got) != 0 {
		t.Fatalf("unopenable with its key: %v %v", got, err)
	}
	if got, _ := db.UnopenableConnections(ctx, other); !slices.Equal(got, []string{"acme"}) {
		t.Fatalf("unopenable with another key: %v", got)
	}
	k, err := db.AuthenticateOps(ctx, opsSecret)
	if err != nil || k.Name != "old" || k.Role != OpsAdmin || !k.AllTenants() {
		t.Fatalf("old ops key: %+v %v", k, err)
	}
	// A rekey to the same key finds it done and records its key id.
	var n int
	if err := db.Write(ctx, func(tx *Tx) error { n, err = tx.Rekey(other, key); return err }); err != nil || n != 0 {
		t.Fatalf("rekey to the key it has: %d %v", n, err)
	}
	var id string
	if err := db.read.GetContext(ctx, &id, `SELECT key_id FROM graph_connections`); err != nil || id != keyID(key) {
		t.Fatalf("key_id after rekey: %q %v", id, err)
	}
}

func TestKeyID(t *testing.T) {
	a, b := []byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210fedcba9876543210")
	if keyID(a) != keyID(a) || keyID(a) == keyID(b) || len(keyID(a)) != 32 {
		t.Fatalf("keyID: %s %s", keyID(a), keyID(b))
	}
}
