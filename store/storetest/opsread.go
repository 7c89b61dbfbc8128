package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
)

// testOpsReads: counts, search by prefix over every searched attribute,
// filters, keyset pages that walk everything once, tenant confinement, and
// which channel manages a user.
func testOpsReads(t *testing.T, db *store.DB) {
	acme, other := newTenant(t, db, "acme"), newTenant(t, db, "other")
	people := []*store.Resource{
		user("jane@contoso.com", "displayName", "Jane Doe", "emails", []any{map[string]any{"value": "J.Doe@Mail.example", "primary": true}}),
		user("bob@contoso.com", "displayName", "Robert Roe", "active", false, "name", map[string]any{"givenName": "Bobby", "familyName": "Roe"}),
		user("zoë@contoso.com", "displayName", "Zoë Été", "name", map[string]any{"familyName": "Étienne"}),
		user("carl@contoso.com", "displayName", "Carl", "emails", []any{map[string]any{"value": "bob.alias@contoso.com"}}),
	}
	insert(t, db, acme.ID, people...)
	insert(t, db, other.ID, user("jane@other.com", "displayName", "Jane Other"))
	sales := group("Sales")
	insert(t, db, acme.ID, sales, group("Support"), group("Engineering"))
	write(t, db, func(tx *store.Tx) error {
		_, err := tx.AddMembers(acme.ID, sales.ID, []string{people[0].ID, people[1].ID})
		return err
	})

	c, err := db.Counts(ctx, acme.ID)
	if err != nil || c != (store.TenantCounts{Users: 4, ActiveUsers: 3, Groups: 3}) {
		t.Fatalf("counts %+v %v", c, err)
	}

	f, tr := false, true
	cases := []struct {
		name string
		q    store.UserQuery
		want []*store.Resource
	}{
		{"all", store.UserQuery{}, people},
		{"userName prefix, any case", store.UserQuery{Search: "JA"}, people[:1]},
		{"displayName prefix", store.UserQuery{Search: "robert r"}, people[1:2]},
		{"givenName", store.UserQuery{Search: "bobb"}, people[1:2]},
		{"email", store.UserQuery{Search: "j.doe@"}, people[:1]},
		{"userName or email", store.UserQuery{Search: "bob"}, []*store.Resource{people[1], people[3]}},
		{"non-ASCII prefix", store.UserQuery{Search: "zoË"}, people[2:3]},
		{"familyName non-ASCII", store.UserQuery{Search: "éti"}, people[2:3]},
		{"a prefix, not a substring", store.UserQuery{Search: "contoso"}, nil},
		{"inactive", store.UserQuery{Active: &f}, people[1:2]},
		{"active", store.UserQuery{Active: &tr}, []*store.Resource{people[0], people[2], people[3]}},
		{"group", store.UserQuery{Group: sales.ID}, people[:2]},
		{"group and search", store.UserQuery{Group: sales.ID, Search: "b"}, people[1:2]},
		{"group of another tenant", store.UserQuery{Group: "nope"}, nil},
		{"changed since", store.UserQuery{ChangedSince: time.Now().Add(time.Hour)}, nil},
	}
	for _, tc := range cases {
		var want []string
		for _, r := range tc.want {
			want = append(want, r.ID)
		}
		slices.Sort(want)
		// Pages of one: every match once, in id order.
		var got []string
		q := tc.q
		q.Limit = 1
		for {
			page, err := db.UsersPage(ctx, acme.ID, q)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page[0].ID)
			q.After = page[0].ID
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", tc.name, got, want)
		}
	}
	if _, err := db.UsersPage(ctx, acme.ID, store.UserQuery{Limit: store.MaxPage + 1}); store.ErrorCode(err) != store.Invalid {
		t.Errorf("an oversized page: %v", err)
	}
	// Another tenant's search finds only its own.
	page, err := db.UsersPage(ctx, other.ID, store.UserQuery{Search: "jane", Limit: 10})
	if err != nil || len(page) != 1 || page[0].Str("userName") != "jane@other.com" {
		t.Fatalf("other tenant's search: %v %v", page, err)
	}

	groups, err := db.GroupsPage(ctx, acme.ID, store.GroupQuery{Search: "s", Limit: 10})
	if err != nil || len(groups) != 2 {
		t.Fatalf("groups starting with s: %v %v", groups, err)
	}
	var walked []string
	for after := ""; ; {
		page, err := db.GroupsPage(ctx, acme.ID, store.GroupQuery{After: after, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range page {
			walked = append(walked, g.ID)
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].ID
	}
	if len(walked) != 3 || !slices.IsSorted(walked) {
		t.Fatalf("groups walked %v", walked)
	}

	tenants, err := db.TenantsPage(ctx, "", nil, 1)
	if err != nil || len(tenants) != 1 || tenants[0].Name != "acme" {
		t.Fatalf("first tenant page %v %v", tenants, err)
	}
	if tenants, err = db.TenantsPage(ctx, "acme", nil, 10); err != nil || len(tenants) != 1 || tenants[0].Name != "other" {
		t.Fatalf("second tenant page %v %v", tenants, err)
	}
	if tenants, err = db.TenantsPage(ctx, "", []string{"other", "ghost"}, 10); err != nil || len(tenants) != 1 || tenants[0].Name != "other" {
		t.Fatalf("scoped tenant page %v %v", tenants, err)
	}

	// Channels: the pull links an Entra object id; the push is recorded
	// when a write comes marked as the push's.
	pulled := &store.Resource{Kind: store.UserKind, EntraID: "00000000-0000-0000-0000-00000000000a", Doc: map[string]any{"userName": "pulled@contoso.com"}}
	insert(t, db, acme.ID, pulled)
	pushCtx := store.WithChannel(ctx, store.ChannelPush)
	pushed := user("pushed@contoso.com")
	if err := db.Write(pushCtx, func(tx *store.Tx) error { return tx.Insert(acme.ID, pushed) }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		want string
	}{{pulled.ID, store.ChannelPull}, {pushed.ID, store.ChannelPush}, {people[0].ID, store.ChannelPush}} {
		if got, err := db.ManagedBy(ctx, acme.ID, tc.id); err != nil || got != tc.want {
			t.Errorf("user %s managed by %q %v, want %q", tc.id, got, err, tc.want)
		}
	}
	// The push then writes the pulled user: both.
	both := &store.Resource{Kind: store.UserKind, ID: pulled.ID, EntraID: pulled.EntraID, Doc: map[string]any{"userName": "pulled@contoso.com", "displayName": "Pulled"}}
	if err := db.Write(pushCtx, func(tx *store.Tx) error { _, _, err := tx.Update(acme.ID, both, 0); return err }); err != nil {
		t.Fatal(err)
	}
	if got, err := db.ManagedBy(ctx, acme.ID, pulled.ID); err != nil || got != store.ManagedByBoth {
		t.Errorf("pulled then pushed: %q %v", got, err)
	}
	if _, err := db.ManagedBy(ctx, other.ID, pulled.ID); store.ErrorCode(err) != store.NotFound {
		t.Errorf("another tenant's user: %v", err)
	}
}
