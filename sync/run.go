package sync

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/store"
)

// Source is Microsoft Graph as a run needs it; *graph.Client is one.
type Source interface {
	UsersDelta(ctx context.Context, link string) iter.Seq2[graph.UserPage, error]
	GroupsDelta(ctx context.Context, link string, groupIDs []string) iter.Seq2[graph.GroupPage, error]
	LatestUsersLink(ctx context.Context) (string, error)
	// UsersByID returns those of ids (graph.MaxIDsPerLookup at most) that
	// are users Graph has, deleted ones left out.
	UsersByID(ctx context.Context, ids []string) ([]graph.User, error)
	// DeletedUsers returns those of ids that are users in Entra's deleted
	// items: soft-deleted, restorable. An id Graph has neither as a user
	// nor there is permanently deleted.
	DeletedUsers(ctx context.Context, ids []string) ([]string, error)
	// ExistingGroups returns those of ids (graph.MaxGroupsPerQuery at
	// most) that are groups Graph has, deleted ones left out.
	ExistingGroups(ctx context.Context, ids []string) ([]string, error)
}

// Connect makes the Source for a tenant's Graph connection.
type Connect func(ctx context.Context, c store.GraphConnection) (Source, error)

// Worker runs pulls: one tenant at a time per tenant, any number of
// tenants side by side.
type Worker struct {
	DB      *store.DB
	Tokens  DeltaTokens
	Locks   Locker
	Connect Connect
	Key     []byte // opens the stored Graph credentials
	Log     *slog.Logger
	// TokenMaxAge is how old a delta link may be and still be used; Graph
	// keeps directory delta state about 7 days. Default 7 days less 6 hours.
	TokenMaxAge time.Duration
	Now         func() time.Time
	// Metrics hears how runs end and of their Graph requests; nil: none.
	Metrics Observer

	// beforeSave, when set, runs after a run's changes committed and before
	// its delta links are saved (tests kill the process there).
	beforeSave func()
	// sliceRows, when set, replaces the constant sliceRows (tests slice
	// small pages); inSlice, when set, runs inside each transaction of
	// the pull's changes (tests hold it open or fail it there).
	sliceRows int
	inSlice   func(tenant int64, slice ChangeSet) error
}

// Observer hears how each run ended, and (graph.Observer) of its Graph
// requests; the metrics implement it.
type Observer interface {
	graph.Observer
	RunFinished(run store.Run, counts Counts)
}

// Options say how a run was asked for.
type Options struct {
	Trigger          string // schedule, cli, api, demo
	Full             bool   // ignore stored delta links
	ConfirmDeletions bool   // apply deprovisions over the threshold
	// NoRunSince makes a scheduled run a no-op (ErrRanThisCycle) when a run
	// of the tenant started after it: every node's cron fires, and the
	// check is made under the run lock, so one cycle runs a tenant once
	// however the nodes' fires interleave.
	NoRunSince time.Time
}

// ErrRanThisCycle is Start's answer when Options.NoRunSince finds a run.
var ErrRanThisCycle = errors.New("a run of this tenant started this cycle already")

// errLockLost ends a run whose lock could not be renewed (the lock store
// was unreachable, or the lock expired and another node took it): going on
// could run the tenant twice at once. What the run committed stays; its
// links are not saved, so the next run replays from the last saved ones.
var errLockLost = errors.New("the run stopped because it lost its run lock (the lock could not be renewed in " +
	"Redis or the database, which were unreachable or slow); what it applied stays, and the next run picks up from there")

// RunningError is the answer when a run of the tenant is already going.
type RunningError struct{ Run store.Run }

func (e *RunningError) Error() string {
	if e.Run.ID == 0 {
		return "a run of this tenant is already going"
	}
	return fmt.Sprintf("run %d of tenant %q is already going (started %s)", e.Run.ID, e.Run.Tenant, e.Run.StartedAt.Format(time.RFC3339))
}

// Run modes.
const (
	ModeDelta = "delta"
	ModeFull  = "full"
)

func (w *Worker) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Worker) log() *slog.Logger {
	if w.Log != nil {
		return w.Log
	}
	return slog.New(slog.DiscardHandler)
}

// RunOnce runs a pull of tenant now and returns its record.
func (w *Worker) RunOnce(ctx context.Context, tenant string, opts Options) (store.Run, error) {
	_, done, err := w.Start(ctx, tenant, opts)
	if err != nil {
		return store.Run{}, err
	}
	run := <-done
	if run.Status == store.RunFailed {
		return run, errors.New(run.Error)
	}
	return run, nil
}

