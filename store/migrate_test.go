package store

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
		body, err := migrationFiles.ReadFile("migrations/sqlite/" + name)
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

// TestOpenTakesNoWriteLock: with the schema current, opening the store only
// reads, so it succeeds while another process holds the write lock (a
// server mid-transaction), and a read-only open reads beside it.
func TestOpenTakesNoWriteLock(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "es.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Write(ctx, func(tx *Tx) error { _, err := tx.CreateTenant("acme"); return err }); err != nil {
		t.Fatal(err)
	}
	// Hold the write lock, as a long write of another process would.
	locker, err := sqlx.Open("sqlite", "file:"+filepath.ToSlash(path)+"?_busy_timeout=100")
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	conn, err := locker.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, `ROLLBACK`)

	again, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("open beside a held write lock: %v", err)
	}
	again.Close()
	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatalf("read-only open beside a held write lock: %v", err)
	}
	defer ro.Close()
	if list, err := ro.Tenants(ctx); err != nil || len(list) != 1 {
		t.Fatalf("read-only tenants: %v %v", list, err)
	}
	if err := ro.Write(ctx, func(tx *Tx) error { return nil }); ErrorCode(err) != Unavailable {
		t.Fatalf("write on a read-only store: %v", err)
	}
}

// TestOpenReadOnlyCreatesNothing: a read-only open of a missing file says
// so and leaves no file behind; one of an old schema says to upgrade.
func TestOpenReadOnlyCreatesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.db")
	if _, err := OpenReadOnly(ctx, missing); ErrorCode(err) != NotFound {
		t.Fatalf("missing file: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a read-only open made files: %v", entries)
	}

	old := filepath.Join(dir, "old.db")
	raw, err := sqlx.Open("sqlite", "file:"+filepath.ToSlash(old))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := migrationFiles.ReadFile("migrations/sqlite/0001_init.sql")
	for _, q := range []string{`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`, string(body),
		`INSERT INTO schema_migrations VALUES (1, '2025-01-01T00:00:00.000Z')`} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	_, err = OpenReadOnly(ctx, old)
	if ErrorCode(err) != Unavailable || !strings.Contains(err.Error(), "0002") {
		t.Fatalf("old schema: %v", err)
	}
}
