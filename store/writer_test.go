package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
)

var bg = context.Background()

func openWith(t *testing.T, path string, wait time.Duration) *store.DB {
	t.Helper()
	db, err := store.OpenWith(bg, path, store.Options{WriteWait: wait})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// holdWriter starts a write transaction on db that stays open until the
// returned release is called; it returns once the transaction has begun.
func holdWriter(t *testing.T, db *store.DB) (release func()) {
	t.Helper()
	begun, done := make(chan struct{}), make(chan error, 1)
	free := make(chan struct{})
	go func() {
		done <- db.Write(bg, func(tx *store.Tx) error {
			close(begun)
			<-free
			return nil
		})
	}()
	select {
	case <-begun:
	case err := <-done:
		t.Fatalf("could not take the writer: %v", err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			close(free)
			if err := <-done; err != nil {
				t.Errorf("the held write failed: %v", err)
			}
		}
	}
	t.Cleanup(release)
	return release
}

// returns runs fn and fails the test if it has not returned while the
// writer is still held (the guard only stops a hung test; it is not a
// latency bound).
func returns[T any](t *testing.T, what string, fn func() T) T {
	t.Helper()
	got := make(chan T, 1)
	go func() { got <- fn() }()
	select {
	case v := <-got:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s waited for the held writer", what)
		panic("unreachable")
	}
}

func newToken(t *testing.T, db *store.DB, tenant string) (store.Token, string) {
	t.Helper()
	var tok store.Token
	var secret string
	err := db.Write(bg, func(tx *store.Tx) error {
		tn, err := tx.Tenant(tenant)
		if store.ErrorCode(err) == store.NotFound {
			tn, err = tx.CreateTenant(tenant)
		}
		if err != nil {
			return err
		}
		tok, secret, err = tx.CreateToken(tn)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok, secret
}

func lastUsed(t *testing.T, db *store.DB, tenant, id string) *time.Time {
	t.Helper()
	list, err := db.Tokens(bg, tenant)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range list {
		if tk.ID == id {
			return tk.LastUsedAt
		}
	}
	t.Fatalf("no token %s", id)
	return nil
}

// TestStampsNeverWait: authenticating a token whose last-use stamp is due
// does not wait for a held writer, whether this process holds it or
// another process on the same file does; the stamp is written once the
// writer is free (by the flush, or at Close).
func TestStampsNeverWait(t *testing.T) {
	for _, where := range []string{"this process", "another process"} {
		t.Run(where, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "stamps.db")
			db := openWith(t, path, 200*time.Millisecond)
			tok, secret := newToken(t, db, "acme")
			holder := db
			if where == "another process" {
				holder = openWith(t, path, 200*time.Millisecond)
			}
			release := holdWriter(t, holder)

			tn := returns(t, "Authenticate", func() error { _, _, err := db.Authenticate(bg, secret); return err })
			if tn != nil {
				t.Fatalf("Authenticate with the writer held: %v", tn)
			}
			// A flush now cannot have the writer: the stamp stays due.
			if err := db.FlushStamps(bg); store.ErrorCode(err) != store.Busy {
				t.Fatalf("flush with the writer held: %v, want Busy", err)
			}
			if at := lastUsed(t, db, "acme", tok.ID); at != nil {
				t.Fatalf("stamp written while the writer was held: %v", at)
			}
			release()
			if err := db.FlushStamps(bg); err != nil {
				t.Fatal(err)
			}
			if lastUsed(t, db, "acme", tok.ID) == nil {
				t.Fatal("the stamp was not written once the writer was free")
			}
		})
	}
}

// TestStampsWrittenAtClose: a stamp still due when the store closes is
// written then, with the time of the use.
func TestStampsWrittenAtClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stamps.db")
	db, err := store.Open(bg, path)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	db.SetClock(func() time.Time { return clock })
	tok, secret := newToken(t, db, "acme")
	if _, _, err := db.Authenticate(bg, secret); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openWith(t, path, time.Second)
	if at := lastUsed(t, db, "acme", tok.ID); at == nil || !at.Equal(clock) {
		t.Fatalf("stamp after Close: %v, want %v", at, clock)
	}
}

// TestWriteWaitIsBounded: a write that cannot have the writer within the
// write wait fails with Busy, naming what to do, for both waits: this
// process's one write connection and SQLite's lock held by another
// process on the file. Nothing is written.
func TestWriteWaitIsBounded(t *testing.T) {
	for _, where := range []string{"this process", "another process"} {
		t.Run(where, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "busy.db")
			db := openWith(t, path, 100*time.Millisecond)
			holder := db
			if where == "another process" {
				holder = openWith(t, path, 100*time.Millisecond)
			}
			release := holdWriter(t, holder)
			before := db.WriteStats().Busy
			err := returns(t, "Write", func() error {
				return db.Write(bg, func(tx *store.Tx) error { _, err := tx.CreateTenant("acme"); return err })
			})
			if store.ErrorCode(err) != store.Busy || store.RetryAfter(err) <= 0 {
				t.Fatalf("write with the writer held: %v (code %s), want Busy with a RetryAfter", err, store.ErrorCode(err))
			}
			if got := db.WriteStats().Busy; got != before+1 {
				t.Fatalf("Busy count %d, want %d", got, before+1)
			}
			release()
			if _, err := db.Tenant(bg, "acme"); store.ErrorCode(err) != store.NotFound {
				t.Fatalf("the refused write left a trace: %v", err)
			}
			if err := db.Write(bg, func(tx *store.Tx) error { _, err := tx.CreateTenant("acme"); return err }); err != nil {
				t.Fatalf("write once the writer is free: %v", err)
			}
		})
	}
}

