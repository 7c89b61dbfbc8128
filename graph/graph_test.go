package graph_test

import (
	"context"
	"errors"
	"math/rand"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
)

const (
	tenantID = "6f1b2a3c-1111-4222-8333-944445555666"
	clientID = "0c5e8f4a-aaaa-4bbb-8ccc-dddddddddddd"
	secret   = "s3cr3t-value"
)

var ctx = context.Background()

// fakeSleep records waits instead of sleeping.
type fakeSleep struct {
	mu    gosync.Mutex
	waits []time.Duration
}

func (f *fakeSleep) sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits = append(f.waits, d)
	return ctx.Err()
}

// newFake starts a fake Graph with the app registered and granted exactly
// what the README asks a customer's admin for.
func newFake(t *testing.T, opts graphtest.Options) *graphtest.Server {
	t.Helper()
	srv := graphtest.NewServer(opts)
	t.Cleanup(srv.Close)
	srv.AddApp(tenantID, clientID, secret)
	srv.Grant(tenantID, clientID, graph.RequiredPermissions...)
	return srv
}

func newClient(t *testing.T, srv *graphtest.Server, mod ...func(*graph.Config)) (*graph.Client, *fakeSleep) {
	t.Helper()
	fs := &fakeSleep{}
	cfg := graph.Config{TenantID: tenantID, ClientID: clientID, ClientSecret: secret,
		AuthorityHost: srv.URL(), GraphURL: srv.URL(), HTTPClient: srv.Client(), Sleep: fs.sleep}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := graph.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, fs
}

func walkUsers(t *testing.T, c *graph.Client, link string) ([]graph.User, string, int) {
	t.Helper()
	var all []graph.User
	pages := 0
	for p, err := range c.UsersDelta(ctx, link) {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, p.Users...)
		link = p.DeltaLink
	}
	return all, link, pages
}

func TestUsersDelta(t *testing.T) {
	srv := newFake(t, graphtest.Options{PageSize: 7, EmptyPages: true})
	dir := srv.Tenant(tenantID)
	dir.Populate(rand.New(rand.NewSource(1)), 30, 3)
	c, _ := newClient(t, srv)

	users, link, pages := walkUsers(t, c, "")
	if len(users) != 30 || pages < 5 || link == "" {
		t.Fatalf("initial walk: %d users in %d pages, link %q", len(users), pages, link)
	}
	for _, r := range srv.Requests() {
		if strings.Contains(r.Path, "/v1.0/") && !r.Authorized {
			t.Fatalf("a Graph request went out without the token: %+v", r)
		}
	}
	u := users[0]
	if u.ID == "" || u.UserPrincipalName == "" || u.AccountEnabled == nil || !*u.AccountEnabled || u.DisplayName == "" {
		t.Fatalf("user fields: %+v", u)
	}

	// Changes of each kind come back on the next walk.
	ids := dir.Users()
	dir.UpdateUser(ids[0], func(u *graphtest.User) { u.JobTitle = "Chief Tester"; u.AccountEnabled = false })
	dir.SoftDeleteUser(ids[1])
	dir.HardDeleteUser(ids[2])
	newID := dir.AddUser(graphtest.User{UserPrincipalName: "new.person@contoso.example", DisplayName: "New Person", AccountEnabled: true})
	changed, link2, _ := walkUsers(t, c, link)
	byID := map[string]graph.User{}
	for _, u := range changed {
		byID[u.ID] = u
	}
	if len(byID) != 4 {
		t.Fatalf("incremental walk: %+v", changed)
	}
	if u := byID[ids[0]]; u.JobTitle != "Chief Tester" || u.AccountEnabled == nil || *u.AccountEnabled || u.Removed != "" {
		t.Fatalf("updated user: %+v", u)
	}
	if byID[ids[1]].Removed != "changed" || byID[ids[2]].Removed != "deleted" || byID[newID].UserPrincipalName != "new.person@contoso.example" {
		t.Fatalf("removals/addition: %+v", byID)
	}
	if again, _, _ := walkUsers(t, c, link2); len(again) != 0 {
		t.Fatalf("nothing changed, yet %d users", len(again))
	}
}

