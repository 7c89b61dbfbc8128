package graphtest

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestInitialUsersDelta(t *testing.T) {
	for _, size := range []int{1, 7, 100, 1000} {
		t.Run(fmt.Sprint("page size ", size), func(t *testing.T) {
			s, d, tok := setup(t, Options{PageSize: size})
			var want []string
			for i := 0; i < 250; i++ {
				id := d.AddUser(User{DisplayName: fmt.Sprint("user ", i), AccountEnabled: true, BusinessPhones: []string{"+1 555 0100"}})
				switch {
				case i%50 == 1:
					d.SoftDeleteUser(id)
				case i%50 == 2:
					d.HardDeleteUser(id)
				default:
					want = append(want, id)
				}
			}
			items, dl, pages := walkDelta(t, s, tok, usersURL(s, q("$select", "displayName,accountEnabled")))
			if got := ids(items); !slices.Equal(got, sorted(want)) {
				t.Fatalf("got %d users, want %d, each once", len(got), len(want))
			}
			if wantPages := (len(want) + size - 1) / size; pages != wantPages {
				t.Errorf("%d pages, want %d", pages, wantPages)
			}
			for _, it := range items {
				if len(it) != 3 || it["accountEnabled"] != true || it["displayName"] == nil {
					t.Fatalf("item %v: want only displayName, accountEnabled and id", it)
				}
			}
			if !strings.HasPrefix(dl, s.URL()+"/v1.0/users/delta?$deltatoken=") {
				t.Fatalf("deltaLink %s", dl)
			}
		})
	}
}

func TestUsersDeltaPageShape(t *testing.T) {
	s, d, tok := setup(t, Options{PageSize: 2})
	for i := 0; i < 3; i++ {
		d.AddUser(User{DisplayName: fmt.Sprint("u", i), GivenName: "G", BusinessPhones: nil})
	}
	p := getPage(t, s, tok, usersURL(s, ""))
	if p.Context != s.URL()+"/v1.0/$metadata#users" {
		t.Errorf("context %s", p.Context)
	}
	if !strings.HasPrefix(p.Next, s.URL()+"/v1.0/users/delta?$skiptoken=") {
		t.Errorf("nextLink %s", p.Next)
	}
	// Default properties, unset ones as null, and not accountEnabled.
	it := p.Value[0]
	for _, k := range []string{"businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id"} {
		if _, ok := it[k]; !ok {
			t.Errorf("default property %s missing", k)
		}
	}
	if _, ok := it["accountEnabled"]; ok || it["mail"] != nil || !reflect.DeepEqual(it["businessPhones"], []any{}) {
		t.Errorf("item %v", it)
	}
	// The skiptoken alone carries the query; a different $select with it is a resync.
	p2 := getPage(t, s, tok, p.Next)
	if len(p2.Value) != 1 || p2.Delta == "" {
		t.Fatalf("second page %+v", p2)
	}
	status, _, _ := get(t, s, tok, p.Next+"&$select=displayName")
	if status != http.StatusGone {
		t.Fatalf("skiptoken with another query: %d", status)
	}
	s2 := getPage(t, s, tok, usersURL(s, q("$select", "DisplayName,ID")))
	if s2.Context != s.URL()+"/v1.0/$metadata#users(displayName,id)" {
		t.Errorf("context %s", s2.Context)
	}
}

