package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/storetest"
)

func openSQLite(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSQLite(t *testing.T) { storetest.Run(t, openSQLite) }
