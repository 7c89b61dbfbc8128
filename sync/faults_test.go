package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
)

// The faults of issue 8 that the pull survives: Redis emptied or
// restarted, a node killed inside a page's transaction, a tenant's Graph
// down for a whole cycle. (PostgreSQL restarting: pgrestart_test.go.)

// namespacedRedis is the test Redis under a namespace of this test's own,
// whose keys are deleted when it ends: emptying it is this installation's
// FLUSHDB, without touching what other tests keep in the shared database.
func namespacedRedis(t *testing.T) *Redis {
	t.Helper()
	rd := testRedis(t)
	rd.Namespace = "test-" + randomHex()
	t.Cleanup(func() { emptyRedis(t, rd) })
	return rd
}

// emptyRedis deletes every key of rd's namespace: run locks and delta links.
func emptyRedis(t *testing.T, rd *Redis) {
	t.Helper()
	ctx := context.Background()
	keys, err := rd.client.Keys(ctx, rd.prefix()+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		if err := rd.client.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// checkAppliedOnce asserts that nothing was created twice: every Entra
// object has one local copy, and the runs' creation counts add up to what
// the store holds (nothing is deleted in these tests), with the users and
// groups of killed runs, whose counts were never recorded.
func (h *harness) checkAppliedOnce(killedUsers, killedGroups int) {
	h.t.Helper()
	runs, err := h.db.Runs(context.Background(), "contoso", 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	var users, groups int
	for _, r := range runs {
		var c Counts
		if err := json.Unmarshal(r.Changes, &c); err != nil {
			h.t.Fatal(err)
		}
		users, groups = users+c.UsersCreated, groups+c.GroupsCreated
	}
	users, groups = users+killedUsers, groups+killedGroups
	for _, kc := range []struct {
		kind    store.Kind
		created int
	}{{store.UserKind, users}, {store.GroupKind, groups}} {
		page, err := h.db.List(context.Background(), h.tenant.ID, kc.kind, store.Query{Count: 1_000_000})
		if err != nil {
			h.t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, r := range page.Resources {
			if r.EntraID != "" && seen[r.EntraID] {
				h.t.Fatalf("%s %s is here twice", kc.kind, r.EntraID)
			}
			seen[r.EntraID] = true
		}
		if len(page.Resources) != kc.created {
			h.t.Fatalf("%d %ss here, but the runs created %d", len(page.Resources), kc.kind, kc.created)
		}
	}
}

// runInBackground starts a pull and returns its outcome on a channel.
func (h *harness) runInBackground() <-chan runResult {
	done := make(chan runResult, 1)
	go func() {
		run, err := h.w.RunOnce(context.Background(), "contoso", Options{Trigger: "test"})
		done <- runResult{run, err}
	}()
	return done
}

type runResult struct {
	run store.Run
	err error
}

func waitResult(t *testing.T, done <-chan runResult) runResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("the run did not end")
		return runResult{}
	}
}

// waitGraphRequests waits until the fake has answered n more requests.
func (h *harness) waitGraphRequests(before, n int) {
	h.t.Helper()
	waitFor(h.t, func() bool { return h.fake.GraphRequests() >= before+n })
}

// TestRedisEmptiedBetweenRuns: Redis loses everything while the scheduler
// pulls a tenant: the next run takes the lock again, finds no delta link
// and runs full, creating nothing twice; then delta runs resume.
func TestRedisEmptiedBetweenRuns(t *testing.T) {
	rd := namespacedRedis(t)
	h := newHarness(t, graphtest.Options{PageSize: 10, MembersPerPage: 5})
	h.w.Tokens, h.w.Locks = rd, rd
	gs := h.populate(40, 3, 2, 31)
	h.assign(gs[:2], func(c *store.GraphConnection) { c.Schedule = "@every 1s" })

	// The scheduler stops while Redis is emptied, so that no run is
	// going then (TestRedisEmptiedDuringRun is that case).
	startScheduler := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		s := &Scheduler{Worker: h.w, Workers: 1, Reload: 100 * time.Millisecond}
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		stop = gosync.OnceFunc(func() { cancel(); <-done })
		t.Cleanup(stop)
		return stop
	}
	stop := startScheduler()

	// runAfter waits for a succeeded run that started after since.
	runAfter := func(since time.Time, mode string) store.Run {
		t.Helper()
		var found store.Run
		waitFor(t, func() bool {
			runs, err := h.db.Runs(context.Background(), "contoso", 1000)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range runs {
				if r.StartedAt.After(since) && r.Status == store.RunSucceeded && (mode == "" || r.Mode == mode) {
					found = r
					return true
				}
			}
			return false
		})
		return found
	}
	runAfter(time.Time{}, ModeFull)
	runAfter(time.Time{}, ModeDelta) // links kept in Redis serve the next cycle
	stop()
	h.mutate(gs)
	emptied := time.Now()
	emptyRedis(t, rd)
	stop = startScheduler()
	full := runAfter(emptied, ModeFull)
	t.Logf("the first run after Redis was emptied: %d, %s", full.ID, full.Changes)
	h.checkMirror()
	runAfter(time.Now(), ModeDelta)
	stop()
	h.checkMirror()
	h.checkAppliedOnce(0, 0)
	for _, r := range waitRuns(t, h, 1) {
		if r.Status == store.RunRunning {
			t.Fatalf("run %d still marked running", r.ID)
		}
	}
}

// TestRedisEmptiedDuringRun: Redis loses everything while a run goes; the
// run's lock is gone, so it stops at its next renewal, saying so; the next
// run finds no links, runs full and completes what the first began,
// creating nothing twice.
func TestRedisEmptiedDuringRun(t *testing.T) {
	rd := namespacedRedis(t)
	rd.TTL = 1500 * time.Millisecond // renewed every 500 ms
	h := newHarness(t, graphtest.Options{PageSize: 5, MembersPerPage: 3})
	h.w.Tokens, h.w.Locks = rd, rd
	h.populate(120, 6, 3, 32)
	h.fake.SetLatency(50 * time.Millisecond) // many pages, each a moment long: the run outlasts a renewal

	before := h.fake.GraphRequests()
	running := h.runInBackground()
	h.waitGraphRequests(before, 4)
	emptyRedis(t, rd)
	res := waitResult(t, running)
	if res.run.Status != store.RunFailed || res.run.Error != errLockLost.Error() {
		t.Fatalf("the run whose lock vanished ended %s: %q", res.run.Status, res.run.Error)
	}
	h.fake.SetLatency(0)

	run, c := h.sync(store.RunSucceeded)
	if run.Mode != ModeFull {
		t.Fatalf("the run after Redis was emptied ran %s, want full (no links)", run.Mode)
	}
	t.Logf("cut short: %s; then full: %+v", res.run.Changes, c)
	h.checkMirror()
	h.checkAppliedOnce(0, 0)
	if run, c := h.sync(store.RunSucceeded); run.Mode != ModeDelta || c.Total() != 0 {
		t.Fatalf("then: mode %s, counts %+v; want a delta that changes nothing", run.Mode, c)
	}
}

// redisServer is a private redis-server on a port of its own, without
// persistence: a restart empties it, as a Redis without a volume does.
type redisServer struct {
	t    *testing.T
	bin  string
	port int
	cmd  *exec.Cmd
}

func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if inCI() {
			t.Fatal("CI is set but redis-server is not installed: this test starts one of its own")
		}
		t.Skip("redis-server is not installed: install it (apt-get install redis-server) to run this test")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &redisServer{t: t, bin: bin, port: port}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

func (s *redisServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.t.TempDir())
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	probe, err := NewRedis(s.url())
	if err != nil {
		s.t.Fatal(err)
	}
	defer probe.Close()
	for deadline := time.Now().Add(10 * time.Second); probe.Ping(context.Background()) != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on port %d does not answer", s.port)
		}
	}
}

