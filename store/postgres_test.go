package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

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

// twoNodes opens two stores on one fresh PostgreSQL schema, as two
// entrasync processes sharing a database would, with the given write wait.
func twoNodes(t *testing.T, wait time.Duration) (*store.DB, *store.DB) {
	t.Helper()
	dsn := store.PostgresForTest(t)
	var nodes [2]*store.DB
	for i := range nodes {
		db, err := store.OpenWith(bg, dsn, store.Options{WriteWait: wait})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		nodes[i] = db
	}
	return nodes[0], nodes[1]
}

// retryBusy runs a write until it is not Busy (a deadlock or lock wait one
// of the two nodes lost, which a SCIM client retries after a 503). It
// counts the Busy answers.
func retryBusy(db *store.DB, busy *atomic.Int64, fn func(tx *store.Tx) error) error {
	for {
		err := db.Write(bg, fn)
		if store.ErrorCode(err) != store.Busy {
			return err
		}
		busy.Add(1)
	}
}

// TestPostgresConcurrentUserName: nodes creating the same userName (in any
// case) at once: exactly one wins each round, every other gets Conflict.
func TestPostgresConcurrentUserName(t *testing.T) {
	a, b := twoNodes(t, 5*time.Second)
	var tn store.Tenant
	if err := a.Write(bg, func(tx *store.Tx) error { var err error; tn, err = tx.CreateTenant("acme"); return err }); err != nil {
		t.Fatal(err)
	}
	const rounds, perNode = 20, 4
	var busy atomic.Int64
	for round := range rounds {
		start := make(chan struct{})
		results := make(chan error, 2*perNode)
		var wg gosync.WaitGroup
		for i := range 2 * perNode {
			node := []*store.DB{a, b}[i%2]
			name := fmt.Sprintf("user%d@example.com", round)
			if i%3 == 1 {
				name = strings.ToUpper(name)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results <- retryBusy(node, &busy, func(tx *store.Tx) error {
					return tx.Insert(tn.ID, &store.Resource{Kind: store.UserKind, Doc: map[string]any{"userName": name}})
				})
			}()
		}
		close(start)
		wg.Wait()
		close(results)
		won := 0
		for err := range results {
			switch store.ErrorCode(err) {
			case store.Internal:
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				won++
			case store.Conflict:
			default:
				t.Fatalf("round %d: want Conflict, got %v", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d creates of one userName succeeded, want 1", round, won)
		}
	}
	page, err := b.List(bg, tn.ID, store.UserKind, store.Query{Count: 100})
	if err != nil || page.Total != rounds {
		t.Fatalf("%d users stored, want %d (%v)", page.Total, rounds, err)
	}
	t.Logf("busy answers retried: %d", busy.Load())
}

// TestPostgresConcurrentIfVersion: PATCH-like read-modify-writes from two
// nodes, each guarded by the version it read (If-Match): every update that
// succeeded is in the final document and counted in its version, so none
// was lost; those that lost a race got Precondition and read again.
func TestPostgresConcurrentIfVersion(t *testing.T) {
	a, b := twoNodes(t, 5*time.Second)
	var tn store.Tenant
	u := &store.Resource{Kind: store.UserKind, Doc: map[string]any{"userName": "ann", "tags": []any{}}}
	err := a.Write(bg, func(tx *store.Tx) error {
		var err error
		if tn, err = tx.CreateTenant("acme"); err != nil {
			return err
		}
		return tx.Insert(tn.ID, u)
	})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 6, 15
	var wg gosync.WaitGroup
	var busy, preconditions atomic.Int64
	errs := make(chan error, workers)
	for w := range workers {
		node := []*store.DB{a, b}[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				for {
					cur, err := node.Get(bg, tn.ID, store.UserKind, u.ID)
					if err != nil {
						errs <- err
						return
					}
					tags := append([]any{}, cur.Doc["tags"].([]any)...)
					cur.Doc["tags"] = append(tags, fmt.Sprintf("w%d-%d", w, i))
					err = retryBusy(node, &busy, func(tx *store.Tx) error {
						_, _, err := tx.Update(tn.ID, &cur, cur.Version)
						return err
					})
					if store.ErrorCode(err) == store.Precondition {
						preconditions.Add(1)
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	final, err := b.Get(bg, tn.ID, store.UserKind, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	tags := final.Doc["tags"].([]any)
	if len(tags) != workers*each || final.Version != 1+workers*each {
		t.Fatalf("%d tags at version %d after %d updates: an update was lost", len(tags), final.Version, workers*each)
	}
	seen := map[any]bool{}
	for _, tag := range tags {
		seen[tag] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct tags, want %d", len(seen), workers*each)
	}
	t.Logf("preconditions failed and retried: %d, busy: %d", preconditions.Load(), busy.Load())
}

// TestPostgresConcurrentMembers: two nodes add and remove members of one
// group at once, while a third writer deletes some of the users being
// added. The final membership is exactly what the operations imply, no
// deleted user is left a member, and the group's version counts every
// change that changed it.
func TestPostgresConcurrentMembers(t *testing.T) {
	a, b := twoNodes(t, 5*time.Second)
	var tn store.Tenant
	g := &store.Resource{Kind: store.GroupKind, Doc: map[string]any{"displayName": "staff"}}
	const n = 40
	users := make([]*store.Resource, n)
	err := a.Write(bg, func(tx *store.Tx) error {
		var err error
		if tn, err = tx.CreateTenant("acme"); err != nil {
			return err
		}
		if err := tx.Insert(tn.ID, g); err != nil {
			return err
		}
		for i := range users {
			users[i] = &store.Resource{Kind: store.UserKind, Doc: map[string]any{"userName": fmt.Sprintf("u%d", i)}}
			if err := tx.Insert(tn.ID, users[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Users 0..9 are added and stay; 10..19 are added then removed; 20..29
	// are added while they are being deleted; 30..39 are never touched.
	var busy, raced atomic.Int64
	var wg gosync.WaitGroup
	errs := make(chan error, 4*n)
	run := func(fn func()) { wg.Add(1); go func() { defer wg.Done(); fn() }() }
	// change makes one membership change through node and fails the test
	// unless it changed exactly one row.
	change := func(node *store.DB, fn func(tx *store.Tx) (int, error)) error {
		var changed int
		err := retryBusy(node, &busy, func(tx *store.Tx) error { var err error; changed, err = fn(tx); return err })
		if err == nil && changed != 1 {
			err = fmt.Errorf("a membership change changed %d rows, want 1", changed)
		}
		return err
	}
	for i := range 20 {
		id := users[i].ID
		run(func() {
			err := change([]*store.DB{a, b}[i%2], func(tx *store.Tx) (int, error) { return tx.AddMembers(tn.ID, g.ID, []string{id}) })
			if err == nil && i >= 10 {
				err = change([]*store.DB{b, a}[i%2], func(tx *store.Tx) (int, error) { return tx.RemoveMembers(tn.ID, g.ID, []string{id}) })
			}
			if err != nil {
				errs <- err
			}
		})
	}
	for i := 20; i < 30; i++ {
		id := users[i].ID
		run(func() {
			err := change(a, func(tx *store.Tx) (int, error) { return tx.AddMembers(tn.ID, g.ID, []string{id}) })
			switch {
			case err == nil:
				raced.Add(1) // added before the delete, which then removed it
			case store.ErrorCode(err) != store.Invalid: // Invalid: the user went first
				errs <- err
			}
		})
		run(func() {
			if err := retryBusy(b, &busy, func(tx *store.Tx) error { return tx.Delete(tn.ID, store.UserKind, id) }); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := a.Members(bg, tn.ID, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range got {
		ids = append(ids, m.ID)
	}
	var want []string
	for _, u := range users[:10] {
		want = append(want, u.ID)
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("members %v, want %v", ids, want)
	}
	// Every committed change bumped the group once: 20 adds, 10 removes,
	// and for each of users 20-29 added before its delete, the add and the
	// delete that removed it.
	final, err := b.Get(bg, tn.ID, store.GroupKind, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 20 + 10 + 2*raced.Load(); final.Version != want {
		t.Fatalf("group version %d, want %d", final.Version, want)
	}
	t.Logf("busy answers retried: %d, adds that beat the delete: %d", busy.Load(), raced.Load())
}

// TestPostgresLockWaitIsBusy: a write that waits for a row another node's
// transaction holds, past its write wait, fails with Busy (lock_timeout),
// and the holder's write commits.
func TestPostgresLockWaitIsBusy(t *testing.T) {
	a, b := twoNodes(t, 200*time.Millisecond)
	var tn store.Tenant
	u := &store.Resource{Kind: store.UserKind, Doc: map[string]any{"userName": "ann"}}
	err := a.Write(bg, func(tx *store.Tx) error {
		var err error
		if tn, err = tx.CreateTenant("acme"); err != nil {
			return err
		}
		return tx.Insert(tn.ID, u)
	})
	if err != nil {
		t.Fatal(err)
	}
	locked, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- a.Write(bg, func(tx *store.Tx) error {
			if err := tx.CheckVersion(tn.ID, store.UserKind, u.ID, 1); err != nil {
				return err
			}
			close(locked)
			<-release
			r := &store.Resource{Kind: store.UserKind, ID: u.ID, Doc: map[string]any{"userName": "ann", "title": "held"}}
			_, _, err := tx.Update(tn.ID, r, 1)
			return err
		})
	}()
	select {
	case <-locked:
	case err := <-done:
		t.Fatal(err)
	}
	err = b.Write(bg, func(tx *store.Tx) error { return tx.CheckVersion(tn.ID, store.UserKind, u.ID, 1) })
	close(release)
	if store.ErrorCode(err) != store.Busy || store.RetryAfter(err) <= 0 {
		t.Fatalf("a write behind a held row lock: want Busy with a Retry-After, got %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the holder's write: %v", err)
	}
	if got, _ := b.Get(bg, tn.ID, store.UserKind, u.ID); got.Version != 2 || got.Str("title") != "held" {
		t.Fatalf("after the holder committed: version %d, %v", got.Version, got.Doc)
	}
}

// TestPostgresNodesMigrateTogether: several nodes opening one empty
// database at once all succeed (the advisory lock makes them take turns)
// and each migration is applied once; a read-only open then reads, and
// refuses to write.
func TestPostgresNodesMigrateTogether(t *testing.T) {
	dsn := store.PostgresForTest(t)
	const nodes = 4
	var wg gosync.WaitGroup
	errs := make(chan error, nodes)
	for range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := store.Open(bg, dsn)
			if err == nil {
				err = db.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ro, err := store.OpenReadOnly(bg, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if list, err := ro.Tenants(bg); err != nil || len(list) != 0 {
		t.Fatalf("read-only tenants: %v %v", list, err)
	}
	if err := ro.Write(bg, func(tx *store.Tx) error { return nil }); store.ErrorCode(err) != store.Unavailable {
		t.Fatalf("write on a read-only store: %v", err)
	}
}

// TestPostgresReadOnlyEmpty: a read-only open of a database without the
// schema says to start the server once.
func TestPostgresReadOnlyEmpty(t *testing.T) {
	dsn := store.PostgresForTest(t)
	if _, err := store.OpenReadOnly(bg, dsn); store.ErrorCode(err) != store.Unavailable {
		t.Fatalf("read-only open of an empty database: %v", err)
	}
}

// TestPostgresLeaseOneHolder: nodes asking for one free lease at once: one
// gets it, the others are told it is taken.
func TestPostgresLeaseOneHolder(t *testing.T) {
	a, b := twoNodes(t, 5*time.Second)
	for round := range 10 {
		name := fmt.Sprintf("run:%d", round)
		const askers = 6
		start := make(chan struct{})
		got := make(chan bool, askers)
		errs := make(chan error, askers)
		var busy atomic.Int64
		var wg gosync.WaitGroup
		for i := range askers {
			node := []*store.DB{a, b}[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				var ok bool
				err := retryBusy(node, &busy, func(tx *store.Tx) error {
					var err error
					ok, err = tx.AcquireLease(name, fmt.Sprintf("node-%d", i), time.Minute)
					return err
				})
				if err != nil {
					errs <- err
				}
				got <- ok
			}()
		}
		close(start)
		wg.Wait()
		close(got)
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		holders := 0
		for ok := range got {
			if ok {
				holders++
			}
		}
		if holders != 1 {
			t.Fatalf("round %d: %d holders of one lease", round, holders)
		}
	}
}
