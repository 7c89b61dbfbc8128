package sync

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
)

const (
	azureTenant = "6f1b2a3c-1111-4222-8333-944445555666"
	appID       = "0c5e8f4a-aaaa-4bbb-8ccc-dddddddddddd"
	appSecret   = "graph-client-secret"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// harness is a fake Graph tenant, a store with a tenant connected to it,
// and a worker.
type harness struct {
	t      testing.TB
	fake   *graphtest.Server
	dir    *graphtest.Directory
	db     *store.DB
	dbPath string
	tenant store.Tenant
	conn   store.GraphConnection
	w      *Worker
	sleeps *sleepLog
}

// sleepLog stands in for the clock in Retry-After waits.
type sleepLog struct {
	mu    gosync.Mutex
	waits []time.Duration
}

func (s *sleepLog) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

// newHarness starts a fake Graph whose app has exactly the permissions the
// README asks a customer's admin to grant, and a store connected to it
// with the README's defaults (the deletion guard at 20 %).
func newHarness(t testing.TB, opts graphtest.Options) *harness {
	t.Helper()
	fake := graphtest.NewServer(opts)
	t.Cleanup(fake.Close)
	fake.AddApp(azureTenant, appID, appSecret)
	fake.Grant(azureTenant, appID, graph.RequiredPermissions...)
	return newHarnessOn(t, fake)
}

// newHarnessOn is a harness with a store of its own on an existing fake.
func newHarnessOn(t testing.TB, fake *graphtest.Server) *harness {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "pull.db")
	if pgtest.Selected() { // ENTRASYNC_TEST_STORE=postgres: a schema of the test PostgreSQL
		dsn = pgtest.Schema(t)
	}
	return newHarnessAt(t, fake, dsn)
}

