package sync

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/store"
)

// ---- Diff on hand-built pages and state ----

// Entra users of the fixtures. Local ids start with L- (users) and G-
// (groups); ids Diff makes come from seqIDs: N1, N2, ...
func alice() graph.User {
	return graph.User{ID: "e-alice", UserPrincipalName: "alice@contoso.example", DisplayName: "Alice Adams", GivenName: "Alice",
		Surname: "Adams", Mail: "alice@contoso.example", AccountEnabled: new(true), JobTitle: "Analyst"}
}

func bob() graph.User {
	return graph.User{ID: "e-bob", UserPrincipalName: "bob@contoso.example", DisplayName: "Bob Baker", GivenName: "Bob",
		Surname: "Baker", Mail: "bob@contoso.example", AccountEnabled: new(true), JobTitle: "Engineer"}
}

func carol() graph.User {
	return graph.User{ID: "e-carol", UserPrincipalName: "carol@contoso.example", DisplayName: "Carol Cole", AccountEnabled: new(true), Department: "Ops"}
}

func dave() graph.User {
	return graph.User{ID: "e-dave", UserPrincipalName: "dave@contoso.example", DisplayName: "Dave Dunn", AccountEnabled: new(true)}
}

func linkedUser(id string, version int64, u graph.User, active bool) store.Resource {
	doc := UserDoc(nil, u)
	doc["active"] = active
	return store.Resource{Kind: store.UserKind, ID: id, EntraID: u.ID, Version: version, Doc: doc}
}

func linkedGroup(id, entraID, name string, version int64) store.Resource {
	return store.Resource{Kind: store.GroupKind, ID: id, EntraID: entraID, Version: version,
		Doc: map[string]any{"displayName": name, "externalId": entraID}}
}

// diffState is the store before each case: Sales (bob) and Ops (carol,
// dave) are linked; dave is inactive.
func diffState() State {
	return State{
		Users: map[string]store.Resource{
			"e-bob":   linkedUser("L-bob", 2, bob(), true),
			"e-carol": linkedUser("L-carol", 4, carol(), true),
			"e-dave":  linkedUser("L-dave", 5, dave(), false),
		},
		Groups: map[string]store.Resource{
			"g-sales": linkedGroup("G-sales", "g-sales", "Sales", 3),
			"g-ops":   linkedGroup("G-ops", "g-ops", "Ops", 7),
		},
		UserMatches:  map[string]store.Resource{},
		GroupMatches: map[string]store.Resource{},
		InScope:      map[string]bool{"L-bob": true, "L-carol": true, "L-dave": true},
		Members: map[[2]string]bool{
			{"G-sales", "L-bob"}: true, {"G-ops", "L-carol"}: true, {"G-ops", "L-dave"}: true,
		},
	}
}

func seqIDs() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("N%d", n) }
}

// planLines renders a plan one change a line, deprovisions last.
func planLines(p Plan) []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, changeLine(c))
	}
	for _, d := range p.Deprovision {
		l := "deprovision " + d.UserID
		if d.Delete {
			l += " delete"
		}
		if d.Disable {
			l += " disable"
		}
		out = append(out, l)
	}
	return out
}

func changeLine(c Change) string {
	switch c.Op {
	case Create:
		return fmt.Sprintf("create %s %s entra=%s", c.Resource.Kind, c.Resource.ID, c.Resource.EntraID)
	case Update:
		return fmt.Sprintf("update %s %s if=v%d entra=%s", c.Resource.Kind, c.Resource.ID, c.IfVersion, c.Resource.EntraID)
	case Delete:
		return fmt.Sprintf("delete %s %s", c.Kind, c.ID)
	case MarkSeen, SweepMembers:
		return fmt.Sprintf("%s %s %v mark=%d", c.Op, c.ID, c.Members, c.Mark)
	case LeaveGroups:
		return fmt.Sprintf("%s %s", c.Op, c.ID)
	default:
		return fmt.Sprintf("%s %s %v", c.Op, c.ID, c.Members)
	}
}

func changeLines(cs ChangeSet) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(changeLine(c) + "\n")
	}
	return b.String()
}

// resourceOf returns the document a plan gives resource id.
func resourceOf(t *testing.T, p Plan, id string) map[string]any {
	t.Helper()
	for _, c := range p.Changes {
		if c.Resource != nil && c.Resource.ID == id {
			return c.Resource.Doc
		}
	}
	t.Fatalf("no create or update of %s in %v", id, planLines(p))
	return nil
}

func docJSON(doc map[string]any) string {
	b, _ := json.Marshal(doc)
	return string(b)
}

func joins(group string, ids ...string) graph.Group {
	g := graph.Group{ID: group}
	for _, id := range ids {
		g.Members = append(g.Members, graph.MemberChange{ID: id})
	}
	return g
}

