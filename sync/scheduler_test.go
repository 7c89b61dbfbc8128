package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
)

// TestScheduler: tenants are pulled on their own schedules, picked up and
// dropped as their connections come and go, never two runs at once.
func TestScheduler(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	gs := h.populate(20, 2, 1, 12)
	h.assign(gs[:1], func(c *store.GraphConnection) { c.Schedule = "@every 1s" })

	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{Worker: h.w, Workers: 1, Reload: 100 * time.Millisecond}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitRuns := func(n int) []store.Run {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			runs, err := h.db.Runs(context.Background(), "contoso", 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) >= n && runs[0].Status != store.RunRunning {
				return runs
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("fewer than %d scheduled runs", n)
		return nil
	}
	runs := waitRuns(1)
	if runs[0].Trigger != "schedule" || runs[0].Status != store.RunSucceeded {
		t.Fatalf("scheduled run: %+v", runs[0])
	}
	h.checkMirror()
	// A change in the directory arrives with a later scheduled run.
	newcomer := h.dir.AddUser(graphtest.User{UserPrincipalName: "late@contoso.example", AccountEnabled: true})
	h.dir.AddMember(gs[0], newcomer)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if u, ok := h.localUser(newcomer); ok && u.Active() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the scheduler did not pull the change")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Runs never overlap: each started after the one before it finished.
	runs = waitRuns(2)
	for i := 1; i < len(runs); i++ {
		prev := runs[i]
		if prev.FinishedAt == nil || runs[i-1].StartedAt.Before(prev.FinishedAt.Truncate(time.Millisecond)) {
			t.Fatalf("run %d started before run %d finished", runs[i-1].ID, prev.ID)
		}
	}
	// A tenant whose connection is gone is no longer scheduled.
	if err := h.db.Write(context.Background(), func(tx *store.Tx) error { return tx.DeleteTenant("contoso") }); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		s.mu.Lock()
		left := len(s.entries)
		s.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tenants still scheduled after their tenant went", left)
		}
	}
}

// TestOnceACycle: a scheduled run is skipped when a run of the tenant,
// however it ended, started within half the schedule's interval; the check
// is made under the run lock, so nodes whose crons fire together run the
// tenant once.
func TestOnceACycle(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	h.populate(5, 1, 1, 13)
	ctx := context.Background()
	scheduled := func(spec string) Options {
		return Options{Trigger: "schedule", NoRunSince: cycleStart(spec, time.Now())}
	}
	if _, err := h.w.RunOnce(ctx, "contoso", scheduled("@every 40m")); err != nil {
		t.Fatalf("no run yet, yet: %v", err)
	}
	if _, err := h.w.RunOnce(ctx, "contoso", scheduled("@every 40m")); !errors.Is(err, ErrRanThisCycle) {
		t.Fatalf("a run a moment ago does not count (another node would pull again): %v", err)
	}
	time.Sleep(600 * time.Millisecond) // past half of a one-second schedule
	if _, err := h.w.RunOnce(ctx, "contoso", scheduled("@every 1s")); err != nil {
		t.Fatalf("a run half a short schedule ago still skips the next: %v", err)
	}

	// A failed run is the cycle's run too: the next cycle tries again, not
	// the next node to fire.
	h.fake.FailNext(100, http.StatusInternalServerError, 0)
	if run, _ := h.w.RunOnce(ctx, "contoso", Options{Trigger: "schedule"}); run.Status != store.RunFailed {
		t.Fatalf("with Graph failing: %s %s", run.Status, run.Error)
	}
	h.fake.FailNext(0, 0, 0)
	if _, err := h.w.RunOnce(ctx, "contoso", scheduled("@every 40m")); !errors.Is(err, ErrRanThisCycle) {
		t.Fatalf("after a failed run this cycle: %v", err)
	}

	// Three nodes fire at once, many times over, for a cycle that began
	// now: one run in all.
	cycle := Options{Trigger: "schedule", NoRunSince: time.Now()}
	before := len(waitRuns(t, h, 0))
	nodes := []*Worker{h.w,
		{DB: h.db, Tokens: StoreTokens{DB: h.db}, Locks: StoreLocks{DB: h.db}, Key: testKey, Connect: h.connect},
		{DB: h.db, Tokens: StoreTokens{DB: h.db}, Locks: StoreLocks{DB: h.db}, Key: testKey, Connect: h.connect}}
	var wg gosync.WaitGroup
	for range 4 {
		for _, w := range nodes {
			wg.Go(func() { w.RunOnce(ctx, "contoso", cycle) })
		}
	}
	wg.Wait()
	if after := len(waitRuns(t, h, 0)); after != before+1 {
		t.Fatalf("12 fires of one cycle on three nodes made %d runs", after-before)
	}
}

// TestSchedulesAlignAcrossNodes: an @every schedule fires at the same
// moments whenever a node started (so jitter, not start order, decides
// which node takes a tenant), and different tenants at different moments
// of the interval.
func TestSchedulesAlignAcrossNodes(t *testing.T) {
	a, err := tenantSchedule("@every 40m", "contoso")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	first := a.Next(start)
	for _, later := range []time.Duration{time.Second, 7 * time.Minute, 39 * time.Minute} {
		if got := a.Next(start.Add(later)); !got.Equal(first) && !got.Equal(first.Add(40*time.Minute)) {
			t.Fatalf("a node started %v later fires at %v, not with the others at %v", later, got, first)
		}
	}
	if next := a.Next(first); next.Sub(first) != 40*time.Minute {
		t.Fatalf("after %v comes %v", first, next)
	}
	moments := map[time.Time]bool{}
	for i := range 20 {
		s, _ := tenantSchedule("@every 40m", fmt.Sprintf("tenant%d", i))
		moments[s.Next(start)] = true
	}
	if len(moments) < 15 {
		t.Fatalf("20 tenants fire at only %d moments of the interval", len(moments))
	}
	if s, _ := tenantSchedule("*/5 * * * *", "contoso"); !s.Next(start).Equal(start.Add(5 * time.Minute)) {
		t.Fatalf("a cron spec moved: %v", s.Next(start))
	}
}

