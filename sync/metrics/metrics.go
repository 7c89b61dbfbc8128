// Package metrics is entrasync's Prometheus metrics: SCIM requests, pull
// runs and their Graph requests, how far behind the connected tenants'
// pulls are, and the database's pools and writer. Every metric lives on
// the Metrics' own registry (no global one), and every label takes its
// values from a closed set, so what clients send cannot grow the series;
// tenants are a label only with the metrics_tenant_label setting.
//
// A nil *Metrics observes nothing: tests and one-shot commands pass none.
package metrics

import (
	"cmp"
	"context"
	"database/sql"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

// Config configures Metrics.
type Config struct {
	// DB is read at scrape time for the pools, the writer's figures and
	// the tenants' last successful pulls; nil: none of those.
	DB *store.DB
	// DefaultSchedule is the pull schedule of a connection without one
	// (sync_schedule), for when a tenant counts as behind.
	DefaultSchedule string
	// TenantLabel adds entrasync_last_successful_pull_age_seconds with a
	// tenant label: one series per connected tenant (metrics_tenant_label).
	TenantLabel bool
	// Log takes what failed at scrape time; nil: discarded.
	Log *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// NoProcess leaves out the Go runtime and process collectors (tests
	// that compare whole scrapes).
	NoProcess bool
}

// Closed label sets. A value outside its set is counted as "other".
var (
	methods     = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "other"}
	endpoints   = []string{"users", "groups", "serviceproviderconfig", "schemas", "resourcetypes", "me", "bulk", ".search", "other"}
	statuses    = []string{"2xx", "3xx", "4xx", "5xx", "499"} // 499: the client went away before the answer
	runStatuses = []string{store.RunSucceeded, store.RunFailed, store.RunHeld, store.RunThrottled, "other"}
	runModes    = []string{sync.ModeDelta, sync.ModeFull}
	outcomes    = []string{"2xx", "3xx", "4xx", "429", "5xx", "network"}
	errorKinds  = []graph.Kind{graph.KindPermission, graph.KindCredentials, graph.KindTokenUnavailable, graph.KindNetwork,
		graph.KindThrottled, graph.KindResync, graph.KindGraph, graph.KindInvalid, graph.KindOther}
	changeKinds = []string{"users_created", "users_updated", "users_deactivated", "users_reactivated", "users_deleted",
		"groups_created", "groups_updated", "groups_deleted", "members_added", "members_removed"}
)

var (
	endpointIndex = indexOf(endpoints)
	providerIndex = indexOf(scim.Providers)
	otherProvider = providerIndex[scim.ProviderOther]
)

func indexOf(list []string) map[string]int {
	m := make(map[string]int, len(list))
	for i, v := range list {
		m[v] = i
	}
	return m
}

// Buckets, in seconds. SCIM answers take milliseconds; Graph pages up to
// seconds; runs from seconds (a delta) to hours (a first full pull).
var (
	scimBuckets  = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	graphBuckets = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	runBuckets   = []float64{1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400}
)

// Metrics holds the collectors. Its methods are safe for concurrent use,
// and do nothing on a nil *Metrics.
type Metrics struct {
	reg *prometheus.Registry

	scimRequests *prometheus.CounterVec
	scimDuration *prometheus.HistogramVec
	// scim caches each label combination's series once first used: a
	// request then costs an index, an atomic load and the observations,
	// no label lookup. Unused combinations export nothing.
	scim [7][9][5][7]atomic.Pointer[scimSeries] // methods × endpoints × statuses × providers

	runs          [5][2]prometheus.Counter // runStatuses × runModes
	runDuration   [2]prometheus.Observer   // runModes
	changes       [10]prometheus.Counter   // changeKinds
	graphRequests [6]prometheus.Counter    // outcomes
	graphDuration prometheus.Observer
	graphWaits    prometheus.Counter
	graphWaited   prometheus.Counter
	graphErrors   map[graph.Kind]prometheus.Counter
}

type scimSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// New makes the metrics on a registry of their own.
func New(c Config) *Metrics {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.DefaultSchedule == "" {
		c.DefaultSchedule = "@every 40m"
	}
	m := &Metrics{reg: prometheus.NewRegistry(), graphErrors: map[graph.Kind]prometheus.Counter{}}
	f := factory{m.reg}
	m.scimRequests = f.counterVec("entrasync_scim_requests_total",
		"SCIM requests answered, by method, endpoint, status class (499: the client went away first) and identity provider.",
		"method", "endpoint", "status", "provider")
	m.scimDuration = f.histogramVec("entrasync_scim_request_duration_seconds",
		"Time from a SCIM request's arrival to its answer, by method, endpoint, status class and identity provider.",
		scimBuckets, "method", "endpoint", "status", "provider")

	runs := f.counterVec("entrasync_pull_runs_total", "Pull runs finished, by status and mode (delta or full).", "status", "mode")
	runDuration := f.histogramVec("entrasync_pull_run_duration_seconds", "How long pull runs took, by mode.", runBuckets, "mode")
	for i, s := range runStatuses {
		for j, mode := range runModes {
			m.runs[i][j] = runs.WithLabelValues(s, mode)
		}
	}
	for j, mode := range runModes {
		m.runDuration[j] = runDuration.WithLabelValues(mode)
	}
	changes := f.counterVec("entrasync_pull_changes_total", "Changes pull runs applied to the store, by kind.", "kind")
	for i, k := range changeKinds {
		m.changes[i] = changes.WithLabelValues(k)
	}
	requests := f.counterVec("entrasync_graph_requests_total",
		"Requests to Microsoft Graph and its token endpoint, each retry counted, by outcome: status class, 429 apart, or network (no answer).", "outcome")
	for i, o := range outcomes {
		m.graphRequests[i] = requests.WithLabelValues(o)
	}
	m.graphDuration = f.histogram("entrasync_graph_request_duration_seconds",
		"Time to the headers of each answer from Microsoft Graph or its token endpoint.", graphBuckets)
	m.graphWaits = f.counter("entrasync_graph_throttle_waits_total",
		"Waits before retrying a Graph request that was throttled (429) or unavailable (503, 504).")
	m.graphWaited = f.counter("entrasync_graph_throttle_wait_seconds_total", "Time spent in those waits.")
	errs := f.counterVec("entrasync_graph_errors_total",
		"Graph calls that failed, by kind: permission, credentials, token-unavailable, network, throttled, resync, graph, invalid, other.", "kind")
	for _, k := range errorKinds {
		m.graphErrors[k] = errs.WithLabelValues(string(k))
	}

	if c.DB != nil {
		m.reg.MustRegister(&freshness{cfg: c}, &database{db: c.DB})
	}
	if !c.NoProcess {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry is where the metrics live, for a test or another handler.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// ActivityCounts is what the activity recorder tells of itself
// (*sync.Recorder).
type ActivityCounts interface {
	Written() int64
	Dropped() int64
}

// Activity exports the activity recorder's counts, read at scrape time.
// A second recorder is ignored: one process has one.
func (m *Metrics) Activity(r ActivityCounts) {
	if m == nil || r == nil {
		return
	}
	m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "entrasync_activity_records_written_total",
		Help: "Activity records stored."}, func() float64 { return float64(r.Written()) }))
	m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "entrasync_activity_records_dropped_total",
		Help: "Activity records lost: the queue was full (the database fell behind) or their write failed."},
		func() float64 { return float64(r.Dropped()) }))
}

// SCIMRequest counts a SCIM request as its log line is written
// (scim.Observer).
func (m *Metrics) SCIMRequest(method, endpoint string, status int, provider string, elapsed time.Duration) {
	if m == nil {
		return
	}
	mi := methodIndex(method)
	ei, ok := endpointIndex[endpoint]
	if !ok {
		ei = len(endpoints) - 1
	}
	si := statusIndex(status)
	pi, ok := providerIndex[provider]
	if !ok {
		pi = otherProvider
	}
	slot := &m.scim[mi][ei][si][pi]
	s := slot.Load()
	if s == nil {
		labels := []string{methods[mi], endpoints[ei], statuses[si], scim.Providers[pi]}
		s = &scimSeries{count: m.scimRequests.WithLabelValues(labels...), duration: m.scimDuration.WithLabelValues(labels...)}
		if !slot.CompareAndSwap(nil, s) {
			s = slot.Load()
		}
	}
	s.count.Inc()
	s.duration.Observe(elapsed.Seconds())
}

func methodIndex(method string) int {
	switch method {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "PATCH":
		return 4
	case "DELETE":
		return 5
	}
	return 6
}

func statusIndex(status int) int {
	switch {
	case status == 499:
		return 4
	case status < 300:
		return 0
	case status < 400:
		return 1
	case status < 500:
		return 2
	}
	return 3
}