func TestGroupsDeltaFilterAndSplitMembers(t *testing.T) {
	s, d, tok := setup(t, Options{PageSize: 10, MembersPerPage: 100})
	big := d.AddGroup(Group{DisplayName: "Big", SecurityEnabled: true})
	small := d.AddGroup(Group{DisplayName: "Small", MailEnabled: true})
	other := d.AddGroup(Group{DisplayName: "Not asked for"})
	for i := 0; i < 250; i++ {
		d.AddMember(big, d.AddUser(User{DisplayName: fmt.Sprint("member ", i)}))
	}
	d.AddMember(small, d.AddUser(User{DisplayName: "only one"}))
	d.AddMember(small, other) // nesting
	filter := fmt.Sprintf("id eq '%s' or id eq '%s'", big, small)
	items, _, pages := walkDelta(t, s, tok, groupsURL(s, q("$select", "displayName,members", "$filter", filter)))

	got := map[string][]string{}
	bigItems := 0
	for _, it := range items {
		id := it["id"].(string)
		if id == other {
			t.Fatal("a group outside the filter was returned")
		}
		if id == big {
			bigItems++
		}
		added, removed := memberDelta(it)
		if len(removed) > 0 {
			t.Fatalf("initial delta with removals: %v", it)
		}
		if n := len(added); n > 100 {
			t.Fatalf("%d members in one item", n)
		}
		got[id] = append(got[id], added...)
		if _, ok := it["description"]; ok {
			t.Fatalf("unselected property: %v", it)
		}
	}
	if bigItems != 3 || pages != 3 {
		t.Errorf("big group in %d items on %d pages, want 3 and 3", bigItems, pages)
	}
	for _, g := range []string{big, small} {
		if !slices.Equal(sorted(got[g]), sorted(d.Members(g))) {
			t.Errorf("group %s: merged members differ (%d vs %d)", g, len(got[g]), len(d.Members(g)))
		}
	}
	// The nested group is typed as a group.
	for _, it := range items {
		if it["id"] == small {
			for _, m := range it["members@delta"].([]any) {
				mm := m.(map[string]any)
				want := "#microsoft.graph.user"
				if mm["id"] == other {
					want = "#microsoft.graph.group"
				}
				if mm["@odata.type"] != want {
					t.Errorf("member %v", mm)
				}
			}
		}
	}
	// Without members in $select there is no members@delta.
	items, _, _ = walkDelta(t, s, tok, groupsURL(s, q("$select", "displayName")))
	for _, it := range items {
		if _, ok := it["members@delta"]; ok {
			t.Fatalf("members@delta without members selected: %v", it)
		}
	}
}

// scenario data: four users and three groups, named for readable wants.
type world struct {
	d     *Directory
	id    map[string]string // name -> id
	name  map[string]string // id -> name
	users []string
}

func newWorld(d *Directory) *world {
	w := &world{d: d, id: map[string]string{}, name: map[string]string{}}
	for _, n := range []string{"alice", "bob", "carol", "dave"} {
		id := d.AddUser(User{DisplayName: n, UserPrincipalName: n + "@contoso.example", AccountEnabled: true, JobTitle: "Engineer"})
		w.id[n], w.name[id] = id, n
	}
	for _, n := range []string{"sales", "eng", "all"} {
		id := d.AddGroup(Group{DisplayName: n, SecurityEnabled: true})
		w.id[n], w.name[id] = id, n
	}
	d.AddMember(w.id["sales"], w.id["alice"])
	d.AddMember(w.id["sales"], w.id["bob"])
	d.AddMember(w.id["eng"], w.id["carol"])
	d.AddMember(w.id["all"], w.id["sales"])
	d.AddMember(w.id["all"], w.id["eng"])
	return w
}

func (w *world) nameOf(id string) string {
	if n, ok := w.name[id]; ok {
		return n
	}
	if u, ok := w.d.User(id); ok {
		w.name[id] = u.DisplayName
		return u.DisplayName
	}
	return id
}

