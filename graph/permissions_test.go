package graph_test

import (
	"errors"
	"fmt"
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

// calls runs each call the pull makes once and returns its error by name.
func calls(t *testing.T, c *graph.Client, dir *graphtest.Directory) map[string]error {
	t.Helper()
	firstErr := func(seq func(func(graph.UserPage, error) bool)) error {
		for _, err := range seq {
			if err != nil {
				return err
			}
		}
		return nil
	}
	out := map[string]error{}
	out["UsersDelta"] = firstErr(c.UsersDelta(ctx, ""))
	out["GroupsDelta"] = nil
	for _, err := range c.GroupsDelta(ctx, "", dir.Groups()) {
		if err != nil {
			out["GroupsDelta"] = err
			break
		}
	}
	_, out["LatestUsersLink"] = c.LatestUsersLink(ctx)
	_, out["UsersByID"] = c.UsersByID(ctx, dir.Users()[:3])
	_, out["DeletedUsers"] = c.DeletedUsers(ctx, dir.Users()[:3])
	return out
}

// The pull works with exactly the README's permissions, and never calls
// directoryObjects/getByIds (which needs Directory.Read.All).
func TestLeastPrivilege(t *testing.T) {
	srv := newFake(t, graphtest.Options{PageSize: 4})
	dir := srv.Tenant(tenantID)
	dir.Populate(rand.New(rand.NewSource(7)), 20, 3)
	c, _ := newClient(t, srv)
	for name, err := range calls(t, c, dir) {
		if err != nil {
			t.Errorf("%s with %v: %v", name, graph.RequiredPermissions, err)
		}
	}
	if !slices.Equal(graph.RequiredPermissions, []string{"GroupMember.Read.All", "User.Read.All"}) {
		t.Fatalf("RequiredPermissions = %v", graph.RequiredPermissions)
	}
	for _, r := range srv.Requests() {
		if strings.Contains(strings.ToLower(r.Path), "getbyids") {
			t.Fatalf("the client called getByIds: %+v", r)
		}
		if r.Status == http.StatusForbidden {
			t.Fatalf("refused: %+v", r)
		}
	}
}

// Without one of the permissions, each call that needs it fails, naming it;
// the others still work.
func TestMissingPermissionNamed(t *testing.T) {
	needs := map[string]string{
		"UsersDelta": "User.Read.All", "LatestUsersLink": "User.Read.All", "UsersByID": "User.Read.All",
		"DeletedUsers": "User.Read.All", "GroupsDelta": "GroupMember.Read.All",
	}
	for _, granted := range []string{"GroupMember.Read.All", "User.Read.All"} {
		t.Run("only "+granted, func(t *testing.T) {
			srv := newFake(t, graphtest.Options{})
			srv.Grant(tenantID, clientID, granted)
			dir := srv.Tenant(tenantID)
			dir.Populate(rand.New(rand.NewSource(8)), 10, 2)
			c, _ := newClient(t, srv)
			for name, err := range calls(t, c, dir) {
				if needs[name] == granted {
					if err != nil {
						t.Errorf("%s needs only %s, yet: %v", name, granted, err)
					}
					continue
				}
				var ge *graph.Error
				if !errors.As(err, &ge) || ge.Status != http.StatusForbidden || ge.Code != "Authorization_RequestDenied" || ge.Permission != needs[name] {
					t.Errorf("%s without %s: %#v", name, needs[name], err)
					continue
				}
				if !strings.Contains(err.Error(), needs[name]) {
					t.Errorf("%s: the message does not name %s: %v", name, needs[name], err)
				}
			}
		})
	}
}

func TestUsersByIDPagesAndLimits(t *testing.T) {
	srv := newFake(t, graphtest.Options{PageSize: 7, EmptyPages: true})
	dir := srv.Tenant(tenantID)
	dir.Populate(rand.New(rand.NewSource(9)), 60, 2)
	c, _ := newClient(t, srv)
	ids := dir.Users()
	dir.SoftDeleteUser(ids[0])
	dir.HardDeleteUser(ids[1])
	dir.UpdateUser(ids[2], func(u *graphtest.User) { u.Department = "Research" })

	srv.ResetRequests()
	ask := append([]string{strings.ToUpper(ids[2])}, ids[:graph.MaxIDsPerLookup-1]...)
	got, err := c.UsersByID(ctx, ask)
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, u := range got {
		gotIDs = append(gotIDs, u.ID)
		if u.ID == ids[2] && (u.Department != "Research" || u.AccountEnabled == nil) {
			t.Errorf("user fields: %+v", u)
		}
	}
	slices.Sort(gotIDs)
	if want := ids[2 : graph.MaxIDsPerLookup-1]; !slices.Equal(gotIDs, want) {
		t.Fatalf("got %d users, want the %d existing ones", len(gotIDs), len(want))
	}
	reqs := graphRequests(srv)
	if len(reqs) < 8 { // 47 users in pages of 7, plus empty pages: the nextLinks were followed
		t.Fatalf("%d requests: the walk did not follow its nextLinks", len(reqs))
	}
	for _, r := range reqs {
		if !strings.Contains(r.Path, "/users/delta") {
			t.Fatalf("request %+v", r)
		}
	}
	if !strings.Contains(reqs[0].RawQuery, "filter") || !strings.Contains(reqs[0].RawQuery, "select") {
		t.Fatalf("first request %+v: no $filter/$select", reqs[0])
	}

	srv.ResetRequests()
	for _, bad := range [][]string{append(ids[:0:0], ids[:graph.MaxIDsPerLookup+1]...), {"x' or 1 eq 1"}} {
		if _, err := c.UsersByID(ctx, bad); err == nil {
			t.Errorf("UsersByID(%d ids) took it", len(bad))
		}
	}
	if users, err := c.UsersByID(ctx, nil); err != nil || users != nil {
		t.Errorf("no ids: %v %v", users, err)
	}
	if n := srv.GraphRequests(); n != 0 {
		t.Fatalf("%d requests for bad input", n)
	}
}

func TestDeletedUsers(t *testing.T) {
	srv := newFake(t, graphtest.Options{})
	dir := srv.Tenant(tenantID)
	dir.Populate(rand.New(rand.NewSource(10)), 30, 2)
	c, _ := newClient(t, srv)
	ids := dir.Users()
	var soft []string
	for _, id := range ids[:12] {
		dir.SoftDeleteUser(id)
		soft = append(soft, id)
	}
	dir.RestoreUser(soft[0]) // back: not deleted
	soft = soft[1:]
	dir.HardDeleteUser(ids[20]) // gone for good: not in the deleted items
	unknown := "00000000-0000-4000-8000-000000000000"
	ask := append(append([]string{ids[0], ids[15], ids[20], unknown}, soft...), ids[25:]...)

	srv.ResetRequests()
	heard := &kinds{}
	got, err := c.DeletedUsers(graph.WithObserver(ctx, heard), ask)
	if err != nil {
		t.Fatal(err)
	}
	if len(heard.list) != 0 { // a 404 there is an answer: permanently deleted
		t.Fatalf("errors heard: %v", heard.list)
	}
	if !slices.Equal(got, soft) {
		t.Fatalf("DeletedUsers = %v, want %v", got, soft)
	}
	if n := srv.GraphRequests(); n != len(ask) {
		t.Fatalf("%d requests for %d ids", n, len(ask))
	}
	for _, r := range graphRequests(srv) {
		if !strings.HasPrefix(r.Path, "/v1.0/directory/deletedItems/") {
			t.Fatalf("request %+v", r)
		}
	}

	// Bad input never reaches Graph; no ids, no requests.
	srv.ResetRequests()
	if _, err := c.DeletedUsers(ctx, []string{soft[0], "not-a-guid"}); err == nil {
		t.Fatal("a bad id was taken")
	}
	if got, err := c.DeletedUsers(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("no ids: %v %v", got, err)
	}
	if n := srv.GraphRequests(); n != 0 {
		t.Fatalf("%d requests", n)
	}

	// Any answer but 404 is an error.
	srv.FailNext(1, http.StatusInternalServerError, 0)
	if _, err := c.DeletedUsers(graph.WithObserver(ctx, heard), soft); err == nil {
		t.Fatal("a 500 was taken for an answer")
	}
	if fmt.Sprint(heard.list) != "[graph]" {
		t.Fatalf("errors heard: %v, want [graph]", heard.list)
	}
}

// kinds is a graph.Observer that keeps the failures it hears.
type kinds struct {
	mu   gosync.Mutex
	list []graph.Kind
}

func (k *kinds) GraphAttempt(int, time.Duration) {}
func (k *kinds) GraphWait(time.Duration)         {}
func (k *kinds) GraphError(kind graph.Kind) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.list = append(k.list, kind)
}

// graphRequests are the logged requests to Graph, token requests left out.
func graphRequests(srv *graphtest.Server) []graphtest.Request {
	var out []graphtest.Request
	for _, r := range srv.Requests() {
		if strings.HasPrefix(r.Path, "/v1.0/") {
			out = append(out, r)
		}
	}
	return out
}
