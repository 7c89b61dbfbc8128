package sync

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
)

func TestInitialFullSync(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 25, MembersPerPage: 10})
	gs := h.populate(300, 8, 3, 1)
	run, c := h.sync(store.RunSucceeded)
	if run.Mode != ModeFull || run.Pages == 0 || run.GroupsSeen == 0 || run.UsersSeen == 0 || run.FinishedAt == nil {
		t.Fatalf("run %+v", run)
	}
	inScope := map[string]bool{}
	for _, g := range gs[:3] {
		for _, u := range h.dir.Members(g) {
			inScope[u] = true
		}
	}
	if c.UsersCreated != len(inScope) || c.GroupsCreated != 3 || c.MembersAdded == 0 || c.UsersDeactivated != 0 {
		t.Fatalf("counts %+v, %d users in scope", c, len(inScope))
	}
	h.checkMirror()
	// Nothing changed: the next run is a delta that changes nothing.
	before := h.snapshot()
	run, c = h.sync(store.RunSucceeded)
	if run.Mode != ModeDelta || c.Total() != 0 || h.snapshot() != before {
		t.Fatalf("idle delta run: %+v %+v", run, c)
	}
}

// TestIncrementalChanges walks through every kind of change Entra makes,
// pulling after each and checking the store mirrors the directory.
func TestIncrementalChanges(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 10, MembersPerPage: 5})
	gs := h.populate(120, 6, 3, 2)
	sales, ops, hr := gs[0], gs[1], gs[2]
	h.sync(store.RunSucceeded)

	steps := []struct {
		name   string
		change func() string // returns a user the step is about
		check  func(u string, c Counts)
		mode   string
	}{
		{"alice joins Sales", func() string {
			id := h.dir.AddUser(graphtest.User{UserPrincipalName: "alice.new@contoso.example", DisplayName: "Alice New", GivenName: "Alice", Surname: "New", Mail: "alice.new@contoso.example", AccountEnabled: true, JobTitle: "Analyst"})
			h.dir.AddMember(sales, id)
			return id
		}, func(u string, c Counts) {
			if c.UsersCreated != 1 || c.MembersAdded != 1 {
				t.Fatalf("join: %+v", c)
			}
			lu, _ := h.localUser(u)
			if lu.Str("title") != "Analyst" || str(lu.Doc["emails"].([]any)[0].(map[string]any)["value"]) != "alice.new@contoso.example" {
				t.Fatalf("joined user's document: %+v", lu.Doc)
			}
		}, ModeDelta},
		{"bob unchanged, Sales renamed", func() string {
			h.dir.RenameGroup(sales, "Sales & Marketing")
			return ""
		}, func(_ string, c Counts) {
			if c.GroupsUpdated != 1 || c.Total() != 1 {
				t.Fatalf("rename: %+v", c)
			}
		}, ModeDelta},
		{"carol gets a new title", func() string {
			u := h.dir.Members(ops)[0]
			h.dir.UpdateUser(u, func(x *graphtest.User) { x.JobTitle = "Head of Ops"; x.Department = "Operations" })
			return u
		}, func(u string, c Counts) {
			lu, _ := h.localUser(u)
			if c.UsersUpdated != 1 || lu.Str("title") != "Head of Ops" ||
				lu.Doc[enterpriseURN].(map[string]any)["department"] != "Operations" {
				t.Fatalf("update: %+v %+v", c, lu.Doc)
			}
		}, ModeDelta},
		{"dave is disabled", func() string {
			u := h.dir.Members(hr)[0]
			h.dir.UpdateUser(u, func(x *graphtest.User) { x.AccountEnabled = false })
			return u
		}, func(u string, c Counts) {
			if lu, _ := h.localUser(u); c.UsersDeactivated != 1 || lu.Active() {
				t.Fatalf("disable: %+v", c)
			}
		}, ModeDelta},
		{"dave is enabled again", func() string {
			u := h.dir.Members(hr)[0]
			h.dir.UpdateUser(u, func(x *graphtest.User) { x.AccountEnabled = true })
			return u
		}, func(u string, c Counts) {
			if lu, _ := h.localUser(u); c.UsersReactivated != 1 || !lu.Active() {
				t.Fatalf("enable: %+v", c)
			}
		}, ModeDelta},
		{"erin is soft-deleted", func() string {
			u := h.userOnlyIn(ops)
			h.dir.SoftDeleteUser(u)
			return u
		}, func(u string, c Counts) {
			lu, ok := h.localUser(u)
			if !ok || lu.Active() || c.UsersDeactivated != 1 || slices.Contains(h.localMembers(ops), u) {
				t.Fatalf("soft delete: %+v, kept %v", c, ok)
			}
		}, ModeDelta},
		{"erin is restored", func() string {
			u := h.userOnlyIn(ops)
			return u
		}, nil, ModeDelta},
		{"frank is hard-deleted", func() string {
			u := h.dir.Members(sales)[1]
			h.dir.HardDeleteUser(u)
			return u
		}, func(u string, c Counts) {
			if _, ok := h.localUser(u); ok || c.UsersDeleted != 1 {
				t.Fatalf("hard delete: %+v", c)
			}
		}, ModeDelta},
		{"gina moves from HR to Ops", func() string {
			u := h.userOnlyIn(hr)
			h.dir.RemoveMember(hr, u)
			h.dir.AddMember(ops, u)
			return u
		}, func(u string, c Counts) {
			if lu, _ := h.localUser(u); !lu.Active() || c.MembersAdded != 1 || c.MembersRemoved != 1 || c.UsersDeactivated != 0 {
				t.Fatalf("move: %+v", c)
			}
		}, ModeDelta},
		{"hank leaves every assigned group", func() string {
			u := h.userOnlyIn(sales)
			h.dir.RemoveMember(sales, u)
			return u
		}, func(u string, c Counts) {
			if lu, _ := h.localUser(u); lu.Active() || c.UsersDeactivated != 1 {
				t.Fatalf("leaver: %+v", c)
			}
		}, ModeDelta},
	}
	var erin string
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			h.t = t
			u := s.change()
			if s.name == "erin is soft-deleted" {
				erin = u
			}
			if s.name == "erin is restored" {
				h.dir.RestoreUser(erin)
				u = erin
			}
			run, c := h.sync(store.RunSucceeded)
			if run.Mode != s.mode {
				t.Fatalf("mode %s, want %s", run.Mode, s.mode)
			}
			if s.check != nil {
				s.check(u, c)
			}
			if s.name == "erin is restored" {
				if lu, _ := h.localUser(erin); !lu.Active() || c.UsersReactivated != 1 || !slices.Contains(h.localMembers(ops), erin) {
					t.Fatalf("restore: %+v", c)
				}
			}
			h.checkMirror()
		})
	}

	t.Run("HR is unassigned", func(t *testing.T) {
		h.t = t
		h.assign([]string{sales, ops})
		// More than 20 % of the people leave scope at once: held until confirmed.
		run, c := h.sync(store.RunHeld)
		_, confirmed := h.sync(store.RunSucceeded, Options{Trigger: "test", ConfirmDeletions: true})
		c.Add(confirmed)
		if run.Mode != ModeFull { // a changed group set means a full sync
			t.Fatalf("mode %s", run.Mode)
		}
		if got := h.localMembers(hr); len(got) != 0 || c.MembersRemoved == 0 || c.UsersDeactivated == 0 {
			t.Fatalf("unassigned group kept %d members; %+v", len(got), c)
		}
		h.checkMirror()
	})
	t.Run("a fourth group is assigned", func(t *testing.T) {
		h.t = t
		h.assign([]string{sales, ops, gs[3]})
		_, c := h.sync(store.RunSucceeded)
		if c.GroupsCreated != 1 || c.MembersAdded == 0 {
			t.Fatalf("new group: %+v", c)
		}
		h.checkMirror()
	})
	t.Run("Ops is deleted in Entra", func(t *testing.T) {
		h.t = t
		h.dir.DeleteGroup(ops, true)
		_, c := h.sync(store.RunHeld) // its people leave scope: more than 20 %
		_, confirmed := h.sync(store.RunSucceeded, Options{Trigger: "test", ConfirmDeletions: true})
		c.Add(confirmed)
		if _, ok := h.localGroup(ops); ok || c.GroupsDeleted != 1 {
			t.Fatalf("deleted group: %+v", c)
		}
		h.checkMirror()
	})
}