// describeUsers renders users/delta items as "name", "name!changed" or
// "name!deleted", plus " title" when a job title came.
func (w *world) describeUsers(items []map[string]any) []string {
	var out []string
	for _, it := range items {
		s := w.nameOf(it["id"].(string))
		if r := removedReason(it); r != "" {
			s += "!" + r
		} else {
			if it["accountEnabled"] == false {
				s += " disabled"
			}
			if jt, _ := it["jobTitle"].(string); jt != "" && jt != "Engineer" {
				s += " " + jt
			}
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// describeGroups renders groups/delta items as "name +a -b" or "name!reason".
func (w *world) describeGroups(items []map[string]any) []string {
	var out []string
	for _, it := range items {
		id := it["id"].(string)
		s := w.nameOf(id)
		if r := removedReason(it); r != "" {
			out = append(out, s+"!"+r)
			continue
		}
		if dn := it["displayName"].(string); dn != s {
			s += "=" + dn
		}
		added, removed := memberDelta(it)
		var ms []string
		for _, a := range added {
			ms = append(ms, "+"+w.nameOf(a))
		}
		for _, r := range removed {
			ms = append(ms, "-"+w.nameOf(r))
		}
		sort.Strings(ms)
		out = append(out, strings.TrimSpace(s+" "+strings.Join(ms, " ")))
	}
	sort.Strings(out)
	return out
}

func TestIncrementalDelta(t *testing.T) {
	tests := []struct {
		name       string
		before     func(w *world) // after the world is built, before the delta tokens
		change     func(w *world)
		users      []string
		groups     []string
		afterCheck func(t *testing.T, w *world)
	}{
		{name: "nothing changed", change: func(w *world) {}},
		{name: "user added", change: func(w *world) { w.d.AddUser(User{DisplayName: "erin", AccountEnabled: true}) }, users: []string{"erin"}},
		{name: "joiner added to a group",
			change: func(w *world) {
				w.d.AddMember(w.id["sales"], w.d.AddUser(User{DisplayName: "erin", AccountEnabled: true}))
			},
			users: []string{"erin"}, groups: []string{"sales +erin"}},
		{name: "group renamed", change: func(w *world) { w.d.RenameGroup(w.id["sales"], "Sales EMEA") }, groups: []string{"sales=Sales EMEA"}},
		{name: "user disabled",
			change: func(w *world) { w.d.UpdateUser(w.id["bob"], func(u *User) { u.AccountEnabled = false }) },
			users:  []string{"bob disabled"}},
		{name: "title changed twice: current state once",
			change: func(w *world) {
				w.d.UpdateUser(w.id["bob"], func(u *User) { u.JobTitle = "Lead" })
				w.d.UpdateUser(w.id["bob"], func(u *User) { u.JobTitle = "Director" })
			},
			users: []string{"bob Director"}},
		{name: "soft delete keeps memberships quietly",
			change: func(w *world) { w.d.SoftDeleteUser(w.id["alice"]) },
			users:  []string{"alice!changed"},
			afterCheck: func(t *testing.T, w *world) {
				if slices.Contains(w.d.Members(w.id["sales"]), w.id["alice"]) {
					t.Error("a soft-deleted user is listed as a member")
				}
			}},
		{name: "restore brings the user and its memberships back",
			before: func(w *world) { w.d.SoftDeleteUser(w.id["alice"]) },
			change: func(w *world) { w.d.RestoreUser(w.id["alice"]) },
			users:  []string{"alice"}, groups: []string{"sales +alice"},
			afterCheck: func(t *testing.T, w *world) {
				if !slices.Contains(w.d.Members(w.id["sales"]), w.id["alice"]) {
					t.Error("restored user lost its membership")
				}
			}},
		{name: "hard delete: users says deleted, groups says nothing",
			change: func(w *world) { w.d.HardDeleteUser(w.id["bob"]) },
			users:  []string{"bob!deleted"},
			afterCheck: func(t *testing.T, w *world) {
				if slices.Contains(w.d.Members(w.id["sales"]), w.id["bob"]) {
					t.Error("hard-deleted user still a member")
				}
			}},
		{name: "hard delete hidden even when the group changes too",
			change: func(w *world) {
				w.d.HardDeleteUser(w.id["bob"])
				w.d.RenameGroup(w.id["sales"], "Sales")
			},
			users: []string{"bob!deleted"}, groups: []string{"sales=Sales"}},
		{name: "member removed", change: func(w *world) { w.d.RemoveMember(w.id["sales"], w.id["bob"]) }, groups: []string{"sales -bob"}},
		{name: "nested group removed", change: func(w *world) { w.d.RemoveMember(w.id["all"], w.id["eng"]) }, groups: []string{"all -eng"}},
		{name: "added then removed: net removed",
			change: func(w *world) {
				w.d.AddMember(w.id["eng"], w.id["alice"])
				w.d.RemoveMember(w.id["eng"], w.id["alice"])
			},
			groups: []string{"eng -alice"}},
		{name: "removed then re-added: net added",
			change: func(w *world) {
				w.d.RemoveMember(w.id["sales"], w.id["bob"])
				w.d.AddMember(w.id["sales"], w.id["bob"])
			},
			groups: []string{"sales +bob"}},
		{name: "moved between groups",
			change: func(w *world) {
				w.d.RemoveMember(w.id["sales"], w.id["bob"])
				w.d.AddMember(w.id["eng"], w.id["bob"])
			},
			groups: []string{"eng +bob", "sales -bob"}},
		{name: "group soft-deleted", change: func(w *world) { w.d.DeleteGroup(w.id["eng"], false) }, groups: []string{"eng!changed"}},
		{name: "group hard-deleted, parent not told", change: func(w *world) { w.d.DeleteGroup(w.id["eng"], true) }, groups: []string{"eng!deleted"}},
		{name: "group restored with its members",
			before: func(w *world) { w.d.DeleteGroup(w.id["sales"], false) },
			change: func(w *world) { w.d.RestoreGroup(w.id["sales"]) },
			groups: []string{"all +sales", "sales +alice +bob"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, d, tok := setup(t, Options{PageSize: 2, MembersPerPage: 1})
			w := newWorld(d)
			if tc.before != nil {
				tc.before(w)
			}
			_, udl, _ := walkDelta(t, s, tok, usersURL(s, q("$select", "displayName,accountEnabled,jobTitle")))
			_, gdl, _ := walkDelta(t, s, tok, groupsURL(s, q("$select", "displayName,members")))
			tc.change(w)
			uitems, _, _ := walkDelta(t, s, tok, udl)
			gitems, _, _ := walkDelta(t, s, tok, gdl)
			// Split member lists come back as several items: merge by group.
			if got := w.describeUsers(uitems); !slices.Equal(got, tc.users) {
				t.Errorf("users/delta: %q, want %q", got, tc.users)
			}
			if got := mergeDescribed(w.describeGroups(gitems)); !slices.Equal(got, tc.groups) {
				t.Errorf("groups/delta: %q, want %q", got, tc.groups)
			}
			if tc.afterCheck != nil {
				tc.afterCheck(t, w)
			}
		})
	}
}

// mergeDescribed joins "g +a" and "g +b" (a split member list) to "g +a +b".
func mergeDescribed(in []string) []string {
	var out []string
	byHead := map[string]int{}
	for _, s := range in {
		head, rest, _ := strings.Cut(s, " ")
		if i, ok := byHead[head]; ok {
			parts := append(strings.Fields(out[i])[1:], strings.Fields(rest)...)
			sort.Strings(parts)
			out[i] = head + " " + strings.Join(parts, " ")
			continue
		}
		byHead[head] = len(out)
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func TestDeltaTokenLatest(t *testing.T) {
	s, d, tok := setup(t, Options{PageSize: 3})
	for i := 0; i < 10; i++ {
		d.AddUser(User{DisplayName: fmt.Sprint("old ", i)})
	}
	p := getPage(t, s, tok, usersURL(s, q("$deltatoken", "latest", "$select", "displayName")))
	if len(p.Value) != 0 || p.Delta == "" {
		t.Fatalf("latest: %+v", p)
	}
	id := d.AddUser(User{DisplayName: "new"})
	items, _, _ := walkDelta(t, s, tok, p.Delta)
	if len(items) != 1 || items[0]["id"] != id || len(items[0]) != 2 {
		t.Fatalf("after latest: %v", items)
	}
}

func TestQueryValidation(t *testing.T) {
	s, d, tok := setup(t, Options{})
	var fifty, fiftyOne []string
	for i := 0; i < 51; i++ {
		clause := "id eq '" + d.AddGroup(Group{DisplayName: fmt.Sprint("g", i)}) + "'"
		if i < 50 {
			fifty = append(fifty, clause)
		}
		fiftyOne = append(fiftyOne, clause)
	}
	tests := []struct {
		name   string
		url    string
		status int
		code   string
	}{
		{"50 ids", groupsURL(s, q("$filter", strings.Join(fifty, " or "))), 200, ""},
		{"51 ids", groupsURL(s, q("$filter", strings.Join(fiftyOne, " or "))), 400, "Request_UnsupportedQuery"},
		{"filter on a property", usersURL(s, q("$filter", "displayName eq 'x'")), 400, "Request_UnsupportedQuery"},
		{"filter with and", usersURL(s, q("$filter", "id eq 'a' and id eq 'b'")), 400, "Request_UnsupportedQuery"},
		{"$top", usersURL(s, q("$top", "5")), 400, "Request_UnsupportedQuery"},
		{"$orderby", usersURL(s, q("$orderby", "displayName")), 400, "Request_UnsupportedQuery"},
		{"$expand", groupsURL(s, q("$expand", "members")), 400, "Request_UnsupportedQuery"},
		{"unknown property", usersURL(s, q("$select", "displayName,shoeSize")), 400, "Request_BadRequest"},
		{"members of a user", usersURL(s, q("$select", "members")), 400, "Request_BadRequest"},
		{"skiptoken and deltatoken", usersURL(s, q("$skiptoken", "a", "$deltatoken", "b")), 400, "BadRequest"},
		{"custom option ignored", usersURL(s, q("foo", "bar")), 200, ""},
		{"users filter by id", usersURL(s, q("$filter", "id eq 'nobody'")), 200, ""},
		{"unknown resource", s.URL() + "/v1.0/applications/delta", 400, "BadRequest"},
		{"no parentheses", s.URL() + "/v1.0/groups/delta", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, h, b := get(t, s, tok, tc.url)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, b)
			}
			if tc.code == "" {
				return
			}
			if code, _ := graphErr(t, b); code != tc.code {
				t.Fatalf("code %s, want %s", code, tc.code)
			}
			if !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
				t.Fatalf("Content-Type %s", h.Get("Content-Type"))
			}
		})
	}
}

// fakeClock is a settable clock for token lifetimes.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestResync(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(s *Server, c *fakeClock, deltaLink, nextLink string) string // returns the link to follow
		ok    bool
	}{
		{"fresh token", func(s *Server, c *fakeClock, dl, nl string) string { return dl }, true},
		{"six days later", func(s *Server, c *fakeClock, dl, nl string) string { c.Add(6 * 24 * time.Hour); return dl }, true},
		{"tampered deltatoken", func(s *Server, c *fakeClock, dl, nl string) string { return tamper(dl) }, false},
		{"tampered skiptoken", func(s *Server, c *fakeClock, dl, nl string) string { return tamper(nl) }, false},
		{"not base64", func(s *Server, c *fakeClock, dl, nl string) string { return usersURL(s, "?$deltatoken=%25%25") }, false},
		{"ExpireDeltaTokens", func(s *Server, c *fakeClock, dl, nl string) string { s.ExpireDeltaTokens(); return dl }, false},
		{"ExpireDeltaTokens mid-walk", func(s *Server, c *fakeClock, dl, nl string) string { s.ExpireDeltaTokens(); return nl }, false},
		{"older than seven days", func(s *Server, c *fakeClock, dl, nl string) string { c.Add(7*24*time.Hour + time.Minute); return dl }, false},
		{"query differs", func(s *Server, c *fakeClock, dl, nl string) string { return dl + "&$select=displayName" }, false},
		{"users token on groups", func(s *Server, c *fakeClock, dl, nl string) string {
			return strings.Replace(dl, "/users/", "/groups/", 1)
		}, false},
	}
	for _, as400 := range []bool{false, true} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/400=%v", tc.name, as400), func(t *testing.T) {
				clock := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
				s, d, tok := setup(t, Options{PageSize: 2, Now: clock.Now, ResyncAs400: as400})
				for i := 0; i < 3; i++ {
					d.AddUser(User{DisplayName: fmt.Sprint(i)})
				}
				d.AddGroup(Group{DisplayName: "g"})
				first := getPage(t, s, tok, usersURL(s, ""))
				_, dl, _ := walkDelta(t, s, tok, first.Next)
				link := tc.spoil(s, clock, dl, first.Next)
				status, h, b := get(t, s, tok, link)
				if tc.ok {
					if status != 200 {
						t.Fatalf("%d %s", status, b)
					}
					return
				}
				code, msg := graphErr(t, b)
				switch {
				case as400 && (status != 400 || code != "resyncRequired"):
					t.Fatalf("got %d %s, want 400 resyncRequired", status, code)
				case !as400 && (status != 410 || code != "syncStateNotFound" || !strings.Contains(msg, "Please resync")):
					t.Fatalf("got %d %s %q, want 410 syncStateNotFound", status, code, msg)
				}
				if !as400 {
					loc := h.Get("Location")
					if !strings.HasSuffix(loc, "/delta?$deltatoken=") || !strings.HasPrefix(loc, s.URL()+"/v1.0/") {
						t.Fatalf("Location %q", loc)
					}
					// Following it is a full pass.
					if items, _, _ := walkDelta(t, s, tok, loc); len(items) == 0 {
						t.Fatal("Location does not start a full pass")
					}
				}
			})
		}
	}
}

