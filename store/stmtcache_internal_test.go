package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestStatementsPreparedOnce: on SQLite the writer's statements are
// prepared after their first transaction and then reused; readers prepare
// theirs on first use; neither cache grows past its bound, and a long
// reader statement is not kept.
func TestStatementsPreparedOnce(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "stmts.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tn Tenant
	if err := db.Write(ctx, func(tx *Tx) error { tn, err = tx.CreateTenant("stmts"); return err }); err != nil {
		t.Fatal(err)
	}
	insertUser := `INSERT INTO users (tenant_id, id, entra_id, version, created_at, modified_at, doc, user_name, user_name_fold, external_id, display_name, display_fold, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	db.writeStmts.mu.Lock()
	_, before := db.writeStmts.m[insertUser]
	db.writeStmts.mu.Unlock()
	if before {
		t.Fatal("the user insert was prepared before any ran")
	}
	for i := range 3 {
		err := db.Write(ctx, func(tx *Tx) error {
			return tx.Insert(tn.ID, &Resource{Kind: UserKind, Doc: map[string]any{"userName": fmt.Sprint("u", i)}})
		})
		if err != nil {
			t.Fatal(err)
		}
		db.writeStmts.mu.Lock()
		s := db.writeStmts.m[insertUser]
		db.writeStmts.mu.Unlock()
		if s == nil {
			t.Fatalf("after insert %d the user insert is not prepared", i)
		}
	}
	db.writeStmts.max = len(db.writeStmts.m)
	if err := db.Write(ctx, func(tx *Tx) error {
		_, err := tx.exec(`UPDATE tenants SET name = name WHERE id = ?`, tn.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(db.writeStmts.m) != db.writeStmts.max {
		t.Fatalf("the writer's cache grew past its bound: %d", len(db.writeStmts.m))
	}
	if _, err := db.Tenant(ctx, "stmts"); err != nil {
		t.Fatal(err)
	}
	long := `SELECT COUNT(*) FROM tenants WHERE name IN ('` + strings.Repeat("x", maxReaderStmtBytes) + `')`
	var n int
	if err := db.read.GetContext(ctx, &n, long); err != nil {
		t.Fatal(err)
	}
	db.read.stmts.mu.Lock()
	defer db.read.stmts.mu.Unlock()
	if len(db.read.stmts.m) == 0 || db.read.stmts.m[long] != nil {
		t.Fatalf("reader statements kept: %d, the long one: %v", len(db.read.stmts.m), db.read.stmts.m[long] != nil)
	}
}