func TestGroupsDelta(t *testing.T) {
	srv := newFake(t, graphtest.Options{PageSize: 2, MembersPerPage: 3})
	dir := srv.Tenant(tenantID)
	var gs []string
	for _, name := range []string{"Sales", "Ops", "Unassigned"} {
		gs = append(gs, dir.AddGroup(graphtest.Group{DisplayName: name}))
	}
	var us []string
	for i := range 10 {
		us = append(us, dir.AddUser(graphtest.User{UserPrincipalName: "u" + string(rune('a'+i)) + "@contoso.example", AccountEnabled: true}))
		dir.AddMember(gs[i%3], us[i])
	}
	c, _ := newClient(t, srv)
	assigned := gs[:2]
	members := map[string][]string{}
	var link string
	for p, err := range c.GroupsDelta(ctx, "", assigned) {
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range p.Groups {
			if !slices.Contains(assigned, g.ID) {
				t.Fatalf("unassigned group %s returned", g.ID)
			}
			for _, m := range g.Members {
				members[g.ID] = append(members[g.ID], m.ID)
			}
		}
		link = p.DeltaLink
	}
	for _, g := range assigned {
		got, want := members[g], dir.Members(g)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("group %s: members %v, want %v", g, got, want)
		}
	}
	dir.RemoveMember(gs[0], us[0])
	dir.AddMember(gs[1], us[0])
	dir.RenameGroup(gs[1], "Operations")
	seen := map[string]graph.Group{}
	for p, err := range c.GroupsDelta(ctx, link, nil) {
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range p.Groups {
			seen[g.ID] = g
		}
	}
	if g := seen[gs[0]]; len(g.Members) != 1 || !g.Members[0].Removed || g.Members[0].ID != us[0] {
		t.Fatalf("removal: %+v", g)
	}
	if g := seen[gs[1]]; g.DisplayName != "Operations" || len(g.Members) != 1 || g.Members[0].Removed {
		t.Fatalf("rename and addition: %+v", g)
	}

	// Bad input never reaches Graph.
	for _, ids := range [][]string{nil, make([]string, 51), {"x' or 1 eq 1"}} {
		for _, err := range c.GroupsDelta(ctx, "", ids) {
			if err == nil {
				t.Fatalf("GroupsDelta(%v) took it", ids)
			}
		}
	}
}