func leaves(group string, ids ...string) graph.Group {
	g := graph.Group{ID: group}
	for _, id := range ids {
		g.Members = append(g.Members, graph.MemberChange{ID: id, Removed: true})
	}
	return g
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name  string
		page  Page
		state func(*State) // changes to diffState, if any
		want  []string
		check func(t *testing.T, p Plan)
	}{
		{name: "Marketing is new",
			page: Page{Groups: []graph.Group{{ID: "g-mkt", DisplayName: "Marketing"}}},
			want: []string{"create Group N1 entra=g-mkt"},
			check: func(t *testing.T, p Plan) {
				if got := docJSON(resourceOf(t, p, "N1")); got != `{"displayName":"Marketing","externalId":"g-mkt"}` {
					t.Errorf("doc %s", got)
				}
			}},
		{name: "a nameless group (a nested stub) is named by its id",
			page: Page{Groups: []graph.Group{{ID: "g-mkt"}}},
			want: []string{"create Group N1 entra=g-mkt"},
			check: func(t *testing.T, p Plan) {
				if got := resourceOf(t, p, "N1")["displayName"]; got != "g-mkt" {
					t.Errorf("displayName %v", got)
				}
			}},
		{name: "Sales renamed",
			page: Page{Groups: []graph.Group{{ID: "g-sales", DisplayName: "Sales & Marketing"}}},
			want: []string{"update Group G-sales if=v3 entra=g-sales"},
			check: func(t *testing.T, p Plan) {
				if got := docJSON(resourceOf(t, p, "G-sales")); got != `{"displayName":"Sales \u0026 Marketing","externalId":"g-sales"}` {
					t.Errorf("doc %s", got)
				}
			}},
		{name: "Sales unchanged",
			page: Page{Groups: []graph.Group{{ID: "g-sales", DisplayName: "Sales"}}}},
		{name: "a later item of Sales without its name keeps the name",
			page: Page{Groups: []graph.Group{{ID: "g-sales"}}}},
		{name: "Ops deleted",
			page: Page{Groups: []graph.Group{{ID: "g-ops", Removed: "deleted"}}},
			want: []string{"delete Group G-ops"}},
		{name: "Ops soft-deleted: deleted here as well (a restore brings it back as new)",
			page: Page{Groups: []graph.Group{{ID: "g-ops", Removed: "changed", Members: []graph.MemberChange{{ID: "e-bob"}}}}},
			want: []string{"delete Group G-ops"}},
		{name: "an unknown group removed",
			page: Page{Groups: []graph.Group{{ID: "g-gone", Removed: "deleted"}, {ID: "g-gone2", Removed: "changed"}}}},
		{name: "a group pushed over SCIM is linked by externalId, not created",
			page: Page{Groups: []graph.Group{joins("g-pushed", "e-bob")}},
			state: func(st *State) {
				st.GroupMatches["g-pushed"] = store.Resource{Kind: store.GroupKind, ID: "G-pushed", Version: 4,
					Doc: map[string]any{"displayName": "Pushed", "externalId": "g-pushed"}}
			},
			want: []string{"update Group G-pushed if=v4 entra=g-pushed", "addMembers G-pushed [L-bob]"}},
		{name: "alice joins Sales: created and added in one plan",
			page: Page{Groups: []graph.Group{joins("g-sales", "e-alice")}, Fetched: []graph.User{alice()}},
			want: []string{"create User N1 entra=e-alice", "addMembers G-sales [N1]"},
			check: func(t *testing.T, p Plan) {
				doc := resourceOf(t, p, "N1")
				if doc["active"] != true || doc["userName"] != "alice@contoso.example" || doc["externalId"] != "e-alice" {
					t.Errorf("doc %s", docJSON(doc))
				}
			}},
		{name: "alice joins Sales disabled: created inactive, nothing to deprovision",
			page: Page{Groups: []graph.Group{joins("g-sales", "e-alice")},
				Fetched: []graph.User{func() graph.User { u := alice(); u.AccountEnabled = new(false); return u }()}},
			want: []string{"create User N1 entra=e-alice", "addMembers G-sales [N1]"},
			check: func(t *testing.T, p Plan) {
				if doc := resourceOf(t, p, "N1"); doc["active"] != false {
					t.Errorf("doc %s", docJSON(doc))
				}
			}},
		{name: "a new Sales group with alice: group and user created before the membership",
			page: Page{Groups: []graph.Group{joins("g-new", "e-alice", "e-bob")}, Fetched: []graph.User{alice()}},
			want: []string{"create Group N1 entra=g-new", "create User N2 entra=e-alice", "addMembers N1 [N2 L-bob]"}},
		{name: "a ghost joins Sales: neither known nor fetched",
			page: Page{Groups: []graph.Group{joins("g-sales", "e-ghost")}}},
		{name: "carol leaves Ops",
			page: Page{Groups: []graph.Group{leaves("g-ops", "e-carol")}},
			want: []string{"removeMembers G-ops [L-carol]"}},
		{name: "bob leaves Ops, where he never was",
			page: Page{Groups: []graph.Group{leaves("g-ops", "e-bob", "e-ghost")}}},
		{name: "bob joins Sales again (a replay)",
			page: Page{Groups: []graph.Group{joins("g-sales", "e-bob")}}},
		{name: "Ops split over items: members merge, the name stays",
			page: Page{Groups: []graph.Group{
				{ID: "g-ops", DisplayName: "Operations", Members: []graph.MemberChange{{ID: "e-alice"}}},
				joins("g-sales", "e-bob"),
				{ID: "g-ops", Members: []graph.MemberChange{{ID: "e-bob"}, {ID: "e-carol", Removed: true}}},
			}, Fetched: []graph.User{alice()}},
			want: []string{"update Group G-ops if=v7 entra=g-ops", "create User N1 entra=e-alice",
				"addMembers G-ops [N1 L-bob]", "removeMembers G-ops [L-carol]"}},
		{name: "the last change of a member wins",
			page: Page{Groups: []graph.Group{
				{ID: "g-ops", Members: []graph.MemberChange{{ID: "e-carol"}, {ID: "e-bob"}}},
				{ID: "g-ops", Members: []graph.MemberChange{{ID: "e-carol", Removed: true}, {ID: "e-dave", Removed: true}, {ID: "e-dave"}}},
			}},
			want: []string{"addMembers G-ops [L-bob]", "removeMembers G-ops [L-carol]"}},
		{name: "alice added then removed in one page: not created",
			page: Page{Groups: []graph.Group{{ID: "g-sales", Members: []graph.MemberChange{{ID: "e-alice"}, {ID: "e-alice", Removed: true}}}},
				Fetched: []graph.User{alice()}}},
		{name: "adds to a soft-deleted group create nobody",
			page: Page{Groups: []graph.Group{{ID: "g-ops", Removed: "changed", Members: []graph.MemberChange{{ID: "e-alice"}}}},
				Fetched: []graph.User{alice()}},
			want: []string{"delete Group G-ops"}},
		{name: "alice joins Ops, then Ops is deleted: nobody is created",
			page: Page{Groups: []graph.Group{joins("g-ops", "e-alice"), {ID: "g-ops", Removed: "deleted"}}, Fetched: []graph.User{alice()}},
			want: []string{"delete Group G-ops"}},
		{name: "a group deleted and restored in one page stays",
			page: Page{Groups: []graph.Group{{ID: "g-ops", Removed: "deleted"}, {ID: "g-ops", DisplayName: "Ops"}}}},
		{name: "carol gets a new title",
			page: Page{Users: []graph.User{func() graph.User { u := carol(); u.JobTitle = "Head of Ops"; return u }()}},
			want: []string{"update User L-carol if=v4 entra=e-carol"},
			check: func(t *testing.T, p Plan) {
				doc := resourceOf(t, p, "L-carol")
				if doc["title"] != "Head of Ops" || doc["active"] != true {
					t.Errorf("doc %s", docJSON(doc))
				}
			}},
		{name: "bob unchanged (a replay)",
			page: Page{Users: []graph.User{bob(), bob()}}},
		{name: "bob disabled: stays active, the guard decides",
			page: Page{Users: []graph.User{func() graph.User { u := bob(); u.AccountEnabled = new(false); return u }()}},
			want: []string{"deprovision L-bob disable"}},
		{name: "bob disabled and retitled: updated, still active",
			page: Page{Users: []graph.User{func() graph.User { u := bob(); u.AccountEnabled = new(false); u.JobTitle = "Lead"; return u }()}},
			want: []string{"update User L-bob if=v2 entra=e-bob", "deprovision L-bob disable"},
			check: func(t *testing.T, p Plan) {
				if doc := resourceOf(t, p, "L-bob"); doc["active"] != true || doc["title"] != "Lead" {
					t.Errorf("doc %s", docJSON(doc))
				}
			}},
		{name: "bob, no word on his account: left as he is",
			page: Page{Users: []graph.User{func() graph.User { u := bob(); u.AccountEnabled = nil; return u }()}}},
		{name: "dave enabled again, in scope: reactivated",
			page: Page{Users: []graph.User{dave()}},
			want: []string{"update User L-dave if=v5 entra=e-dave"},
			check: func(t *testing.T, p Plan) {
				if doc := resourceOf(t, p, "L-dave"); doc["active"] != true {
					t.Errorf("doc %s", docJSON(doc))
				}
			}},
		{name: "dave enabled again, out of scope: stays inactive",
			page:  Page{Users: []graph.User{dave()}},
			state: func(st *State) { delete(st.InScope, "L-dave") }},
		{name: "dave, out of scope, joins Sales enabled: reactivated and added",
			page:  Page{Groups: []graph.Group{joins("g-sales", "e-dave")}, Fetched: []graph.User{dave()}},
			state: func(st *State) { delete(st.InScope, "L-dave") },
			want:  []string{"update User L-dave if=v5 entra=e-dave", "addMembers G-sales [L-dave]"}},
		{name: "dave, disabled, joins Sales: added, stays inactive",
			page: Page{Groups: []graph.Group{joins("g-sales", "e-dave")},
				Fetched: []graph.User{func() graph.User { u := dave(); u.AccountEnabled = new(false); return u }()}},
			want: []string{"addMembers G-sales [L-dave]"}},
		{name: "carol soft-deleted: out of her groups, deprovisioned, not deleted",
			page: Page{Users: []graph.User{{ID: "e-carol", Removed: "changed"}}},
			want: []string{"leaveGroups L-carol", "deprovision L-carol"}},
		{name: "carol soft-deleted and, replayed, added to Sales: she joins nothing",
			page: Page{Groups: []graph.Group{joins("g-sales", "e-carol")}, Users: []graph.User{{ID: "e-carol", Removed: "changed"}}},
			want: []string{"leaveGroups L-carol", "deprovision L-carol"}},
		{name: "carol hard-deleted: deprovisioned for deletion",
			page: Page{Users: []graph.User{{ID: "e-carol", Removed: "deleted"}}},
			want: []string{"deprovision L-carol delete"}},
		{name: "users/delta reports a stranger: ignored",
			page: Page{Users: []graph.User{alice(), {ID: "e-zed", Removed: "deleted"}, {ID: "e-yan", Removed: "changed"}}}},
		{name: "a pushed user is linked when she joins",
			page: Page{Groups: []graph.Group{joins("g-sales", "e-alice")}, Fetched: []graph.User{alice()}},
			state: func(st *State) {
				st.UserMatches["e-alice"] = store.Resource{Kind: store.UserKind, ID: "L-pushed", Version: 1,
					Doc: map[string]any{"userName": "alice@contoso.example", "externalId": "e-alice", "nickName": "Al"}}
			},
			want: []string{"update User L-pushed if=v1 entra=e-alice", "addMembers G-sales [L-pushed]"},
			check: func(t *testing.T, p Plan) {
				if doc := resourceOf(t, p, "L-pushed"); doc["nickName"] != "Al" || doc["active"] != true || doc["title"] != "Analyst" {
					t.Errorf("doc %s", docJSON(doc))
				}
			}},
		{name: "a pushed user who joins nothing is not linked",
			page: Page{Users: []graph.User{alice()}, Fetched: []graph.User{alice()}},
			state: func(st *State) {
				st.UserMatches["e-alice"] = store.Resource{Kind: store.UserKind, ID: "L-pushed", Version: 1,
					Doc: map[string]any{"userName": "alice@contoso.example"}}
			}},
		{name: "users/delta has the last word over a lookup",
			page: Page{Groups: []graph.Group{joins("g-sales", "e-alice")}, Fetched: []graph.User{alice()},
				Users: []graph.User{func() graph.User { u := alice(); u.JobTitle = "Lead"; return u }()}},
			want: []string{"create User N1 entra=e-alice", "addMembers G-sales [N1]"},
			check: func(t *testing.T, p Plan) {
				if doc := resourceOf(t, p, "N1"); doc["title"] != "Lead" {
					t.Errorf("doc %s", docJSON(doc))
				}
			}},
		{name: "a full pass marks every member it sees, old and new",
			page: Page{Groups: []graph.Group{{ID: "g-sales", Members: []graph.MemberChange{
				{ID: "e-bob"}, {ID: "e-alice"}, {ID: "e-carol", Removed: true}, {ID: "e-ghost"}}}}, Fetched: []graph.User{alice()}},
			state: func(st *State) { st.Mark = 42 },
			want:  []string{"create User N1 entra=e-alice", "addMembers G-sales [N1]", "markSeen G-sales [L-bob N1] mark=42"}},
		{name: "a delta pass marks nothing",
			page: Page{Groups: []graph.Group{joins("g-sales", "e-bob")}}},
		{name: "nested groups are ignored unless expanded",
			page: Page{Groups: []graph.Group{{ID: "g-sales", Members: []graph.MemberChange{
				{ID: "g-ops", Group: true}, {ID: "g-sales", Group: true, Removed: true}}}}}},
		{name: "nested groups expanded: Ops joins Sales, Sales never joins itself",
			page: Page{Groups: []graph.Group{{ID: "g-sales", Members: []graph.MemberChange{
				{ID: "g-ops", Group: true}, {ID: "g-sales", Group: true}, {ID: "g-unknown", Group: true}}}}},
			state: func(st *State) { st.Nested = true; st.Mark = 9 },
			want:  []string{"addMembers G-sales [G-ops]", "markSeen G-sales [G-ops] mark=9"}},
		{name: "nested groups expanded: a stub group is created before it joins",
			page:  Page{Groups: []graph.Group{{ID: "g-sales", Members: []graph.MemberChange{{ID: "g-sub", Group: true}}}, {ID: "g-sub"}}},
			state: func(st *State) { st.Nested = true },
			want:  []string{"create Group N1 entra=g-sub", "addMembers G-sales [N1]"}},
		{name: "nested groups expanded: Ops leaves Sales",
			page: Page{Groups: []graph.Group{{ID: "g-sales", Members: []graph.MemberChange{{ID: "g-ops", Group: true, Removed: true}}}}},
			state: func(st *State) {
				st.Nested = true
				st.Members[[2]string{"G-sales", "G-ops"}] = true
			},
			want: []string{"removeMembers G-sales [G-ops]"}},
		{name: "a deleted group is not added as a nested member (a replayed add)",
			page:  Page{Groups: []graph.Group{{ID: "g-ops", Removed: "deleted"}, {ID: "g-sales", Members: []graph.MemberChange{{ID: "g-ops", Group: true}}}}},
			state: func(st *State) { st.Nested = true },
			want:  []string{"delete Group G-ops"}},
		{name: "a deleted group is deleted after the groups it was in are updated",
			page: Page{Groups: []graph.Group{{ID: "g-ops", Removed: "deleted"},
				{ID: "g-sales", DisplayName: "Sales 2", Members: []graph.MemberChange{{ID: "g-ops", Group: true}}}}},
			state: func(st *State) { st.Nested = true },
			want:  []string{"update Group G-sales if=v3 entra=g-sales", "delete Group G-ops"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := diffState()
			if tc.state != nil {
				tc.state(&st)
			}
			stBefore, pageBefore := cloneState(st), clonePage(tc.page)
			plan := Diff(tc.page, st, seqIDs())
			if got := planLines(plan); !slices.Equal(got, tc.want) {
				t.Fatalf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			for _, d := range plan.Deprovision {
				if d.Reason == "" {
					t.Errorf("deprovision of %s says no why", d.UserID)
				}
			}
			if tc.check != nil {
				tc.check(t, plan)
			}
			if !reflect.DeepEqual(st, stBefore) || !reflect.DeepEqual(tc.page, pageBefore) {
				t.Fatal("Diff changed its inputs")
			}
		})
	}
}

