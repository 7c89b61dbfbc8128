package sync

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/entrasync/entrasync/store"
)

// Health is how a tenant's two channels are doing, for ops: when each last
// worked, and what is wrong, in words.
type Health struct {
	Status   string      `json:"status"` // ok, warning, failing, or idle (no channel used yet)
	Problems []string    `json:"problems,omitempty"`
	Push     PushHealth  `json:"push"`
	Pull     *PullHealth `json:"pull,omitempty"` // nil: no Graph connection
}

// PushHealth is the SCIM channel's health.
type PushHealth struct {
	LastRequest *time.Time `json:"lastRequest"`
	LastSuccess *time.Time `json:"lastSuccess"`
	// Over the last push cycle (PushCycle).
	CycleRequests int     `json:"cycleRequests"`
	CycleFailed   int     `json:"cycleFailed"`
	ErrorRate     float64 `json:"errorRate"`
}

// PullHealth is the Graph pull's health.
type PullHealth struct {
	Schedule     string     `json:"schedule"`
	Interval     string     `json:"interval"` // between two scheduled runs
	LastRun      *store.Run `json:"lastRun"`
	LastSuccess  *time.Time `json:"lastSuccess"`
	LastFinished string     `json:"lastStatus,omitempty"`
}

// Health thresholds.
const (
	// PushCycle is how often Entra ID pushes: "about every 40 minutes".
	PushCycle = 40 * time.Minute
	// Entra ID quarantines a job when over 40 % of its requests fail
	// (Microsoft: "Application provisioning in quarantine status"); a tenant
	// is warned at half that, and failing past it.
	quarantineRate = 0.40
	warnRate       = 0.20
	minRequests    = 10 // fewer requests say little about a rate
	// pullSlack is what a scheduled run may come late by: jitter, a queue
	// of tenants, the run's own length.
	pullSlack = 10 * time.Minute
)

// TenantHealth works out t's health at now. defaultSchedule is the pull
// schedule of a connection that sets none (the sync_schedule setting).
func TenantHealth(ctx context.Context, db *store.DB, t store.Tenant, now time.Time, defaultSchedule string) (Health, error) {
	h := Health{Status: "idle"}
	stats, err := db.PushStats(ctx, t.ID, now.Add(-PushCycle))
	if err != nil {
		return h, err
	}
	h.Push = PushHealth{LastRequest: stats.LastRequest, LastSuccess: stats.LastSuccess,
		CycleRequests: stats.Requests, CycleFailed: stats.Failed}
	if stats.Requests > 0 {
		h.Push.ErrorRate = float64(stats.Failed) / float64(stats.Requests)
	}
	var warn, fail []string
	if stats.LastRequest != nil {
		switch {
		case stats.LastSuccess == nil:
			fail = append(fail, "no SCIM request has succeeded yet: check the Tenant URL and Secret Token in Entra's provisioning settings, and the activity for why requests fail")
		case now.Sub(*stats.LastSuccess) > PushCycle:
			warn = append(warn, fmt.Sprintf("no successful SCIM request for %s, longer than Entra ID's 40-minute cycle: a quiet directory sends nothing, else check the provisioning job in Entra (paused, quarantined, or a token revoked)",
				ago(now, *stats.LastSuccess)))
		}
		if stats.Requests >= minRequests && h.Push.ErrorRate > quarantineRate {
			fail = append(fail, fmt.Sprintf("%.0f%% of the last cycle's %d SCIM requests failed: past 40%% Entra ID quarantines the provisioning job; see the failed activity",
				100*h.Push.ErrorRate, stats.Requests))
		} else if stats.Requests >= minRequests && h.Push.ErrorRate > warnRate {
			warn = append(warn, fmt.Sprintf("%.0f%% of the last cycle's %d SCIM requests failed, on the way to Entra ID's 40%% quarantine threshold; see the failed activity",
				100*h.Push.ErrorRate, stats.Requests))
		}
	}

	conn, err := db.GraphConnection(ctx, t.Name)
	switch {
	case store.ErrorCode(err) == store.NotFound:
	case err != nil:
		return h, err
	default:
		spec := cmp.Or(conn.Schedule, defaultSchedule, "@every 40m")
		p := &PullHealth{Schedule: spec}
		h.Pull = p
		interval := scheduleInterval(spec, now)
		p.Interval = interval.String()
		last, ok, err := lastFinishedRun(ctx, db, t.Name)
		if err != nil {
			return h, err
		}
		if ok {
			p.LastRun, p.LastFinished = &last, last.Status
		}
		success, ok, err := db.LastRun(ctx, t.Name, store.RunSucceeded)
		if err != nil {
			return h, err
		}
		if ok && success.FinishedAt != nil {
			p.LastSuccess = success.FinishedAt
		}
		switch {
		case p.LastRun != nil && p.LastRun.Status == store.RunFailed:
			fail = append(fail, "the last pull failed: "+p.LastRun.Error)
		case p.LastRun != nil && p.LastRun.Status == store.RunHeld:
			warn = append(warn, "the last pull is held: its deprovisions are over the tenant's threshold and wait for a confirmation (entrasync sync TENANT --confirm-deletions)")
		}
		since := conn.UpdatedAt // a connection just made or changed is not late yet
		if p.LastSuccess != nil && p.LastSuccess.After(since) {
			since = *p.LastSuccess
		}
		if interval > 0 && now.Sub(since) > interval+pullSlack {
			what := "no pull has succeeded yet"
			if p.LastSuccess != nil {
				what = "no pull has succeeded for " + ago(now, *p.LastSuccess)
			}
			warn = append(warn, fmt.Sprintf("%s, while the schedule (%s) runs every %s: see the tenant's runs", what, spec, interval))
		}
	}

	switch {
	case len(fail) > 0:
		h.Status = "failing"
	case len(warn) > 0:
		h.Status = "warning"
	case stats.LastRequest != nil || h.Pull != nil:
		h.Status = "ok"
	}
	h.Problems = append(fail, warn...)
	return h, nil
}

// lastFinishedRun is the tenant's newest run that is not running.
func lastFinishedRun(ctx context.Context, db *store.DB, tenant string) (store.Run, bool, error) {
	runs, err := db.Runs(ctx, tenant, 2)
	if err != nil {
		return store.Run{}, false, err
	}
	for _, r := range runs {
		if r.Status != store.RunRunning {
			return r, true, nil
		}
	}
	return store.Run{}, false, nil
}

// scheduleInterval is the time between the two scheduled runs after now;
// 0 for a spec that does not parse.
func scheduleInterval(spec string, now time.Time) time.Duration {
	s, err := ParseSchedule(spec)
	if err != nil {
		return 0
	}
	next := s.Next(now)
	return s.Next(next).Sub(next)
}

func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	}
	return fmt.Sprintf("%d minutes", int(d/time.Minute))
}
