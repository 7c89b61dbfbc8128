package store_test

import (
	"context"
	"testing"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/storetest"
)

// openPostgres opens a fresh store in a schema of its own on the test
// PostgreSQL (see store.PostgresForTest for which one, and when it skips).
func openPostgres(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.PostgresForTest(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPostgres(t *testing.T) { storetest.Run(t, openPostgres) }