// TestDiffDoesNotMutate gives Diff documents with every shape UserDoc and
// groupDoc edit, and checks they come out as they went in.
func TestDiffDoesNotMutate(t *testing.T) {
	st := diffState()
	bobRes := st.Users["e-bob"]
	bobRes.Doc["emails"] = []any{map[string]any{"type": "home", "value": "b@home.example", "primary": true},
		map[string]any{"type": "work", "value": "bob@contoso.example"}}
	bobRes.Doc["phoneNumbers"] = []any{map[string]any{"type": "work", "value": "+1 555 0100"}}
	bobRes.Doc["roles"] = []any{map[string]any{"value": "admin"}}
	st.Users["e-bob"] = bobRes
	st.UserMatches["e-alice"] = store.Resource{Kind: store.UserKind, ID: "L-pushed", Version: 1,
		Doc: map[string]any{"userName": "a@contoso.example", "name": map[string]any{"givenName": "Al", "middleName": "M"}}}
	st.GroupMatches["g-new"] = store.Resource{Kind: store.GroupKind, ID: "G-new", Version: 1, Doc: map[string]any{"displayName": "New"}}
	st.Mark, st.Nested = 3, true
	gone := bob()
	gone.Mail, gone.BusinessPhones, gone.GivenName = "", nil, ""
	page := Page{
		Groups: []graph.Group{joins("g-sales", "e-alice", "e-bob"), {ID: "g-new", DisplayName: "Newer",
			Members: []graph.MemberChange{{ID: "g-ops", Group: true}, {ID: "e-carol", Removed: true}}},
			{ID: "g-ops", DisplayName: "Ops 2"}, joins("g-sales", "e-dave")},
		Users:   []graph.User{gone, {ID: "e-carol", Removed: "deleted"}},
		Fetched: []graph.User{alice(), dave()},
	}
	stBefore, pageBefore := cloneState(st), clonePage(page)
	plan := Diff(page, st, seqIDs())
	if len(plan.Changes) < 5 {
		t.Fatalf("the page should change much: %v", planLines(plan))
	}
	if !reflect.DeepEqual(st, stBefore) {
		t.Fatal("Diff changed the state it read")
	}
	if !reflect.DeepEqual(page, pageBefore) {
		t.Fatal("Diff changed the page it read")
	}
	// And a plan shares no document with the state: Apply may change them.
	for _, c := range plan.Changes {
		if c.Resource == nil {
			continue
		}
		c.Resource.Doc["touched"] = true
		for _, list := range []any{c.Resource.Doc["emails"], c.Resource.Doc["name"]} {
			switch v := list.(type) {
			case []any:
				v[0].(map[string]any)["touched"] = true
			case map[string]any:
				v["touched"] = true
			}
		}
	}
	if !reflect.DeepEqual(st, stBefore) {
		t.Fatal("a plan's documents are the state's")
	}
}