// TestSchedulerComesBackWhenThrottled: a run Graph throttles past its
// retries is tried again when Graph says, not at the next tick (here an
// hour away), though a run of the tenant started moments ago.
func TestSchedulerComesBackWhenThrottled(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	gs := h.populate(20, 2, 1, 15)
	h.assign(gs[:1], func(c *store.GraphConnection) { c.Schedule = "@every 1h" })
	h.fake.FailNext(5, http.StatusTooManyRequests, time.Second) // the first try and its 4 retries

	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{Worker: h.w, Workers: 1, Reload: time.Hour}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.entries) == 1 })
	s.fire(ctx, "contoso", "@every 1h")

	runs := waitRuns(t, h, 2)
	if runs[1].Status != store.RunThrottled || runs[1].RetryAfterMS != 1000 {
		t.Fatalf("first run: %+v", runs[1])
	}
	if runs[0].Status != store.RunSucceeded || runs[0].Trigger != "schedule" || runs[0].StartedAt.Before(*runs[1].FinishedAt) {
		t.Fatalf("the run after the throttled one: %+v", runs[0])
	}
	h.checkMirror()
}

// TestTwoSchedulersCompete: two nodes' schedulers on one database pull the
// tenant in turn, never at once, and every run completes.
func TestTwoSchedulersCompete(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	gs := h.populate(30, 2, 1, 16)
	h.assign(gs[:1], func(c *store.GraphConnection) { c.Schedule = "@every 1s" })
	other := &Worker{DB: h.db, Tokens: StoreTokens{DB: h.db}, Locks: StoreLocks{DB: h.db}, Key: testKey, Connect: h.connect}

	ctx, cancel := context.WithCancel(context.Background())
	var stopped []chan struct{}
	for _, w := range []*Worker{h.w, other} {
		s := &Scheduler{Worker: w, Workers: 2, Reload: 100 * time.Millisecond}
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		stopped = append(stopped, done)
	}
	for i := range 3 { // changes arrive while both nodes pull
		id := h.dir.AddUser(graphtest.User{UserPrincipalName: fmt.Sprintf("newcomer%d@contoso.example", i), AccountEnabled: true})
		h.dir.AddMember(gs[0], id)
		waitFor(t, func() bool { u, ok := h.localUser(id); return ok && u.Active() })
	}
	cancel()
	for _, done := range stopped {
		<-done
	}
	runs, err := h.db.Runs(context.Background(), "contoso", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) < 3 {
		t.Fatalf("%d runs", len(runs))
	}
	for i, r := range runs {
		if r.Status != store.RunSucceeded {
			t.Fatalf("run %d ended %s: %s", r.ID, r.Status, r.Error)
		}
		if i > 0 && r.FinishedAt.Truncate(time.Millisecond).After(runs[i-1].StartedAt) {
			t.Fatalf("runs %d and %d overlap", r.ID, runs[i-1].ID)
		}
	}
	h.checkMirror()
}

// waitRuns waits until tenant contoso has n finished runs, newest first.
func waitRuns(t *testing.T, h *harness, n int) []store.Run {
	t.Helper()
	var runs []store.Run
	waitFor(t, func() bool {
		var err error
		runs, err = h.db.Runs(context.Background(), "contoso", 100)
		if err != nil {
			t.Fatal(err)
		}
		return len(runs) >= n && runs[0].Status != store.RunRunning
	})
	return runs
}

// waitFor polls cond for up to 30 seconds.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
	}
}

// TestSchedulerSkipsTenantsItCannotOpen: with a secret key that does not
// open a tenant's credential, the tenant is not scheduled (each run would
// be refused), and the log says so once, naming the setting.
func TestSchedulerSkipsTenantsItCannotOpen(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	gs := h.populate(5, 1, 1, 21)
	h.assign(gs[:1], func(c *store.GraphConnection) { c.Schedule = "@every 1s" })
	var logs syncBuffer
	w := &Worker{DB: h.db, Tokens: h.w.Tokens, Locks: h.w.Locks, Connect: h.connect, Key: []byte("another key, 32 bytes long......")}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{Worker: w, Reload: 20 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	waitFor(t, func() bool { return strings.Contains(logs.String(), "not pulled") })
	time.Sleep(1500 * time.Millisecond) // past a tick of the schedule, and many reloads
	cancel()
	<-done
	if n := strings.Count(logs.String(), "ENTRASYNC_SECRET_KEY"); n != 1 || len(s.entries) != 0 {
		t.Fatalf("%d warnings, %d tenants scheduled:\n%s", n, len(s.entries), logs.String())
	}
	if runs, _ := h.db.Runs(context.Background(), "contoso", 10); len(runs) != 0 {
		t.Fatalf("runs were recorded: %+v", runs)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu gosync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