// Start begins a pull of tenant and returns its record (status running)
// and a channel that yields the finished record. It fails with a
// *RunningError when a run of the tenant is going, here or elsewhere.
func (w *Worker) Start(ctx context.Context, tenantName string, opts Options) (store.Run, <-chan store.Run, error) {
	t, err := w.DB.Tenant(ctx, tenantName)
	if err != nil {
		return store.Run{}, nil, err
	}
	conn, err := w.DB.OpenGraphConnection(ctx, tenantName, w.Key)
	if err != nil {
		return store.Run{}, nil, err
	}
	lease, err := w.Locks.Lock(ctx, fmt.Sprintf("run:tenant:%d", t.ID))
	// A lock held while no run is recorded as going belongs to a run that
	// is recording its end (or its start): wait a moment for it, so that
	// "start a run once the last one finished" is not answered "running".
	for wait := 0; errors.Is(err, ErrLocked); wait++ {
		running, going, rerr := w.DB.RunningRun(ctx, tenantName)
		if going || rerr != nil || wait == 40 || !sleepFor(ctx, 25*time.Millisecond) {
			return store.Run{}, nil, &RunningError{Run: running}
		}
		lease, err = w.Locks.Lock(ctx, fmt.Sprintf("run:tenant:%d", t.ID))
	}
	if err != nil {
		return store.Run{}, nil, err // the lock says what failed, and where
	}
	// A run still marked running is a phantom now that we hold the lock:
	// it is ended here, before any reason to skip this run, so that ops do
	// not see it going (nor get it in a 409) until the tenant's next run.
	// Read first: every node's every fire comes here, and a write each
	// would queue behind SCIM's for nothing.
	var abandoned []int64
	_, going, err := w.DB.RunningRun(ctx, tenantName)
	if err == nil && going {
		err = w.DB.Write(ctx, func(tx *store.Tx) (err error) {
			abandoned, err = tx.FailAbandonedRuns(t)
			return err
		})
	}
	if err != nil {
		lease.Release()
		return store.Run{}, nil, err
	}
	if len(abandoned) > 0 {
		w.log().Warn("runs left marked running by a node that stopped are recorded failed", "tenant", tenantName, "runs", abandoned)
	}
	if !opts.NoRunSince.IsZero() {
		last, err := w.DB.Runs(ctx, tenantName, 1)
		if err != nil || (len(last) == 1 && last[0].StartedAt.After(opts.NoRunSince)) {
			lease.Release()
			return store.Run{}, nil, cmp.Or(err, ErrRanThisCycle)
		}
	}
	r := &runner{w: w, t: t, conn: conn, opts: opts, cands: map[string]Deprovision{}, links: map[string]string{}, left: map[string]bool{}}
	mode, err := r.plan(ctx)
	if err != nil {
		lease.Release()
		return store.Run{}, nil, err
	}
	var run store.Run
	err = w.DB.Write(ctx, func(tx *store.Tx) error {
		var err error
		run, err = tx.StartRun(t, opts.Trigger, mode)
		return err
	})
	if err != nil {
		lease.Release()
		return store.Run{}, nil, err
	}
	r.run = run
	// With "pull finished", the node's log says which node ran which run:
	// runs do not record their node.
	w.log().Info("pull started", "tenant", t.Name, "run", run.ID, "trigger", opts.Trigger, "mode", mode)
	done := make(chan store.Run, 1)
	go func() {
		// The run outlives the request that started it, not the process.
		runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		go func() {
			select {
			case <-lease.Lost():
				cancel(errLockLost)
			case <-runCtx.Done():
			}
		}()
		finished := r.finish(runCtx, r.execute(runCtx))
		cancel(nil)
		// Released before anyone hears the run ended: a caller that exits
		// right after must not leave the lock to expire.
		lease.Release()
		done <- finished
	}()
	return run, done, nil
}

// runner is one run.
type runner struct {
	w     *Worker
	t     store.Tenant
	conn  store.GraphConnection
	opts  Options
	src   Source
	run   store.Run
	links map[string]string      // delta links to save at the end, by key
	cands map[string]Deprovision // users to deprovision at the end, by local id
	count Counts

	chunks [][]string      // the groups queries, as walked; saved as the manifest
	left   map[string]bool // users Graph reported leaving a group, to check at the end
	rescan bool            // check every user's scope at the end

	returned map[string]bool // a full pass: the groups its walk returned, by Entra id
	aside    []string        // users renamed aside to free a userName (Plan.Aside), by local id
	statsAt  int             // rows added when the store's planner statistics were last refreshed

	mu gosync.Mutex // guards the throttling figures, reported from HTTP goroutines
}

