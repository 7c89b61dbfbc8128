package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
)

// While PostgreSQL restarts, every read and write fails with Busy and a
// RetryAfter (an edge answers "retry later", never an internal error nor
// a wrong answer), and once it is back the same open store works again.
func TestPostgresRestartReadsAndWritesAreBusyThenRecover(t *testing.T) {
	pg := pgtest.Start(t)
	ctx := context.Background()
	db, err := store.Open(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var secret string
	err = db.Write(ctx, func(tx *store.Tx) error {
		tn, err := tx.CreateTenant("acme")
		if err != nil {
			return err
		}
		_, secret, err = tx.CreateToken(tn)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tn, _, err := db.Authenticate(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}

	pg.Stop()
	checks := map[string]func() error{
		"ping":         func() error { return db.Ping(ctx) },
		"authenticate": func() error { _, _, err := db.Authenticate(ctx, secret); return err },
		"tenant":       func() error { _, err := db.Tenant(ctx, "acme"); return err },
		"tenants":      func() error { _, err := db.Tenants(ctx); return err },
		"get":          func() error { _, err := db.Get(ctx, tn.ID, store.UserKind, "nope"); return err },
		"list":         func() error { _, err := db.List(ctx, tn.ID, store.UserKind, store.Query{Count: 10}); return err },
		"members":      func() error { _, err := db.Members(ctx, tn.ID, "g"); return err },
		"runs":         func() error { _, err := db.Runs(ctx, "acme", 5); return err },
		"ops key":      func() error { _, err := db.AuthenticateOps(ctx, "es_ops_nope"); return err },
		"write": func() error {
			return db.Write(ctx, func(tx *store.Tx) error { _, err := tx.CreateTenant("other"); return err })
		},
	}
	for name, check := range checks {
		// Twice: the first meets the pool's dead connections, the second
		// dials anew and is refused.
		for i := range 2 {
			err := check()
			if store.ErrorCode(err) != store.Busy || store.RetryAfter(err) <= 0 {
				t.Errorf("%s (try %d) with PostgreSQL down: %v (code %s, retry after %s), want Busy with a RetryAfter", name, i+1, err, store.ErrorCode(err), store.RetryAfter(err))
			}
		}
	}

	pg.Start()
	deadline := time.Now().Add(30 * time.Second)
	for db.Ping(ctx) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for name, check := range checks {
		if err := check(); err != nil && store.ErrorCode(err) == store.Busy {
			t.Errorf("%s after PostgreSQL is back: %v", name, err)
		}
	}
	if got, err := db.Tenant(ctx, "other"); err != nil || got.Name != "other" {
		t.Errorf("the write after the restart: %v, %v", got, err)
	}
}

// Opening a store on a PostgreSQL that is down says so, with the driver's
// reason, rather than only the driver's words.
func TestPostgresDownAtOpenSaysUnreachable(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Stop()
	for name, open := range map[string]func(context.Context, string) (*store.DB, error){
		"Open": store.Open, "OpenReadOnly": store.OpenReadOnly,
	} {
		_, err := open(context.Background(), pg.URL())
		if err == nil || !strings.Contains(err.Error(), "the database cannot be reached") || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s on a stopped PostgreSQL: %v", name, err)
		}
	}
}
