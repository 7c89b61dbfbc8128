package sync

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	gosync "sync"
	"time"

	"github.com/entrasync/entrasync/store"
	"github.com/robfig/cron/v3"
)

// Scheduler pulls every connected tenant on its own cron schedule: each run
// delayed by a random jitter, so tenants on one schedule spread out, and at
// most Workers tenants at once, which keeps the app inside Graph's
// per-app budget. Connections are re-read every Reload, so tenants added
// or changed from the command line are picked up.
type Scheduler struct {
	Worker          *Worker
	Workers         int           // tenants pulled at once; default 4
	Jitter          time.Duration // largest random delay before a scheduled run
	DefaultSchedule string        // for a connection without one; default every 40 minutes
	Reload          time.Duration // default one minute
	Log             *slog.Logger

	cron    *cron.Cron
	sem     chan struct{}
	mu      gosync.Mutex
	entries map[string]entry // by tenant
	refused map[string]bool  // tenants not pulled: the secret key does not open their credential
	wg      gosync.WaitGroup
}

type entry struct {
	id   cron.EntryID
	spec string
}

// parser reads standard five-field specs and descriptors (@every 40m, @hourly).
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule checks a schedule spec.
func ParseSchedule(spec string) (cron.Schedule, error) { return parser.Parse(spec) }