// plan decides the mode: full when asked, or when any query lacks a usable
// delta link (first run, a changed group set or selection, a gap longer
// than a link's life). The groups queries are chunks of up to 50 ids; the
// chunks of the last run are kept as a manifest beside their links.
func (r *runner) plan(ctx context.Context) (string, error) {
	if r.opts.Full {
		return ModeFull, nil
	}
	maxAge := r.w.TokenMaxAge
	if maxAge == 0 {
		maxAge = 7*24*time.Hour - 6*time.Hour
	}
	load := func(key string) (string, bool, error) {
		link, saved, err := r.w.Tokens.Load(ctx, r.t.ID, key)
		if err != nil {
			return "", false, err
		}
		return link, link != "" && r.w.now().Sub(saved) <= maxAge, nil
	}
	manifest, ok, err := load(r.manifestKey())
	if err != nil || !ok {
		return ModeFull, err
	}
	var chunks [][]string
	if json.Unmarshal([]byte(manifest), &chunks) != nil {
		return ModeFull, nil
	}
	queried, err := r.queriedGroups(ctx)
	if err != nil {
		return "", err
	}
	if !slices.Equal(lowerSorted(slices.Concat(chunks...)), queried) {
		return ModeFull, nil // the group set changed
	}
	keys := []string{r.usersKey()}
	for _, c := range chunks {
		keys = append(keys, r.groupsKey(c))
	}
	for _, key := range keys {
		link, ok, err := load(key)
		if err != nil || !ok {
			return ModeFull, err
		}
		r.links[key] = link
	}
	r.chunks = chunks
	return ModeDelta, nil
}

// queriedGroups is the Entra ids of the groups whose deltas a run reads:
// the assigned ones and, with nested expansion, those below them that an
// earlier run found.
func (r *runner) queriedGroups(ctx context.Context) ([]string, error) {
	ids := lowerSorted(r.conn.Groups)
	if !r.conn.Nested {
		return ids, nil
	}
	scope, err := r.scope(ctx)
	if err != nil {
		return nil, err
	}
	found, err := r.w.DB.GetMany(ctx, r.t.ID, store.GroupKind, scope)
	if err != nil {
		return nil, err
	}
	for _, g := range found {
		if g.EntraID != "" {
			ids = append(ids, g.EntraID)
		}
	}
	return lowerSorted(ids), nil
}

func lowerSorted(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, strings.ToLower(id))
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Delta link keys change with what their query asks (Graph endpoint,
// directory, selection, groups), so a changed query finds no link.
func (r *runner) usersKey() string {
	return "users:" + shortHash(r.conn.GraphURL, r.conn.AzureTenantID, graph.UserSelect)
}

func (r *runner) groupsKey(chunk []string) string {
	return "groups:" + shortHash(r.conn.GraphURL, r.conn.AzureTenantID, graph.GroupSelect, strings.Join(chunk, ","))
}

// manifestKey also changes with nested expansion: turning it on must list
// the groups below the assigned ones from scratch.
func (r *runner) manifestKey() string {
	return "groups-manifest:" + shortHash(r.conn.GraphURL, r.conn.AzureTenantID, graph.GroupSelect, strconv.FormatBool(r.conn.Nested))
}

func shortHash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:12])
}

// chunked splits list into slices of at most n.
func chunked[T any](list []T, n int) [][]T {
	var out [][]T
	for len(list) > 0 {
		k := min(n, len(list))
		out = append(out, list[:k])
		list = list[k:]
	}
	return out
}

// execute runs the passes; a delta pass that Graph answers with a resync
// becomes a full pass.
func (r *runner) execute(ctx context.Context) error {
	src, err := r.w.Connect(ctx, r.conn)
	if err != nil {
		return err
	}
	r.src = src
	ctx = graph.WithWaitObserver(ctx, r.waited)
	if r.w.Metrics != nil {
		ctx = graph.WithObserver(ctx, r.w.Metrics)
	}
	if r.run.Mode == ModeDelta {
		err := r.deltaPass(ctx)
		if !graph.IsResyncRequired(err) {
			return err
		}
		r.w.log().Info("delta link refused by Graph; running a full sync", "tenant", r.t.Name, "run", r.run.ID)
		r.run.Mode = ModeFull
		r.cands = map[string]Deprovision{}
		r.links = map[string]string{}
	}
	return r.fullPass(ctx)
}

func (r *runner) waited(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.run.ThrottleWaits++
	r.run.ThrottleMS += d.Milliseconds()
}

// deltaPass applies what changed since the stored links.
func (r *runner) deltaPass(ctx context.Context) error {
	chunks := r.chunks
	r.chunks = nil
	if err := r.walkGroups(ctx, chunks); err != nil {
		return err
	}
	key := r.usersKey()
	link := r.links[key]
	pages := ahead(ctx, func(ctx context.Context) iter.Seq2[graph.UserPage, error] { return r.src.UsersDelta(ctx, link) })
	for page, err := range pages {
		if err != nil {
			return err
		}
		r.run.Pages++
		r.run.UsersSeen += len(page.Users)
		if err := r.apply(ctx, Page{Users: page.Users}, 0, lookups{}); err != nil {
			return err
		}
		if page.DeltaLink != "" {
			r.links[key] = page.DeltaLink
		}
	}
	return r.settle(ctx)
}