func TestPagingQuirks(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 3, MembersPerPage: 2, EmptyPages: true})
	h.populate(60, 4, 2, 3)
	run, _ := h.sync(store.RunSucceeded)
	if run.Pages < 20 {
		t.Fatalf("only %d pages at 3 objects a page", run.Pages)
	}
	h.checkMirror()
	for _, u := range h.dir.Users()[:10] {
		h.dir.UpdateUser(u, func(x *graphtest.User) { x.JobTitle = "Paged" })
	}
	h.sync(store.RunSucceeded)
	h.checkMirror()
}

// TestReplaysAndDuplicates: Graph sends objects again and twice on a page;
// each change still counts once.
func TestReplaysAndDuplicates(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 4, MembersPerPage: 3, Replays: true})
	gs := h.populate(40, 3, 2, 4)
	h.sync(store.RunSucceeded)
	var joined []string
	for i := range 5 {
		id := h.dir.AddUser(graphtest.User{UserPrincipalName: "joiner" + string(rune('a'+i)) + "@contoso.example", DisplayName: "J", AccountEnabled: true})
		h.dir.AddMember(gs[0], id)
		joined = append(joined, id)
	}
	for _, u := range h.dir.Members(gs[1])[:6] {
		h.dir.UpdateUser(u, func(x *graphtest.User) { x.OfficeLocation = "Building 7"; x.JobTitle = "Replayed" })
	}
	_, c := h.sync(store.RunSucceeded)
	if c.UsersCreated != 5 || c.MembersAdded != 5 || c.UsersUpdated != 6 {
		t.Fatalf("counts with replays: %+v", c)
	}
	h.checkMirror()
}