// TestDiffNewIDs: ids of new resources come from newID, one call each.
func TestDiffNewIDs(t *testing.T) {
	calls := 0
	newID := func() string { calls++; return fmt.Sprintf("id-%d", calls) }
	page := Page{Groups: []graph.Group{joins("g-b", "e-alice"), joins("g-a", "e-dave", "e-new")},
		Fetched: []graph.User{alice(), dave(), {ID: "e-new", UserPrincipalName: "new@contoso.example"}}}
	plan := Diff(page, diffState(), newID)
	want := []string{"create Group id-1 entra=g-a", "create Group id-2 entra=g-b", "create User id-3 entra=e-alice",
		"update User L-dave if=v5 entra=e-dave", "create User id-4 entra=e-new",
		"addMembers id-1 [L-dave id-4]", "addMembers id-2 [id-3]"}
	if got := planLines(plan); !slices.Equal(got, want) || calls != 4 {
		t.Fatalf("%d calls, plan:\n  %s", calls, strings.Join(got, "\n  "))
	}
}

func cloneState(st State) State {
	c := st
	c.Users, c.Groups = cloneResources(st.Users), cloneResources(st.Groups)
	c.UserMatches, c.GroupMatches = cloneResources(st.UserMatches), cloneResources(st.GroupMatches)
	if st.InScope != nil {
		c.InScope = map[string]bool{}
		for k, v := range st.InScope {
			c.InScope[k] = v
		}
	}
	if st.Members != nil {
		c.Members = map[[2]string]bool{}
		for k, v := range st.Members {
			c.Members[k] = v
		}
	}
	return c
}

func cloneResources(m map[string]store.Resource) map[string]store.Resource {
	if m == nil {
		return nil
	}
	out := make(map[string]store.Resource, len(m))
	for k, r := range m {
		r.Doc = cloneValue(r.Doc).(map[string]any)
		out[k] = r
	}
	return out
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if v == nil {
			return v
		}
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = cloneValue(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneValue(e)
		}
		return out
	default:
		return v
	}
}