// newHarnessAt is a harness on the store at dsn.
func newHarnessAt(t testing.TB, fake *graphtest.Server, dsn string) *harness {
	t.Helper()
	h := &harness{t: t, fake: fake, dir: fake.Tenant(azureTenant), sleeps: &sleepLog{}, dbPath: dsn}
	db, err := store.Open(context.Background(), h.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h.db = db
	err = db.Write(context.Background(), func(tx *store.Tx) error {
		h.tenant, err = tx.CreateTenant("contoso")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	h.conn = store.GraphConnection{Tenant: "contoso", AzureTenantID: azureTenant, ClientID: appID, Credential: "secret",
		Secret: []byte(appSecret), Schedule: "@every 40m", Deprovision: "deactivate", ThresholdPercent: 20,
		AuthorityHost: fake.URL(), GraphURL: fake.URL()}
	h.w = &Worker{DB: db, Tokens: StoreTokens{DB: db}, Locks: StoreLocks{DB: db}, Key: testKey, Connect: h.connect}
	return h
}

func (h *harness) connect(ctx context.Context, c store.GraphConnection) (Source, error) {
	return graph.New(graph.Config{TenantID: c.AzureTenantID, ClientID: c.ClientID, ClientSecret: string(c.Secret),
		AuthorityHost: c.AuthorityHost, GraphURL: c.GraphURL, HTTPClient: h.fake.Client(), Sleep: h.sleeps.sleep})
}

// assign sets the assigned groups (and any other connection setting).
func (h *harness) assign(groups []string, mod ...func(*store.GraphConnection)) {
	h.t.Helper()
	h.conn.Groups = groups
	for _, m := range mod {
		m(&h.conn)
	}
	if err := h.db.Write(context.Background(), func(tx *store.Tx) error { return tx.SaveGraphConnection(h.conn, testKey) }); err != nil {
		h.t.Fatal(err)
	}
}

// sync runs a pull and fails the test unless it ends as want.
func (h *harness) sync(want string, opts ...Options) (store.Run, Counts) {
	h.t.Helper()
	o := Options{Trigger: "test"}
	if len(opts) > 0 {
		o = opts[0]
	}
	run, err := h.w.RunOnce(context.Background(), "contoso", o)
	if run.Status != want {
		h.t.Fatalf("run %d (%s) ended %s, want %s: %v; changes %s", run.ID, run.Mode, run.Status, want, err, run.Changes)
	}
	var c Counts
	if err := json.Unmarshal(run.Changes, &c); err != nil {
		h.t.Fatal(err)
	}
	return run, c
}

// populate makes a directory of users in groups and assigns the first n groups.
func (h *harness) populate(users, groups, assigned int, seed int64) []string {
	h.t.Helper()
	gs := h.dir.Populate(rand.New(rand.NewSource(seed)), users, groups)
	sort.Strings(gs)
	h.assign(gs[:assigned])
	return gs
}

// localUser returns the store's user linked to an Entra user.
func (h *harness) localUser(entraID string) (store.Resource, bool) {
	h.t.Helper()
	m, err := h.db.ByEntraID(context.Background(), h.tenant.ID, store.UserKind, []string{entraID})
	if err != nil {
		h.t.Fatal(err)
	}
	u, ok := m[strings.ToLower(entraID)]
	return u, ok
}

func (h *harness) localGroup(entraID string) (store.Resource, bool) {
	h.t.Helper()
	m, err := h.db.ByEntraID(context.Background(), h.tenant.ID, store.GroupKind, []string{entraID})
	if err != nil {
		h.t.Fatal(err)
	}
	g, ok := m[strings.ToLower(entraID)]
	return g, ok
}

// localMembers is the Entra ids of a local group's members.
func (h *harness) localMembers(entraGroup string) []string {
	h.t.Helper()
	g, ok := h.localGroup(entraGroup)
	if !ok {
		return nil
	}
	ms, err := h.db.Members(context.Background(), h.tenant.ID, g.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		kind := store.UserKind
		if m.Kind == store.GroupKind {
			kind = store.GroupKind
		}
		r, err := h.db.Get(context.Background(), h.tenant.ID, kind, m.ID)
		if err != nil {
			h.t.Fatal(err)
		}
		ids = append(ids, r.EntraID)
	}
	sort.Strings(ids)
	return ids
}

// checkMirror asserts the store agrees with the fake directory: every
// assigned group with its name and members, every member user with its
// attributes and active flag, and every other pulled user deprovisioned.
func (h *harness) checkMirror() {
	h.t.Helper()
	inScope := map[string]bool{}
	for _, gid := range h.conn.Groups {
		fg, ok := h.dir.Group(gid)
		if !ok {
			continue // deleted in Entra
		}
		lg, ok := h.localGroup(gid)
		if !ok || lg.Str("displayName") != fg.DisplayName {
			h.t.Fatalf("group %s: local %+v, want name %q", gid, lg, fg.DisplayName)
		}
		want := slices.Clone(h.dir.Members(gid))
		sort.Strings(want)
		// Deleted people (soft-deleted too) are in no group, in Entra's
		// listings as here.
		if got := h.localMembers(gid); !slices.Equal(got, want) {
			h.t.Fatalf("group %s members:\n got %v\nwant %v", gid, got, want)
		}
		for _, id := range want {
			inScope[id] = true
		}
	}
	for id := range inScope {
		fu, _ := h.dir.User(id)
		lu, ok := h.localUser(id)
		if !ok {
			h.t.Fatalf("user %s in scope but not here", id)
		}
		if lu.Active() != fu.AccountEnabled || lu.Str("userName") != fu.UserPrincipalName || lu.Str("displayName") != fu.DisplayName ||
			lu.Str("title") != fu.JobTitle || lu.Str("externalId") != id {
			doc, _ := json.Marshal(lu.Doc)
			h.t.Fatalf("user %s: local %s (active %v), Entra %+v", id, doc, lu.Active(), fu)
		}
	}
	page, err := h.db.List(context.Background(), h.tenant.ID, store.UserKind, store.Query{Count: 1_000_000})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, u := range page.Resources {
		if u.EntraID != "" && !inScope[u.EntraID] && u.Active() {
			h.t.Fatalf("user %s (%s) is out of scope but active", u.ID, u.EntraID)
		}
	}
}

func (h *harness) countUsers() (active, inactive int) {
	h.t.Helper()
	page, err := h.db.List(context.Background(), h.tenant.ID, store.UserKind, store.Query{Count: 1_000_000})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, u := range page.Resources {
		if u.Active() {
			active++
		} else {
			inactive++
		}
	}
	return
}

// snapshot renders the tenant's whole state, to show a run changed nothing.
func (h *harness) snapshot() string {
	h.t.Helper()
	s, err := snapshotOf(h.db, h.tenant.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// snapshotOf is snapshot from any process (a child has no harness).
func snapshotOf(db *store.DB, tenant int64) (string, error) {
	ctx := context.Background()
	var lines []string
	for _, kind := range []store.Kind{store.UserKind, store.GroupKind} {
		page, err := db.List(ctx, tenant, kind, store.Query{Count: 1_000_000})
		if err != nil {
			return "", err
		}
		for _, r := range page.Resources {
			doc, _ := json.Marshal(r.Doc)
			lines = append(lines, fmt.Sprintf("%s %s v%d %s", r.ID, r.EntraID, r.Version, doc))
			if kind == store.GroupKind {
				ms, err := db.Members(ctx, tenant, r.ID)
				if err != nil {
					return "", err
				}
				for _, m := range ms {
					lines = append(lines, "  "+m.ID)
				}
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), nil
}

// userIn returns a user that is a member of group g and of no other assigned group.
func (h *harness) userOnlyIn(g string) string {
	h.t.Helper()
	for _, u := range h.dir.Members(g) {
		only := true
		for _, other := range h.conn.Groups {
			if other != g && slices.Contains(h.dir.Members(other), u) {
				only = false
			}
		}
		if only {
			return u
		}
	}
	h.t.Fatalf("no user only in %s", g)
	return ""
}