func TestResyncOnExpiredToken(t *testing.T) {
	for _, as400 := range []bool{false, true} {
		h := newHarness(t, graphtest.Options{PageSize: 10, ResyncAs400: as400})
		gs := h.populate(50, 3, 2, 5)
		h.sync(store.RunSucceeded)
		h.fake.ExpireDeltaTokens()
		leaver := h.userOnlyIn(gs[0])
		h.dir.RemoveMember(gs[0], leaver)
		h.dir.UpdateUser(h.dir.Members(gs[1])[0], func(x *graphtest.User) { x.JobTitle = "During the gap" })
		run, c := h.sync(store.RunSucceeded)
		if run.Mode != ModeFull || c.UsersDeactivated != 1 {
			t.Fatalf("400=%v: after an expired token: %+v %+v", as400, run, c)
		}
		h.checkMirror()
		if run, _ := h.sync(store.RunSucceeded); run.Mode != ModeDelta {
			t.Fatal("the full resync did not leave fresh links")
		}
	}
}

func TestStaleLinksMeanFullSync(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	h.populate(20, 2, 1, 6)
	clock := time.Now()
	h.w.Now = func() time.Time { return clock }
	h.sync(store.RunSucceeded)
	clock = clock.Add(8 * 24 * time.Hour) // a gap longer than a link's life
	if run, _ := h.sync(store.RunSucceeded); run.Mode != ModeFull {
		t.Fatalf("after 8 days: mode %s", run.Mode)
	}
	if run, _ := h.sync(store.RunSucceeded, Options{Full: true}); run.Mode != ModeFull {
		t.Fatal("--full did not sync in full")
	}
}

func TestThrottled(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 10})
	h.populate(30, 2, 2, 7)
	h.sync(store.RunSucceeded) // tokens cached, so faults hit Graph
	h.dir.UpdateUser(h.dir.Users()[0], func(x *graphtest.User) { x.JobTitle = "Throttled" })
	h.fake.FailNext(2, http.StatusTooManyRequests, 3*time.Second)
	run, _ := h.sync(store.RunSucceeded)
	if run.ThrottleWaits != 2 || run.ThrottleMS != 6000 {
		t.Fatalf("waits %d (%d ms), slept %v", run.ThrottleWaits, run.ThrottleMS, h.sleeps.waits)
	}
	h.checkMirror()
	// Still throttled after the retries: "come back later", not failed; nothing lost.
	h.fake.FailNext(20, http.StatusTooManyRequests, 30*time.Second)
	run, _ = h.sync(store.RunThrottled)
	if run.RetryAfterMS != 30000 || !strings.Contains(run.Error, "429") {
		t.Fatalf("throttled run: %+v", run)
	}
	h.fake.FailNext(0, 0, 0)
	h.sync(store.RunSucceeded)
	h.checkMirror()
}