func clonePage(p Page) Page {
	c := Page{}
	for _, g := range p.Groups {
		g.Members = slices.Clone(g.Members)
		c.Groups = append(c.Groups, g)
	}
	for _, list := range []struct{ from, to *[]graph.User }{{&p.Users, &c.Users}, {&p.Fetched, &c.Fetched}} {
		for _, u := range *list.from {
			u.BusinessPhones = slices.Clone(u.BusinessPhones)
			if u.AccountEnabled != nil {
				u.AccountEnabled = new(*u.AccountEnabled)
			}
			*list.to = append(*list.to, u)
		}
	}
	return c
}

// ---- UserDoc ----

func ada() graph.User {
	return graph.User{ID: "e-ada", UserPrincipalName: "ada@contoso.example", DisplayName: "Ada Lovelace", GivenName: "Ada",
		Surname: "Lovelace", Mail: "ada@contoso.example", AccountEnabled: new(true), JobTitle: "Engineer", Department: "R&D",
		EmployeeID: "1815", CompanyName: "Contoso", MobilePhone: "+1 555 0100",
		BusinessPhones: []string{"+1 555 0199", "+1 555 0142"}, PreferredLanguage: "en-GB", City: "London",
		Country: "GB", EmployeeType: "Employee"}
}

// adaDoc is ada() as Entra's default mapping writes it. active is the
// caller's; officeLocation is selected but not mapped.
func adaDoc() map[string]any {
	return map[string]any{
		"userName":          "ada@contoso.example",
		"externalId":        "e-ada",
		"displayName":       "Ada Lovelace",
		"title":             "Engineer",
		"preferredLanguage": "en-GB",
		"userType":          "Employee",
		"name":              map[string]any{"givenName": "Ada", "familyName": "Lovelace", "formatted": "Ada Lovelace"},
		"emails":            []any{map[string]any{"type": "work", "value": "ada@contoso.example", "primary": true}},
		"phoneNumbers": []any{
			map[string]any{"type": "mobile", "value": "+1 555 0100"},
			map[string]any{"type": "work", "value": "+1 555 0199"},
		},
		"addresses":   []any{map[string]any{"type": "work", "locality": "London", "country": "GB"}},
		enterpriseURN: map[string]any{"employeeNumber": "1815", "department": "R&D", "organization": "Contoso"},
	}
}

func TestUserDoc(t *testing.T) {
	tests := []struct {
		name string
		cur  map[string]any
		u    graph.User
		want map[string]any
	}{
		{name: "every field lands where Entra maps it", u: ada(), want: adaDoc()},
		{name: "an unchanged user gives the same document", cur: adaDoc(), u: ada(), want: adaDoc()},
		{name: "ada clears every optional field: they go",
			cur:  adaDoc(),
			u:    graph.User{ID: "e-ada", UserPrincipalName: "ada@contoso.example"},
			want: map[string]any{"userName": "ada@contoso.example", "externalId": "e-ada"}},
		{name: "ada clears some: the rest stay",
			cur: adaDoc(),
			u: func() graph.User {
				u := ada()
				u.City, u.MobilePhone, u.GivenName, u.Department = "", "", "", ""
				return u
			}(),
			want: func() map[string]any {
				d := adaDoc()
				d["name"] = map[string]any{"familyName": "Lovelace", "formatted": "Lovelace"}
				d["phoneNumbers"] = []any{map[string]any{"type": "work", "value": "+1 555 0199"}}
				d["addresses"] = []any{map[string]any{"type": "work", "country": "GB"}}
				d[enterpriseURN] = map[string]any{"employeeNumber": "1815", "organization": "Contoso"}
				return d
			}()},
		{name: "ada renamed and moved",
			cur: adaDoc(),
			u: func() graph.User {
				u := ada()
				u.UserPrincipalName, u.Surname, u.Mail, u.City, u.BusinessPhones = "ada.king@contoso.example", "King", "ada.king@contoso.example", "Paris", []string{"+33 1 00"}
				return u
			}(),
			want: func() map[string]any {
				d := adaDoc()
				d["userName"] = "ada.king@contoso.example"
				d["name"] = map[string]any{"givenName": "Ada", "familyName": "King", "formatted": "Ada King"}
				d["emails"] = []any{map[string]any{"type": "work", "value": "ada.king@contoso.example", "primary": true}}
				d["phoneNumbers"] = []any{map[string]any{"type": "mobile", "value": "+1 555 0100"}, map[string]any{"type": "work", "value": "+33 1 00"}}
				d["addresses"] = []any{map[string]any{"type": "work", "locality": "Paris", "country": "GB"}}
				return d
			}()},
		{name: "what Graph does not speak of is kept",
			cur: map[string]any{
				"userName": "old@contoso.example", "nickName": "Countess", "active": false,
				"roles":  []any{map[string]any{"value": "admin"}},
				"name":   map[string]any{"givenName": "Old", "middleName": "Augusta"},
				"emails": []any{map[string]any{"type": "home", "value": "ada@home.example", "primary": true}},
				"phoneNumbers": []any{map[string]any{"type": "fax", "value": "+1 555 0111"},
					map[string]any{"type": "Work", "value": "+1 555 0000", "display": "desk"}},
				"addresses":   []any{map[string]any{"type": "work", "postalCode": "NW1", "locality": "Old Town"}},
				enterpriseURN: map[string]any{"manager": map[string]any{"value": "L-babbage"}, "costCenter": "42"},
			},
			u: ada(),
			want: map[string]any{
				"userName": "ada@contoso.example", "externalId": "e-ada", "displayName": "Ada Lovelace", "title": "Engineer",
				"preferredLanguage": "en-GB", "userType": "Employee", "nickName": "Countess", "active": false,
				"roles": []any{map[string]any{"value": "admin"}},
				"name":  map[string]any{"givenName": "Ada", "middleName": "Augusta", "familyName": "Lovelace", "formatted": "Ada Lovelace"},
				// the home email stays primary; the work one joins it
				"emails": []any{map[string]any{"type": "home", "value": "ada@home.example", "primary": true},
					map[string]any{"type": "work", "value": "ada@contoso.example"}},
				// a work number typed "Work" is Entra's own: updated in place
				"phoneNumbers": []any{map[string]any{"type": "fax", "value": "+1 555 0111"},
					map[string]any{"type": "Work", "value": "+1 555 0199", "display": "desk"},
					map[string]any{"type": "mobile", "value": "+1 555 0100"}},
				"addresses": []any{map[string]any{"type": "work", "postalCode": "NW1", "locality": "London", "country": "GB"}},
				enterpriseURN: map[string]any{"manager": map[string]any{"value": "L-babbage"}, "costCenter": "42",
					"employeeNumber": "1815", "department": "R&D", "organization": "Contoso"},
			}},
		{name: "clearing the mail drops only the work email",
			cur: map[string]any{"emails": []any{map[string]any{"type": "home", "value": "ada@home.example"},
				map[string]any{"type": "work", "value": "ada@contoso.example", "primary": true}}},
			u: graph.User{ID: "e-ada", UserPrincipalName: "ada@contoso.example"},
			want: map[string]any{"userName": "ada@contoso.example", "externalId": "e-ada",
				"emails": []any{map[string]any{"type": "home", "value": "ada@home.example"}}}},
		{name: "a cleared address element with more in it stays",
			cur: map[string]any{"addresses": []any{map[string]any{"type": "work", "locality": "London", "streetAddress": "1 Main St"}}},
			u:   graph.User{ID: "e-ada", UserPrincipalName: "ada@contoso.example"},
			want: map[string]any{"userName": "ada@contoso.example", "externalId": "e-ada",
				"addresses": []any{map[string]any{"type": "work", "streetAddress": "1 Main St"}}}},
		{name: "only a surname: formatted is the surname",
			u: graph.User{ID: "e-ada", UserPrincipalName: "ada@contoso.example", Surname: "Lovelace"},
			want: map[string]any{"userName": "ada@contoso.example", "externalId": "e-ada",
				"name": map[string]any{"familyName": "Lovelace", "formatted": "Lovelace"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := cloneValue(tc.cur)
			got := UserDoc(tc.cur, tc.u)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %s\nwant %s", docJSON(got), docJSON(tc.want))
			}
			if !reflect.DeepEqual(tc.cur, before) {
				t.Fatal("UserDoc changed cur")
			}
			if again := UserDoc(got, tc.u); !sameDoc(again, got) {
				t.Fatalf("not stable: %s then %s", docJSON(got), docJSON(again))
			}
		})
	}
}