// Run schedules until ctx ends, then waits for the runs going to finish.
func (s *Scheduler) Run(ctx context.Context) error {
	if s.Workers <= 0 {
		s.Workers = 4
	}
	if s.DefaultSchedule == "" {
		s.DefaultSchedule = "@every 40m"
	}
	if s.Reload <= 0 {
		s.Reload = time.Minute
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	s.mu.Lock() // what reload and the runs share is published under the lock
	s.sem = make(chan struct{}, s.Workers)
	s.entries, s.refused = map[string]entry{}, map[string]bool{}
	s.cron = cron.New(cron.WithParser(parser), cron.WithLocation(time.UTC))
	s.mu.Unlock()
	s.cron.Start()
	defer func() {
		<-s.cron.Stop().Done()
		s.wg.Wait()
	}()
	t := time.NewTicker(s.Reload)
	defer t.Stop()
	for {
		if err := s.reload(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("reading Graph connections failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// reload makes the cron entries match the stored connections. A tenant
// whose credential the secret key cannot open is not scheduled: each of its
// runs would be refused, and saying so once is enough.
func (s *Scheduler) reload(ctx context.Context) error {
	conns, err := s.Worker.DB.GraphConnections(ctx)
	if err != nil {
		return err
	}
	unopenable, err := s.Worker.DB.UnopenableConnections(ctx, s.Worker.Key)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	refused := map[string]bool{}
	for _, t := range unopenable {
		refused[t] = true
		if !s.refused[t] {
			s.Log.Warn("not pulled: ENTRASYNC_SECRET_KEY does not open the tenant's Graph credential; set the key it was "+
				"stored with, run `entrasync rekey`, or give the credential again with `entrasync tenant graph`", "tenant", t)
		}
	}
	s.refused = refused
	seen := map[string]bool{}
	for _, c := range conns {
		if refused[c.Tenant] {
			continue
		}
		seen[c.Tenant] = true
		spec := c.Schedule
		if spec == "" {
			spec = s.DefaultSchedule
		}
		if e, ok := s.entries[c.Tenant]; ok && e.spec == spec {
			continue
		} else if ok {
			s.cron.Remove(e.id)
		}
		tenant := c.Tenant
		sched, err := tenantSchedule(spec, tenant)
		if err != nil {
			s.Log.Error("a tenant's schedule does not parse; it is not pulled", "tenant", tenant, "schedule", spec, "err", err)
			continue
		}
		id := s.cron.Schedule(sched, cron.FuncJob(func() { s.fire(ctx, tenant, spec) }))
		s.entries[tenant] = entry{id: id, spec: spec}
		s.Log.Info("scheduled", "tenant", tenant, "schedule", spec)
	}
	for tenant, e := range s.entries {
		if !seen[tenant] {
			s.cron.Remove(e.id)
			delete(s.entries, tenant)
			s.Log.Info("unscheduled", "tenant", tenant)
		}
	}
	return nil
}

// tenantSchedule is spec as tenant's runs follow it. An @every schedule
// counts from when its entry was added, so each node would fire at its own
// moments and the node started first would win every tenant's lock; here
// it fires at multiples of its interval since the Unix epoch, the same on
// every node, offset by a fraction of the interval drawn from the
// tenant's name, so that tenants also spread over the interval. Cron
// specs are on the wall clock already.
func tenantSchedule(spec, tenant string) (cron.Schedule, error) {
	sched, err := parser.Parse(spec)
	if err != nil {
		return nil, err
	}
	every, ok := sched.(cron.ConstantDelaySchedule)
	if !ok {
		return sched, nil
	}
	h := fnv.New64a()
	h.Write([]byte(tenant))
	offset := time.Duration(h.Sum64()%uint64(every.Delay/time.Second)) * time.Second
	return alignedEvery{every: every.Delay, offset: offset}, nil
}

// alignedEvery fires every interval, at offset past each multiple of it.
type alignedEvery struct{ every, offset time.Duration }

func (a alignedEvery) Next(t time.Time) time.Time {
	n := t.UnixNano() - int64(a.offset)
	k := n/int64(a.every) + 1
	return time.Unix(0, k*int64(a.every)+int64(a.offset)).In(t.Location())
}

// fire is one scheduled run: after the jitter, when a slot is free, unless
// a run of the tenant (on any node, for any reason, however it ended)
// started within half the schedule's interval. Every node's cron fires; a
// failed run is tried again next cycle, not by the next node to fire.
func (s *Scheduler) fire(ctx context.Context, tenant, spec string) {
	s.start(ctx, tenant, spec, true)
}

// start runs tenant when a slot is free. A throttled run comes back when
// Graph says, past the once-a-cycle check, which would count the
// throttled run itself.
func (s *Scheduler) start(ctx context.Context, tenant, spec string, scheduled bool) {
	if ctx.Err() != nil {
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	if scheduled && s.Jitter > 0 && !sleepFor(ctx, rand.N(s.Jitter)) {
		return
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-ctx.Done():
		return
	}
	opts := Options{Trigger: "schedule"}
	if scheduled {
		opts.NoRunSince = cycleStart(spec, time.Now())
	}
	run, err := s.Worker.RunOnce(ctx, tenant, opts)
	var running *RunningError
	switch {
	case errors.As(err, &running):
		s.Log.Debug("skipped: a run is going", "tenant", tenant)
	case errors.Is(err, ErrRanThisCycle):
		s.Log.Debug("skipped: the tenant ran this cycle", "tenant", tenant)
	case run.Status == store.RunThrottled && run.RetryAfterMS > 0:
		wait := time.Duration(run.RetryAfterMS) * time.Millisecond
		s.Log.Warn("throttled by Microsoft Graph; the pull comes back when Graph says", "tenant", tenant, "after", wait)
		time.AfterFunc(wait, func() { s.start(ctx, tenant, spec, false) })
	case err != nil && run.ID == 0:
		s.Log.Error("a scheduled pull could not start", "tenant", tenant, "err", err)
	}
}

// cycleStart is when the cycle of spec that now falls in began, for the
// once-a-cycle check: half the schedule's interval ago. Nodes' crons fire
// at different moments (an @every schedule counts from each node's start),
// so the cycle is a window, not an instant.
func cycleStart(spec string, now time.Time) time.Time {
	sched, err := parser.Parse(spec)
	if err != nil {
		return time.Time{}
	}
	next := sched.Next(now)
	return now.Add(-sched.Next(next).Sub(next) / 2)
}

func sleepFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