// TestDeletionGuard: a run that would deprovision more than the threshold
// applies none of it until confirmed.
func TestDeletionGuard(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 20})
	gs := h.populate(100, 2, 1, 8)
	h.assign(gs[:1], func(c *store.GraphConnection) { c.ThresholdPercent = 20 })
	h.sync(store.RunSucceeded)
	members := h.dir.Members(gs[0])
	n := 0 // the active ones among those who leave
	for _, u := range members[:len(members)/2+1] {
		h.dir.RemoveMember(gs[0], u)
		if lu, _ := h.localUser(u); lu.Active() {
			n++
		}
	}
	before, _ := h.countUsers()
	for range 2 { // held, and held again: nothing is lost by waiting
		run, _ := h.sync(store.RunHeld)
		if run.Held != n || !strings.Contains(run.Error, "--confirm-deletions") {
			t.Fatalf("held run: %+v", run)
		}
		if active, _ := h.countUsers(); active != before {
			t.Fatalf("a held run deactivated %d users", before-active)
		}
	}
	run, c := h.sync(store.RunSucceeded, Options{Trigger: "test", ConfirmDeletions: true})
	if c.UsersDeactivated != n || run.Held != 0 {
		t.Fatalf("confirmed run: %+v %+v", run, c)
	}
	h.checkMirror()
	// A raised threshold lets the next mass change through.
	for _, u := range h.dir.Members(gs[0])[:len(h.dir.Members(gs[0]))/2+1] {
		h.dir.RemoveMember(gs[0], u)
	}
	h.assign(gs[:1], func(c *store.GraphConnection) { c.ThresholdPercent = 0; c.ThresholdCount = 1000 })
	h.sync(store.RunSucceeded)
	h.checkMirror()
}

func TestDeletePolicy(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	gs := h.populate(40, 2, 1, 9)
	h.assign(gs[:1], func(c *store.GraphConnection) { c.Deprovision = "delete" })
	h.sync(store.RunSucceeded)
	leaver := h.dir.Members(gs[0])[0]
	h.dir.RemoveMember(gs[0], leaver)
	_, c := h.sync(store.RunSucceeded)
	if _, ok := h.localUser(leaver); ok || c.UsersDeleted != 1 {
		t.Fatalf("delete policy: %+v", c)
	}
	h.checkMirror()
}

