package sync

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
)

// TestTenantHealth: idle before anything happens; ok after a success on
// each channel; warned when a channel has gone quiet past its cycle or
// its errors head for Entra's quarantine; failing past it, or when the
// last pull failed.
func TestTenantHealth(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	ctx := context.Background()
	// A tenant with no connection and no requests is idle.
	var quiet store.Tenant
	if err := h.db.Write(ctx, func(tx *store.Tx) (err error) { quiet, err = tx.CreateTenant("quiet"); return err }); err != nil {
		t.Fatal(err)
	}
	health := func(tn store.Tenant, at time.Time) Health {
		t.Helper()
		hl, err := TenantHealth(ctx, h.db, tn, at, "@every 40m")
		if err != nil {
			t.Fatal(err)
		}
		return hl
	}
	if hl := health(quiet, time.Now()); hl.Status != "idle" || hl.Pull != nil || len(hl.Problems) != 0 {
		t.Fatalf("idle tenant: %+v", hl)
	}

	h.populate(20, 2, 1, 3)
	h.assign(nil, func(c *store.GraphConnection) { c.Schedule = "@every 1h" })
	run, _ := h.sync(store.RunSucceeded)
	now := run.FinishedAt.Add(time.Minute)
	push := func(at time.Time, n int, failed int) {
		var rs []store.Activity
		for i := range n {
			rs = append(rs, store.Activity{TenantID: h.tenant.ID, At: at, Channel: store.ChannelPush, Summary: "x", Failed: i < failed})
		}
		if err := h.db.RecordActivity(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	push(now.Add(-5*time.Minute), 20, 1)
	hl := health(h.tenant, now)
	if hl.Status != "ok" || len(hl.Problems) != 0 || hl.Pull == nil || hl.Pull.Interval != "1h0m0s" || hl.Pull.LastSuccess == nil ||
		hl.Push.CycleRequests != 20 || hl.Push.CycleFailed != 1 || hl.Push.LastSuccess == nil {
		t.Fatalf("healthy tenant: %+v %+v", hl, hl.Pull)
	}
	problem := func(hl Health, status, words string) {
		t.Helper()
		if hl.Status != status || !strings.Contains(strings.Join(hl.Problems, " | "), words) {
			t.Fatalf("want %s with %q: %s %q", status, words, hl.Status, hl.Problems)
		}
	}
	// Two hours on: the pull (hourly) is late, and Entra has been quiet
	// longer than its 40-minute cycle.
	later := now.Add(2 * time.Hour)
	problem(health(h.tenant, later), "warning", "no pull has succeeded for 2 hours, while the schedule (@every 1h) runs every 1h0m0s")
	problem(health(h.tenant, later), "warning", "no successful SCIM request for 2 hours, longer than Entra ID's 40-minute cycle")
	// A quarter of the last cycle's requests failed: warned; half: failing.
	push(now, 30, 10)
	problem(health(h.tenant, now.Add(time.Minute)), "warning", "22% of the last cycle's 50 SCIM requests failed, on the way to Entra ID's 40% quarantine threshold")
	push(now, 30, 30)
	problem(health(h.tenant, now.Add(time.Minute)), "failing", "51% of the last cycle's 80 SCIM requests failed: past 40% Entra ID quarantines")
	// A failed last pull makes the tenant failing, saying why.
	if err := h.db.Write(ctx, func(tx *store.Tx) error {
		r, err := tx.StartRun(h.tenant, "cli", ModeDelta)
		if err != nil {
			return err
		}
		r.Status, r.Error = store.RunFailed, "Graph refused the app's credentials"
		return tx.FinishRun(r)
	}); err != nil {
		t.Fatal(err)
	}
	problem(health(h.tenant, time.Now()), "failing", "the last pull failed: Graph refused the app's credentials")
}