// fullPass reads every assigned group from scratch and reconciles the
// store with it, ending where delta runs would have. The users link is
// taken first, so changes made during the pass come with the next delta.
// Graph's listings leave deleted objects out, so what the walk did not see
// is looked up: a group gone from Entra is deleted; a user gone is deleted
// when permanently deleted, and deprovisioned when soft-deleted
// (restorable), out of its groups as a delta run leaves it.
func (r *runner) fullPass(ctx context.Context) error {
	link, err := r.src.LatestUsersLink(ctx)
	if err != nil {
		return err
	}
	r.links[r.usersKey()] = link
	for k := range r.links {
		if k != r.usersKey() {
			delete(r.links, k)
		}
	}
	r.chunks = nil
	before, err := r.scope(ctx)
	if err != nil {
		return err
	}
	r.returned = map[string]bool{}
	if err := r.walkGroups(ctx, chunked(lowerSorted(r.conn.Groups), graph.MaxGroupsPerQuery)); err != nil {
		return err
	}
	if err := r.dropGoneGroups(ctx, before); err != nil {
		return err
	}
	if err := r.sweep(ctx); err != nil {
		return err
	}
	if err := r.refreshUsers(ctx); err != nil {
		return err
	}
	return r.settle(ctx)
}

// dropGoneGroups deletes the groups that were in scope before the walk,
// that the walk did not return, and that Graph no longer has: an assigned
// group the walk asked for by id is gone when it did not come back; a
// nested one may merely have left the tree, so it is looked up.
func (r *runner) dropGoneGroups(ctx context.Context, before []string) error {
	groups, err := r.w.DB.GetMany(ctx, r.t.ID, store.GroupKind, before)
	if err != nil {
		return err
	}
	assigned := map[string]bool{}
	for _, id := range r.conn.Groups {
		assigned[strings.ToLower(id)] = true
	}
	local := map[string]string{} // Entra id -> local id of the unseen
	var check []string
	for _, g := range groups {
		if g.EntraID == "" || r.returned[g.EntraID] {
			continue
		}
		local[g.EntraID] = g.ID
		if !assigned[g.EntraID] {
			check = append(check, g.EntraID)
		}
	}
	for _, chunk := range chunked(lowerSorted(check), graph.MaxGroupsPerQuery) {
		found, err := r.src.ExistingGroups(ctx, chunk)
		if err != nil {
			return err
		}
		for _, id := range found {
			delete(local, strings.ToLower(id))
		}
	}
	ids := make([]string, 0, len(local))
	for _, id := range local {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	cs := ChangeSet{}
	for _, id := range ids {
		cs = append(cs, Change{Op: Delete, Kind: store.GroupKind, ID: id})
	}
	counts, _, err := r.applyChanges(ctx, cs)
	r.count.Add(counts)
	return err
}

// lookup asks Graph for users the pull manages. It returns those Graph
// has, and proposes the deprovision of those it has not: a delete when
// they are permanently deleted, the tenant's policy when soft-deleted.
func (r *runner) lookup(ctx context.Context, users []store.Resource) ([]graph.User, error) {
	ids := make([]string, len(users))
	for i, u := range users {
		ids[i] = u.EntraID
	}
	found, err := r.src.UsersByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	r.run.UsersSeen += len(found)
	present := map[string]bool{}
	for _, u := range found {
		present[u.ID] = true
	}
	var missing []string
	for _, id := range ids {
		if !present[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return found, nil
	}
	deleted, err := r.src.DeletedUsers(ctx, missing)
	if err != nil {
		return nil, err
	}
	restorable := map[string]bool{}
	for _, id := range deleted {
		restorable[strings.ToLower(id)] = true
	}
	for _, u := range users {
		switch {
		case present[u.EntraID]:
		case restorable[u.EntraID]:
			r.propose(Deprovision{UserID: u.ID, Reason: "soft-deleted in Entra"})
		default:
			r.propose(Deprovision{UserID: u.ID, Reason: "deleted in Entra", Delete: true})
		}
	}
	return found, nil
}

// walkGroups walks the groups deltas chunk by chunk (from their links, or
// from scratch), then, with nested expansion, the groups found below them,
// in new chunks. The chunks walked become the manifest.
func (r *runner) walkGroups(ctx context.Context, chunks [][]string) error {
	walked := map[string]bool{}
	for depth := 0; len(chunks) > 0; depth++ {
		if depth > 16 {
			return fmt.Errorf("nested groups go deeper than 16 levels")
		}
		var found []string
		for _, chunk := range chunks {
			key := r.groupsKey(chunk)
			var mark int64
			if r.run.Mode == ModeFull || r.links[key] == "" {
				mark = r.run.ID // a listing from scratch: stamp what it sees
			}
			link := r.links[key]
			pages := ahead(ctx, func(ctx context.Context) iter.Seq2[groupPage, error] {
				return r.withLookups(ctx, r.src.GroupsDelta(ctx, link, chunk))
			})
			for page, err := range pages {
				if err != nil {
					return err
				}
				if page.part == 0 {
					r.run.Pages++
				}
				r.run.GroupsSeen += len(page.Groups)
				for _, g := range page.Groups {
					if r.returned != nil && g.Removed == "" {
						r.returned[g.ID] = true
					}
				}
				p := Page{Groups: page.Groups}
				if r.conn.Nested {
					found = append(found, r.stubNested(&p)...)
				}
				if err := r.apply(ctx, p, mark, page.ahead); err != nil {
					return err
				}
				if page.DeltaLink != "" {
					r.links[key] = page.DeltaLink
				}
			}
			r.chunks = append(r.chunks, chunk)
			for _, id := range chunk {
				walked[id] = true
			}
		}
		var next []string
		for _, id := range lowerSorted(found) {
			if !walked[id] {
				next = append(next, id)
			}
		}
		chunks = chunked(next, graph.MaxGroupsPerQuery)
	}
	return nil
}

// stubNested adds, for each nested group a page adds as a member, an item
// for the group itself, so Diff links or creates it before the membership;
// it returns their ids, to be walked in turn.
func (r *runner) stubNested(p *Page) []string {
	have := map[string]bool{}
	for _, g := range p.Groups {
		have[g.ID] = true
	}
	var found []string
	for _, g := range p.Groups {
		if g.Removed != "" {
			continue
		}
		for _, m := range g.Members {
			if m.Group && !m.Removed && !have[m.ID] {
				have[m.ID] = true
				found = append(found, m.ID)
				p.Groups = append(p.Groups, graph.Group{ID: m.ID})
			}
		}
	}
	return found
}

// applyAttempts bounds the re-diffs of a page when a concurrent SCIM write
// moved a resource between our read and our write.
const applyAttempts = 4

// apply diffs a page against the store and applies the result, in slices
// (applyChanges); ahead is what was looked up for it beforehand
// (withLookups). When a slice fails on a concurrent SCIM write, the whole
// page is diffed again: what the slices before it committed is found done
// and left alone, and the rest applied.
func (r *runner) apply(ctx context.Context, p Page, mark int64, ahead lookups) error {
	if err := r.fetch(ctx, &p, ahead); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		st, err := r.state(ctx, p, mark)
		if err != nil {
			return err
		}
		plan := Diff(p, st, store.NewID)
		counts, committed, err := r.applyChanges(ctx, plan.Changes)
		r.count.Add(counts)
		if err == nil || committed > 0 {
			// What committed stands: a user renamed aside is found free
			// by the re-diff, which would not name it again.
			r.keep(plan)
		}
		if store.ErrorCode(err) == store.Precondition && attempt < applyAttempts {
			continue
		}
		if err == nil {
			r.refreshStats(ctx)
		}
		return err
	}
}

// refreshStats has the store refresh its planner's statistics each time
// the rows this run added doubled, from statsFrom: a first pull grows the
// tables many times over (see store.DB.RefreshPlannerStats), a delta run
// rarely reaches it. A refresh that fails slows the run, no more: it is
// logged, and the run goes on.
func (r *runner) refreshStats(ctx context.Context) {
	added := r.count.UsersCreated + r.count.GroupsCreated + r.count.MembersAdded
	if added < max(r.statsAt*2, statsFrom) {
		return
	}
	r.statsAt = added
	if err := r.w.DB.RefreshPlannerStats(ctx); err != nil {
		r.w.log().Warn("refreshing the database's planner statistics failed; the pull goes on, maybe slower",
			"tenant", r.t.Name, "run", r.run.ID, "err", err)
	}
}

// statsFrom is how many rows a run adds before it first refreshes the
// planner's statistics.
const statsFrom = 1000

// keep takes what a plan tells the rest of the run.
func (r *runner) keep(plan Plan) {
	for _, d := range plan.Deprovision {
		r.propose(d)
	}
	for _, id := range plan.Left {
		r.left[id] = true
	}
	r.rescan = r.rescan || plan.Rescan
	r.aside = append(r.aside, plan.Aside...)
}

// applyChanges applies a pull's changes in slices of at most sliceRows
// rows, so that no write of another tenant waits behind a whole page (a
// few slices share a transaction while no write waits). It returns the
// counts of the slices committed and how many they are, on failure too.
func (r *runner) applyChanges(ctx context.Context, cs ChangeSet) (Counts, int, error) {
	var inTx func(ChangeSet) error
	if r.w.inSlice != nil {
		inTx = func(slice ChangeSet) error { return r.w.inSlice(r.t.ID, slice) }
	}
	return applySlices(ctx, r.w.DB, r.t.ID, r.run.ID, cs, cmp.Or(r.w.sliceRows, sliceRows), inTx)
}

func (r *runner) propose(d Deprovision) {
	cur, ok := r.cands[d.UserID]
	if ok {
		d.Delete = d.Delete || cur.Delete
		d.Disable = d.Disable && cur.Disable
		d.Reason = cur.Reason
	}
	r.cands[d.UserID] = d
}

// fetch gives a page the users its groups add that the store does not
// know or holds inactive (their attributes, and whether they still exist),
// as the store stands now that the pages before committed: those looked
// up ahead, and any the lookups did not ask about.
func (r *runner) fetch(ctx context.Context, p *Page, ahead lookups) error {
	need, err := r.newMembers(ctx, p.Groups)
	if err != nil {
		return err
	}
	r.run.UsersSeen += len(ahead.users)
	found := make(map[string]graph.User, len(ahead.users))
	for _, u := range ahead.users {
		found[u.ID] = u
	}
	var rest []string
	for _, id := range need {
		if u, ok := found[id]; ok {
			p.Fetched = append(p.Fetched, u)
		} else if !ahead.asked[id] {
			rest = append(rest, id)
		}
	}
	users, err := r.usersByID(ctx, rest)
	if err != nil {
		return err
	}
	r.run.UsersSeen += len(users)
	p.Fetched = append(p.Fetched, users...)
	return nil
}

// state reads what the store holds that a page touches.
func (r *runner) state(ctx context.Context, p Page, mark int64) (State, error) {
	db, tenant := r.w.DB, r.t.ID
	st := State{Nested: r.conn.Nested, Mark: mark}
	var groupIDs, userIDs []string
	for _, g := range p.Groups {
		groupIDs = append(groupIDs, g.ID)
		for _, m := range g.Members {
			if m.Group {
				groupIDs = append(groupIDs, m.ID)
			} else {
				userIDs = append(userIDs, m.ID)
			}
		}
	}
	for _, list := range [][]graph.User{p.Users, p.Fetched} {
		for _, u := range list {
			userIDs = append(userIDs, u.ID)
		}
	}
	var err error
	if st.Groups, err = db.ByEntraID(ctx, tenant, store.GroupKind, groupIDs); err != nil {
		return State{}, err
	}
	if st.Users, err = db.ByEntraID(ctx, tenant, store.UserKind, userIDs); err != nil {
		return State{}, err
	}
	var unlinkedGroups []string
	for _, g := range p.Groups {
		if _, linked := st.Groups[g.ID]; !linked && g.Removed == "" {
			unlinkedGroups = append(unlinkedGroups, g.ID)
		}
	}
	if st.GroupMatches, err = db.FindGroupsForEntra(ctx, tenant, unlinkedGroups); err != nil {
		return State{}, err
	}
	var unlinkedUsers []store.EntraUser
	for _, u := range p.Fetched {
		if _, linked := st.Users[u.ID]; !linked {
			unlinkedUsers = append(unlinkedUsers, store.EntraUser{ObjectID: u.ID, UPN: u.UserPrincipalName})
		}
	}
	if st.UserMatches, err = db.FindUsersForEntra(ctx, tenant, unlinkedUsers); err != nil {
		return State{}, err
	}
	var names []string
	for _, list := range [][]graph.User{p.Users, p.Fetched} {
		for _, u := range list {
			if u.UserPrincipalName != "" {
				names = append(names, u.UserPrincipalName)
			}
		}
	}
	if st.NameHolders, err = db.UsersByUserName(ctx, tenant, names); err != nil {
		return State{}, err
	}
	// Users and groups about to be linked count too: a page may add or
	// remove members of a group it adopts.
	var localUsers, localGroups []string
	for _, set := range []map[string]store.Resource{st.Users, st.UserMatches} {
		for _, u := range set {
			localUsers = append(localUsers, u.ID)
		}
	}
	for _, set := range []map[string]store.Resource{st.Groups, st.GroupMatches} {
		for _, g := range set {
			localGroups = append(localGroups, g.ID)
		}
	}
	scope, err := r.scope(ctx)
	if err != nil {
		return State{}, err
	}
	if st.InScope, err = db.MembersOfAny(ctx, tenant, localUsers, scope); err != nil {
		return State{}, err
	}
	members := append(slices.Clone(localUsers), localGroups...)
	if st.Members, err = db.MembershipPairs(ctx, tenant, localGroups, members); err != nil {
		return State{}, err
	}
	return st, nil
}

// scope is the local ids of the groups in scope now.
func (r *runner) scope(ctx context.Context) ([]string, error) {
	assigned, err := r.w.DB.ByEntraID(ctx, r.t.ID, store.GroupKind, r.conn.Groups)
	if err != nil {
		return nil, err
	}
	roots := make([]string, 0, len(assigned))
	for _, g := range assigned {
		roots = append(roots, g.ID)
	}
	return r.w.DB.ScopeGroups(ctx, r.t.ID, roots, r.conn.Nested)
}

// sweep, after a full walk, removes the memberships of the walked groups
// that the walk did not see.
func (r *runner) sweep(ctx context.Context) error {
	scope, err := r.scope(ctx)
	if err != nil {
		return err
	}
	cs := ChangeSet{}
	for _, g := range scope {
		cs = append(cs, Change{Op: SweepMembers, ID: g, Mark: r.run.ID})
	}
	counts, _, err := r.applyChanges(ctx, cs)
	r.count.Add(counts)
	return err
}

// refreshUsers, in a full pass, looks up every user the pull manages that
// this run has not written yet: attributes may have changed while no delta
// link was kept, and users Graph no longer returns are gone. Users this run
// renamed aside to free a userName were written without word from Graph
// (their old name went to someone else, which a deletion also allows), so
// they are looked up too.
func (r *runner) refreshUsers(ctx context.Context) error {
	after := ""
	for {
		users, err := r.w.DB.PulledUsers(ctx, r.t.ID, after, graph.MaxIDsPerLookup, r.run.StartedAt)
		if err != nil {
			return err
		}
		if len(users) == 0 {
			break
		}
		after = users[len(users)-1].ID
		if err := r.refresh(ctx, users); err != nil {
			return err
		}
	}
	aside, err := r.w.DB.GetMany(ctx, r.t.ID, store.UserKind, r.aside)
	if err != nil {
		return err
	}
	users := make([]store.Resource, 0, len(aside))
	for _, u := range aside {
		users = append(users, u)
	}
	sort.Slice(users, func(i, j int) bool { return users[i].ID < users[j].ID })
	for _, part := range chunked(users, graph.MaxIDsPerLookup) {
		if err := r.refresh(ctx, part); err != nil {
			return err
		}
	}
	return nil
}

// refresh looks users up and applies what Graph says of them.
func (r *runner) refresh(ctx context.Context, users []store.Resource) error {
	found, err := r.lookup(ctx, users)
	if err != nil {
		return err
	}
	return r.apply(ctx, Page{Users: found}, 0, lookups{})
}

// settle ends a pass: groups no longer in scope lose their members, users
// left in no group in scope join the deprovision candidates, and the
// candidates are applied unless they are more than the tenant allows. A
// delta pass checks only the users Graph said left a group, unless what it
// reported calls for checking everyone (see Plan.Rescan).
func (r *runner) settle(ctx context.Context) error {
	scope, err := r.scope(ctx)
	if err != nil {
		return err
	}
	if r.run.Mode == ModeFull || r.rescan {
		if err := r.settleAll(ctx, scope); err != nil {
			return err
		}
		return r.deprovision(ctx)
	}
	ids := make([]string, 0, len(r.left))
	for id := range r.left {
		ids = append(ids, id)
	}
	still, err := r.w.DB.MembersOfAny(ctx, r.t.ID, ids, scope)
	if err != nil {
		return err
	}
	users, err := r.w.DB.GetMany(ctx, r.t.ID, store.UserKind, ids)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if u, ok := users[id]; ok && !still[id] && (u.Active() || r.conn.Deprovision == "delete") {
			r.propose(Deprovision{UserID: id, Reason: "in no assigned group"})
		}
	}
	return r.deprovision(ctx)
}

