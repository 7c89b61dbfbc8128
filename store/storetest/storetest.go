// Package storetest is the conformance suite every store configuration
// passes: tenants and tokens, resources, memberships, filters and
// isolation, all through the store's exported API.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/entrasync/entrasync/scim/filter"
	"github.com/entrasync/entrasync/scim/schema"
	"github.com/entrasync/entrasync/store"
)

// Opener returns a new, empty, migrated store for one test.
type Opener func(t *testing.T) *store.DB

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, db *store.DB)
	}{
		{"Tenants", testTenants},
		{"Tokens", testTokens},
		{"Resources", testResources},
		{"Uniqueness", testUniqueness},
		{"InsertMany", testInsertMany},
		{"PlannerStats", testPlannerStats},
		{"Versions", testVersions},
		{"Members", testMembers},
		{"DeleteCleansUp", testDeleteCleansUp},
		{"Filters", testFilters},
		{"Paging", testPaging},
		{"Isolation", testIsolation},
		{"Rollback", testRollback},
		{"ConcurrentWrites", testConcurrentWrites},
		{"FirstStart", testFirstStart},
		{"LinkingForThePull", testLinking},
		{"Scope", testScope},
		{"FullPassMarks", testMarks},
		{"GraphConnections", testGraphConnections},
		{"SecretKeys", testSecretKeys},
		{"Runs", testRuns},
		{"DeltaLinksAndLeases", testLinksAndLeases},
		{"OpsKeys", testOpsKeys},
		{"OpsReads", testOpsReads},
		{"Activity", testActivity},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var ctx = context.Background()

func write(t *testing.T, db *store.DB, fn func(tx *store.Tx) error) {
	t.Helper()
	if err := db.Write(ctx, fn); err != nil {
		t.Fatal(err)
	}
}

func mustCode(t *testing.T, err error, want store.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %s error, got none", want)
	}
	if got := store.ErrorCode(err); got != want {
		t.Fatalf("want a %s error, got %s: %v", want, got, err)
	}
}

func newTenant(t *testing.T, db *store.DB, name string) store.Tenant {
	t.Helper()
	var tn store.Tenant
	write(t, db, func(tx *store.Tx) error {
		var err error
		tn, err = tx.CreateTenant(name)
		return err
	})
	return tn
}

func user(userName string, extra ...any) *store.Resource {
	doc := map[string]any{"userName": userName}
	for i := 0; i+1 < len(extra); i += 2 {
		doc[extra[i].(string)] = extra[i+1]
	}
	return &store.Resource{Kind: store.UserKind, Doc: doc}
}

func group(name string) *store.Resource {
	return &store.Resource{Kind: store.GroupKind, Doc: map[string]any{"displayName": name}}
}

func insert(t *testing.T, db *store.DB, tenant int64, rs ...*store.Resource) {
	t.Helper()
	write(t, db, func(tx *store.Tx) error {
		for _, r := range rs {
			if err := tx.Insert(tenant, r); err != nil {
				return err
			}
		}
		return nil
	})
}

func testTenants(t *testing.T, db *store.DB) {
	a := newTenant(t, db, "acme")
	newTenant(t, db, "globex")
	err := db.Write(ctx, func(tx *store.Tx) error { _, err := tx.CreateTenant("acme"); return err })
	mustCode(t, err, store.Conflict)
	for _, bad := range []string{"", "Acme", "a b", "-x", "x/y", string(make([]byte, 70))} {
		err := db.Write(ctx, func(tx *store.Tx) error { _, err := tx.CreateTenant(bad); return err })
		mustCode(t, err, store.Invalid)
	}
	got, err := db.Tenant(ctx, "acme")
	if err != nil || got.ID != a.ID || got.Name != "acme" {
		t.Fatalf("Tenant(acme) = %+v, %v", got, err)
	}
	_, err = db.Tenant(ctx, "nope")
	mustCode(t, err, store.NotFound)

	insert(t, db, a.ID, user("u1"), user("u2"), group("g1"))
	list, err := db.Tenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "acme" || list[0].Users != 2 || list[0].Groups != 1 || list[1].Name != "globex" {
		t.Fatalf("Tenants() = %+v", list)
	}
	write(t, db, func(tx *store.Tx) error { return tx.DeleteTenant("acme") })
	err = db.Write(ctx, func(tx *store.Tx) error { return tx.DeleteTenant("acme") })
	mustCode(t, err, store.NotFound)
	if list, _ := db.Tenants(ctx); len(list) != 1 {
		t.Fatalf("after delete: %+v", list)
	}
}

func testTokens(t *testing.T, db *store.DB) {
	a := newTenant(t, db, "acme")
	b := newTenant(t, db, "globex")
	var tokA, tokA2 store.Token
	var secretA, secretA2, secretB string
	write(t, db, func(tx *store.Tx) error {
		var err error
		if tokA, secretA, err = tx.CreateToken(a); err != nil {
			return err
		}
		if tokA2, secretA2, err = tx.CreateToken(a); err != nil {
			return err
		}
		_, secretB, err = tx.CreateToken(b)
		return err
	})
	if len(secretA) < 40 || secretA == secretA2 || tokA.ID == tokA2.ID {
		t.Fatalf("tokens not distinct or too short: %q %q", secretA, secretA2)
	}
	if got, id, err := db.Authenticate(ctx, secretA); err != nil || got.ID != a.ID || id != tokA.ID {
		t.Fatalf("Authenticate(A) = %+v, %q, %v", got, id, err)
	}
	if got, _, err := db.Authenticate(ctx, secretB); err != nil || got.ID != b.ID {
		t.Fatalf("Authenticate(B) = %+v, %v", got, err)
	}
	_, id, err := db.Authenticate(ctx, secretA+"x")
	mustCode(t, err, store.NotFound)
	if id != "" {
		t.Fatalf("an unknown token has the id %q", id)
	}
	_, _, err = db.Authenticate(ctx, "")
	mustCode(t, err, store.NotFound)

	if err := db.FlushStamps(ctx); err != nil { // stamps are written in the background
		t.Fatal(err)
	}
	list, err := db.Tokens(ctx, "acme")
	if err != nil || len(list) != 2 {
		t.Fatalf("Tokens = %+v, %v", list, err)
	}
	for _, tk := range list {
		if tk.Tenant != "acme" || tk.Prefix == "" || len(tk.Prefix) > 12 || tk.RevokedAt != nil {
			t.Fatalf("token %+v", tk)
		}
		if tk.ID == tokA.ID && tk.LastUsedAt == nil {
			t.Fatalf("used token has no last-used time: %+v", tk)
		}
	}
	write(t, db, func(tx *store.Tx) error { _, err := tx.RevokeToken(tokA.ID); return err })
	_, _, err = db.Authenticate(ctx, secretA)
	mustCode(t, err, store.NotFound)
	if _, _, err := db.Authenticate(ctx, secretA2); err != nil {
		t.Fatalf("the other token stopped working: %v", err)
	}
	err = db.Write(ctx, func(tx *store.Tx) error { _, err := tx.RevokeToken("tok_nope"); return err })
	mustCode(t, err, store.NotFound)
}

