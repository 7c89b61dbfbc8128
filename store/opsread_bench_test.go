package store_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
)

// BenchmarkUserSearch: the ops API's user search and tenant counts on one
// tenant of ENTRASYNC_BENCH_USERS users (default 100,000), on SQLite and
// PostgreSQL:
// a narrow prefix (a few matches), a broad one (a tenth of the tenant),
// and Counts.
//
//	ENTRASYNC_BENCH_USERS=1000000 go test -run '^$' -bench UserSearch -benchtime 200x -timeout 0 ./store
func BenchmarkUserSearch(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("ENTRASYNC_BENCH_USERS")); err == nil && v > 0 {
		n = v
	}
	pgtest.EachStore(b, func(b *testing.B, kind string) { benchUserSearch(b, kind, n) })
}

func benchUserSearch(b *testing.B, kind string, n int) {
	ctx := context.Background()
	db, err := store.Open(ctx, pgtest.DSN(b, kind))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var tenant store.Tenant
	if err := db.Write(ctx, func(tx *store.Tx) error { tenant, err = tx.CreateTenant("big"); return err }); err != nil {
		b.Fatal(err)
	}
	const batch = 2000
	for start := 0; start < n; start += batch {
		rs := make([]*store.Resource, 0, batch)
		for i := start; i < min(start+batch, n); i++ {
			// userNames spread over 10 leading digits: "3" matches a tenth.
			rs = append(rs, &store.Resource{Kind: store.UserKind, Doc: map[string]any{
				"userName": fmt.Sprintf("%d%07d@contoso.com", i%10, i), "displayName": fmt.Sprintf("Person %d", i), "active": i%5 != 0,
				"emails": []any{map[string]any{"value": fmt.Sprintf("p%d@mail.example", i), "primary": true}},
				"name":   map[string]any{"givenName": fmt.Sprintf("Given%d", i%1000), "familyName": fmt.Sprintf("Family%d", i)}}})
		}
		if err := db.Write(ctx, func(tx *store.Tx) error { return tx.InsertMany(tenant.ID, rs) }); err != nil {
			b.Fatal(err)
		}
	}
	// As a pull that grew the tables does (autovacuum would, a little later).
	if err := db.RefreshPlannerStats(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for _, bc := range []struct{ name, prefix string }{
		{"narrow", fmt.Sprintf("p%d", n/2)}, // one email, and its tenfold prefixes
		{"familyName", fmt.Sprintf("family%d", n-1)},
		{"broad", "3"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				page, err := db.UsersPage(ctx, tenant.ID, store.UserQuery{Search: bc.prefix, Limit: 101})
				if err != nil || len(page) == 0 {
					b.Fatal(len(page), err)
				}
			}
		})
	}
	b.Run("counts", func(b *testing.B) {
		for range b.N {
			if c, err := db.Counts(ctx, tenant.ID); err != nil || c.Users != n {
				b.Fatal(c, err)
			}
		}
	})
}