// settleAll checks every group and user the pull manages against scope.
func (r *runner) settleAll(ctx context.Context, scope []string) error {
	outside, err := r.w.DB.PulledGroupsOutside(ctx, r.t.ID, scope)
	if err != nil {
		return err
	}
	cs := ChangeSet{}
	for _, g := range outside {
		cs = append(cs, Change{Op: SetMembers, ID: g, Members: []string{}})
	}
	counts, _, err := r.applyChanges(ctx, cs)
	r.count.Add(counts)
	if err != nil {
		return err
	}
	left, err := r.w.DB.PulledUsersOutside(ctx, r.t.ID, scope, r.conn.Deprovision != "delete")
	if err != nil {
		return err
	}
	for _, u := range left {
		r.propose(Deprovision{UserID: u.ID, Reason: "in no assigned group"})
	}
	return nil
}

// deprovision applies the candidates, or holds them all when they exceed
// the tenant's threshold and no confirmation was given.
func (r *runner) deprovision(ctx context.Context) error {
	ids := make([]string, 0, len(r.cands))
	for id := range r.cands {
		ids = append(ids, id)
	}
	users, err := r.w.DB.GetMany(ctx, r.t.ID, store.UserKind, ids)
	if err != nil {
		return err
	}
	list := make([]Deprovision, 0, len(r.cands))
	for _, d := range r.cands {
		list = append(list, d)
	}
	cs, n := DeprovisionChanges(users, list, r.conn.Deprovision)
	if n == 0 {
		return nil
	}
	active, err := r.w.DB.CountPulledUsers(ctx, r.t.ID)
	if err != nil {
		return err
	}
	limit := threshold(r.conn, active)
	if n > limit && !r.opts.ConfirmDeletions {
		r.run.Status = store.RunHeld
		r.run.Held = n
		r.run.Error = fmt.Sprintf("held: %d users would be deprovisioned, more than the threshold of %d; "+
			"confirm with `entrasync sync %s --confirm-deletions`, or raise the threshold", n, limit, r.t.Name)
		return nil
	}
	counts, _, err := r.applyChanges(ctx, cs)
	r.count.Add(counts)
	return err
}

