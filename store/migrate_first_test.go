package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"
)

// TestMigrationFromFirstSchema: a database made by the first schema version
// alone (0001), with a tenant, a token, a user, a group and a membership in
// it, refuses a read-only open (its schema is old), then opens: every later
// migration applies, what it held reads back, and the later tables and
// columns work. On both dialects.
func TestMigrationFromFirstSchema(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "first.db")
		testMigrationFromFirst(t, "sqlite", "file:"+filepath.ToSlash(path), path)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := PostgresForTest(t)
		testMigrationFromFirst(t, "pgx", dsn, dsn)
	})
}

func testMigrationFromFirst(t *testing.T, driver, rawDSN, dsn string) {
	ctx := context.Background()
	raw, err := sqlx.Open(driver, rawDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	dir := "sqlite"
	if driver == "pgx" {
		dir = "postgres"
	}
	mustExec := func(q string, args ...any) {
		t.Helper()
		if _, err := raw.ExecContext(ctx, raw.Rebind(q), args...); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	body, err := migrationFiles.ReadFile("migrations/" + dir + "/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	mustExec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`)
	mustExec(string(body))
	mustExec(`INSERT INTO schema_migrations (version, applied_at) VALUES (1, '2025-01-01T00:00:00.000Z')`)
	var tenant int64
	if err := raw.GetContext(ctx, &tenant, `INSERT INTO tenants (name, created_at) VALUES ('acme', '2025-01-01T00:00:00.000Z') RETURNING id`); err != nil {
		t.Fatal(err)
	}
	secret := "es_an-old-token"
	hash := sha256.Sum256([]byte(secret))
	mustExec(`INSERT INTO scim_tokens (id, tenant_id, hash, prefix, created_at) VALUES ('tok_1', ?, ?, 'es_an', '2025-01-01T00:00:00.000Z')`, tenant, hash[:])
	mustExec(`INSERT INTO users (tenant_id, id, user_name, user_name_fold, active, version, created_at, modified_at, doc)
		VALUES (?, 'u1', 'Ann@Example.com', 'ann@example.com', TRUE, 1, '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z',
		'{"active":true,"userName":"Ann@Example.com"}')`, tenant)
	mustExec(`INSERT INTO groups (tenant_id, id, display_name, display_fold, version, created_at, modified_at, doc)
		VALUES (?, 'g1', 'Staff', 'staff', 1, '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z', '{"displayName":"Staff"}')`, tenant)
	mustExec(`INSERT INTO memberships (tenant_id, group_id, member_id, member_type) VALUES (?, 'g1', 'u1', 'User')`, tenant)

	if _, err := OpenReadOnly(ctx, dsn); ErrorCode(err) != Unavailable || !strings.Contains(err.Error(), "0002") {
		t.Fatalf("read-only open of the first schema: %v", err)
	}
	db, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var versions []int
	if err := db.read.SelectContext(ctx, &versions, `SELECT version FROM schema_migrations ORDER BY version`); err != nil {
		t.Fatal(err)
	}
	all, err := db.migrations()
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for _, m := range all {
		want = append(want, m.version)
	}
	if !slices.Equal(versions, want) {
		t.Fatalf("applied versions %v, want %v", versions, want)
	}
	tn, _, err := db.Authenticate(ctx, secret)
	if err != nil || tn.Name != "acme" || tn.ID != tenant {
		t.Fatalf("old token: %+v %v", tn, err)
	}
	u, err := db.Get(ctx, tenant, UserKind, "u1")
	if err != nil || u.Str("userName") != "Ann@Example.com" || !u.Active() {
		t.Fatalf("old user: %+v %v", u, err)
	}
	if ms, err := db.Members(ctx, tenant, "g1"); err != nil || len(ms) != 1 || ms[0].ID != "u1" || ms[0].Display != "Ann@Example.com" {
		t.Fatalf("old membership: %+v %v", ms, err)
	}
	// What the later migrations added works beside the old rows: new ids
	// follow the old ones, ops keys have scopes, memberships a seen mark.
	err = db.Write(ctx, func(tx *Tx) error {
		beta, err := tx.CreateTenant("beta")
		if err != nil {
			return err
		}
		if beta.ID == tenant {
			t.Errorf("a new tenant took the old one's id %d", beta.ID)
		}
		if _, _, err := tx.CreateOpsKey("ci", OpsRead, []string{"acme"}); err != nil {
			return err
		}
		if err := tx.MarkSeen(tenant, "g1", []string{"u1"}, 7); err != nil {
			return err
		}
		n, err := tx.SweepUnseen(tenant, "g1", 7)
		if n != 0 {
			t.Errorf("sweep removed %d seen members", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := db.OpsKeys(ctx); err != nil || len(keys) != 1 || keys[0].Role != OpsRead || !slices.Equal(keys[0].Tenants, []string{"acme"}) {
		t.Fatalf("ops key after migration: %+v %v", keys, err)
	}
}

// TestNoMigrate: a writable open with NoMigrate refuses a schema older than
// the binary, naming the migration and how to apply it, and applies
// nothing; a plain open then applies what was missing, and reports it.
func TestNoMigrate(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			driver, dsn := "sqlite", filepath.Join(t.TempDir(), "old.db")
			rawDSN := "file:" + filepath.ToSlash(dsn)
			if dialect == "postgres" {
				driver, dsn = "pgx", PostgresForTest(t)
				rawDSN = dsn
			}
			raw, err := sqlx.Open(driver, rawDSN)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			body, _ := migrationFiles.ReadFile("migrations/" + dialect + "/0001_init.sql")
			for _, q := range []string{`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`, string(body),
				`INSERT INTO schema_migrations VALUES (1, '2025-01-01T00:00:00.000Z')`} {
				if _, err := raw.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			_, err = OpenWith(ctx, dsn, Options{NoMigrate: true})
			if ErrorCode(err) != Unavailable || !strings.Contains(err.Error(), "0002_pull.sql") || !strings.Contains(err.Error(), "entrasync migrate") {
				t.Fatalf("no-migrate open of an old schema: %v", err)
			}
			var n int
			if err := raw.GetContext(ctx, &n, `SELECT COUNT(*) FROM schema_migrations`); err != nil || n != 1 {
				t.Fatalf("a no-migrate open applied migrations: %d %v", n, err)
			}
			db, err := Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			all, err := db.migrations()
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, m := range all[1:] {
				want = append(want, m.name)
			}
			if got := db.Applied(); !slices.Equal(got, want) {
				t.Fatalf("applied %v, want %v", got, want)
			}
			db.Close()
			db, err = OpenWith(ctx, dsn, Options{NoMigrate: true})
			if err != nil {
				t.Fatalf("no-migrate open of a current schema: %v", err)
			}
			if len(db.Applied()) != 0 || db.SchemaVersion() != all[len(all)-1].version {
				t.Fatalf("current schema: applied %v, version %d", db.Applied(), db.SchemaVersion())
			}
			db.Close()
			if dialect == "sqlite" { // a no-migrate open of a missing file says so and makes none
				missing := filepath.Join(t.TempDir(), "none.db")
				if _, err := OpenWith(ctx, missing, Options{NoMigrate: true}); ErrorCode(err) != NotFound {
					t.Fatalf("no-migrate open of a missing file: %v", err)
				}
				if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("a no-migrate open made the file: %v", err)
				}
			}
		})
	}
}
