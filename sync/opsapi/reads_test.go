package opsapi

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
)

// directory is what seed stored: ids by name.
type directory struct {
	users  map[string]string // userName -> id
	groups map[string]string // displayName -> id
}

// seed gives acme five users (bob inactive) and two groups (Sales: jane, bob
// and Support), and globex one user and one group.
func (f *fixture) seed() directory {
	f.t.Helper()
	d := directory{users: map[string]string{}, groups: map[string]string{}}
	add := func(tenant string, rs ...*store.Resource) {
		err := f.db.Write(ctx, func(tx *store.Tx) error {
			t, err := tx.Tenant(tenant)
			if err != nil {
				return err
			}
			for _, r := range rs {
				if err := tx.Insert(t.ID, r); err != nil {
					return err
				}
				if r.Kind == store.UserKind {
					d.users[r.Str("userName")] = r.ID
				} else {
					d.groups[r.Str("displayName")] = r.ID
				}
			}
			return nil
		})
		if err != nil {
			f.t.Fatal(err)
		}
	}
	u := func(name, display string, extra ...any) *store.Resource {
		doc := map[string]any{"userName": name, "displayName": display}
		for i := 0; i+1 < len(extra); i += 2 {
			doc[extra[i].(string)] = extra[i+1]
		}
		return &store.Resource{Kind: store.UserKind, Doc: doc}
	}
	g := func(name string) *store.Resource {
		return &store.Resource{Kind: store.GroupKind, Doc: map[string]any{"displayName": name}}
	}
	add("acme",
		u("jane@acme.com", "Jane Doe", "emails", []any{map[string]any{"value": "jane.doe@mail.example", "primary": true}}),
		u("bob@acme.com", "Bob Roe", "active", false, "name", map[string]any{"givenName": "Robert", "familyName": "Roe"}),
		u("carol@acme.com", "Carol"),
		u("dave@acme.com", "Dave"),
		u("erin@acme.com", "Erin"),
		g("Sales"), g("Support"), g("Engineering"))
	add("globex", u("gina@globex.com", "Gina"), g("Globex Sales"))
	err := f.db.Write(ctx, func(tx *store.Tx) error {
		t, _ := tx.Tenant("acme")
		_, err := tx.AddMembers(t.ID, d.groups["Sales"], []string{d.users["jane@acme.com"], d.users["bob@acme.com"], d.groups["Support"]})
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	// What the push did to jane, and a failure, in acme's activity.
	acme, err := f.db.Tenant(ctx, "acme")
	if err != nil {
		f.t.Fatal(err)
	}
	now := time.Now().UTC()
	err = f.db.RecordActivity(ctx, []store.Activity{
		{TenantID: acme.ID, At: now.Add(-time.Minute), Channel: store.ChannelPush, Provider: "entra", Method: "POST", Endpoint: "Users", Status: 201,
			LatencyMS: 3, TokenID: "tok1", RequestID: "req1", ResourceType: "User", ResourceID: d.users["jane@acme.com"], Subject: "jane@acme.com",
			Summary: "Created jane@acme.com"},
		{TenantID: acme.ID, At: now, Channel: store.ChannelPush, Provider: "entra", Method: "PATCH", Endpoint: "Users", Status: 400,
			RequestID: "req2", Summary: "userName jane@acme.com already exists", Failed: true},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// getJSON sends a GET and decodes a 200's body into v.
func (f *fixture) getJSON(path, key string, v any) int {
	f.t.Helper()
	rec := f.do("GET", path, key, "192.0.2.1:1")
	if rec.Code == 200 && v != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			f.t.Fatalf("GET %s: %v in %s", path, err, rec.Body)
		}
	}
	return rec.Code
}

// walk reads every page of a listing and returns the ids it held, in order.
func walk(f *fixture, path, key, field string, limit int) []string {
	f.t.Helper()
	var out []string
	next := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			f.t.Fatalf("%s: no end to the pages", path)
		}
		u := path + sep(path) + "limit=" + fmt.Sprint(limit)
		if next != "" {
			u += "&cursor=" + url.QueryEscape(next)
		}
		var p struct {
			Items []map[string]any `json:"items"`
			Next  string           `json:"next"`
		}
		if code := f.getJSON(u, key, &p); code != 200 {
			f.t.Fatalf("GET %s: %d", u, code)
		}
		if len(p.Items) > limit || (p.Next != "" && len(p.Items) != limit) {
			f.t.Fatalf("GET %s: %d items, next %q", u, len(p.Items), p.Next)
		}
		for _, it := range p.Items {
			out = append(out, fmt.Sprint(it[field]))
		}
		if p.Next == "" {
			return out
		}
		next = p.Next
	}
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}

// readRoutes are the new GET routes, on tenant acme, for d's data.
func readRoutes(d directory) []string {
	return []string{
		"/ops/v1/tenants/acme",
		"/ops/v1/tenants/acme/activity",
		"/ops/v1/tenants/acme/users",
		"/ops/v1/tenants/acme/users/" + d.users["jane@acme.com"],
		"/ops/v1/tenants/acme/groups",
		"/ops/v1/tenants/acme/groups/" + d.groups["Sales"] + "/members",
	}
}

// TestReadAccess: every read needs a key (401) that covers the tenant
// (403); the tenants listing shows a scoped key only its tenants.
func TestReadAccess(t *testing.T) {
	f := newFixture(t)
	d := f.seed()
	reader := f.key("reader", store.OpsRead)
	acmeReader := f.key("acme-reader", store.OpsRead, "acme")
	globexAdmin := f.key("globex-admin", store.OpsAdmin, "globex")
	for _, path := range append(readRoutes(d), "/ops/v1/tenants") {
		if rec := f.do("GET", path, "", "192.0.2.1:1"); rec.Code != 401 {
			t.Errorf("GET %s without a key: %d", path, rec.Code)
		}
		if rec := f.do("GET", path, "eso_nope", "192.0.2.2:1"); rec.Code != 401 {
			t.Errorf("GET %s with an unknown key: %d", path, rec.Code)
		}
		for _, key := range []string{reader, acmeReader} {
			if rec := f.do("GET", path, key, "192.0.2.1:1"); rec.Code != 200 {
				t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
			}
		}
		if path == "/ops/v1/tenants" {
			continue
		}
		rec := f.do("GET", path, globexAdmin, "192.0.2.1:1")
		if rec.Code != 403 || !strings.Contains(rec.Body.String(), `tenant(s) globex only, not \"acme\"`) {
			t.Errorf("GET %s with a globex key: %d %s", path, rec.Code, rec.Body)
		}
	}
	names := func(key string) []string { return walk(f, "/ops/v1/tenants", key, "name", 1) }
	if got := names(reader); !slices.Equal(got, []string{"acme", "globex"}) {
		t.Errorf("an all-tenants key lists %v", got)
	}
	if got := names(globexAdmin); !slices.Equal(got, []string{"globex"}) {
		t.Errorf("a globex key lists %v", got)
	}
	// Writes are not reads: a read key may not start runs, whatever it reads.
	if rec := f.do("POST", "/ops/v1/tenants/acme/sync", acmeReader, "192.0.2.1:1"); rec.Code != 403 || !strings.Contains(rec.Body.String(), "needs role sync") {
		t.Errorf("a read key starting a run: %d %s", rec.Code, rec.Body)
	}
}

// TestReadConfinement: another tenant's ids are not found, never shown.
func TestReadConfinement(t *testing.T) {
	f := newFixture(t)
	d := f.seed()
	key := f.key("reader", store.OpsRead)
	gina, globexSales := d.users["gina@globex.com"], d.groups["Globex Sales"]
	for _, path := range []string{
		"/ops/v1/tenants/acme/users/" + gina,
		"/ops/v1/tenants/acme/groups/" + globexSales + "/members",
		"/ops/v1/tenants/acme/users?group=" + globexSales,
		"/ops/v1/tenants/acme/users/nobody",
		"/ops/v1/tenants/acme/groups/nothing/members",
		"/ops/v1/tenants/nobody",
		"/ops/v1/tenants/nobody/users",
	} {
		rec := f.do("GET", path, key, "192.0.2.1:1")
		if rec.Code != 404 || !strings.Contains(rec.Body.String(), "not found") && !strings.Contains(rec.Body.String(), "no tenant") {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	// acme's listings hold none of globex's.
	for _, id := range walk(f, "/ops/v1/tenants/acme/users", key, "id", 2) {
		if id == gina {
			t.Error("acme's users list globex's")
		}
	}
}

// TestReadPaging: a cursor walks every item exactly once, whatever the limit.
func TestReadPaging(t *testing.T) {
	f := newFixture(t)
	d := f.seed()
	key := f.key("reader", store.OpsRead)
	var acmeUsers []string
	for name, id := range d.users {
		if strings.HasSuffix(name, "@acme.com") {
			acmeUsers = append(acmeUsers, id)
		}
	}
	slices.Sort(acmeUsers)
	groups := []string{d.groups["Sales"], d.groups["Support"], d.groups["Engineering"]}
	slices.Sort(groups)
	members := []string{d.users["jane@acme.com"], d.users["bob@acme.com"], d.groups["Support"]}
	slices.Sort(members)
	for _, limit := range []int{1, 2, 3, 100} {
		if got := walk(f, "/ops/v1/tenants/acme/users", key, "id", limit); !slices.Equal(got, acmeUsers) {
			t.Errorf("users by %d: %v, want %v", limit, got, acmeUsers)
		}
		if got := walk(f, "/ops/v1/tenants/acme/groups", key, "id", limit); !slices.Equal(got, groups) {
			t.Errorf("groups by %d: %v, want %v", limit, got, groups)
		}
		if got := walk(f, "/ops/v1/tenants/acme/groups/"+d.groups["Sales"]+"/members", key, "id", limit); !slices.Equal(got, members) {
			t.Errorf("members by %d: %v, want %v", limit, got, members)
		}
	}
	for _, limit := range []int{1, 2} {
		if got := walk(f, "/ops/v1/tenants/acme/activity", key, "requestId", limit); !slices.Equal(got, []string{"req2", "req1"}) {
			t.Errorf("activity by %d: %v", limit, got)
		}
	}
	// The default page is 100.
	var p struct{ Items []any }
	if f.getJSON("/ops/v1/tenants/acme/users", key, &p); len(p.Items) != 5 {
		t.Errorf("a default page: %d users", len(p.Items))
	}
}

// TestReadFilters: search (a prefix, any case, over userName, emails,
// displayName and names), active, group, changedSince.
func TestReadFilters(t *testing.T) {
	f := newFixture(t)
	d := f.seed()
	key := f.key("reader", store.OpsRead)
	for _, tc := range []struct {
		query string
		want  []string // userNames
	}{
		{"search=JANE", []string{"jane@acme.com"}},
		{"search=jane.doe%40mail", []string{"jane@acme.com"}},
		{"search=robert", []string{"bob@acme.com"}},
		{"search=roe", []string{"bob@acme.com"}},
		{"search=car", []string{"carol@acme.com"}},
		{"search=acme", nil}, // a prefix, not a substring
		{"active=false", []string{"bob@acme.com"}},
		{"active=true&search=e", []string{"erin@acme.com"}},
		{"group=" + d.groups["Sales"], []string{"bob@acme.com", "jane@acme.com"}},
		{"changedSince=2000-01-01T00:00:00Z&search=d", []string{"dave@acme.com"}},
		{"changedSince=2999-01-01T00:00:00Z", nil},
	} {
		got := walk(f, "/ops/v1/tenants/acme/users?"+tc.query, key, "userName", 10)
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("?%s: %v, want %v", tc.query, got, tc.want)
		}
	}
	if got := walk(f, "/ops/v1/tenants/acme/groups?search=su", key, "displayName", 10); !slices.Equal(got, []string{"Support"}) {
		t.Errorf("groups ?search=su: %v", got)
	}
	// One user, whole.
	var u UserDetail
	if code := f.getJSON("/ops/v1/tenants/acme/users/"+d.users["jane@acme.com"], key, &u); code != 200 {
		t.Fatal(code)
	}
	if u.UserName != "jane@acme.com" || u.ManagedBy != store.ChannelPush || len(u.Groups) != 1 || u.Groups[0].DisplayName != "Sales" ||
		u.Attributes["displayName"] != "Jane Doe" || len(u.Emails) != 1 || len(u.Activity) != 1 || u.Activity[0].Summary != "Created jane@acme.com" {
		t.Errorf("jane: %+v", u)
	}
	var tn TenantStatus
	if code := f.getJSON("/ops/v1/tenants/acme", key, &tn); code != 200 || tn.Counts != (store.TenantCounts{Users: 5, ActiveUsers: 4, Groups: 3}) ||
		tn.LastPull == nil || tn.LastPull.ID != f.runs["acme"] || tn.Health.Status == "" || tn.LastPush == nil || tn.LastPush.RequestID != "req2" {
		t.Errorf("acme: %d %+v", code, tn)
	}
}

// TestReadBadParams: every bad parameter is a 400 that says what is wrong.
func TestReadBadParams(t *testing.T) {
	f := newFixture(t)
	d := f.seed()
	key := f.key("reader", store.OpsRead)
	members := "/ops/v1/tenants/acme/groups/" + d.groups["Sales"] + "/members"
	for _, tc := range []struct{ path, says string }{
		{"/ops/v1/tenants?limit=0", "limit must be"},
		{"/ops/v1/tenants?cursor=zzz", "cursor"},
		{"/ops/v1/tenants/acme/users?limit=1001", "limit must be"},
		{"/ops/v1/tenants/acme/users?limit=ten", "limit must be"},
		{"/ops/v1/tenants/acme/users?cursor=bm9wZQ", "cursor"},
		{"/ops/v1/tenants/acme/users?active=yes", "active must be true or false"},
		{"/ops/v1/tenants/acme/users?changedSince=yesterday", "changedSince must be an RFC 3339 time"},
		{"/ops/v1/tenants/acme/users?search=" + strings.Repeat("a", 300), "at most 256"},
		{"/ops/v1/tenants/acme/groups?limit=-1", "limit must be"},
		{members + "?cursor=%21", "cursor"},
		{"/ops/v1/tenants/acme/activity?kind=both", "kind must be push or pull"},
		{"/ops/v1/tenants/acme/activity?failed=1", "failed must be true or false"},
		{"/ops/v1/tenants/acme/activity?since=now", "since must be an RFC 3339 time"},
		{"/ops/v1/tenants/acme/activity?cursor=" + cursorOf("x"), "cursor"},
	} {
		rec := f.do("GET", tc.path, key, "192.0.2.1:1")
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), tc.says) {
			t.Errorf("GET %s: %d %s; want 400 saying %q", tc.path, rec.Code, rec.Body, tc.says)
		}
	}
	// Paths and methods the table does not have.
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/ops/v1/nothing", 404},
		{"GET", "/ops/v1/tenants/acme/users/x/y", 404},
		{"DELETE", "/ops/v1/tenants/acme/users", 405},
		{"GET", "/ops/v1/tenants/acme/sync", 405},
		{"POST", "/ops/v1/tenants/acme/runs", 405},
	} {
		rec := f.do(tc.method, tc.path, key, "192.0.2.1:1")
		if rec.Code != tc.want || (tc.want == 405 && rec.Header().Get("Allow") == "") {
			t.Errorf("%s %s: %d %v, want %d", tc.method, tc.path, rec.Code, rec.Header(), tc.want)
		}
	}
}