func tamper(link string) string {
	i := strings.LastIndexByte(link, '=') + 20
	c := byte('A')
	if link[i] == 'A' {
		c = 'B'
	}
	return link[:i] + string(c) + link[i+1:]
}

func TestFailNext(t *testing.T) {
	tests := []struct {
		status     int
		retryAfter time.Duration
		code       string
		header     string
	}{
		{429, 1500 * time.Millisecond, "TooManyRequests", "2"},
		{503, 3 * time.Second, "serviceNotAvailable", "3"},
		{429, 0, "TooManyRequests", "0"},
		{500, 0, "generalException", ""},
		{502, 0, "UnknownError", ""},
		{504, 0, "UnknownError", ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.status, " ", tc.retryAfter), func(t *testing.T) {
			s, d, tok := setup(t, Options{})
			d.AddUser(User{DisplayName: "x"})
			s.FailNext(2, tc.status, tc.retryAfter)
			// A refused bearer does not use up a fault.
			if status, _, _ := get(t, s, "", usersURL(s, "")); status != 401 {
				t.Fatalf("no bearer: %d", status)
			}
			for i := 0; i < 2; i++ {
				status, h, b := get(t, s, tok, usersURL(s, ""))
				if status != tc.status || h.Get("Retry-After") != tc.header {
					t.Fatalf("try %d: %d Retry-After %q", i, status, h.Get("Retry-After"))
				}
				if code, _ := graphErr(t, b); code != tc.code {
					t.Fatalf("code %s", code)
				}
			}
			items, _, _ := walkDelta(t, s, tok, usersURL(s, ""))
			if len(items) != 1 {
				t.Fatalf("after the faults: %v", items)
			}
			if s.TokenRequests() != 1 {
				t.Fatal("faults touched the token endpoint")
			}
		})
	}
}