// TestPushAndPullAreOnePerson: a user Entra pushed over SCIM is the one the
// pull finds, by object id in externalId or by userPrincipalName.
func TestPushAndPullAreOnePerson(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	g := h.dir.AddGroup(graphtest.Group{DisplayName: "Everyone"})
	byExt := h.dir.AddUser(graphtest.User{UserPrincipalName: "ext@contoso.example", DisplayName: "By Ext", AccountEnabled: true})
	byUPN := h.dir.AddUser(graphtest.User{UserPrincipalName: "Upn.User@Contoso.example", DisplayName: "By UPN", AccountEnabled: true})
	h.dir.AddMember(g, byExt)
	h.dir.AddMember(g, byUPN)
	pushed := map[string]*store.Resource{
		byExt: {Kind: store.UserKind, Doc: map[string]any{"userName": "someone-else@contoso.example", "externalId": strings.ToUpper(byExt), "nickName": "kept"}},
		byUPN: {Kind: store.UserKind, Doc: map[string]any{"userName": "upn.user@contoso.example", "externalId": "mailnick"}},
	}
	pushedGroup := &store.Resource{Kind: store.GroupKind, Doc: map[string]any{"displayName": "Everyone (pushed)", "externalId": g}}
	err := h.db.Write(context.Background(), func(tx *store.Tx) error {
		for _, r := range []*store.Resource{pushed[byExt], pushed[byUPN], pushedGroup} {
			if err := tx.Insert(h.tenant.ID, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.assign([]string{g})
	_, c := h.sync(store.RunSucceeded)
	if c.UsersCreated != 0 || c.GroupsCreated != 0 {
		t.Fatalf("the pull made second copies: %+v", c)
	}
	for id, r := range pushed {
		lu, ok := h.localUser(id)
		if !ok || lu.ID != r.ID {
			t.Fatalf("%s not linked to the pushed user", id)
		}
	}
	if lu, _ := h.localUser(byExt); lu.Str("nickName") != "kept" {
		t.Fatal("the pull dropped an attribute only SCIM knows")
	}
	if lg, _ := h.localGroup(g); lg.ID != pushedGroup.ID {
		t.Fatal("the pushed group was not linked")
	}
	h.checkMirror()
}

func TestNestedGroups(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 5})
	top := h.dir.AddGroup(graphtest.Group{DisplayName: "All staff"})
	sub := h.dir.AddGroup(graphtest.Group{DisplayName: "Engineering"})
	subsub := h.dir.AddGroup(graphtest.Group{DisplayName: "Platform"})
	h.dir.AddMember(top, sub)
	h.dir.AddMember(sub, subsub)
	direct := h.dir.AddUser(graphtest.User{UserPrincipalName: "direct@contoso.example", AccountEnabled: true})
	deep := h.dir.AddUser(graphtest.User{UserPrincipalName: "deep@contoso.example", AccountEnabled: true})
	h.dir.AddMember(top, direct)
	h.dir.AddMember(subsub, deep)

	h.assign([]string{top}) // nested off: only direct members
	h.sync(store.RunSucceeded)
	if _, ok := h.localUser(deep); ok {
		t.Fatal("a nested member was pulled with nesting off")
	}
	h.assign([]string{top}, func(c *store.GraphConnection) { c.Nested = true })
	h.sync(store.RunSucceeded)
	lu, ok := h.localUser(deep)
	if !ok || !lu.Active() {
		t.Fatal("nested member missing")
	}
	if lg, _ := h.localGroup(subsub); lg.Str("displayName") != "Platform" {
		t.Fatalf("nested group: %+v", lg)
	}
	if run, _ := h.sync(store.RunSucceeded); run.Mode != ModeDelta {
		t.Fatalf("a nested tenant syncs in full every time (%s)", run.Mode)
	}
	// Someone joins the deepest group: the delta brings them in.
	joiner := h.dir.AddUser(graphtest.User{UserPrincipalName: "joiner@contoso.example", AccountEnabled: true})
	h.dir.AddMember(subsub, joiner)
	h.sync(store.RunSucceeded)
	if lu, ok := h.localUser(joiner); !ok || !lu.Active() {
		t.Fatal("joiner of a nested group missing")
	}
	// Engineering leaves All staff: its people fall out of scope.
	h.dir.RemoveMember(top, sub)
	h.sync(store.RunHeld) // half the people at once
	h.sync(store.RunSucceeded, Options{Trigger: "test", ConfirmDeletions: true})
	if lu, _ := h.localUser(deep); lu.Active() {
		t.Fatal("a user whose group left the tree is still active")
	}
	if lu, _ := h.localUser(direct); !lu.Active() {
		t.Fatal("the direct member was deprovisioned")
	}
}

// TestReusedUserPrincipalName: Entra gives a leaver's UPN to a joiner (or
// renames people in a swap); userName stays unique here and no run sticks.
func TestReusedUserPrincipalName(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 5})
	g := h.dir.AddGroup(graphtest.Group{DisplayName: "Staff"})
	mk := func(upn string) string {
		id := h.dir.AddUser(graphtest.User{UserPrincipalName: upn, DisplayName: upn, AccountEnabled: true})
		h.dir.AddMember(g, id)
		return id
	}
	leaver := mk("sam@contoso.example")
	ann, bea := mk("ann@contoso.example"), mk("bea@contoso.example")
	h.assign([]string{g})
	h.sync(store.RunSucceeded)

	// Sam is soft-deleted; a new Sam gets the UPN in the same cycle.
	h.dir.SoftDeleteUser(leaver)
	newSam := mk("sam@contoso.example")
	h.sync(store.RunSucceeded, Options{Trigger: "test", ConfirmDeletions: true}) // one of three people: over 20 %
	old, _ := h.localUser(leaver)
	fresh, _ := h.localUser(newSam)
	if fresh.Str("userName") != "sam@contoso.example" || !fresh.Active() || old.Active() || !strings.HasSuffix(old.Str("userName"), "sam@contoso.example") || old.Str("userName") == "sam@contoso.example" {
		t.Fatalf("reused UPN: old %q (active %v), new %q", old.Str("userName"), old.Active(), fresh.Str("userName"))
	}
	// Ann and Bea swap UPNs.
	h.dir.UpdateUser(ann, func(u *graphtest.User) { u.UserPrincipalName = "bea@contoso.example" })
	h.dir.UpdateUser(bea, func(u *graphtest.User) { u.UserPrincipalName = "ann@contoso.example" })
	h.sync(store.RunSucceeded)
	a, _ := h.localUser(ann)
	b, _ := h.localUser(bea)
	if a.Str("userName") != "bea@contoso.example" || b.Str("userName") != "ann@contoso.example" {
		t.Fatalf("swap: ann's user is %q, bea's %q", a.Str("userName"), b.Str("userName"))
	}
	h.checkMirror()
}

