// Package pgtest gives tests a fresh PostgreSQL schema of their own: the
// PostgreSQL store's tests, and suites that run on either store.
package pgtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
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
	given := os.Getenv("ENTRASYNC_TEST_POSTGRES_URL")
	if os.Getenv("CI") != "" && given == "" {
		t.Fatal("CI is set but ENTRASYNC_TEST_POSTGRES_URL is not: CI must run the PostgreSQL tests against a PostgreSQL it names")
	}
	base := cmp.Or(given, Default)
	admin, err := sqlx.Open("pgx", base)
	if err != nil {
		t.Fatalf("ENTRASYNC_TEST_POSTGRES_URL: %v", err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and the PostgreSQL at ENTRASYNC_TEST_POSTGRES_URL does not answer: %v", err)
		}
		t.Skipf("no PostgreSQL answers at %s (%v): start one, or set ENTRASYNC_TEST_POSTGRES_URL=postgres://user@host:5432/db, to run this test", redactURL(base), err)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "es_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop test schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal("ENTRASYNC_TEST_POSTGRES_URL does not parse as a URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
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