func TestLatencyHonoursCancellation(t *testing.T) {
	s, _, tok := setup(t, Options{})
	s.SetLatency(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", usersURL(s, ""), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	start := time.Now()
	if resp, err := s.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("request finished despite the latency")
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("cancellation not honoured")
	}
	s.SetLatency(50 * time.Millisecond)
	start = time.Now()
	getPage(t, s, tok, usersURL(s, ""))
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("latency not applied")
	}
}

func TestReplays(t *testing.T) {
	s, d, tok := setup(t, Options{PageSize: 2, Replays: true})
	var all []string
	for i := 0; i < 6; i++ {
		all = append(all, d.AddUser(User{DisplayName: fmt.Sprint("u", i)}))
	}
	items, dl, _ := walkDelta(t, s, tok, usersURL(s, ""))
	if len(items) != 6 {
		t.Fatalf("initial walk must not replay: %d items", len(items))
	}
	for _, id := range all {
		d.UpdateUser(id, func(u *User) { u.JobTitle = "changed" })
	}
	sameObjectTwiceOnAPage, replayedLater := false, false
	seen := map[string]int{} // id -> page it was first seen on
	u := dl
	for n := 0; u != ""; n++ {
		p := getPage(t, s, tok, u)
		onPage := map[string]bool{}
		for _, it := range p.Value {
			id := it["id"].(string)
			if onPage[id] {
				sameObjectTwiceOnAPage = true
			}
			if first, ok := seen[id]; ok && first < n {
				replayedLater = true
			}
			if _, ok := seen[id]; !ok {
				seen[id] = n
			}
			onPage[id] = true
		}
		u = p.Next
	}
	if len(seen) != 6 || !sameObjectTwiceOnAPage || !replayedLater {
		t.Fatalf("seen %d, twice on a page %v, replayed on a later page %v", len(seen), sameObjectTwiceOnAPage, replayedLater)
	}
}

