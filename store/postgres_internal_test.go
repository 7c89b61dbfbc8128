package store

import (
	"context"
	"testing"
)

// TestPostgresConnectionLostIsBusy: a transaction whose connection the
// server drops (here: terminates, as a restart does) fails with Busy and a
// Retry-After, so SCIM answers 503, not 500; nothing it wrote stays, and the
// next write runs on a new connection.
func TestPostgresConnectionLostIsBusy(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, PostgresForTest(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Write(ctx, func(tx *Tx) error {
		if _, err := tx.CreateTenant("lost"); err != nil {
			return err
		}
		_, err := tx.exec(`SELECT pg_terminate_backend(pg_backend_pid())`)
		return err
	})
	if ErrorCode(err) != Busy || RetryAfter(err) <= 0 {
		t.Fatalf("a write whose connection was dropped: want Busy, got %v", err)
	}
	if _, err := db.Tenant(ctx, "lost"); ErrorCode(err) != NotFound {
		t.Fatalf("the dropped write's tenant: %v", err)
	}
	if err := db.Write(ctx, func(tx *Tx) error { _, err := tx.CreateTenant("after"); return err }); err != nil {
		t.Fatalf("the write after: %v", err)
	}
}

// TestPostgresMaxConns: db_max_conns bounds the connections a node opens
// to PostgreSQL, split between its write and read pools; the writer slots
// match the write pool.
func TestPostgresMaxConns(t *testing.T) {
	ctx := context.Background()
	db, err := OpenWith(ctx, PostgresForTest(t), Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	w, r := db.write.Stats().MaxOpenConnections, db.read.Stats().MaxOpenConnections
	if w+r != 4 || w < 1 || r < 1 || cap(db.writer) != w {
		t.Fatalf("db_max_conns=4: write pool %d, read pool %d, writer slots %d", w, r, cap(db.writer))
	}
	def, err := Open(ctx, PostgresForTest(t))
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	if w, r := def.write.Stats().MaxOpenConnections, def.read.Stats().MaxOpenConnections; w != 8 || r != 8 {
		t.Fatalf("default: write pool %d, read pool %d, want 8 and 8", w, r)
	}
}
