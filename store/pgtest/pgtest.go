// Package pgtest gives tests a fresh PostgreSQL schema of their own: the
// PostgreSQL store's tests, and suites and benchmarks that run on either
// store (a fresh store of either kind: DSN).
package pgtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/jmoiron/sqlx"
)

// Default is the PostgreSQL the tests use when
// ENTRASYNC_TEST_POSTGRES_URL is not set: a local one with trust auth.
const Default = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Schema returns the URL of a fresh, empty schema of the test
// PostgreSQL (ENTRASYNC_TEST_POSTGRES_URL, else the local one), dropped when
// the test ends; every session on the URL works in that schema only
// (search_path), so tests never see each other's rows. With no PostgreSQL
// answering the test is skipped, or fails when CI is set: a green CI has
// run the PostgreSQL tests.
func Schema(t testing.TB) string {
	t.Helper()
	dsn, drop := KeptSchema(t)
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	return dsn
}

// KeptSchema is Schema for a fixture that outlives the test asking for it
// (one that several benchmarks share): the caller drops it with drop.
func KeptSchema(t testing.TB) (dsn string, drop func() error) {
	t.Helper()
	given := os.Getenv("ENTRASYNC_TEST_POSTGRES_URL")
	if os.Getenv("CI") != "" && given == "" {
		t.Fatal("CI is set but ENTRASYNC_TEST_POSTGRES_URL is not: CI must run the PostgreSQL tests against a PostgreSQL it names")
	}
	base := cmp.Or(given, Default)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal("ENTRASYNC_TEST_POSTGRES_URL does not parse as a URL")
	}
	admin, err := sqlx.Open("pgx", base)
	if err != nil {
		t.Fatalf("ENTRASYNC_TEST_POSTGRES_URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and the PostgreSQL at ENTRASYNC_TEST_POSTGRES_URL does not answer: %v", err)
		}
		t.Skipf("no PostgreSQL answers at %s (%v): start one, or set ENTRASYNC_TEST_POSTGRES_URL=postgres://user@host:5432/db, to run this test", redactURL(base), err)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "es_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		admin.Close()
		t.Fatalf("create test schema: %v", err)
	}
	drop = func() error {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			return fmt.Errorf("drop test schema %s: %w", schema, err)
		}
		return nil
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), drop
}

// Stores names the stores that suites and benchmarks running on either
// store compare (benchmarks: sub-benchmarks store=sqlite, store=postgres).
var Stores = []string{"sqlite", "postgres"}

// EachStore runs bench as the sub-benchmarks store=sqlite and
// store=postgres, side by side in one run; on PostgreSQL bench skips,
// saying why, where no test PostgreSQL answers (DSN, Schema).
func EachStore(b *testing.B, bench func(b *testing.B, kind string)) {
	for _, kind := range Stores {
		b.Run("store="+kind, func(b *testing.B) { bench(b, kind) })
	}
}

// DSN returns a fresh, empty store of the kind named in Stores, removed
// when t ends: a SQLite file in a directory of t's, or a schema of the test
// PostgreSQL (see Schema, also for when it skips).
func DSN(t testing.TB, kind string) string {
	t.Helper()
	switch kind {
	case "sqlite":
		return filepath.Join(t.TempDir(), "entrasync.db")
	case "postgres":
		return Schema(t)
	}
	t.Fatalf("pgtest.DSN: no store %q (want one of %v)", kind, Stores)
	return ""
}

// KeptDSN is DSN for a fixture that outlives the test asking for it: the
// caller removes it with remove.
func KeptDSN(t testing.TB, kind string) (dsn string, remove func() error) {
	t.Helper()
	switch kind {
	case "sqlite":
		dir, err := os.MkdirTemp("", "entrasync-fixture-")
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(dir, "entrasync.db"), func() error { return os.RemoveAll(dir) }
	case "postgres":
		return KeptSchema(t)
	}
	t.Fatalf("pgtest.KeptDSN: no store %q (want one of %v)", kind, Stores)
	return "", nil
}

// redactURL hides a URL's user and password.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = url.User("…")
	return u.String()
}

// Selected reports whether ENTRASYNC_TEST_STORE=postgres asks suites that
// run on either store (SCIM) to run on PostgreSQL.
func Selected() bool { return os.Getenv("ENTRASYNC_TEST_STORE") == "postgres" }