func TestEmptyPages(t *testing.T) {
	s, d, tok := setup(t, Options{PageSize: 3, EmptyPages: true})
	for i := 0; i < 20; i++ {
		d.AddUser(User{DisplayName: fmt.Sprint(i)})
	}
	u := usersURL(s, "")
	empty, total := 0, 0
	for u != "" {
		p := getPage(t, s, tok, u)
		if len(p.Value) == 0 && p.Next != "" {
			empty++
		}
		total += len(p.Value)
		u = p.Next
	}
	if empty == 0 || total != 20 {
		t.Fatalf("%d empty pages, %d users", empty, total)
	}
}

// Changes made while a client walks are delivered by the next delta.
func TestChangesDuringWalk(t *testing.T) {
	s, d, tok := setup(t, Options{PageSize: 5})
	var ids []string
	for i := 0; i < 20; i++ {
		ids = append(ids, d.AddUser(User{DisplayName: fmt.Sprint(i)}))
	}
	p := getPage(t, s, tok, usersURL(s, q("$select", "jobTitle")))
	d.UpdateUser(ids[0], func(u *User) { u.JobTitle = "changed during the walk" })
	late := d.AddUser(User{DisplayName: "late"})
	_, dl, _ := walkDelta(t, s, tok, p.Next)
	items, _, _ := walkDelta(t, s, tok, dl)
	got := map[string]any{}
	for _, it := range items {
		got[it["id"].(string)] = it["jobTitle"]
	}
	if got[ids[0]] != "changed during the walk" {
		t.Errorf("update during walk not delivered: %v", items)
	}
	if _, ok := got[late]; !ok {
		t.Errorf("user added during walk not delivered: %v", items)
	}
}