func testResources(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	u := user("Ada@Contoso.com", "externalId", "e-1", "displayName", "Ada", "active", true,
		"emails", []any{map[string]any{"type": "work", "value": "ada@contoso.com"}})
	u.EntraID = "0A21F0F2-8D2A-4F8E-BF98-7363C4AED4EF"
	insert(t, db, tn.ID, u)
	if u.ID == "" || u.Version != 1 || u.Created.IsZero() || !u.Created.Equal(u.LastModified) {
		t.Fatalf("inserted %+v", u)
	}
	got, err := db.Get(ctx, tn.ID, store.UserKind, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Str("userName") != "Ada@Contoso.com" || got.EntraID != "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef" || got.Version != 1 || !got.Active() {
		t.Fatalf("Get = %+v", got)
	}
	_, err = db.Get(ctx, tn.ID, store.GroupKind, u.ID)
	mustCode(t, err, store.NotFound)
	byEntra, err := db.ByEntraID(ctx, tn.ID, store.UserKind, []string{strings.ToUpper(u.EntraID)})
	if err != nil || byEntra[strings.ToLower(u.EntraID)].ID != u.ID {
		t.Fatalf("ByEntraID = %+v, %v", byEntra, err)
	}
	byName, err := db.UsersByUserName(ctx, tn.ID, []string{"ada@contoso.COM"})
	if err != nil || byName["ada@contoso.com"].ID != u.ID {
		t.Fatalf("UsersByUserName = %+v, %v", byName, err)
	}
	many, err := db.GetMany(ctx, tn.ID, store.UserKind, []string{u.ID, "nope"})
	if err != nil || len(many) != 1 || many[u.ID].ID != u.ID {
		t.Fatalf("GetMany = %+v, %v", many, err)
	}
}

func testUniqueness(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	other := newTenant(t, db, "globex")
	insert(t, db, tn.ID, user("bjensen@example.com"))
	err := db.Write(ctx, func(tx *store.Tx) error { return tx.Insert(tn.ID, user("BJensen@Example.com")) })
	mustCode(t, err, store.Conflict)
	insert(t, db, other.ID, user("bjensen@example.com")) // unique per tenant only
	second := user("other@example.com")
	insert(t, db, tn.ID, second)
	second.Doc["userName"] = "BJENSEN@example.com"
	err = db.Write(ctx, func(tx *store.Tx) error { _, _, err := tx.Update(tn.ID, second, 0); return err })
	mustCode(t, err, store.Conflict)
	// externalId is not unique.
	insert(t, db, tn.ID, user("x1", "externalId", "same"), user("x2", "externalId", "same"))
	err = db.Write(ctx, func(tx *store.Tx) error {
		return tx.Insert(tn.ID, &store.Resource{Kind: store.UserKind, Doc: map[string]any{}})
	})
	mustCode(t, err, store.Invalid)
}

func testInsertMany(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	// More than one multi-row statement's worth, each with index rows.
	var rs []*store.Resource
	for i := range 150 {
		u := user(fmt.Sprintf("u%03d@contoso.com", i), "displayName", fmt.Sprintf("User %d", i),
			"emails", []any{map[string]any{"type": "work", "value": fmt.Sprintf("u%03d@mail.contoso.com", i)}})
		u.EntraID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		rs = append(rs, u)
	}
	write(t, db, func(tx *store.Tx) error { return tx.InsertMany(tn.ID, rs) })
	for _, i := range []int{0, 99, 100, 149} {
		got, err := db.Get(ctx, tn.ID, store.UserKind, rs[i].ID)
		if err != nil || got.Version != 1 || got.EntraID != rs[i].EntraID || got.Str("userName") != rs[i].Str("userName") {
			t.Fatalf("user %d: %+v %v", i, got, err)
		}
	}
	page, err := db.List(ctx, tn.ID, store.UserKind, query(t, schema.UserType, `emails.value eq "u149@mail.contoso.com"`))
	if err != nil || len(page.Resources) != 1 || page.Resources[0].ID != rs[149].ID {
		t.Fatalf("the index of the last row: %+v %v", page, err)
	}
	groups := []*store.Resource{group("Sales"), group("Ops")}
	write(t, db, func(tx *store.Tx) error { return tx.InsertMany(tn.ID, groups) })
	if got, err := db.Get(ctx, tn.ID, store.GroupKind, groups[1].ID); err != nil || got.Str("displayName") != "Ops" {
		t.Fatalf("group: %+v %v", got, err)
	}

	// A taken or repeated userName, or a taken Entra id, fails them all.
	taken := user("U000@contoso.com")
	taken.EntraID = "00000000-0000-4000-8000-999999999999"
	bad := [][]*store.Resource{
		{user("new1@contoso.com"), taken},
		{user("twice@contoso.com"), user("TWICE@contoso.com")},
		{user("new2@contoso.com"), {Kind: store.UserKind, EntraID: rs[7].EntraID, Doc: map[string]any{"userName": "new3@contoso.com"}}},
	}
	for _, batch := range bad {
		err := db.Write(ctx, func(tx *store.Tx) error { return tx.InsertMany(tn.ID, batch) })
		mustCode(t, err, store.Conflict)
		if _, err := db.Get(ctx, tn.ID, store.UserKind, batch[0].ID); store.ErrorCode(err) != store.NotFound {
			t.Fatalf("a failed InsertMany left %s: %v", batch[0].Str("userName"), err)
		}
	}
}

// testPlannerStats: the refresh a pull asks for runs on the tenant's
// tables (on PostgreSQL, those of the schema the store was opened on).
func testPlannerStats(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	insert(t, db, tn.ID, user("a@contoso.com"), group("Sales"))
	if err := db.RefreshPlannerStats(ctx); err != nil {
		t.Fatal(err)
	}
}

func testVersions(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	db.SetClock(func() time.Time { return clock })
	defer db.SetClock(time.Now)
	u := user("a", "title", "Engineer")
	insert(t, db, tn.ID, u)
	clock = clock.Add(time.Minute)
	same := &store.Resource{Kind: store.UserKind, ID: u.ID, Doc: map[string]any{"userName": "a", "title": "Engineer"}}
	var changed bool
	write(t, db, func(tx *store.Tx) error { var err error; _, changed, err = tx.Update(tn.ID, same, 0); return err })
	if changed || same.Version != 1 || !same.LastModified.Equal(u.Created) {
		t.Fatalf("an update to the same document changed it: %v %+v", changed, same)
	}
	next := &store.Resource{Kind: store.UserKind, ID: u.ID, Doc: map[string]any{"userName": "a", "title": "Manager"}}
	write(t, db, func(tx *store.Tx) error { var err error; _, changed, err = tx.Update(tn.ID, next, 1); return err })
	if !changed || next.Version != 2 || !next.LastModified.Equal(clock) || !next.Created.Equal(u.Created) {
		t.Fatalf("update: %v %+v", changed, next)
	}
	stale := &store.Resource{Kind: store.UserKind, ID: u.ID, Doc: map[string]any{"userName": "a", "title": "Stale"}}
	err := db.Write(ctx, func(tx *store.Tx) error { _, _, err := tx.Update(tn.ID, stale, 1); return err })
	mustCode(t, err, store.Precondition)
	got, _ := db.Get(ctx, tn.ID, store.UserKind, u.ID)
	if got.Str("title") != "Manager" || got.Version != 2 {
		t.Fatalf("stale update wrote: %+v", got)
	}
	missing := &store.Resource{Kind: store.UserKind, ID: "nope", Doc: map[string]any{"userName": "z"}}
	err = db.Write(ctx, func(tx *store.Tx) error { _, _, err := tx.Update(tn.ID, missing, 0); return err })
	mustCode(t, err, store.NotFound)
}

func memberIDs(t *testing.T, db *store.DB, tenant int64, g string) []string {
	t.Helper()
	ms, err := db.Members(ctx, tenant, g)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids ...string) []string { slices.Sort(ids); return ids }

func testMembers(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	a, b, c := user("a", "displayName", "Ann"), user("b"), user("c")
	g, sub := group("Sales"), group("Sales EMEA")
	insert(t, db, tn.ID, a, b, c, g, sub)
	count := func(fn func(tx *store.Tx) (int, error)) int {
		var n int
		write(t, db, func(tx *store.Tx) error { var err error; n, err = fn(tx); return err })
		return n
	}
	if n := count(func(tx *store.Tx) (int, error) { return tx.AddMembers(tn.ID, g.ID, []string{a.ID, b.ID, a.ID}) }); n != 2 {
		t.Fatalf("added %d, want 2", n)
	}
	if n := count(func(tx *store.Tx) (int, error) { return tx.AddMembers(tn.ID, g.ID, []string{a.ID, sub.ID}) }); n != 1 {
		t.Fatalf("re-adding: added %d, want 1 (the subgroup)", n)
	}
	ms, _ := db.Members(ctx, tn.ID, g.ID)
	kinds := map[string]store.Kind{}
	for _, m := range ms {
		kinds[m.ID] = m.Kind
		if m.ID == a.ID && m.Display != "Ann" {
			t.Fatalf("member display = %q", m.Display)
		}
	}
	if kinds[a.ID] != store.UserKind || kinds[sub.ID] != store.GroupKind || len(kinds) != 3 {
		t.Fatalf("members %+v", ms)
	}
	if n := count(func(tx *store.Tx) (int, error) { return tx.RemoveMembers(tn.ID, g.ID, []string{b.ID, c.ID, "nope"}) }); n != 1 {
		t.Fatalf("removed %d, want 1", n)
	}
	for _, bad := range [][]string{{"nope"}, {g.ID}, {a.ID, "nope"}} {
		err := db.Write(ctx, func(tx *store.Tx) error { _, err := tx.AddMembers(tn.ID, g.ID, bad); return err })
		mustCode(t, err, store.Invalid)
	}
	err := db.Write(ctx, func(tx *store.Tx) error { _, err := tx.AddMembers(tn.ID, "nope", []string{a.ID}); return err })
	mustCode(t, err, store.NotFound)
	if got, want := memberIDs(t, db, tn.ID, g.ID), sorted(a.ID, sub.ID); !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	var added, removed int
	write(t, db, func(tx *store.Tx) error {
		var err error
		added, removed, err = tx.SetMembers(tn.ID, g.ID, []string{b.ID, c.ID, sub.ID})
		return err
	})
	if added != 2 || removed != 1 {
		t.Fatalf("SetMembers: +%d -%d", added, removed)
	}
	if got, want := memberIDs(t, db, tn.ID, g.ID), sorted(b.ID, c.ID, sub.ID); !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	// Paged by id, two at a time: each page at most the limit, all in order.
	var paged []string
	for after, pages := "", 0; ; pages++ {
		page, err := db.MembersPage(ctx, tn.ID, g.ID, after, 2)
		if err != nil || len(page) > 2 || pages > 3 {
			t.Fatalf("MembersPage after %q: %d members, %v", after, len(page), err)
		}
		for _, m := range page {
			paged = append(paged, m.ID)
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].ID
	}
	if want := sorted(b.ID, c.ID, sub.ID); !slices.Equal(paged, want) {
		t.Fatalf("paged members %v, want %v", paged, want)
	}
	if _, err := db.MembersPage(ctx, tn.ID, g.ID, "", 0); store.ErrorCode(err) != store.Invalid {
		t.Fatalf("MembersPage with limit 0: %v", err)
	}
	groups, err := db.GroupsOf(ctx, tn.ID, []string{b.ID, a.ID, sub.ID})
	if err != nil || len(groups[b.ID]) != 1 || groups[b.ID][0].ID != g.ID || groups[b.ID][0].Display != "Sales" || len(groups[a.ID]) != 0 || len(groups[sub.ID]) != 1 {
		t.Fatalf("GroupsOf = %+v, %v", groups, err)
	}
	// A listing asked for users' groups reads them in its query: the same.
	page, err := db.List(ctx, tn.ID, store.UserKind, store.Query{Count: 10, Groups: true})
	if err != nil || len(page.Resources) < 3 {
		t.Fatalf("List with groups: %d users, %v", len(page.Resources), err)
	}
	for _, u := range page.Resources {
		if want, _ := db.GroupsOf(ctx, tn.ID, []string{u.ID}); !slices.Equal(page.Groups[u.ID], want[u.ID]) {
			t.Fatalf("List's groups of %s: %+v, GroupsOf: %+v", u.ID, page.Groups[u.ID], want[u.ID])
		}
	}
	// A membership change is a change of the group.
	got, _ := db.Get(ctx, tn.ID, store.GroupKind, g.ID)
	if got.Version < 4 {
		t.Fatalf("group version %d after four membership changes", got.Version)
	}
}

func testDeleteCleansUp(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	a, b := user("a", "title", "x"), user("b")
	g, parent := group("g"), group("parent")
	insert(t, db, tn.ID, a, b, g, parent)
	write(t, db, func(tx *store.Tx) error {
		if _, err := tx.AddMembers(tn.ID, g.ID, []string{a.ID, b.ID}); err != nil {
			return err
		}
		_, err := tx.AddMembers(tn.ID, parent.ID, []string{g.ID, a.ID})
		return err
	})
	before, _ := db.Get(ctx, tn.ID, store.GroupKind, g.ID)
	write(t, db, func(tx *store.Tx) error { return tx.Delete(tn.ID, store.UserKind, a.ID) })
	if got := memberIDs(t, db, tn.ID, g.ID); !slices.Equal(got, []string{b.ID}) {
		t.Fatalf("deleted user still a member: %v", got)
	}
	if after, _ := db.Get(ctx, tn.ID, store.GroupKind, g.ID); after.Version <= before.Version {
		t.Fatal("losing a member did not change the group's version")
	}
	page, _ := db.List(ctx, tn.ID, store.UserKind, query(t, schema.UserType, `title eq "x"`))
	if page.Total != 0 {
		t.Fatal("deleted user still found by its index rows")
	}
	write(t, db, func(tx *store.Tx) error { return tx.Delete(tn.ID, store.GroupKind, g.ID) })
	if got := memberIDs(t, db, tn.ID, parent.ID); len(got) != 0 {
		t.Fatalf("deleted group still a member of its parent: %v", got)
	}
	err := db.Write(ctx, func(tx *store.Tx) error { return tx.Delete(tn.ID, store.GroupKind, g.ID) })
	mustCode(t, err, store.NotFound)
}

// query parses and resolves a filter as the SCIM layer does.
func query(t *testing.T, rt *schema.ResourceType, text string) store.Query {
	t.Helper()
	e, err := filter.Parse(text)
	if err != nil {
		t.Fatalf("parse %q: %v", text, err)
	}
	f, exact, err := rt.CanonicalFilter(e)
	if err != nil {
		t.Fatalf("resolve %q: %v", text, err)
	}
	return store.Query{Filter: f, CaseExact: exact, Count: 100}
}

func testFilters(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	db.SetClock(func() time.Time { return clock })
	defer db.SetClock(time.Now)
	ada := user("ada@contoso.com", "externalId", "Ext-Ada", "displayName", "Ada Lovelace", "active", true, "title", "Countess",
		"name", map[string]any{"givenName": "Ada", "familyName": "King"},
		"emails", []any{
			map[string]any{"type": "work", "value": "ada@contoso.com", "primary": true},
			map[string]any{"type": "home", "value": "ada@home.example"},
		},
		schema.EnterpriseUserURN, map[string]any{"employeeNumber": "42", "manager": map[string]any{"value": "m-1"}})
	insert(t, db, tn.ID, ada)
	clock = clock.Add(time.Hour)
	bob := user("bob@contoso.com", "externalId", "ext-bob", "displayName", "Bob", "active", false,
		"emails", []any{map[string]any{"type": "home", "value": "ada@contoso.com"}})
	insert(t, db, tn.ID, bob)
	carol := user("carol@fabrikam.com")
	insert(t, db, tn.ID, carol)
	sales, ops := group("Sales"), group("Ops")
	ops.Doc["externalId"] = "g-ops"
	insert(t, db, tn.ID, sales, ops)
	write(t, db, func(tx *store.Tx) error {
		_, err := tx.AddMembers(tn.ID, sales.ID, []string{ada.ID, bob.ID})
		return err
	})

	users := []struct {
		filter string
		want   []*store.Resource
	}{
		{`userName eq "ADA@contoso.com"`, []*store.Resource{ada}},
		{`userName eq "nobody"`, nil},
		{`externalId eq "ext-ada"`, nil}, // externalId is caseExact
		{`externalId eq "Ext-Ada"`, []*store.Resource{ada}},
		{`displayName eq "ada lovelace"`, []*store.Resource{ada}},
		{fmt.Sprintf(`id eq "%s"`, bob.ID), []*store.Resource{bob}},
		{`emails[type eq "work"].value eq "ada@contoso.com"`, []*store.Resource{ada}},
		{`emails[type eq "home"].value eq "ADA@CONTOSO.COM"`, []*store.Resource{bob}},
		{`emails.value eq "ada@contoso.com"`, []*store.Resource{ada, bob}},
		{`emails eq "ada@home.example"`, []*store.Resource{ada}},
		{`emails[type eq "work" and primary eq true]`, []*store.Resource{ada}},
		{`emails[not (type eq "work")]`, []*store.Resource{ada, bob}},
		{`userName eq "ada@contoso.com" and active eq true`, []*store.Resource{ada}},
		{`userName eq "ada@contoso.com" and active eq false`, nil},
		{`userName sw "ADA" or userName ew "fabrikam.com"`, []*store.Resource{ada, carol}},
		{`userName co "@contoso"`, []*store.Resource{ada, bob}},
		{`not (userName co "@contoso")`, []*store.Resource{carol}},
		{`title pr`, []*store.Resource{ada}},
		{`not (title pr)`, []*store.Resource{bob, carol}},
		{`title eq null`, []*store.Resource{bob, carol}},
		{`externalId pr`, []*store.Resource{ada, bob}},
		{`externalId ne "ext-bob"`, []*store.Resource{ada, carol}},
		{`title ne "Countess"`, []*store.Resource{bob, carol}},
		{`active eq false`, []*store.Resource{bob}},
		{`name.familyName eq "king"`, []*store.Resource{ada}},
		{`employeeNumber eq "42"`, []*store.Resource{ada}},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "42"`, []*store.Resource{ada}},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m-1"`, []*store.Resource{ada}},
		{`urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bob@contoso.com"`, []*store.Resource{bob}},
		{`meta.created gt "2026-03-01T12:30:00Z"`, []*store.Resource{bob, carol}},
		{`meta.lastModified le "2026-03-01T12:00:00Z"`, []*store.Resource{ada}},
		{fmt.Sprintf(`groups.value eq "%s"`, sales.ID), []*store.Resource{ada, bob}},
		{fmt.Sprintf(`groups eq "%s"`, ops.ID), nil},
		{`userName eq "a\"b"`, nil},
		{`userName eq "x') OR 1=1 --"`, nil},
	}
	for _, tc := range users {
		page, err := db.List(ctx, tn.ID, store.UserKind, query(t, schema.UserType, tc.filter))
		if err != nil {
			t.Errorf("%s: %v", tc.filter, err)
			continue
		}
		if got, want := ids(page.Resources), ids(derefs(tc.want)); !slices.Equal(got, want) || page.Total != len(want) {
			t.Errorf("%s: got %v (total %d), want %v", tc.filter, got, page.Total, want)
		}
	}
	groups := []struct {
		filter string
		want   []*store.Resource
	}{
		{`displayName eq "sales"`, []*store.Resource{sales}},
		{`externalId eq "g-ops"`, []*store.Resource{ops}},
		{fmt.Sprintf(`members.value eq "%s"`, bob.ID), []*store.Resource{sales}},
		{fmt.Sprintf(`members[value eq "%s"]`, carol.ID), nil},
		{`members pr`, []*store.Resource{sales}},
	}
	for _, tc := range groups {
		page, err := db.List(ctx, tn.ID, store.GroupKind, query(t, schema.GroupType, tc.filter))
		if err != nil {
			t.Errorf("%s: %v", tc.filter, err)
			continue
		}
		if got, want := ids(page.Resources), ids(derefs(tc.want)); !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", tc.filter, got, want)
		}
	}
	// Comparisons a type does not allow are Invalid, never a database error,
	// even when they reach the store unchecked (schema.CanonicalFilter
	// refuses them first).
	for _, bad := range []string{`active co "t"`, `meta.created eq "yesterday"`, `meta.created co "2026"`} {
		e, err := filter.Parse(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := schema.UserType.CanonicalFilter(e); err == nil {
			t.Errorf("schema accepts %s", bad)
		}
		_, err = db.List(ctx, tn.ID, store.UserKind, store.Query{Filter: e, Count: 100})
		mustCode(t, err, store.Invalid)
	}
}