// RunFinished counts a finished pull run and what it applied
// (sync.Observer).
func (m *Metrics) RunFinished(run store.Run, counts sync.Counts) {
	if m == nil {
		return
	}
	si := len(runStatuses) - 1
	for i, s := range runStatuses {
		if s == run.Status {
			si = i
		}
	}
	mi := 0
	if run.Mode == sync.ModeFull {
		mi = 1
	}
	m.runs[si][mi].Inc()
	if run.FinishedAt != nil && !run.StartedAt.IsZero() {
		m.runDuration[mi].Observe(max(run.FinishedAt.Sub(run.StartedAt), 0).Seconds())
	}
	for i, n := range []int{counts.UsersCreated, counts.UsersUpdated, counts.UsersDeactivated, counts.UsersReactivated,
		counts.UsersDeleted, counts.GroupsCreated, counts.GroupsUpdated, counts.GroupsDeleted, counts.MembersAdded, counts.MembersRemoved} {
		if n > 0 {
			m.changes[i].Add(float64(n))
		}
	}
}

// GraphAttempt counts one attempt of a Graph request (graph.Observer).
func (m *Metrics) GraphAttempt(status int, elapsed time.Duration) {
	if m == nil {
		return
	}
	i := 5 // network: no answer
	switch {
	case status == 0:
	case status == 429:
		i = 3
	case status < 300:
		i = 0
	case status < 400:
		i = 1
	case status < 500:
		i = 2
	default:
		i = 4
	}
	m.graphRequests[i].Inc()
	if status != 0 {
		m.graphDuration.Observe(elapsed.Seconds())
	}
}

// GraphWait counts a wait before a Graph retry (graph.Observer).
func (m *Metrics) GraphWait(d time.Duration) {
	if m == nil {
		return
	}
	m.graphWaits.Inc()
	m.graphWaited.Add(d.Seconds())
}

// GraphError counts a failed Graph call (graph.Observer).
func (m *Metrics) GraphError(kind graph.Kind) {
	if m == nil {
		return
	}
	c, ok := m.graphErrors[kind]
	if !ok {
		c = m.graphErrors[graph.KindOther]
	}
	c.Inc()
}

// factory registers what it makes on reg.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// scrapeTimeout bounds the store read a scrape makes: a slow database
// costs the scrape those figures, not the scrape.
const scrapeTimeout = 2 * time.Second

// freshness reports, at scrape time, how long ago each connected tenant's
// pull last succeeded.
type freshness struct {
	cfg Config
	// failures is exported by Collect itself, after its read: a counter
	// collected beside it could be read before the read failed.
	failures atomic.Uint64
}

var (
	storeErrorsDesc = prometheus.NewDesc("entrasync_metrics_store_errors_total",
		"Scrapes whose read of the tenants' pull figures failed or passed 2 s; those figures are then missing from that scrape.", nil, nil)
	connectedDesc = prometheus.NewDesc("entrasync_tenants_connected", "Tenants with a Graph connection (pulled on a schedule).", nil, nil)
	behindDesc    = prometheus.NewDesc("entrasync_tenants_behind",
		"Connected tenants whose pull is late, as their health says: no success since the later of their last successful "+
			"pull and their connection's last change for longer than their schedule's interval plus 10 minutes.", nil, nil)
	oldestDesc = prometheus.NewDesc("entrasync_oldest_successful_pull_age_seconds",
		"Seconds since the last successful pull of the connected tenant that has gone longest without one (since its connection "+
			"was made or changed when it has had none); 0 with no tenant connected.", nil, nil)
	tenantAgeDesc = prometheus.NewDesc("entrasync_last_successful_pull_age_seconds",
		"Seconds since the tenant's last successful pull (since its connection was made or changed when it has had none). "+
			"Only with the metrics_tenant_label setting.", []string{"tenant"}, nil)
)

func (f *freshness) Describe(ch chan<- *prometheus.Desc) {
	ch <- storeErrorsDesc
	ch <- connectedDesc
	ch <- behindDesc
	ch <- oldestDesc
	if f.cfg.TenantLabel {
		ch <- tenantAgeDesc
	}
}

func (f *freshness) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	list, err := f.cfg.DB.PullFreshness(ctx)
	if err != nil {
		f.failures.Add(1)
		f.cfg.Log.Warn("metrics: reading the tenants' last successful pulls failed; the scrape goes without them", "err", err)
	}
	ch <- prometheus.MustNewConstMetric(storeErrorsDesc, prometheus.CounterValue, float64(f.failures.Load()))
	if err != nil {
		return
	}
	now := f.cfg.Now()
	behind, oldest := 0, time.Duration(0)
	for _, t := range list {
		// Age: since the last success; before any, since the connection
		// was made or changed, when the tenant could first be pulled.
		since := t.LastSuccess
		if since.IsZero() {
			since = t.Changed
		}
		age := max(now.Sub(since), 0)
		oldest = max(oldest, age)
		spec := cmp.Or(t.Schedule, f.cfg.DefaultSchedule)
		if sync.PullLate(spec, later(since, t.Changed), now) {
			behind++
		}
		if f.cfg.TenantLabel {
			ch <- prometheus.MustNewConstMetric(tenantAgeDesc, prometheus.GaugeValue, age.Seconds(), t.Tenant)
		}
	}
	ch <- prometheus.MustNewConstMetric(connectedDesc, prometheus.GaugeValue, float64(len(list)))
	ch <- prometheus.MustNewConstMetric(behindDesc, prometheus.GaugeValue, float64(behind))
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, oldest.Seconds())
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// database reports the pools' and the writer's figures at scrape time.
type database struct{ db *store.DB }