// A client that applies every delta must end up with the directory, with
// realistic churn, split member lists and Graph's quirks switched on.
func TestPopulateChurnMirror(t *testing.T) {
	for _, opts := range []Options{
		{PageSize: 17, MembersPerPage: 5},
		{PageSize: 17, MembersPerPage: 5, Replays: true, EmptyPages: true},
	} {
		t.Run(fmt.Sprintf("replays=%v", opts.Replays), func(t *testing.T) {
			s, d, tok := setup(t, opts)
			r := rand.New(rand.NewSource(7))
			groups := d.Populate(r, 300, 12)
			if len(groups) != 12 || len(d.Users()) < 280 {
				t.Fatalf("populate: %d groups, %d users", len(groups), len(d.Users()))
			}
			for _, id := range d.Users()[:20] {
				u, _ := d.User(id)
				if !strings.HasSuffix(u.UserPrincipalName, "@contoso.example") || u.Department == "" || u.DisplayName == "" {
					t.Fatalf("sample user %+v", u)
				}
				n := 0
				for _, g := range groups {
					if slices.Contains(d.Members(g), id) {
						n++
					}
				}
				if n < 1 || n > 3 {
					t.Fatalf("user in %d groups", n)
				}
			}
			m := newMirror()
			uitems, udl, _ := walkDelta(t, s, tok, usersURL(s, q("$select", "displayName,accountEnabled,jobTitle")))
			gitems, gdl, _ := walkDelta(t, s, tok, groupsURL(s, q("$select", "displayName,members")))
			m.applyUsers(uitems)
			m.applyGroups(gitems)
			check := func(round int) {
				t.Helper()
				if got, want := sorted(keys(m.users)), d.Users(); !slices.Equal(got, want) {
					t.Fatalf("round %d: mirror has %d users, directory %d", round, len(got), len(want))
				}
				for _, g := range d.Groups() {
					if got, want := m.members(g), sorted(d.Members(g)); !slices.Equal(got, want) {
						t.Fatalf("round %d: group %s: mirror %d members, directory %d", round, g, len(got), len(want))
					}
					gg, _ := d.Group(g)
					if m.gnames[g] != gg.DisplayName {
						t.Fatalf("round %d: group name %q, want %q", round, m.gnames[g], gg.DisplayName)
					}
				}
				for id, it := range m.users {
					u, _ := d.User(id)
					if it["accountEnabled"] != u.AccountEnabled || it["jobTitle"] != u.JobTitle {
						t.Fatalf("round %d: user %v, directory %+v", round, it, u)
					}
				}
			}
			check(0)
			for round := 1; round <= 4; round++ {
				lines := d.Churn(r, 40)
				if len(lines) != 40 {
					t.Fatalf("%d churn lines", len(lines))
				}
				for _, l := range lines {
					if !strings.Contains(l, ": ") {
						t.Fatalf("line %q", l)
					}
				}
				if round == 3 { // a permanent delete too: the client drops memberships itself
					d.HardDeleteUser(d.Users()[0])
				}
				uitems, udl, _ = walkDelta(t, s, tok, udl)
				gitems, gdl, _ = walkDelta(t, s, tok, gdl)
				m.applyUsers(uitems)
				m.applyGroups(gitems)
				check(round)
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestPopulateIsDeterministic(t *testing.T) {
	a := newDirectory("a", time.Now)
	b := newDirectory("b", time.Now)
	a.Populate(rand.New(rand.NewSource(3)), 50, 5)
	b.Populate(rand.New(rand.NewSource(3)), 50, 5)
	if !slices.Equal(a.Users(), b.Users()) {
		t.Fatal("same seed, different users")
	}
	la := a.Churn(rand.New(rand.NewSource(4)), 10)
	lb := b.Churn(rand.New(rand.NewSource(4)), 10)
	if !slices.Equal(la, lb) {
		t.Fatalf("same seed, different churn:\n%q\n%q", la, lb)
	}
}

// Walks and mutations at once: run with -race.
func TestConcurrentUse(t *testing.T) {
	s, d, tok := setup(t, Options{PageSize: 25})
	d.Populate(rand.New(rand.NewSource(1)), 400, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := rand.New(rand.NewSource(2))
		for i := 0; i < 50; i++ {
			d.Churn(r, 5)
		}
	}()
	for i := 0; i < 3; i++ {
		_, gdl, _ := walkDelta(t, s, tok, groupsURL(s, ""))
		_, udl, _ := walkDelta(t, s, tok, usersURL(s, ""))
		walkDelta(t, s, tok, gdl)
		walkDelta(t, s, tok, udl)
	}
	<-done
}
