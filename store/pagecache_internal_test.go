package store

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestPagedListingSeeks: a client paging with startIndex gets the pages
// OFFSET would give, the pages after the first are seeks from where the
// page before ended, and a write committed here drops what was remembered
// (a deleted user shifts the pages after it, and the total).
func TestPagedListingSeeks(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "pages.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tn Tenant
	var ids []string
	err = db.Write(ctx, func(tx *Tx) error {
		if tn, err = tx.CreateTenant("pages"); err != nil {
			return err
		}
		for i := range 250 {
			u := &Resource{Kind: UserKind, Doc: map[string]any{"userName": fmt.Sprintf("u%03d", i)}}
			if err := tx.Insert(tn.ID, u); err != nil {
				return err
			}
			ids = append(ids, u.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	page := func(start int) ([]string, int) {
		t.Helper()
		p, err := db.List(ctx, tn.ID, UserKind, Query{StartIndex: start, Count: 100})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range p.Resources {
			got = append(got, r.ID)
		}
		return got, p.Total
	}
	key := listingKeyOf(tn.ID, UserKind, "r.tenant_id = ?", []any{tn.ID})
	for start := 1; start <= 250; start += 100 {
		if _, after := db.listings.lookup(key, db.listings.gen(tn.ID), start-1, time.Now()); (after != "") != (start > 1) {
			t.Fatalf("before the page at %d, the end of the page before is known: %v", start, after != "")
		}
		got, total := page(start)
		want := ids[start-1 : min(start+99, 250)]
		if !slices.Equal(got, want) || total != 250 {
			t.Fatalf("page at %d: %d ids (total %d), not the %d expected", start, len(got), total, len(want))
		}
	}
	if err := db.Write(ctx, func(tx *Tx) error { return tx.Delete(tn.ID, UserKind, ids[49]) }); err != nil {
		t.Fatal(err)
	}
	ids = slices.Delete(ids, 49, 50)
	got, total := page(101)
	if !slices.Equal(got, ids[100:200]) || total != 249 {
		t.Fatalf("after a delete, the page at 101 starts with user %d (total %d): what was remembered was used", slices.Index(ids, got[0]), total)
	}
}