// failingUsers is a Source whose users delta fails: a run that dies after
// applying its group pages.
type failingUsers struct{ Source }

func (f failingUsers) UsersDelta(ctx context.Context, link string) iter.Seq2[graph.UserPage, error] {
	return func(yield func(graph.UserPage, error) bool) { yield(graph.UserPage{}, errors.New("connection reset")) }
}

// TestLeaverAfterFailedRun: a run that removed someone's last membership
// and then failed leaves its links unsaved; the next run, replaying, must
// still deprovision them though the membership is already gone.
func TestLeaverAfterFailedRun(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	gs := h.populate(30, 2, 1, 14)
	h.sync(store.RunSucceeded)
	leaver := h.userOnlyIn(gs[0])
	h.dir.RemoveMember(gs[0], leaver)
	connect := h.w.Connect
	h.w.Connect = func(ctx context.Context, c store.GraphConnection) (Source, error) {
		src, err := connect(ctx, c)
		return failingUsers{src}, err
	}
	run, _ := h.sync(store.RunFailed)
	if !strings.Contains(run.Error, "connection reset") {
		t.Fatalf("failed run: %+v", run)
	}
	if lu, _ := h.localUser(leaver); !lu.Active() || slices.Contains(h.localMembers(gs[0]), leaver) {
		t.Fatal("the failed run should have removed the membership and stopped before deprovisioning")
	}
	h.w.Connect = connect
	_, c := h.sync(store.RunSucceeded)
	if lu, _ := h.localUser(leaver); lu.Active() || c.UsersDeactivated != 1 {
		t.Fatalf("the replay did not deprovision the leaver: %+v", c)
	}
	h.checkMirror()
}

// TestDeletesWhileLinksExpired: people and groups deleted while no delta
// link was kept end as a delta run would leave them: the hard-deleted user
// deleted, the soft-deleted one deactivated and out of her groups, the
// deleted group gone; a restore afterwards brings her back.
func TestDeletesWhileLinksExpired(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 10})
	gs := h.populate(60, 4, 3, 20)
	h.sync(store.RunSucceeded)
	hard, soft := h.userOnlyIn(gs[0]), h.userOnlyIn(gs[1])
	h.fake.ExpireDeltaTokens()
	old, _ := h.dir.User(hard)
	h.dir.HardDeleteUser(hard)
	// A newcomer takes the leaver's userPrincipalName, which the full pass
	// sees before it learns that the leaver is gone.
	newcomer := h.dir.AddUser(graphtest.User{UserPrincipalName: old.UserPrincipalName, DisplayName: "Newcomer", AccountEnabled: true})
	h.dir.AddMember(gs[0], newcomer)
	h.dir.SoftDeleteUser(soft)
	h.dir.DeleteGroup(gs[2], false)
	// The deleted group's people leave scope too: over 20 %, confirmed.
	run, c := h.sync(store.RunSucceeded, Options{Trigger: "test", ConfirmDeletions: true})
	if run.Mode != ModeFull || c.GroupsDeleted != 1 {
		t.Fatalf("full pass: %+v %+v", run, c)
	}
	if _, ok := h.localUser(hard); ok || c.UsersDeleted != 1 {
		t.Fatalf("the hard-deleted user is still here: %+v", c)
	}
	if u, _ := h.localUser(newcomer); u.Str("userName") != old.UserPrincipalName || !u.Active() {
		t.Fatalf("the newcomer: %q, active %v", u.Str("userName"), u.Active())
	}
	if u, ok := h.localUser(soft); !ok || u.Active() || slices.Contains(h.localMembers(gs[1]), soft) {
		t.Fatalf("the soft-deleted user: kept %v, active %v", ok, u.Active())
	}
	h.checkMirror()
	h.dir.RestoreUser(soft)
	if _, c := h.sync(store.RunSucceeded); c.UsersReactivated != 1 || !slices.Contains(h.localMembers(gs[1]), soft) {
		t.Fatalf("restore: %+v", c)
	}
	h.checkMirror()
}