func TestLatestAndLookup(t *testing.T) {
	srv := newFake(t, graphtest.Options{})
	dir := srv.Tenant(tenantID)
	dir.Populate(rand.New(rand.NewSource(2)), 20, 2)
	c, _ := newClient(t, srv)
	link, err := c.LatestUsersLink(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := dir.Users()
	dir.UpdateUser(ids[3], func(u *graphtest.User) { u.Department = "Research" })
	changed, _, _ := walkUsers(t, c, link)
	if len(changed) != 1 || changed[0].ID != ids[3] || changed[0].Department != "Research" {
		t.Fatalf("after latest: %+v", changed)
	}
	dir.HardDeleteUser(ids[4])
	got, err := c.UsersByID(ctx, []string{ids[3], ids[4], ids[5], "00000000-0000-0000-0000-000000000000"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].AccountEnabled == nil {
		t.Fatalf("lookup: %+v", got)
	}
	if _, err := c.UsersByID(ctx, []string{"not-a-guid"}); err == nil {
		t.Fatal("a bad id reached Graph")
	}
}

func TestThrottling(t *testing.T) {
	srv := newFake(t, graphtest.Options{})
	srv.Tenant(tenantID).Populate(rand.New(rand.NewSource(3)), 5, 1)
	c, sleeps := newClient(t, srv)
	var observed []time.Duration
	octx := graph.WithWaitObserver(ctx, func(d time.Duration) { observed = append(observed, d) })
	walkUsers(t, c, "") // a token first, so the faults hit Graph requests
	srv.FailNext(2, http.StatusTooManyRequests, 3*time.Second)
	var n int
	for p, err := range c.UsersDelta(octx, "") {
		if err != nil {
			t.Fatal(err)
		}
		n += len(p.Users)
	}
	if n != 5 || !slices.Equal(observed, []time.Duration{3 * time.Second, 3 * time.Second}) || len(sleeps.waits) != 2 {
		t.Fatalf("users %d, observed %v, slept %v", n, observed, sleeps.waits)
	}

	// Past the retries, the caller learns when to come back.
	srv.FailNext(10, http.StatusTooManyRequests, 7*time.Second)
	for _, err := range c.UsersDelta(ctx, "") {
		if d, ok := graph.IsThrottled(err); !ok || d != 7*time.Second {
			t.Fatalf("want throttled with 7s, got %v", err)
		}
		break
	}
	srv.ResetRequests()
	// A Retry-After longer than MaxWait is not waited for in place.
	c2, sleeps2 := newClient(t, srv, func(c *graph.Config) { c.MaxWait = time.Second })
	srv.FailNext(1, http.StatusServiceUnavailable, 30*time.Second)
	for _, err := range c2.UsersDelta(ctx, "") {
		if d, ok := graph.IsThrottled(err); !ok || d != 30*time.Second || len(sleeps2.waits) != 0 {
			t.Fatalf("want an immediate throttled error, got %v after %v", err, sleeps2.waits)
		}
		break
	}
}

func TestResync(t *testing.T) {
	for _, as400 := range []bool{false, true} {
		srv := newFake(t, graphtest.Options{ResyncAs400: as400})
		srv.Tenant(tenantID).Populate(rand.New(rand.NewSource(4)), 5, 1)
		c, _ := newClient(t, srv)
		_, link, _ := walkUsers(t, c, "")
		srv.ExpireDeltaTokens()
		for _, err := range c.UsersDelta(ctx, link) {
			if !graph.IsResyncRequired(err) {
				t.Fatalf("400=%v: want a resync error, got %v", as400, err)
			}
		}
	}
}

func TestCredentials(t *testing.T) {
	srv := newFake(t, graphtest.Options{})
	srv.Tenant(tenantID).Populate(rand.New(rand.NewSource(5)), 3, 1)

	bad, _ := newClient(t, srv, func(c *graph.Config) { c.ClientSecret = "n0t-the-s3cret" })
	for _, err := range bad.UsersDelta(ctx, "") {
		if !graph.IsAuthentication(err) || !strings.Contains(err.Error(), "AADSTS7000215") || strings.Contains(err.Error(), "n0t-the-s3cret") {
			t.Fatalf("wrong secret: %v", err)
		}
	}

	cert, _, pemBytes, err := graphtest.NewCertificate("entrasync-test")
	if err != nil {
		t.Fatal(err)
	}
	srv.AddAppCertificate(tenantID, clientID, cert)
	c, _ := newClient(t, srv, func(c *graph.Config) { c.ClientSecret, c.Certificate = "", pemBytes })
	if users, _, _ := walkUsers(t, c, ""); len(users) != 3 {
		t.Fatalf("certificate credential: %d users", len(users))
	}

	for _, cfg := range []graph.Config{
		{TenantID: tenantID, ClientID: clientID},
		{TenantID: tenantID, ClientID: clientID, ClientSecret: "x", Certificate: pemBytes},
		{TenantID: tenantID, ClientID: clientID, ClientSecret: "x", GraphURL: "http://graph.example.com"},
		{TenantID: tenantID, ClientID: clientID, ClientSecret: "x", AuthorityHost: "ftp://login"},
	} {
		if _, err := graph.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a bad config", cfg)
		}
	}
}

func TestForeignLinksRefused(t *testing.T) {
	srv := newFake(t, graphtest.Options{})
	c, _ := newClient(t, srv)
	for _, link := range []string{
		"https://evil.example.com/v1.0/users/delta?$deltatoken=x",
		srv.URL() + "/v1.0/groups/delta?$deltatoken=x",
		"not a url\x00",
	} {
		for _, err := range c.UsersDelta(ctx, link) {
			var ge *graph.Error
			if !errors.As(err, &ge) {
				t.Fatalf("link %q: %v", link, err)
			}
		}
	}
	if n := srv.GraphRequests(); n != 0 {
		t.Fatalf("%d requests followed a foreign link", n)
	}
}

func TestTimeouts(t *testing.T) {
	srv := newFake(t, graphtest.Options{})
	srv.Tenant(tenantID).Populate(rand.New(rand.NewSource(6)), 3, 1)
	c, _ := newClient(t, srv, func(c *graph.Config) { c.Timeout = 2 * time.Second })
	walkUsers(t, c, "") // the token first
	srv.SetLatency(300 * time.Millisecond)
	if users, _, _ := walkUsers(t, c, ""); len(users) != 3 {
		t.Fatal("a slow answer within the timeout failed")
	}
	slow, sleeps := newClient(t, srv, func(c *graph.Config) { c.Timeout = 50 * time.Millisecond; c.MaxRetries = 2 })
	srv.SetLatency(0)
	walkUsers(t, slow, "")
	srv.SetLatency(400 * time.Millisecond)
	for _, err := range slow.UsersDelta(ctx, "") {
		if err == nil || !strings.Contains(err.Error(), "no answer within 50ms, 3 times") || len(sleeps.waits) != 2 {
			t.Fatalf("want a timeout after 3 tries, got %v (waits %v)", err, sleeps.waits)
		}
	}
}