// TestWriteStats: every write transaction is counted once in the wait and
// hold histograms.
func TestWriteStats(t *testing.T) {
	db := openWith(t, filepath.Join(t.TempDir(), "stats.db"), time.Second)
	before := db.WriteStats()
	for i := range 3 {
		err := db.Write(bg, func(tx *store.Tx) error { _, err := tx.CreateTenant("t" + string(rune('a'+i))); return err })
		if err != nil {
			t.Fatal(err)
		}
	}
	_ = db.Write(bg, func(tx *store.Tx) error { return store.Errorf(store.Invalid, "rolled back") })
	after := db.WriteStats()
	if got := after.Hold.Count - before.Hold.Count; got != 4 {
		t.Fatalf("hold count grew by %d, want 4", got)
	}
	if got := after.Wait.Count - before.Wait.Count; got != 4 {
		t.Fatalf("wait count grew by %d, want 4", got)
	}
	var sum uint64
	for _, n := range after.Hold.Counts {
		sum += n
	}
	if sum != after.Hold.Count || after.Hold.Max <= 0 || after.Hold.Quantile(0.99) <= 0 || after.Hold.Quantile(0.99) > after.Hold.Max {
		t.Fatalf("hold histogram inconsistent: %+v", after.Hold)
	}
}

// TestPreparedWrites: a prepared document is what Insert and Update store;
// Update reports the state before from the row's columns; writing what is
// stored changes nothing, not even the version; CheckVersion and Revision
// read the version alone.
func TestPreparedWrites(t *testing.T) {
	db := openWith(t, filepath.Join(t.TempDir(), "prep.db"), time.Second)
	var tn store.Tenant
	u := &store.Resource{Kind: store.UserKind, Doc: map[string]any{"userName": "ada", "active": true, "title": "CTO"}}
	if err := u.Prepare(); err != nil {
		t.Fatal(err)
	}
	err := db.Write(bg, func(tx *store.Tx) error {
		var err error
		if tn, err = tx.CreateTenant("acme"); err != nil {
			return err
		}
		return tx.Insert(tn.ID, u)
	})
	if err != nil {
		t.Fatal(err)
	}
	update := func(doc map[string]any, ifVersion int64) (store.Prior, bool, *store.Resource, error) {
		r := &store.Resource{Kind: store.UserKind, ID: u.ID, Doc: doc}
		if err := r.Prepare(); err != nil {
			t.Fatal(err)
		}
		var prior store.Prior
		var changed bool
		err := db.Write(bg, func(tx *store.Tx) error {
			var err error
			prior, changed, err = tx.Update(tn.ID, r, ifVersion)
			return err
		})
		return prior, changed, r, err
	}
	prior, changed, r, err := update(map[string]any{"userName": "ada", "active": false, "title": "CTO"}, 1)
	if err != nil || !changed || prior.Version != 1 || !prior.Active || r.Version != 2 {
		t.Fatalf("deactivate: %+v %v %+v %v", prior, changed, r, err)
	}
	prior, changed, r, err = update(map[string]any{"title": "CTO", "active": false, "userName": "ada"}, 2)
	if err != nil || changed || prior.Active || r.Version != 2 {
		t.Fatalf("replay: %+v %v %+v %v", prior, changed, r, err)
	}
	if _, _, _, err = update(map[string]any{"userName": "ada"}, 1); store.ErrorCode(err) != store.Precondition {
		t.Fatalf("stale update: %v", err)
	}
	got, err := db.Get(bg, tn.ID, store.UserKind, u.ID)
	if err != nil || got.Version != 2 || got.Active() || got.Str("title") != "CTO" {
		t.Fatalf("stored: %+v %v", got, err)
	}
	err = db.Write(bg, func(tx *store.Tx) error {
		if v, _, err := tx.Revision(tn.ID, store.UserKind, u.ID); err != nil || v != 2 {
			t.Errorf("Revision = %d, %v", v, err)
		}
		if err := tx.CheckVersion(tn.ID, store.UserKind, u.ID, 2); err != nil {
			t.Errorf("CheckVersion(current): %v", err)
		}
		if err := tx.CheckVersion(tn.ID, store.UserKind, u.ID, 1); store.ErrorCode(err) != store.Precondition {
			t.Errorf("CheckVersion(stale): %v", err)
		}
		if err := tx.CheckVersion(tn.ID, store.UserKind, "nope", 1); store.ErrorCode(err) != store.NotFound {
			t.Errorf("CheckVersion(missing): %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	bad := &store.Resource{Kind: store.UserKind, Doc: map[string]any{"userName": "x", "bad": func() {}}}
	if err := bad.Prepare(); store.ErrorCode(err) != store.Invalid {
		t.Fatalf("Prepare of an unencodable document: %v", err)
	}
}