// TestUserDocStable: mapping a user onto its own mapping changes nothing,
// from any earlier state of that user.
func TestUserDocStable(t *testing.T) {
	g := newPropGen(7, false)
	for i := range 500 {
		before, u := g.user("u01"), g.user("u01")
		doc := UserDoc(UserDoc(nil, before), u)
		if again := UserDoc(doc, u); !sameDoc(again, doc) {
			t.Fatalf("%d: %+v then %+v:\n%s\n%s", i, before, u, docJSON(doc), docJSON(again))
		}
		// Element order of multi-valued attributes follows history; it means nothing.
		if fresh := UserDoc(nil, u); docJSON(unordered(fresh)) != docJSON(unordered(doc)) {
			t.Fatalf("%d: an update from %+v to %+v leaves traces:\n%s\nfresh %s", i, before, u, docJSON(doc), docJSON(fresh))
		}
	}
}

// unordered sorts the elements of a document's multi-valued attributes.
func unordered(doc map[string]any) map[string]any {
	out := cloneValue(doc).(map[string]any)
	for _, v := range out {
		if list, ok := v.([]any); ok {
			sort.Slice(list, func(i, j int) bool {
				a, _ := json.Marshal(list[i])
				b, _ := json.Marshal(list[j])
				return string(a) < string(b)
			})
		}
	}
	return out
}

// ---- DeprovisionChanges ----