// stop kills the server, as a crash or a restart does.
func (s *redisServer) stop() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// TestRedisRestarted stops the nodes' Redis in the middle of a run and
// starts it again, empty, on the same address: the run stops cleanly,
// runs fail saying Redis cannot be reached while it is down, and once it
// is back they succeed with nothing restarted, a full run first, nothing
// applied twice.
func TestRedisRestarted(t *testing.T) {
	srv := startRedisServer(t)
	rd, err := NewRedis(srv.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	rd.TTL = 3 * time.Second // renewed every second
	h := newHarness(t, graphtest.Options{PageSize: 5, MembersPerPage: 3})
	h.w.Tokens, h.w.Locks = rd, rd
	gs := h.populate(60, 4, 2, 33)
	h.sync(store.RunSucceeded)
	for i := range 40 { // newcomers: the next run has many pages to apply
		id := h.dir.AddUser(graphtest.User{UserPrincipalName: fmt.Sprintf("newcomer%d@contoso.example", i), AccountEnabled: true})
		h.dir.AddMember(gs[i%2], id)
	}
	h.fake.SetLatency(50 * time.Millisecond) // the run outlasts a renewal

	before := h.fake.GraphRequests()
	running := h.runInBackground()
	h.waitGraphRequests(before, 3)
	srv.stop()
	res := waitResult(t, running)
	if res.run.Status != store.RunFailed || !strings.Contains(strings.ToLower(res.run.Error), "redis") {
		t.Fatalf("the run across the Redis stop ended %s: %q", res.run.Status, res.run.Error)
	}
	h.fake.SetLatency(0)

	addr := fmt.Sprintf("127.0.0.1:%d", srv.port)
	_, err = h.w.RunOnce(context.Background(), "contoso", Options{Trigger: "test"})
	if err == nil || !strings.Contains(err.Error(), "redis at "+addr) || !strings.Contains(err.Error(), "run lock") {
		t.Fatalf("a run with Redis down: %v; want an error naming Redis at %s and the run lock", err, addr)
	}

	srv.start()
	var run store.Run
	deadline := time.Now().Add(20 * time.Second)
	for {
		run, err = h.w.RunOnce(context.Background(), "contoso", Options{Trigger: "test"})
		if err == nil {
			break
		}
		// The clients' pools may still hold a connection to the old server.
		if !strings.Contains(err.Error(), "redis at "+addr) || time.Now().After(deadline) {
			t.Fatalf("the run after Redis came back: %v", err)
		}
		t.Logf("with Redis back: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
	if run.Mode != ModeFull {
		t.Fatalf("the first run after Redis came back empty ran %s, want full", run.Mode)
	}
	h.checkMirror()
	h.checkAppliedOnce(0, 0)
	if run, c := h.sync(store.RunSucceeded); run.Mode != ModeDelta || c.Total() != 0 {
		t.Fatalf("then: mode %s, counts %+v; want a delta that changes nothing", run.Mode, c)
	}
}

// killedInside is what a child killed inside an Apply transaction saw there.
type killedInside struct {
	Snapshot string   // the tenant's committed state, read beside the transaction
	Written  int      // the writes the transaction had made
	Of       int      // of its change set
	Created  []string // Entra ids of the users and groups it had inserted
}

// killInsideApply makes the process SIGKILL itself inside the transaction
// of the callth Apply (counting from 1) after its writeth write (0: after
// the last, just before the commit), writing to path what the store held
// committed at that moment.
func killInsideApply(db *store.DB, at, path string) error {
	var call, write int
	if _, err := fmt.Sscanf(at, "%d:%d", &call, &write); err != nil {
		return fmt.Errorf("%s=%q: %w", childKillAtEnv, at, err)
	}
	tenant, err := db.Tenant(context.Background(), "contoso")
	if err != nil {
		return err
	}
	calls := 0
	duringApply = func(cs ChangeSet, written int) {
		if written == 1 {
			calls++
		}
		target := write
		if target <= 0 || target > len(cs) {
			target = len(cs)
		}
		if calls != call || written != target {
			return
		}
		k := killedInside{Written: written, Of: len(cs)}
		if k.Snapshot, err = snapshotOf(db, tenant.ID); err != nil {
			fmt.Fprintln(os.Stderr, "child: snapshot:", err)
			os.Exit(2)
		}
		for _, ch := range cs[:written] {
			if ch.Op == Create {
				k.Created = append(k.Created, ch.Resource.EntraID)
			}
		}
		b, _ := json.Marshal(k)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		p, _ := os.FindProcess(os.Getpid())
		p.Signal(os.Kill)
		time.Sleep(time.Minute) // the signal lands before this ends
	}
	return nil
}

// TestKillInsidePage kills a worker process inside a page's transaction,
// after some of its writes and before its commit, at several points of a
// first full run: none of the page's writes is visible afterwards (the
// store is exactly what was committed before the page), the run the dead
// process left marked running is ended by the next node to take the
// tenant's lock, even one that then skips the tenant as already run this
// cycle, and the next run repairs the store to mirror Graph, creating
// nothing twice.
func TestKillInsidePage(t *testing.T) {
	for _, at := range []string{"1:1", "2:3", "4:0"} {
		t.Run("apply "+at, func(t *testing.T) {
			h := newHarness(t, graphtest.Options{PageSize: 10, MembersPerPage: 5})
			h.w.Locks = StoreLocks{DB: h.db, TTL: time.Second} // as the child's
			h.populate(60, 3, 2, 34)
			cycle := time.Now().Add(-time.Second) // run times are kept to the millisecond

			path := filepath.Join(t.TempDir(), "inside.json")
			cmd := h.child("killtx", childKillAtEnv+"="+at, childSnapshotEnv+"="+path)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("child ended with %v, want killed; output:\n%s", err, out)
			}
			if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("child ended %v, want SIGKILL; output:\n%s", exit, out)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var inside killedInside
			if err := json.Unmarshal(b, &inside); err != nil {
				t.Fatal(err)
			}
			if inside.Written == 0 {
				t.Fatal("the child was killed before any write")
			}
			t.Logf("killed after %d of %d writes of the page, %d of them inserts", inside.Written, inside.Of, len(inside.Created))
			if got := h.snapshot(); got != inside.Snapshot {
				t.Fatalf("after the kill the store is not what was committed before the page:\n got %s\nwant %s", got, inside.Snapshot)
			}
			for _, id := range inside.Created {
				_, isUser := h.localUser(id)
				_, isGroup := h.localGroup(id)
				if isUser || isGroup {
					t.Fatalf("%s, inserted by the killed transaction, is here", id)
				}
			}
			// What the killed run committed before the page, which its record
			// does not count.
			active, inactive := h.countUsers()
			groups, err := h.db.List(context.Background(), h.tenant.ID, store.GroupKind, store.Query{Count: 1_000_000})
			if err != nil {
				t.Fatal(err)
			}
			killed, ok, err := h.db.RunningRun(context.Background(), "contoso")
			if err != nil || !ok {
				t.Fatalf("the killed run's record: %+v %v %v", killed, ok, err)
			}

			// Another node's cron fires this cycle: it takes the lock once the
			// dead one's lease ran out, ends the phantom run, and skips.
			h.waitLeaseFree()
			if _, err := h.w.RunOnce(context.Background(), "contoso", Options{Trigger: "schedule", NoRunSince: cycle}); !errors.Is(err, ErrRanThisCycle) {
				t.Fatalf("a scheduled run in the killed run's cycle: %v", err)
			}
			if r, going, _ := h.db.RunningRun(context.Background(), "contoso"); going {
				t.Fatalf("run %d is still marked running", r.ID)
			}
			old, err := h.db.Run(context.Background(), "contoso", killed.ID)
			if err != nil || old.Status != store.RunFailed || old.Error != store.AbandonedRunError || old.FinishedAt == nil {
				t.Fatalf("the killed run: %+v %v", old, err)
			}

			run, c := h.sync(store.RunSucceeded)
			if run.Mode != ModeFull {
				t.Fatalf("the run after the kill ran %s, want full (no links were saved)", run.Mode)
			}
			t.Logf("the repair: %+v", c)
			h.checkMirror()
			h.checkAppliedOnce(active+inactive, len(groups.Resources))
		})
	}
}

// TestAbandonedRunEnded: a run left marked running (its node died, or
// could not record its end) is recorded failed, saying so, by the next
// run to take the tenant's lock, whether that run goes on or not.
func TestAbandonedRunEnded(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	h.populate(5, 1, 1, 35)
	cycle := time.Now().Add(-time.Second) // run times are kept to the millisecond
	var phantom store.Run
	err := h.db.Write(context.Background(), func(tx *store.Tx) (err error) {
		phantom, err = tx.StartRun(h.tenant, "schedule", ModeFull)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Ops see it going until a run takes the lock...
	if r, going, _ := h.db.RunningRun(context.Background(), "contoso"); !going || r.ID != phantom.ID {
		t.Fatalf("before: %+v %v", r, going)
	}
	// ...which here skips, as the tenant ran this cycle.
	if _, err := h.w.RunOnce(context.Background(), "contoso", Options{Trigger: "schedule", NoRunSince: cycle}); !errors.Is(err, ErrRanThisCycle) {
		t.Fatalf("scheduled run: %v", err)
	}
	got, err := h.db.Run(context.Background(), "contoso", phantom.ID)
	if err != nil || got.Status != store.RunFailed || !strings.Contains(got.Error, "crash or kill") || got.FinishedAt == nil {
		t.Fatalf("the abandoned run: %+v %v", got, err)
	}
	if r, going, _ := h.db.RunningRun(context.Background(), "contoso"); going {
		t.Fatalf("run %d still marked running", r.ID)
	}
	h.sync(store.RunSucceeded)
	h.checkMirror()
}

// hangingGraph takes requests (over TLS, as azidentity insists) and never
// answers them, until released; then it is gone (connections refused).
type hangingGraph struct {
	srv      *httptest.Server
	released chan struct{}
	once     gosync.Once
}

func newHangingGraph(t *testing.T) *hangingGraph {
	g := &hangingGraph{released: make(chan struct{})}
	g.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-g.released:
		}
		panic(http.ErrAbortHandler) // the connection closes without an answer
	}))
	t.Cleanup(g.release)
	return g
}