// threshold is how many deprovisions a run may apply unconfirmed.
func threshold(c store.GraphConnection, active int) int {
	if c.ThresholdCount > 0 {
		return c.ThresholdCount
	}
	pct := c.ThresholdPercent
	if pct == 0 {
		pct = 20
	}
	if pct >= 100 {
		return math.MaxInt // every user may go: no guard
	}
	return active * pct / 100
}

// DeprovisionChanges turns deprovision candidates into changes under the
// tenant's policy ("deactivate" or "delete"): users gone from Entra are
// deleted, disabled accounts deactivated, the rest as the policy says.
// It returns how many users the changes affect; users already as asked
// (inactive, or gone) are left out.
func DeprovisionChanges(users map[string]store.Resource, list []Deprovision, policy string) (ChangeSet, int) {
	list = slices.Clone(list)
	sort.Slice(list, func(i, j int) bool { return list[i].UserID < list[j].UserID })
	var cs ChangeSet
	for _, d := range list {
		u, ok := users[d.UserID]
		if !ok {
			continue
		}
		if d.Delete || (policy == "delete" && !d.Disable) {
			cs = append(cs, Change{Op: Delete, Kind: store.UserKind, ID: u.ID})
			continue
		}
		if !u.Active() {
			continue
		}
		doc := copyDoc(u.Doc)
		doc["active"] = false
		cs = append(cs, Change{Op: Update, Resource: &store.Resource{Kind: store.UserKind, ID: u.ID, EntraID: u.EntraID, Doc: doc}, IfVersion: u.Version})
	}
	return cs, len(cs)
}