func TestDeprovisionChanges(t *testing.T) {
	users := func() map[string]store.Resource {
		return map[string]store.Resource{
			"L-bob":   linkedUser("L-bob", 2, bob(), true),
			"L-carol": linkedUser("L-carol", 4, carol(), true),
			"L-dave":  linkedUser("L-dave", 5, dave(), false),
		}
	}
	tests := []struct {
		name   string
		policy string
		list   []Deprovision
		want   []string
	}{
		{"bob out of scope, deactivate policy", "deactivate", []Deprovision{{UserID: "L-bob"}},
			[]string{"update User L-bob if=v2 entra=e-bob"}},
		{"bob out of scope, delete policy", "delete", []Deprovision{{UserID: "L-bob"}},
			[]string{"delete User L-bob"}},
		{"bob hard-deleted, deactivate policy: deleted anyway", "deactivate", []Deprovision{{UserID: "L-bob", Delete: true}},
			[]string{"delete User L-bob"}},
		{"bob disabled, then hard-deleted: deleted", "deactivate", []Deprovision{{UserID: "L-bob", Delete: true, Disable: true}},
			[]string{"delete User L-bob"}},
		{"bob disabled, delete policy: only deactivated", "delete", []Deprovision{{UserID: "L-bob", Disable: true}},
			[]string{"update User L-bob if=v2 entra=e-bob"}},
		{"bob disabled, deactivate policy", "deactivate", []Deprovision{{UserID: "L-bob", Disable: true}},
			[]string{"update User L-bob if=v2 entra=e-bob"}},
		{"dave already inactive: not counted", "deactivate", []Deprovision{{UserID: "L-dave"}, {UserID: "L-dave", Disable: true}}, nil},
		{"dave inactive, delete policy: deleted", "delete", []Deprovision{{UserID: "L-dave"}},
			[]string{"delete User L-dave"}},
		{"dave inactive and gone from Entra: deleted", "deactivate", []Deprovision{{UserID: "L-dave", Delete: true}},
			[]string{"delete User L-dave"}},
		{"unknown users are skipped", "delete", []Deprovision{{UserID: "L-ghost", Delete: true}, {UserID: "L-ghost2"}}, nil},
		{"several, in id order", "deactivate",
			[]Deprovision{{UserID: "L-dave"}, {UserID: "L-carol", Delete: true}, {UserID: "L-ghost"}, {UserID: "L-bob", Disable: true}},
			[]string{"update User L-bob if=v2 entra=e-bob", "delete User L-carol"}},
		{"nothing to do", "deactivate", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			us := users()
			before := cloneResources(us)
			cs, n := DeprovisionChanges(us, slices.Clone(tc.list), tc.policy)
			var got []string
			for _, c := range cs {
				got = append(got, changeLine(c))
			}
			if !slices.Equal(got, tc.want) || n != len(cs) {
				t.Fatalf("n=%d\n  %s\nwant\n  %s", n, strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			for _, c := range cs {
				if c.Op != Update {
					continue
				}
				// Deactivation changes active only, on the user's own document.
				want := cloneValue(us[c.Resource.ID].Doc).(map[string]any)
				want["active"] = false
				if !reflect.DeepEqual(c.Resource.Doc, want) || c.Resource.Kind != store.UserKind {
					t.Fatalf("deactivated doc %s", docJSON(c.Resource.Doc))
				}
			}
			if !reflect.DeepEqual(us, before) {
				t.Fatal("DeprovisionChanges changed the users it read")
			}
		})
	}
}

// ---- the property: after Apply, Diff is empty ----

// propStore is a real SQLite store with one tenant, for the property tests.
type propStore struct {
	t      *testing.T
	db     *store.DB
	tenant int64
}

func newPropStore(t *testing.T) *propStore {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "diff.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ps := &propStore{t: t, db: db}
	ps.write(func(tx *store.Tx) error {
		tn, err := tx.CreateTenant("contoso")
		ps.tenant = tn.ID
		return err
	})
	return ps
}

func (ps *propStore) write(fn func(tx *store.Tx) error) {
	ps.t.Helper()
	if err := ps.db.Write(context.Background(), fn); err != nil {
		ps.t.Fatal(err)
	}
}

// state reads the State for a page as a run does, through runner.state.
func (ps *propStore) state(p Page, assigned []string, nested bool, mark int64) State {
	ps.t.Helper()
	r := &runner{w: &Worker{DB: ps.db}, t: store.Tenant{ID: ps.tenant}, conn: store.GraphConnection{Groups: assigned, Nested: nested}}
	st, err := r.state(context.Background(), p, mark)
	if err != nil {
		ps.t.Fatal(err)
	}
	return st
}

// propGen makes random pages over a small directory, so that ids repeat
// and every path of Diff meets earlier state.
type propGen struct {
	r      *rand.Rand
	groups []string
	users  []string
	nested bool
}

func newPropGen(seed int64, nested bool) *propGen {
	g := &propGen{r: rand.New(rand.NewSource(seed)), nested: nested}
	for i := range 7 {
		g.groups = append(g.groups, fmt.Sprintf("g%02d", i))
	}
	for i := range 24 {
		g.users = append(g.users, fmt.Sprintf("u%02d", i))
	}
	return g
}

func (g *propGen) pick(vals ...string) string { return vals[g.r.Intn(len(vals))] }

// user is a random state of Entra user id. The UPN starts with the id, so
// two users never share one; u04's never changes, as it names a pushed user.
func (g *propGen) user(id string) graph.User {
	upn := id + g.pick("", ".x", ".Y") + "@contoso.example"
	if id == "u04" {
		upn = "u04@contoso.example"
	}
	u := graph.User{
		ID:                id,
		UserPrincipalName: upn,
		DisplayName:       g.pick("", "Ada Lovelace", "Grace Hopper"),
		GivenName:         g.pick("", "Ada", "Grace"),
		Surname:           g.pick("", "Lovelace", "Hopper"),
		Mail:              g.pick("", id+"@contoso.example", id+"@fabrikam.example"),
		JobTitle:          g.pick("", "Engineer", "Analyst"),
		Department:        g.pick("", "R&D", "Sales"),
		EmployeeID:        g.pick("", "1001", "2002"),
		CompanyName:       g.pick("", "Contoso"),
		MobilePhone:       g.pick("", "+1 555 0100"),
		PreferredLanguage: g.pick("", "en-US", "fr-FR"),
		City:              g.pick("", "Paris", "Oslo"),
		Country:           g.pick("", "FR", "NO"),
		EmployeeType:      g.pick("", "Employee", "Contractor"),
	}
	for range g.r.Intn(3) {
		u.BusinessPhones = append(u.BusinessPhones, g.pick("", "+1 555 0199", "+1 555 0142"))
	}
	switch g.r.Intn(10) {
	case 0: // Graph did not say
	case 1, 2:
		u.AccountEnabled = new(false)
	default:
		u.AccountEnabled = new(true)
	}
	return u
}

func (g *propGen) page(groups []string) Page {
	var p Page
	for range g.r.Intn(4) + 1 {
		item := graph.Group{ID: g.pick(groups...), DisplayName: g.pick("", "Sales", "Ops", "Platform")}
		switch g.r.Intn(20) {
		case 0:
			item.Removed = "deleted"
		case 1:
			item.Removed = "changed"
		}
		for range g.r.Intn(7) {
			m := graph.MemberChange{ID: g.pick(g.users...), Removed: g.r.Intn(3) == 0}
			if g.nested && g.r.Intn(5) == 0 {
				m = graph.MemberChange{ID: g.pick(g.groups...), Group: true, Removed: g.r.Intn(3) == 0}
			}
			item.Members = append(item.Members, m)
		}
		p.Groups = append(p.Groups, item)
		if g.r.Intn(4) == 0 { // a replay, or a duplicate within the page
			p.Groups = append(p.Groups, p.Groups[g.r.Intn(len(p.Groups))])
		}
	}
	// As the runner's fetch: users the page adds, looked up; some are not found.
	var adds []string
	for _, item := range p.Groups {
		for _, m := range item.Members {
			if item.Removed == "" && !m.Group && !m.Removed {
				adds = append(adds, m.ID)
			}
		}
	}
	slices.Sort(adds)
	for _, id := range slices.Compact(adds) {
		if g.r.Intn(8) != 0 {
			p.Fetched = append(p.Fetched, g.user(id))
		}
	}
	for range g.r.Intn(4) {
		u := g.user(g.pick(g.users...))
		switch g.r.Intn(10) {
		case 0:
			u = graph.User{ID: u.ID, Removed: "changed"}
		case 1:
			u = graph.User{ID: u.ID, Removed: "deleted"}
		}
		p.Users = append(p.Users, u)
		if g.r.Intn(5) == 0 {
			p.Users = append(p.Users, u)
		}
	}
	return p
}

// seedPushed stores what Entra pushed over SCIM before the pull was
// connected: unlinked users and a group the pull is to adopt. The group
// has no members: runner.state reads no member pairs of a group it is
// adopting, so a removal in the adopting page would be missed.
func (ps *propStore) seedPushed() {
	ps.write(func(tx *store.Tx) error {
		for _, r := range []*store.Resource{
			{Kind: store.UserKind, Doc: map[string]any{"userName": "pushed.u03@contoso.example", "externalId": "u03", "nickName": "three"}},
			{Kind: store.UserKind, Doc: map[string]any{"userName": "u04@contoso.example", "externalId": "mailnick4"}},
			{Kind: store.GroupKind, Doc: map[string]any{"displayName": "Pushed", "externalId": "g02"}},
		} {
			if err := tx.Insert(ps.tenant, r); err != nil {
				return err
			}
		}
		return nil
	})
}

func pageDump(p Page) string {
	return fmt.Sprintf("groups %+v\nusers %+v\nfetched %+v", p.Groups, p.Users, p.Fetched)
}

// propIDs makes ids unique in a store and the same from one call of Diff
// to the next, so two plans compare.
func propIDs(round int) func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("r%02d-%02d", round, n) }
}

