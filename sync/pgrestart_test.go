package sync

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
)

// A pull running while PostgreSQL restarts fails cleanly (an error that
// says the database cannot be reached, no panic, no hang), and the next
// run, once PostgreSQL is back and without restarting anything, succeeds
// and leaves the store mirroring the directory.
func TestPostgresRestartDuringPull(t *testing.T) {
	pg := pgtest.Start(t)
	fake := graphtest.NewServer(graphtest.Options{PageSize: 5})
	t.Cleanup(fake.Close)
	fake.AddApp(azureTenant, appID, appSecret)
	fake.Grant(azureTenant, appID, graph.RequiredPermissions...)
	h := newHarnessAt(t, fake, pg.URL())
	// A short lease: the one the failed run could not release (PostgreSQL
	// was down) expires before the next cycle, as the default does before
	// a scheduled one.
	h.w.Locks = StoreLocks{DB: h.db, TTL: 2 * time.Second}
	h.populate(120, 6, 3, 8)
	fake.SetLatency(20 * time.Millisecond) // many pages, each a moment long

	before := fake.GraphRequests()
	type result struct {
		run store.Run
		err error
	}
	done := make(chan result, 1)
	go func() {
		run, err := h.w.RunOnce(context.Background(), "contoso", Options{Trigger: "test"})
		done <- result{run, err}
	}()
	for fake.GraphRequests() < before+3 {
		time.Sleep(5 * time.Millisecond)
	}
	pg.Stop()
	var res result
	select {
	case res = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the pull did not end with PostgreSQL down")
	}
	if res.err == nil || res.run.Status == store.RunSucceeded {
		t.Fatalf("the pull across the outage ended %q: %v", res.run.Status, res.err)
	}
	if !strings.Contains(res.err.Error(), "cannot be reached") {
		t.Errorf("the pull's error does not say the database cannot be reached: %v", res.err)
	}
	fake.SetLatency(0)
	pg.Start()

	// The next cycle: a run already going is the only acceptable refusal,
	// while the lost lease expires.
	deadline := time.Now().Add(30 * time.Second)
	for {
		run, err := h.w.RunOnce(context.Background(), "contoso", Options{Trigger: "test"})
		var running *RunningError
		if err == nil && run.Status == store.RunSucceeded {
			break
		}
		if (!errors.As(err, &running) && store.ErrorCode(err) != store.Busy) || time.Now().After(deadline) {
			t.Fatalf("the run after PostgreSQL is back ended %q: %v", run.Status, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.checkMirror()
	runs, err := h.db.Runs(context.Background(), "contoso", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.Status == store.RunRunning {
			t.Errorf("run %d is still marked running", r.ID)
		}
	}
}