func derefs(rs []*store.Resource) []store.Resource {
	out := make([]store.Resource, len(rs))
	for i, r := range rs {
		out[i] = *r
	}
	return out
}

func ids(rs []store.Resource) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.ID)
	}
	slices.Sort(out)
	return out
}

func testPaging(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	var all []string
	write(t, db, func(tx *store.Tx) error {
		for i := range 25 {
			u := user(fmt.Sprintf("user%02d", i), "title", []string{"a", "b"}[i%2])
			if err := tx.Insert(tn.ID, u); err != nil {
				return err
			}
			all = append(all, u.ID)
		}
		return nil
	})
	var seen []string
	for start := 1; start <= 25; start += 10 {
		page, err := db.List(ctx, tn.ID, store.UserKind, store.Query{StartIndex: start, Count: 10})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != 25 {
			t.Fatalf("total %d", page.Total)
		}
		for _, r := range page.Resources {
			seen = append(seen, r.ID)
		}
	}
	if !slices.Equal(seen, all) {
		t.Fatalf("paging did not return every user once, in creation order:\n%v\n%v", seen, all)
	}
	q := query(t, schema.UserType, `title eq "a"`)
	q.Count = 0
	page, err := db.List(ctx, tn.ID, store.UserKind, q)
	if err != nil || page.Total != 13 || len(page.Resources) != 0 {
		t.Fatalf("count-only page: %d %d %v", page.Total, len(page.Resources), err)
	}
	q.Count, q.StartIndex = 5, 12
	page, _ = db.List(ctx, tn.ID, store.UserKind, q)
	if page.Total != 13 || len(page.Resources) != 2 {
		t.Fatalf("last page: total %d, %d resources", page.Total, len(page.Resources))
	}
}