// propRounds runs random pages against one store, the way a run's pages
// meet whatever earlier ones left; check sees each page after its Apply,
// with state reading the store as the runner would for that page.
func propRounds(t *testing.T, seed int64, nested bool, check func(ps *propStore, round int, p Page, plan Plan, state func() State)) {
	t.Helper()
	ps := newPropStore(t)
	ps.seedPushed()
	g := newPropGen(seed, nested)
	assigned, pageGroups := g.groups[:5], g.groups[:5]
	if nested { // the rest are found below the assigned ones
		assigned, pageGroups = g.groups[:2], g.groups
	}
	for round := range 30 {
		p := g.page(pageGroups)
		var mark int64
		if g.r.Intn(3) == 0 { // a full pass
			mark = int64(round + 1)
		}
		state := func() State { return ps.state(p, assigned, nested, mark) }
		plan := Diff(p, state(), propIDs(round))
		if _, err := Apply(context.Background(), ps.db, ps.tenant, plan.Changes); err != nil {
			t.Fatalf("round %d: apply: %v\n%s\n%s", round, err, pageDump(p), changeLines(plan.Changes))
		}
		check(ps, round, p, plan, state)
		// Sometimes let the run's end deprovision, so later rounds meet inactive and deleted users.
		if g.r.Intn(3) == 0 {
			ps.deprovision(plan.Deprovision, g.pick("deactivate", "deactivate", "delete"))
		}
	}
}

// TestPropertyApplyIsIdempotent, over random pages: applying a page's
// ChangeSet a second time changes nothing (membership changes count zero;
// creates, guarded updates and deletes are refused whole, as the runner
// re-diffs rather than replays); and after Apply the same page (a replay)
// diffs to nothing but membership no-ops that Apply counts as nothing,
// proposing the same deprovisions.
func TestPropertyApplyIsIdempotent(t *testing.T) {
	seeds := int64(15)
	if testing.Short() {
		seeds = 5
	}
	for _, nested := range []bool{false, true} {
		for seed := int64(1); seed <= seeds; seed++ {
			t.Run(fmt.Sprintf("nested=%v/seed=%d", nested, seed), func(t *testing.T) {
				t.Parallel()
				propRounds(t, seed, nested, checkIdempotent(t))
			})
		}
	}
}

func checkIdempotent(t *testing.T) func(ps *propStore, round int, p Page, plan Plan, state func() State) {
	ctx := context.Background()
	return func(ps *propStore, round int, p Page, plan Plan, state func() State) {
		t.Helper()
		before := ps.snapshot()
		n, err := Apply(ctx, ps.db, ps.tenant, plan.Changes)
		refusable := slices.ContainsFunc(plan.Changes, func(c Change) bool { return c.Op == Create || c.Op == Update || c.Op == Delete })
		switch code := store.ErrorCode(err); {
		case err == nil && n.Total() == 0:
		case err != nil && refusable && (code == store.Conflict || code == store.Precondition || code == store.NotFound):
		default:
			t.Fatalf("round %d: second apply: %+v %v\n%s", round, n, err, changeLines(plan.Changes))
		}
		if after := ps.snapshot(); after != before {
			t.Fatalf("round %d: the second apply changed the store:\n%s\n---\n%s", round, before, after)
		}

		st := state()
		again := Diff(p, st, propIDs(round))
		for _, c := range again.Changes {
			if c.Op == Create || c.Op == Update || c.Op == Delete {
				t.Fatalf("round %d: replayed page still %s\n%s\nfirst:\n%s", round, changeLine(c), pageDump(p), changeLines(plan.Changes))
			}
		}
		for i := range 2 {
			if n, err := Apply(ctx, ps.db, ps.tenant, again.Changes); err != nil || n.Total() != 0 {
				t.Fatalf("round %d: apply %d of the replay: %+v %v\n%s\n%s", round, i+1, n, err, pageDump(p), changeLines(again.Changes))
			}
		}
		if a, b := planLines(Plan{Deprovision: plan.Deprovision}), planLines(Plan{Deprovision: again.Deprovision}); !slices.Equal(a, b) {
			t.Fatalf("round %d: deprovisions %v, then %v\n%s", round, a, b, pageDump(p))
		}
		if twice := Diff(p, st, propIDs(round)); !slices.Equal(planLines(twice), planLines(again)) {
			t.Fatalf("round %d: Diff is not deterministic:\n%v\n%v", round, planLines(again), planLines(twice))
		}
	}
}

// snapshot renders the tenant's users, groups and memberships.
func (ps *propStore) snapshot() string {
	ps.t.Helper()
	ctx := context.Background()
	var lines []string
	for _, kind := range []store.Kind{store.UserKind, store.GroupKind} {
		page, err := ps.db.List(ctx, ps.tenant, kind, store.Query{Count: 1_000_000})
		if err != nil {
			ps.t.Fatal(err)
		}
		for _, r := range page.Resources {
			lines = append(lines, fmt.Sprintf("%s %s v%d %s", r.ID, r.EntraID, r.Version, docJSON(r.Doc)))
			if kind == store.GroupKind {
				ms, err := ps.db.Members(ctx, ps.tenant, r.ID)
				if err != nil {
					ps.t.Fatal(err)
				}
				for _, m := range ms {
					lines = append(lines, "  "+m.ID)
				}
			}
		}
	}
	return strings.Join(lines, "\n")
}

func (ps *propStore) deprovision(list []Deprovision, policy string) {
	ps.t.Helper()
	ids := make([]string, len(list))
	for i, d := range list {
		ids[i] = d.UserID
	}
	users, err := ps.db.GetMany(context.Background(), ps.tenant, store.UserKind, ids)
	if err != nil {
		ps.t.Fatal(err)
	}
	// Like runner.propose: one candidate per user.
	byUser := map[string]Deprovision{}
	for _, d := range list {
		if cur, ok := byUser[d.UserID]; ok {
			d.Delete = d.Delete || cur.Delete
			d.Disable = d.Disable && cur.Disable
		}
		byUser[d.UserID] = d
	}
	var merged []Deprovision
	for _, d := range byUser {
		merged = append(merged, d)
	}
	cs, _ := DeprovisionChanges(users, merged, policy)
	if _, err := Apply(context.Background(), ps.db, ps.tenant, cs); err != nil {
		ps.t.Fatal(err)
	}
}
