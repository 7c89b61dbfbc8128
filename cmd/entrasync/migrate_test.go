package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrateAndNoMigrate: serve --no-migrate refuses a missing database
// and one whose schema is not current, saying to run migrate; migrate applies every
// migration once and says so; after it, serve --no-migrate gets past the
// store (here to the TLS files, which stop it).
func TestMigrateAndNoMigrate(t *testing.T) {
	db := filepath.Join(t.TempDir(), "es.db")
	_, errOut, code := run(t, "serve", "--no-migrate", "--addr", "127.0.0.1:0", "--db", db)
	if code != 1 || !strings.Contains(errOut, "no database at") || !strings.Contains(errOut, "entrasync migrate") {
		t.Fatalf("serve --no-migrate without a database: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(db); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("serve --no-migrate made the database file: %v", err)
	}
	// An empty database (made by hand, or by a failed first start) is refused too.
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = run(t, "serve", "--no-migrate", "--addr", "127.0.0.1:0", "--db", db)
	if code != 1 || !strings.Contains(errOut, "0001_init.sql is not applied") || !strings.Contains(errOut, "entrasync migrate") {
		t.Fatalf("serve --no-migrate on an empty database: exit %d: %s", code, errOut)
	}
	out := mustRun(t, "migrate", "--json", "--db", db)
	var res migrateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(res.Applied) != res.Version || res.Version < 4 || res.Applied[0] != "0001_init.sql" {
		t.Fatalf("migrate: %+v", res)
	}
	if out := mustRun(t, "migrate", "--db", db); !strings.Contains(out, "up to date") {
		t.Fatalf("migrate again: %s", out)
	}
	dir := t.TempDir()
	_, errOut, code = run(t, "serve", "--no-migrate", "--addr", "127.0.0.1:0", "--db", db,
		"--tls-cert", filepath.Join(dir, "none.pem"), "--tls-key", filepath.Join(dir, "none.key"))
	if code != 1 || !strings.Contains(errOut, "cannot serve HTTPS") {
		t.Fatalf("serve --no-migrate on a current database: exit %d: %s", code, errOut)
	}
}