func testIsolation(t *testing.T, db *store.DB) {
	a := newTenant(t, db, "acme")
	b := newTenant(t, db, "globex")
	ua, ga := user("shared@example.com", "title", "x"), group("Shared")
	insert(t, db, a.ID, ua, ga)
	write(t, db, func(tx *store.Tx) error { _, err := tx.AddMembers(a.ID, ga.ID, []string{ua.ID}); return err })

	_, err := db.Get(ctx, b.ID, store.UserKind, ua.ID)
	mustCode(t, err, store.NotFound)
	for _, f := range []string{`userName eq "shared@example.com"`, `title eq "x"`, fmt.Sprintf(`id eq "%s"`, ua.ID)} {
		if page, _ := db.List(ctx, b.ID, store.UserKind, query(t, schema.UserType, f)); page.Total != 0 {
			t.Fatalf("tenant B sees A's user through %s", f)
		}
	}
	if page, _ := db.List(ctx, b.ID, store.GroupKind, store.Query{Count: 10}); page.Total != 0 {
		t.Fatal("tenant B lists A's group")
	}
	if ms, _ := db.Members(ctx, b.ID, ga.ID); len(ms) != 0 {
		t.Fatal("tenant B reads A's members")
	}
	// B can neither change A's objects nor reference them.
	gb, ub := group("B's group"), user("b@example.com")
	insert(t, db, b.ID, gb, ub)
	err = db.Write(ctx, func(tx *store.Tx) error { _, err := tx.AddMembers(b.ID, gb.ID, []string{ua.ID}); return err })
	mustCode(t, err, store.Invalid)
	err = db.Write(ctx, func(tx *store.Tx) error { _, err := tx.AddMembers(b.ID, ga.ID, []string{ub.ID}); return err })
	mustCode(t, err, store.NotFound)
	err = db.Write(ctx, func(tx *store.Tx) error { return tx.Delete(b.ID, store.UserKind, ua.ID) })
	mustCode(t, err, store.NotFound)
	hijack := &store.Resource{Kind: store.UserKind, ID: ua.ID, Doc: map[string]any{"userName": "hijacked"}}
	err = db.Write(ctx, func(tx *store.Tx) error { _, _, err := tx.Update(b.ID, hijack, 0); return err })
	mustCode(t, err, store.NotFound)
	if got, _ := db.Get(ctx, a.ID, store.UserKind, ua.ID); got.Str("userName") != "shared@example.com" {
		t.Fatalf("tenant B changed A's user: %+v", got)
	}
	if got := memberIDs(t, db, a.ID, ga.ID); !slices.Equal(got, []string{ua.ID}) {
		t.Fatalf("A's members changed: %v", got)
	}
}

