package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestGroupCommit: on SQLite, Writes that wait for a busy writer share one
// transaction and one commit; one that fails (an error or a panic) is
// undone alone, to its savepoint, and the others are kept. On PostgreSQL
// each waits for a write connection and runs in a transaction of its own,
// with the same outcome.
func TestGroupCommit(t *testing.T) {
	stores := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "gc.db") },
		"postgres": func(t *testing.T) string { return PostgresForTest(t) },
	}
	for name, dsn := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, err := Open(ctx, dsn(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var tn Tenant
			err = db.Write(ctx, func(tx *Tx) error {
				if tn, err = tx.CreateTenant("gc"); err != nil {
					return err
				}
				return tx.Insert(tn.ID, &Resource{Kind: UserKind, Doc: map[string]any{"userName": "taken@example.com"}})
			})
			if err != nil {
				t.Fatal(err)
			}
			insert := func(tx *Tx, userName string) error {
				return tx.Insert(tn.ID, &Resource{Kind: UserKind, Doc: map[string]any{"userName": userName}})
			}

			// Take every writer, so that the writes below gather in one batch.
			holders := cap(db.writer)
			free, held := make(chan struct{}), make(chan error, holders)
			for range holders {
				begun := make(chan struct{})
				go func() {
					held <- db.Write(ctx, func(tx *Tx) error { close(begun); <-free; return nil })
				}()
				<-begun
			}
			before := db.WriteStats()

			type result struct {
				name     string
				err      error
				panicked any
			}
			results := make(chan result, 10)
			write := func(name string, fn func(tx *Tx) error) {
				go func() {
					r := result{name: name}
					defer func() { r.panicked = recover(); results <- r }()
					r.err = db.Write(ctx, fn)
				}()
			}
			for i := range 8 {
				write(fmt.Sprint("ok", i), func(tx *Tx) error { return insert(tx, fmt.Sprintf("ok%d@example.com", i)) })
			}
			write("conflict", func(tx *Tx) error {
				if err := insert(tx, "undone1@example.com"); err != nil {
					return err
				}
				return insert(tx, "TAKEN@example.com")
			})
			write("panic", func(tx *Tx) error {
				if err := insert(tx, "undone2@example.com"); err != nil {
					return err
				}
				panic("a bug in a write")
			})
			batched := !db.dialect.concurrentWrites
			waitFor(t, "10 writes to wait", func() bool {
				if !batched {
					return db.WriteStats().Waiting == 10
				}
				db.batchMu.Lock()
				defer db.batchMu.Unlock()
				return db.forming != nil && db.forming.size == 10
			})
			close(free)
			for range holders {
				if err := <-held; err != nil {
					t.Fatalf("a held write: %v", err)
				}
			}
			for range 10 {
				r := <-results
				switch r.name {
				case "conflict":
					if ErrorCode(r.err) != Conflict {
						t.Errorf("the conflicting write: got %v, want Conflict", r.err)
					}
				case "panic":
					if r.panicked != "a bug in a write" {
						t.Errorf("the panicking write: recovered %v, err %v", r.panicked, r.err)
					}
				default:
					if r.err != nil || r.panicked != nil {
						t.Errorf("%s: %v %v", r.name, r.err, r.panicked)
					}
				}
			}
			transactions := uint64(holders) + 1 // one batch
			if !batched {
				transactions = uint64(holders) + 10
			}
			if got := db.WriteStats().Hold.Count - before.Hold.Count; got != transactions {
				t.Errorf("%d transactions for %d held writes and 10 waiting, want %d", got, holders, transactions)
			}
			for i := range 8 {
				if _, err := db.userByName(ctx, tn.ID, fmt.Sprintf("ok%d@example.com", i)); err != nil {
					t.Errorf("a kept write's user: %v", err)
				}
			}
			for _, gone := range []string{"undone1@example.com", "undone2@example.com"} {
				if _, err := db.userByName(ctx, tn.ID, gone); ErrorCode(err) != NotFound {
					t.Errorf("%s, written by a failed write: %v", gone, err)
				}
			}
		})
	}
}

// userByName finds a user's id by userName (tests).
func (db *DB) userByName(ctx context.Context, tenant int64, userName string) (string, error) {
	var ids []string
	if err := db.read.SelectContext(ctx, &ids, db.read.Rebind(`SELECT id FROM users WHERE tenant_id = ? AND user_name_fold = ?`), tenant, fold(userName)); err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", Errorf(NotFound, "no user %s", userName)
	}
	return ids[0], nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
