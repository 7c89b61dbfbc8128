package store

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

// TestSearchBothWays: a narrow prefix (matches gathered from index ranges)
// and a broad one (users walked in id order) find the same users, page by
// page, on both dialects.
func TestSearchBothWays(t *testing.T) {
	ctx := context.Background()
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			dsn := filepath.Join(t.TempDir(), "s.db")
			if dialect == "postgres" {
				dsn = PostgresForTest(t)
			}
			db, err := Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var tenant int64
			err = db.Write(ctx, func(tx *Tx) error {
				tn, err := tx.CreateTenant("acme")
				if err != nil {
					return err
				}
				tenant = tn.ID
				for i := range 40 {
					doc := map[string]any{"userName": fmt.Sprintf("u%02d@acme.com", i), "displayName": fmt.Sprintf("Name %d", i),
						"emails": []any{map[string]any{"value": fmt.Sprintf("x%d@mail.example", i%7)}},
						"name":   map[string]any{"givenName": fmt.Sprintf("G%d", i%3), "familyName": "Ünal"}}
					if err := tx.Insert(tn.ID, &Resource{Kind: UserKind, Doc: doc}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			search := func(prefix string, limit int, active *bool) []string {
				var ids []string
				q := UserQuery{Search: prefix, Limit: limit, Active: active}
				for {
					page, err := db.UsersPage(ctx, tenant, q)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range page {
						ids = append(ids, r.ID)
					}
					if len(page) < limit {
						return ids
					}
					q.After = page[len(page)-1].ID
				}
			}
			defer func(n int) { searchScanAt = n }(searchScanAt)
			yes := true
			for _, prefix := range []string{"u", "U1", "x3", "name 1", "g2", "ÜN", "nobody", "\U0010FFFF"} {
				searchScanAt = 1 << 30
				narrow := search(prefix, 3, nil)
				searchScanAt = 1
				broad := search(prefix, 3, nil)
				if !slices.Equal(narrow, broad) || !slices.IsSorted(narrow) {
					t.Errorf("%q: gathered %d users, walked %d", prefix, len(narrow), len(broad))
				}
				if withActive := search(prefix, 7, &yes); !slices.Equal(withActive, broad) {
					t.Errorf("%q and active: %d users, want %d", prefix, len(withActive), len(broad))
				}
			}
			searchScanAt = 1 << 30
			if n := len(search("u", 5, nil)); n != 40 {
				t.Errorf("prefix u: %d users", n)
			}
			if n := len(search("x3", 5, nil)); n != 6 {
				t.Errorf("prefix x3: %d users", n)
			}
		})
	}
}

func TestPrefixRange(t *testing.T) {
	for _, tc := range []struct{ in, hi string }{
		{"a", "b"}, {"ab", "ac"}, {"é", "ê"}, {"a\U0010FFFF", "b"}, {"\U0010FFFF", ""}, {"\uD7FF", "\uE000"},
	} {
		if lo, hi := prefixRange(tc.in); lo != tc.in || hi != tc.hi {
			t.Errorf("prefixRange(%q) = %q, %q; want hi %q", tc.in, lo, hi, tc.hi)
		}
	}
}
