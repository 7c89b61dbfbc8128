package sync

import (
	"context"
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

func TestRanRecently(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	h.populate(5, 1, 1, 13)
	s := &Scheduler{Worker: h.w}
	if s.ranRecently(context.Background(), "contoso", "@every 40m") {
		t.Fatal("no run yet, yet ran recently")
	}
	h.sync(store.RunSucceeded)
	if !s.ranRecently(context.Background(), "contoso", "@every 40m") {
		t.Fatal("a run a moment ago does not count: another node would pull again")
	}
	time.Sleep(600 * time.Millisecond) // past half of a one-second schedule
	if s.ranRecently(context.Background(), "contoso", "@every 1s") {
		t.Fatal("a run half a short schedule ago still skips the next")
	}
}