func testRollback(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	g := group("g")
	insert(t, db, tn.ID, g)
	boom := errors.New("boom")
	err := db.Write(ctx, func(tx *store.Tx) error {
		u := user("ghost", "title", "ghostly")
		if err := tx.Insert(tn.ID, u); err != nil {
			return err
		}
		if _, err := tx.AddMembers(tn.ID, g.ID, []string{u.ID}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write returned %v", err)
	}
	if page, _ := db.List(ctx, tn.ID, store.UserKind, query(t, schema.UserType, `title eq "ghostly"`)); page.Total != 0 {
		t.Fatal("a rolled-back insert left index rows")
	}
	if page, _ := db.List(ctx, tn.ID, store.UserKind, store.Query{Count: 10}); page.Total != 0 {
		t.Fatal("a rolled-back insert left a user")
	}
	if got := memberIDs(t, db, tn.ID, g.ID); len(got) != 0 {
		t.Fatal("a rolled-back membership stayed")
	}
	if got, _ := db.Get(ctx, tn.ID, store.GroupKind, g.ID); got.Version != 1 {
		t.Fatalf("a rolled-back change bumped the group to version %d", got.Version)
	}
}

func testConcurrentWrites(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	g := group("g")
	insert(t, db, tn.ID, g)
	const workers, each = 8, 20
	var wg gosync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				err := db.Write(ctx, func(tx *store.Tx) error {
					u := user(fmt.Sprintf("w%d-%d", w, i))
					if err := tx.Insert(tn.ID, u); err != nil {
						return err
					}
					_, err := tx.AddMembers(tn.ID, g.ID, []string{u.ID})
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := memberIDs(t, db, tn.ID, g.ID); len(got) != workers*each {
		t.Fatalf("%d members, want %d", len(got), workers*each)
	}
}

func testFirstStart(t *testing.T, db *store.DB) {
	var first, second bool
	write(t, db, func(tx *store.Tx) error { var err error; first, err = tx.FirstStart(); return err })
	write(t, db, func(tx *store.Tx) error { var err error; second, err = tx.FirstStart(); return err })
	if !first || second {
		t.Fatalf("FirstStart: %v then %v", first, second)
	}
}

func testLinking(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	const oid = "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
	byExt := user("pushed@contoso.com", "externalId", strings.ToUpper(oid))
	byName := user("Upn@Contoso.com")
	linked := user("linked@contoso.com", "externalId", "11111111-1111-1111-1111-111111111111")
	linked.EntraID = "22222222-2222-2222-2222-222222222222"
	g := group("Sales")
	g.Doc["externalId"] = oid
	insert(t, db, tn.ID, byExt, byName, linked, g)
	// One call matches a page's users: by externalId first, else by
	// userName; a user already linked to another Entra object is never
	// taken, and an unknown one is left out.
	const byNameOID, linkedOID = "33333333-3333-3333-3333-333333333333", "11111111-1111-1111-1111-111111111111"
	found, err := db.FindUsersForEntra(ctx, tn.ID, []store.EntraUser{{ObjectID: strings.ToUpper(oid), UPN: "someone@contoso.com"},
		{ObjectID: byNameOID, UPN: "upn@contoso.COM"}, {ObjectID: linkedOID, UPN: "linked@contoso.com"},
		{ObjectID: "44444444-4444-4444-4444-444444444444", UPN: "nobody@contoso.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || found[oid].ID != byExt.ID || found[byNameOID].ID != byName.ID {
		t.Fatalf("users matched: %+v", found)
	}
	groups, err := db.FindGroupsForEntra(ctx, tn.ID, []string{oid, byNameOID})
	if err != nil || len(groups) != 1 || groups[oid].ID != g.ID {
		t.Fatalf("groups matched by externalId: %+v %v", groups, err)
	}
}

func testScope(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	top, mid, leaf, other := group("top"), group("mid"), group("leaf"), group("other")
	for _, g := range []*store.Resource{top, mid, leaf, other} {
		g.EntraID = store.NewID()
	}
	inTop, inLeaf, inOther, nowhere := user("a"), user("b"), user("c"), user("d")
	for _, u := range []*store.Resource{inTop, inLeaf, inOther, nowhere} {
		u.EntraID = store.NewID()
	}
	inactive := user("e", "active", false)
	inactive.EntraID = store.NewID()
	pushed := user("f") // SCIM only: never the pull's to deprovision
	insert(t, db, tn.ID, top, mid, leaf, other, inTop, inLeaf, inOther, nowhere, inactive, pushed)
	write(t, db, func(tx *store.Tx) error {
		for _, m := range []struct{ g, ids []string }{
			{[]string{top.ID}, []string{mid.ID, inTop.ID}},
			{[]string{mid.ID}, []string{leaf.ID}},
			{[]string{leaf.ID}, []string{inLeaf.ID, top.ID}}, // a cycle
			{[]string{other.ID}, []string{inOther.ID}},
		} {
			if _, err := tx.AddMembers(tn.ID, m.g[0], m.ids); err != nil {
				return err
			}
		}
		return nil
	})
	direct, _ := db.ScopeGroups(ctx, tn.ID, []string{top.ID}, false)
	nested, err := db.ScopeGroups(ctx, tn.ID, []string{top.ID}, true)
	if err != nil || !slices.Equal(direct, []string{top.ID}) || !slices.Equal(nested, sorted(top.ID, mid.ID, leaf.ID)) {
		t.Fatalf("scope: direct %v, nested %v, %v", direct, nested, err)
	}
	outside, err := db.PulledUsersOutside(ctx, tn.ID, nested, true)
	if err != nil || len(outside) != 2 || !slices.Contains(ids(outside), inOther.ID) || !slices.Contains(ids(outside), nowhere.ID) {
		t.Fatalf("active users outside: %v %v", ids(outside), err)
	}
	if all, _ := db.PulledUsersOutside(ctx, tn.ID, nested, false); len(all) != 3 {
		t.Fatalf("all users outside: %v", ids(all))
	}
	groups, err := db.PulledGroupsOutside(ctx, tn.ID, nested)
	if err != nil || !slices.Equal(groups, []string{other.ID}) {
		t.Fatalf("groups outside: %v %v", groups, err)
	}
	member, err := db.MembersOfAny(ctx, tn.ID, []string{inTop.ID, inLeaf.ID, inOther.ID}, nested)
	if err != nil || !member[inTop.ID] || !member[inLeaf.ID] || member[inOther.ID] {
		t.Fatalf("MembersOfAny: %v %v", member, err)
	}
	pairs, err := db.MembershipPairs(ctx, tn.ID, []string{top.ID, other.ID}, []string{inTop.ID, inOther.ID, mid.ID})
	if err != nil || len(pairs) != 3 || !pairs[[2]string{top.ID, mid.ID}] || pairs[[2]string{top.ID, inOther.ID}] {
		t.Fatalf("MembershipPairs: %v %v", pairs, err)
	}
	if n, err := db.CountPulledUsers(ctx, tn.ID); err != nil || n != 4 {
		t.Fatalf("CountPulledUsers = %d, %v", n, err)
	}
}

func testMarks(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	g := group("g")
	a, b, c := user("a"), user("b"), user("c")
	insert(t, db, tn.ID, g, a, b, c)
	write(t, db, func(tx *store.Tx) error { _, err := tx.AddMembers(tn.ID, g.ID, []string{a.ID, b.ID, c.ID}); return err })
	var removed int
	write(t, db, func(tx *store.Tx) error {
		if err := tx.MarkSeen(tn.ID, g.ID, []string{a.ID, c.ID}, 7); err != nil {
			return err
		}
		var err error
		removed, err = tx.SweepUnseen(tn.ID, g.ID, 7)
		return err
	})
	if got := memberIDs(t, db, tn.ID, g.ID); removed != 1 || !slices.Equal(got, sorted(a.ID, c.ID)) {
		t.Fatalf("sweep removed %d, left %v", removed, got)
	}
}

var (
	testKey  = []byte("0123456789abcdef0123456789abcdef")
	wrongKey = []byte("fedcba9876543210fedcba9876543210")
)

func connection(tenant, secret string) store.GraphConnection {
	return store.GraphConnection{Tenant: tenant, AzureTenantID: "t", ClientID: "c", Credential: "secret", Secret: []byte(secret),
		Groups: []string{"g1", "g2"}, Schedule: "@every 40m", Deprovision: "deactivate", ThresholdPercent: 20,
		AuthorityHost: "https://login.microsoftonline.com/", GraphURL: "https://graph.microsoft.com"}
}

func testGraphConnections(t *testing.T, db *store.DB) {
	newTenant(t, db, "acme")
	c := connection("acme", "s3cr3t")
	err := db.Write(ctx, func(tx *store.Tx) error { return tx.SaveGraphConnection(c, nil) })
	mustCode(t, err, store.Unavailable) // no key, no secret stored
	if !strings.Contains(err.Error(), "ENTRASYNC_SECRET_KEY") {
		t.Fatalf("saving without a key: %v", err)
	}
	noSecret := c
	noSecret.Secret = nil
	err = db.Write(ctx, func(tx *store.Tx) error { return tx.SaveGraphConnection(noSecret, testKey) })
	mustCode(t, err, store.Invalid)
	write(t, db, func(tx *store.Tx) error { return tx.SaveGraphConnection(c, testKey) })
	got, err := db.OpenGraphConnection(ctx, "acme", testKey)
	if err != nil || string(got.Secret) != "s3cr3t" || !slices.Equal(got.Groups, c.Groups) || got.ThresholdPercent != 20 {
		t.Fatalf("OpenGraphConnection = %+v, %v", got, err)
	}
	if sealed, err := db.GraphConnection(ctx, "acme"); err != nil || sealed.Secret != nil || sealed.ClientID != "c" {
		t.Fatalf("GraphConnection = %+v, %v; want it sealed", sealed, err)
	}
	for _, key := range [][]byte{nil, wrongKey} {
		_, err = db.OpenGraphConnection(ctx, "acme", key)
		mustCode(t, err, store.Unavailable)
		if !strings.Contains(err.Error(), "ENTRASYNC_SECRET_KEY") || !strings.Contains(err.Error(), "entrasync tenant graph acme") ||
			strings.Contains(err.Error(), "s3cr3t") {
			t.Fatalf("opening with key %q: %v", key, err)
		}
	}
	c.Schedule, c.ThresholdPercent, c.ThresholdCount = "@hourly", 0, 50
	write(t, db, func(tx *store.Tx) error { return tx.SaveGraphConnection(c, testKey) })
	list, err := db.GraphConnections(ctx)
	if err != nil || len(list) != 1 || list[0].Schedule != "@hourly" || list[0].ThresholdCount != 50 || list[0].Secret != nil {
		t.Fatalf("GraphConnections = %+v, %v", list, err)
	}
	newTenant(t, db, "bare")
	_, err = db.OpenGraphConnection(ctx, "bare", testKey)
	mustCode(t, err, store.NotFound)
	_, err = db.GraphConnection(ctx, "nobody")
	mustCode(t, err, store.NotFound)
}

// testSecretKeys: the key check tells which credentials a key opens; a
// credential is replaced or removed without opening it; Rekey moves them
// all to a new key, or none.
func testSecretKeys(t *testing.T, db *store.DB) {
	for _, n := range []string{"acme", "globex", "initech"} {
		newTenant(t, db, n)
	}
	write(t, db, func(tx *store.Tx) error {
		for _, n := range []string{"acme", "globex"} {
			if err := tx.SaveGraphConnection(connection(n, n+"-secret"), testKey); err != nil {
				return err
			}
		}
		return tx.SaveGraphConnection(connection("initech", "initech-secret"), wrongKey)
	})
	unopenable := func(key []byte, want ...string) {
		t.Helper()
		got, err := db.UnopenableConnections(ctx, key)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("UnopenableConnections(%q) = %v, %v; want %v", key, got, err, want)
		}
	}
	unopenable(testKey, "initech")
	unopenable(wrongKey, "acme", "globex")
	unopenable(nil, "acme", "globex", "initech")

	// Replaced with the configured key: no need to open the old one.
	write(t, db, func(tx *store.Tx) error { return tx.SaveGraphConnection(connection("initech", "new-secret"), testKey) })
	unopenable(testKey)
	if c, err := db.OpenGraphConnection(ctx, "initech", testKey); err != nil || string(c.Secret) != "new-secret" {
		t.Fatalf("replaced credential: %+v %v", c, err)
	}

	// Rekey: all or nothing.
	newKey := []byte("another key, thirty-two bytes!!!")
	write(t, db, func(tx *store.Tx) error {
		return tx.SaveGraphConnection(connection("globex", "globex-secret"), wrongKey)
	})
	err := db.Write(ctx, func(tx *store.Tx) error { _, err := tx.Rekey(testKey, newKey); return err })
	mustCode(t, err, store.Unavailable)
	if !strings.Contains(err.Error(), "globex") || strings.Contains(err.Error(), "acme") {
		t.Fatalf("rekey with a credential the old key does not open: %v", err)
	}
	unopenable(newKey, "acme", "globex", "initech") // nothing moved
	write(t, db, func(tx *store.Tx) error {
		return tx.SaveGraphConnection(connection("globex", "globex-secret"), testKey)
	})
	rekey := func(old []byte, want int) {
		t.Helper()
		var n int
		write(t, db, func(tx *store.Tx) error { var err error; n, err = tx.Rekey(old, newKey); return err })
		if n != want {
			t.Fatalf("Rekey re-sealed %d, want %d", n, want)
		}
	}
	rekey(testKey, 3)
	rekey(testKey, 0) // a second rekey finds them done
	unopenable(newKey)
	unopenable(testKey, "acme", "globex", "initech")
	for _, n := range []string{"acme", "globex"} {
		if c, err := db.OpenGraphConnection(ctx, n, newKey); err != nil || string(c.Secret) != n+"-secret" {
			t.Fatalf("%s after rekey: %+v %v", n, c, err)
		}
	}

	// Removing a connection drops its delta links, not its people.
	acme, _ := db.Tenant(ctx, "acme")
	insert(t, db, acme.ID, user("alice"))
	write(t, db, func(tx *store.Tx) error { return tx.SaveDeltaLink(acme.ID, "users", "https://graph/x") })
	write(t, db, func(tx *store.Tx) error { return tx.RemoveGraphConnection("acme") })
	_, err = db.GraphConnection(ctx, "acme")
	mustCode(t, err, store.NotFound)
	if link, _, _ := db.LoadDeltaLink(ctx, acme.ID, "users"); link != "" {
		t.Fatal("a removed connection's delta link stayed")
	}
	if list, _ := db.Tenants(ctx); list[0].Name != "acme" || list[0].Users != 1 {
		t.Fatalf("tenants after removing a connection: %+v", list)
	}
	err = db.Write(ctx, func(tx *store.Tx) error { return tx.RemoveGraphConnection("acme") })
	mustCode(t, err, store.NotFound)
}

func testRuns(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	var first, second store.Run
	write(t, db, func(tx *store.Tx) error { var err error; first, err = tx.StartRun(tn, "cli", "full"); return err })
	if r, ok, _ := db.RunningRun(ctx, "acme"); !ok || r.ID != first.ID {
		t.Fatal("no running run")
	}
	// A new run finds the first still marked running: its process died.
	write(t, db, func(tx *store.Tx) error {
		var err error
		second, err = tx.StartRun(tn, "schedule", "delta")
		return err
	})
	got, err := db.Run(ctx, "acme", first.ID)
	if err != nil || got.Status != store.RunFailed || !strings.Contains(got.Error, "interrupted") || got.FinishedAt == nil {
		t.Fatalf("interrupted run: %+v %v", got, err)
	}
	second.Status, second.Pages, second.Changes = store.RunSucceeded, 3, []byte(`{"usersCreated":2}`)
	write(t, db, func(tx *store.Tx) error { return tx.FinishRun(second) })
	runs, err := db.Runs(ctx, "acme", 10)
	if err != nil || len(runs) != 2 || runs[0].ID != second.ID || runs[0].Status != store.RunSucceeded || runs[0].Pages != 3 ||
		string(runs[0].Changes) != `{"usersCreated":2}` || runs[0].Trigger != "schedule" {
		t.Fatalf("Runs = %+v, %v", runs, err)
	}
	_, err = db.Run(ctx, "acme", 999)
	mustCode(t, err, store.NotFound)
}

func testLinksAndLeases(t *testing.T, db *store.DB) {
	tn := newTenant(t, db, "acme")
	write(t, db, func(tx *store.Tx) error {
		for _, k := range []string{"a", "b", "c"} {
			if err := tx.SaveDeltaLink(tn.ID, k, "https://graph/"+k); err != nil {
				return err
			}
		}
		return tx.ForgetDeltaLinks(tn.ID, []string{"a", "c"})
	})
	if link, saved, err := db.LoadDeltaLink(ctx, tn.ID, "a"); err != nil || link != "https://graph/a" || saved.IsZero() {
		t.Fatalf("link a: %q %v %v", link, saved, err)
	}
	if link, _, _ := db.LoadDeltaLink(ctx, tn.ID, "b"); link != "" {
		t.Fatal("a forgotten link came back")
	}
	take := func(holder string, ttl time.Duration) bool {
		var ok bool
		write(t, db, func(tx *store.Tx) error { var err error; ok, err = tx.AcquireLease("run:1", holder, ttl); return err })
		return ok
	}
	if !take("one", time.Hour) || take("two", time.Hour) || !take("one", time.Hour) {
		t.Fatal("a held lease was taken, or its holder could not renew it")
	}
	write(t, db, func(tx *store.Tx) error { return tx.ReleaseLease("run:1", "two") }) // not two's to release
	if take("two", time.Hour) {
		t.Fatal("a lease was released by someone who did not hold it")
	}
	write(t, db, func(tx *store.Tx) error { return tx.ReleaseLease("run:1", "one") })
	if !take("two", -time.Second) || !take("three", time.Hour) {
		t.Fatal("a released or expired lease could not be taken")
	}
}

func testOpsKeys(t *testing.T, db *store.DB) {
	newTenant(t, db, "acme")
	newTenant(t, db, "globex")
	create := func(name string, role store.OpsRole, tenants ...string) (store.OpsKey, string, error) {
		var k store.OpsKey
		var secret string
		err := db.Write(ctx, func(tx *store.Tx) error {
			var err error
			k, secret, err = tx.CreateOpsKey(name, role, tenants)
			return err
		})
		return k, secret, err
	}
	_, secret, err := create("ci", store.OpsAdmin)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = create("ci", store.OpsRead)
	mustCode(t, err, store.Conflict)
	_, _, err = create("bad", "owner")
	mustCode(t, err, store.Invalid)
	_, _, err = create("ghost", store.OpsRead, "nobody")
	mustCode(t, err, store.NotFound)
	if k, err := db.AuthenticateOps(ctx, secret); err != nil || k.Name != "ci" || k.Role != store.OpsAdmin || !k.AllTenants() || !k.Covers("acme") {
		t.Fatalf("AuthenticateOps = %+v, %v", k, err)
	}
	scoped, scopedSecret, err := create("deployer", store.OpsSync, "globex", "acme", "acme")
	if err != nil || !slices.Equal(scoped.Tenants, []string{"acme", "globex"}) {
		t.Fatalf("scoped key: %+v %v", scoped, err)
	}
	k, err := db.AuthenticateOps(ctx, scopedSecret)
	if err != nil || k.Role != store.OpsSync || !slices.Equal(k.Tenants, []string{"acme", "globex"}) || k.Covers("initech") {
		t.Fatalf("AuthenticateOps(scoped) = %+v, %v", k, err)
	}
	// A deleted tenant leaves the scope; the key covers no more than before,
	// also not a new tenant of the same name.
	write(t, db, func(tx *store.Tx) error { return tx.DeleteTenant("globex") })
	newTenant(t, db, "globex")
	if k, _ := db.AuthenticateOps(ctx, scopedSecret); !slices.Equal(k.Tenants, []string{"acme"}) {
		t.Fatalf("scope after deleting a tenant: %v", k.Tenants)
	}
	write(t, db, func(tx *store.Tx) error { return tx.DeleteTenant("acme") })
	if k, _ := db.AuthenticateOps(ctx, scopedSecret); k.AllTenants() || k.Covers("acme") || len(k.Tenants) != 0 {
		t.Fatalf("a key whose tenants are all gone: %+v", k)
	}
	write(t, db, func(tx *store.Tx) error { return tx.RevokeOpsKey("ci") })
	_, err = db.AuthenticateOps(ctx, secret)
	mustCode(t, err, store.NotFound)
	if _, _, err := create("ci", store.OpsRead); err != nil { // the name is free again
		t.Fatal(err)
	}
	keys, _ := db.OpsKeys(ctx)
	if len(keys) != 3 || keys[0].Name != "ci" || keys[0].Role != store.OpsRead || keys[1].Name != "ci (revoked "+keys[1].ID+")" {
		t.Fatalf("OpsKeys = %+v", keys)
	}
}