// finish records the run's end and saves its delta links, only when its
// changes all committed and none are held.
func (r *runner) finish(ctx context.Context, err error) store.Run {
	if err == nil && r.run.Status == store.RunRunning {
		if r.w.beforeSave != nil {
			r.w.beforeSave()
		}
		err = r.saveLinks(ctx)
		if err == nil {
			r.run.Status = store.RunSucceeded
		}
	}
	if err != nil {
		if wait, throttled := graph.IsThrottled(err); throttled {
			r.run.Status = store.RunThrottled
			r.run.RetryAfterMS = wait.Milliseconds()
		} else {
			r.run.Status = store.RunFailed
		}
		r.run.Error = runError(ctx, err)
	}
	r.run.Changes, _ = json.Marshal(r.count)
	// The record is written even when the run's context is gone.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	werr := r.w.DB.Write(wctx, func(tx *store.Tx) error { return tx.FinishRun(r.run) })
	if werr != nil {
		r.w.log().Error("recording a run failed", "tenant", r.t.Name, "run", r.run.ID, "err", werr)
	}
	finished := r.w.now()
	r.run.FinishedAt = &finished
	if r.w.Metrics != nil {
		r.w.Metrics.RunFinished(r.run, r.count)
	}
	level := slog.LevelInfo
	switch r.run.Status {
	case store.RunHeld, store.RunThrottled:
		level = slog.LevelWarn // comes back by itself or on confirmation
	case store.RunFailed:
		level = slog.LevelError
	}
	attrs := []any{"tenant", r.t.Name, "run", r.run.ID, "trigger", r.run.Trigger, "mode", r.run.Mode,
		"status", r.run.Status, "pages", r.run.Pages, "changes", r.count}
	if r.run.Held > 0 {
		attrs = append(attrs, "held", r.run.Held)
	}
	if r.run.ThrottleWaits > 0 {
		attrs = append(attrs, "throttle_waits", r.run.ThrottleWaits, "throttle_ms", r.run.ThrottleMS)
	}
	if r.run.Error != "" {
		attrs = append(attrs, "error", r.run.Error)
	}
	r.w.log().Log(ctx, level, "pull finished", attrs...)
	return r.run
}

// runError is what a run's record and log say of err: a lost lock by its
// name, not as the "context canceled" it surfaces as, and never a delta or
// skip token, access token or secret, whatever error text carried one.
func runError(ctx context.Context, err error) string {
	if errors.Is(context.Cause(ctx), errLockLost) {
		return errLockLost.Error()
	}
	return graph.Redact(err.Error())
}

func (r *runner) saveLinks(ctx context.Context) error {
	manifest, _ := json.Marshal(r.chunks)
	// The manifest goes last: until it is saved, the old one (and its
	// links) stay in force.
	keys := []string{r.usersKey()}
	links := map[string]string{r.usersKey(): r.links[r.usersKey()], r.manifestKey(): string(manifest)}
	for _, c := range r.chunks {
		k := r.groupsKey(c)
		keys, links[k] = append(keys, k), r.links[k]
	}
	keys = append(keys, r.manifestKey())
	for _, key := range keys {
		if links[key] == "" {
			return fmt.Errorf("no delta link for query %s at the end of the run", key)
		}
		if err := r.w.Tokens.Save(ctx, r.t.ID, key, links[key]); err != nil {
			return err
		}
	}
	return r.w.Tokens.Forget(ctx, r.t.ID, keys)
}
