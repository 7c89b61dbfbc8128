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
	onEachStore(t, func(t *testing.T, name string, db *DB) {
		ctx := context.Background()
		var tn Tenant
		err := db.Write(ctx, func(tx *Tx) (err error) {
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

// TestWriteSlices: on SQLite a large write's slices share a transaction
// while no other write waits; a write that comes waits for the slice
// running and its commit only, and the slices after it go on; a slice that
// fails undoes the slices of its transaction and no others. On PostgreSQL
// every slice commits alone.
func TestWriteSlices(t *testing.T) {
	onEachStore(t, func(t *testing.T, name string, db *DB) {
		ctx := context.Background()
		var tn Tenant
		if err := db.Write(ctx, func(tx *Tx) (err error) { tn, err = tx.CreateTenant("slices"); return err }); err != nil {
			t.Fatal(err)
		}
		insert := func(tx *Tx, userName string) error {
			return tx.Insert(tn.ID, &Resource{Kind: UserKind, Doc: map[string]any{"userName": userName}})
		}
		users := func() int {
			c, err := db.Counts(ctx, tn.ID)
			if err != nil {
				t.Fatal(err)
			}
			return c.Users
		}
		shared := name == "sqlite"

		// Nobody waits: three slices, one commit on SQLite.
		commits := 0
		done, err := db.WriteSlices(ctx, 3, func(tx *Tx, i int) error { return insert(tx, fmt.Sprintf("quiet%d@example.com", i)) },
			func() { commits++ })
		if err != nil || done != 3 || users() != 3 {
			t.Fatalf("quiet: %d slices done, %d users: %v", done, users(), err)
		}
		if want := map[bool]int{true: 1, false: 3}[shared]; commits != want {
			t.Errorf("quiet: %d commits, want %d", commits, want)
		}

		// A write comes during slice 0: it commits before slice 1 runs.
		var order []string
		other := make(chan error, 1)
		commits = 0
		done, err = db.WriteSlices(ctx, 3, func(tx *Tx, i int) error {
			if i == 0 {
				go func() {
					other <- db.Write(ctx, func(tx *Tx) error { order = append(order, "other"); return insert(tx, "other@example.com") })
				}()
				for shared && db.WriteStats().Waiting == 0 {
					time.Sleep(time.Millisecond) // SQLite: it waits for the writer
				}
				if !shared {
					other <- <-other // PostgreSQL: it runs beside this transaction
				}
			}
			order = append(order, fmt.Sprint("slice", i))
			return insert(tx, fmt.Sprintf("busy%d@example.com", i))
		}, func() { commits++ })
		if err != nil || done != 3 {
			t.Fatalf("busy: %d slices done: %v", done, err)
		}
		if err := <-other; err != nil {
			t.Fatal(err)
		}
		if shared && (fmt.Sprint(order) != "[slice0 other slice1 slice2]" || commits != 2) {
			t.Errorf("busy: ran %v in %d commits, want the other write right after slice 0, then 2 commits", order, commits)
		}
		if users() != 7 {
			t.Errorf("busy: %d users, want 7", users())
		}

		// Slice 2 fails: on SQLite slices 0 to 2 shared a transaction and
		// none is kept; on PostgreSQL slices 0 and 1 are.
		commits = 0
		done, err = db.WriteSlices(ctx, 4, func(tx *Tx, i int) error {
			if i == 2 {
				return insert(tx, "quiet0@example.com") // taken
			}
			return insert(tx, fmt.Sprintf("failed%d@example.com", i))
		}, func() { commits++ })
		if ErrorCode(err) != Conflict {
			t.Fatalf("failed slice: %v, want a conflict", err)
		}
		want := map[bool]int{true: 0, false: 2}[shared]
		if done != want || commits != want || users() != 7+want {
			t.Errorf("failed slice: %d slices done in %d commits, %d users; want %d, %d, %d", done, commits, users(), want, want, 7+want)
		}
	})
}

// onEachStore runs test on a fresh SQLite store and a fresh PostgreSQL
// schema, as subtests named by the store.
func onEachStore(t *testing.T, test func(t *testing.T, name string, db *DB)) {
	stores := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "store.db") },
		"postgres": func(t *testing.T) string { return PostgresForTest(t) },
	}
	for name, dsn := range stores {
		t.Run(name, func(t *testing.T) {
			db, err := Open(context.Background(), dsn(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			test(t, name, db)
		})
	}
}