func (g *hangingGraph) url() string { return g.srv.URL }

func (g *hangingGraph) release() {
	g.once.Do(func() {
		close(g.released)
		g.srv.CloseClientConnections()
		g.srv.Close()
	})
}

// TestGraphDownForACycle: one tenant's Graph (and token endpoint) answers
// nothing while another tenant's is healthy, on a scheduler with two
// worker slots. The healthy tenant is pulled on every cycle while the down
// tenant's run holds its slot; the down run is recorded failed, saying
// what failed and what to check, and the next cycle tries it again.
func TestGraphDownForACycle(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	gs := h.populate(20, 2, 1, 36)
	h.assign(gs[:1], func(c *store.GraphConnection) { c.Schedule = "@every 1s" })
	down := newHangingGraph(t)
	err := h.db.Write(context.Background(), func(tx *store.Tx) error {
		if _, err := tx.CreateTenant("down"); err != nil {
			return err
		}
		c := h.conn
		c.Tenant, c.GraphURL, c.AuthorityHost = "down", down.url(), down.url()
		return tx.SaveGraphConnection(c, testKey)
	})
	if err != nil {
		t.Fatal(err)
	}
	healthy := h.w.Connect
	h.w.Connect = func(ctx context.Context, c store.GraphConnection) (Source, error) {
		if c.Tenant != "down" {
			return healthy(ctx, c)
		}
		return graph.New(graph.Config{TenantID: c.AzureTenantID, ClientID: c.ClientID, ClientSecret: string(c.Secret),
			AuthorityHost: c.AuthorityHost, GraphURL: c.GraphURL, HTTPClient: down.srv.Client()})
	}
	runsOf := func(tenant string) []store.Run {
		runs, err := h.db.Runs(context.Background(), tenant, 1000)
		if err != nil {
			t.Fatal(err)
		}
		return runs
	}

	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{Worker: h.w, Workers: 2, Reload: 100 * time.Millisecond}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	stop := gosync.OnceFunc(func() { cancel(); <-done })
	defer stop()
	defer down.release() // before the scheduler waits for its runs

	var stuck store.Run
	waitFor(t, func() bool {
		var going bool
		stuck, going, _ = h.db.RunningRun(context.Background(), "down")
		return going
	})
	// The healthy tenant runs cycle after cycle while the down one waits.
	waitFor(t, func() bool {
		n := 0
		for _, r := range runsOf("contoso") {
			if r.Status == store.RunSucceeded && r.StartedAt.After(stuck.StartedAt) {
				n++
			}
		}
		return n >= 2
	})
	if r, going, _ := h.db.RunningRun(context.Background(), "down"); !going || r.ID != stuck.ID {
		t.Fatalf("the down tenant's run ended before the healthy one's cycles: %+v", runsOf("down"))
	}

	down.release() // Graph's answer never comes: the connections close
	var failed []store.Run
	waitFor(t, func() bool {
		failed = failed[:0]
		for _, r := range runsOf("down") {
			if r.Status == store.RunFailed {
				failed = append(failed, r)
			}
		}
		return len(failed) >= 2 // the next cycle tried again
	})
	host := strings.TrimPrefix(down.url(), "https://")
	for _, r := range failed {
		if !strings.Contains(r.Error, "no answer from "+host) || !strings.Contains(r.Error, "Check this machine's network") {
			t.Fatalf("the down tenant's run %d says %q", r.ID, r.Error)
		}
		t.Logf("run %d of the down tenant took %s: %s", r.ID, r.FinishedAt.Sub(r.StartedAt), r.Error)
	}
	stop()
	h.checkMirror()
}