var (
	poolLabels   = []string{"pool"}
	poolMaxDesc  = prometheus.NewDesc("entrasync_db_connections_max", "Most connections the pool opens (0: no limit).", poolLabels, nil)
	poolOpenDesc = prometheus.NewDesc("entrasync_db_connections_open", "Connections the pool holds open, in use or idle.", poolLabels, nil)
	poolUseDesc  = prometheus.NewDesc("entrasync_db_connections_in_use", "Connections in use.", poolLabels, nil)
	poolIdleDesc = prometheus.NewDesc("entrasync_db_connections_idle", "Idle connections.", poolLabels, nil)
	poolWaitDesc = prometheus.NewDesc("entrasync_db_connection_waits_total",
		"Times a query waited for a free connection of the pool.", poolLabels, nil)
	poolWaitedDesc = prometheus.NewDesc("entrasync_db_connection_wait_seconds_total",
		"Time queries spent waiting for a free connection of the pool.", poolLabels, nil)
	writeWaitDesc = prometheus.NewDesc("entrasync_db_write_wait_seconds",
		"Time from a write being asked for to its transaction begun: the wait for the writer (SQLite's one writer, "+
			"PostgreSQL's write pool), group commit included.", nil, nil)
	writeHoldDesc = prometheus.NewDesc("entrasync_db_write_hold_seconds",
		"Time from a write transaction's begin to its commit or rollback: how long it held the writer.", nil, nil)
	writeBusyDesc = prometheus.NewDesc("entrasync_db_writes_busy_total",
		"Writes refused (503 Busy) because the writer stayed taken past write_wait.", nil, nil)
	writeWaitingDesc = prometheus.NewDesc("entrasync_db_writes_waiting", "Writes waiting for the writer now.", nil, nil)
)

func (d *database) Describe(ch chan<- *prometheus.Desc) {
	for _, desc := range []*prometheus.Desc{poolMaxDesc, poolOpenDesc, poolUseDesc, poolIdleDesc, poolWaitDesc, poolWaitedDesc,
		writeWaitDesc, writeHoldDesc, writeBusyDesc, writeWaitingDesc} {
		ch <- desc
	}
}

func (d *database) Collect(ch chan<- prometheus.Metric) {
	write, read := d.db.PoolStats()
	for _, p := range []struct {
		name string
		s    sql.DBStats
	}{{"write", write}, {"read", read}} {
		ch <- prometheus.MustNewConstMetric(poolMaxDesc, prometheus.GaugeValue, float64(p.s.MaxOpenConnections), p.name)
		ch <- prometheus.MustNewConstMetric(poolOpenDesc, prometheus.GaugeValue, float64(p.s.OpenConnections), p.name)
		ch <- prometheus.MustNewConstMetric(poolUseDesc, prometheus.GaugeValue, float64(p.s.InUse), p.name)
		ch <- prometheus.MustNewConstMetric(poolIdleDesc, prometheus.GaugeValue, float64(p.s.Idle), p.name)
		ch <- prometheus.MustNewConstMetric(poolWaitDesc, prometheus.CounterValue, float64(p.s.WaitCount), p.name)
		ch <- prometheus.MustNewConstMetric(poolWaitedDesc, prometheus.CounterValue, p.s.WaitDuration.Seconds(), p.name)
	}
	ws := d.db.WriteStats()
	ch <- constHistogram(writeWaitDesc, ws.Wait)
	ch <- constHistogram(writeHoldDesc, ws.Hold)
	ch <- prometheus.MustNewConstMetric(writeBusyDesc, prometheus.CounterValue, float64(ws.Busy))
	ch <- prometheus.MustNewConstMetric(writeWaitingDesc, prometheus.GaugeValue, float64(ws.Waiting))
}

// constHistogram turns the store's histogram (counts per bucket) into
// Prometheus's (cumulative counts per upper bound, in seconds).
func constHistogram(desc *prometheus.Desc, h store.Histogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(desc, h.Count, h.Sum.Seconds(), buckets)
}
