package metrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
	"github.com/entrasync/entrasync/sync"
	"github.com/entrasync/entrasync/sync/metrics"
	"github.com/entrasync/entrasync/sync/opsapi"
)

const (
	azureTenant = "6f1b2a3c-1111-4222-8333-944445555666"
	appID       = "0c5e8f4a-aaaa-4bbb-8ccc-dddddddddddd"
	appSecret   = "graph-client-secret"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// env is a store with tenant "contoso" (a SCIM token, ops keys), the SCIM
// endpoint and the guarded /metrics served over real HTTP.
type env struct {
	t         *testing.T
	db        *store.DB
	m         *metrics.Metrics
	url       string
	token     string // contoso's SCIM token
	allKey    string // ops key, role read, every tenant
	scopedKey string // ops key, role admin, contoso only
}

func newEnv(t *testing.T, c metrics.Config) *env {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "metrics.db")
	if pgtest.Selected() { // ENTRASYNC_TEST_STORE=postgres: a schema of the test PostgreSQL
		dsn = pgtest.Schema(t)
	}
	db, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, db: db}
	err = db.Write(context.Background(), func(tx *store.Tx) error {
		tenant, err := tx.CreateTenant("contoso")
		if err != nil {
			return err
		}
		if _, e.token, err = tx.CreateToken(tenant); err != nil {
			return err
		}
		if _, e.allKey, err = tx.CreateOpsKey("prometheus", store.OpsRead, nil); err != nil {
			return err
		}
		_, e.scopedKey, err = tx.CreateOpsKey("contoso-admin", store.OpsAdmin, []string{"contoso"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c.DB = db
	e.m = metrics.New(c)
	mux := http.NewServeMux()
	ops := &opsapi.Handler{Worker: &sync.Worker{DB: db}}
	mux.Handle(metrics.Path, ops.WithKey(metrics.Path, e.m.ForKey()))
	srv := scim.New(scim.Config{DB: db, PublicURL: "http://scim.test", Metrics: e.m})
	mux.Handle("/", srv.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	e.url = ts.URL
	return e
}

// do sends a request and returns its status.
func (e *env) do(method, path, ua, token, body string) int {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// scrape reads /metrics as Prometheus would, with the all-tenant key.
func (e *env) scrape() families {
	e.t.Helper()
	return scrapeURL(e.t, e.url+metrics.Path, e.allKey)
}

func scrapeURL(t *testing.T, url, key string) families {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("scrape: %d %s", res.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("scrape does not parse: %v", err)
	}
	return fams
}

type families map[string]*dto.MetricFamily

// value sums the series of name whose labels include want: a counter's or
// gauge's value, a histogram's count. -1 when no series matches.
func (f families) value(name string, want ...string) float64 {
	fam, ok := f[name]
	if !ok {
		return -1
	}
	sum, found := 0.0, false
	for _, m := range fam.Metric {
		if !hasLabels(m, want) {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	if !found {
		return -1
	}
	return sum
}

func hasLabels(m *dto.Metric, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		ok := false
		for _, l := range m.Label {
			if l.GetName() == want[i] && l.GetValue() == want[i+1] {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

const userBody = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"%s","active":true}`

func TestSCIMRequestsMove(t *testing.T) {
	e := newEnv(t, metrics.Config{})
	const entra, okta = "Microsoft Azure AD SCIM Provisioning", "Okta SCIM Client 1.0.0"
	requests := []struct {
		method, path, ua, token, body string
		want                          int
	}{
		{"POST", "/scim/v2/Users", entra, e.token, fmt.Sprintf(userBody, "jane@contoso.com"), http.StatusCreated},
		{"POST", "/scim/v2/Users", entra, e.token, fmt.Sprintf(userBody, "jane@contoso.com"), http.StatusConflict},
		{"GET", "/scim/v2/Users?filter=userName+eq+%22jane@contoso.com%22", okta, e.token, "", http.StatusOK},
		{"GET", "/scim/v2/Groups", okta, e.token, "", http.StatusOK},
		{"GET", "/scim/v2/Users", "curl/8", "", "", http.StatusUnauthorized},
		{"GET", "/scim/v2/ServiceProviderConfig?aadOptscim062020", "", e.token, "", http.StatusOK},
		{"POST", "/scim/v2/Bulk", entra, e.token, "{}", http.StatusNotImplemented},
	}
	for _, r := range requests {
		if got := e.do(r.method, r.path, r.ua, r.token, r.body); got != r.want {
			t.Fatalf("%s %s: %d, want %d", r.method, r.path, got, r.want)
		}
	}
	f := e.scrape()
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"method", "POST", "endpoint", "users", "status", "2xx", "provider", "entra"}, 1},
		{[]string{"method", "POST", "endpoint", "users", "status", "4xx", "provider", "entra"}, 1},
		{[]string{"method", "GET", "endpoint", "users", "status", "2xx", "provider", "okta"}, 1},
		{[]string{"method", "GET", "endpoint", "groups", "status", "2xx", "provider", "okta"}, 1},
		{[]string{"method", "GET", "endpoint", "users", "status", "4xx", "provider", "other"}, 1},
		{[]string{"endpoint", "serviceproviderconfig", "provider", "entra"}, 1}, // Entra's Tenant URL flag
		{[]string{"method", "POST", "endpoint", "bulk", "status", "5xx"}, 1},
		{[]string{"provider", "okta"}, 2},
		{nil, float64(len(requests))},
	} {
		if got := f.value("entrasync_scim_requests_total", c.labels...); got != c.want {
			t.Errorf("entrasync_scim_requests_total%v = %v, want %v", c.labels, got, c.want)
		}
		if got := f.value("entrasync_scim_request_duration_seconds", c.labels...); got != c.want {
			t.Errorf("entrasync_scim_request_duration_seconds%v count = %v, want %v", c.labels, got, c.want)
		}
	}
	// Unused combinations export nothing.
	if got := f.value("entrasync_scim_requests_total", "method", "DELETE"); got != -1 {
		t.Errorf("DELETE, never sent, has a series: %v", got)
	}
	// The store's figures and the runtime's are there too.
	if f.value("entrasync_db_connections_open", "pool", "read") < 0 || f.value("entrasync_db_connections_max", "pool", "write") < 1 {
		t.Errorf("pool figures missing: %v", f["entrasync_db_connections_max"])
	}
	if f.value("entrasync_db_write_hold_seconds") < 1 || f.value("entrasync_db_writes_busy_total") != 0 {
		t.Errorf("writer figures: hold %v busy %v", f.value("entrasync_db_write_hold_seconds"), f.value("entrasync_db_writes_busy_total"))
	}
	if f.value("go_goroutines") <= 0 {
		t.Error("no Go runtime figures")
	}
}

// TestCardinalityBounded: whatever methods, paths, agents and tokens
// clients send, the SCIM series take their labels from the closed sets.
func TestCardinalityBounded(t *testing.T) {
	e := newEnv(t, metrics.Config{})
	r := rand.New(rand.NewSource(1))
	word := func() string {
		const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_~"
		b := make([]byte, 1+r.Intn(12))
		for i := range b {
			b[i] = letters[r.Intn(len(letters))]
		}
		return string(b)
	}
	methods := []string{"GET", "get", "PATCH", "PROPFIND", "FOO", "DELETE", "OPTIONS", "TRACE"}
	for i := range 300 {
		path := "/scim/v2/" + word() + "/" + word()
		switch i % 4 {
		case 1:
			path = "/" + word()
		case 2:
			path = "/scim/" + word()
		case 3:
			path = "/scim/v2/Users/" + word() + "?filter=" + word()
		}
		token := word()
		if i%2 == 0 {
			token = e.token
		}
		e.do(methods[r.Intn(len(methods))], path, word()+" "+word(), token, "")
	}
	closed := map[string][]string{
		"method":   {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "other"},
		"endpoint": {"users", "groups", "serviceproviderconfig", "schemas", "resourcetypes", "me", "bulk", ".search", "other"},
		"status":   {"2xx", "3xx", "4xx", "5xx", "499"},
		"provider": scim.Providers,
	}
	f := e.scrape()
	for _, name := range []string{"entrasync_scim_requests_total", "entrasync_scim_request_duration_seconds"} {
		fam := f[name]
		if fam == nil {
			t.Fatalf("no %s", name)
		}
		total := 0.0
		for _, m := range fam.Metric {
			if len(m.Label) != len(closed) {
				t.Errorf("%s has labels %v", name, m.Label)
			}
			for _, l := range m.Label {
				if !slices.Contains(closed[l.GetName()], l.GetValue()) {
					t.Errorf("%s: label %s=%q is outside its closed set", name, l.GetName(), l.GetValue())
				}
			}
			if m.Counter != nil {
				total += m.Counter.GetValue()
			}
		}
		if name == "entrasync_scim_requests_total" && total != 300 {
			t.Errorf("counted %v requests, sent 300", total)
		}
		// Methods (7 possible) × the few endpoints and statuses seen, one provider.
		if len(fam.Metric) > 7*9*5 {
			t.Errorf("%s has %d series", name, len(fam.Metric))
		}
	}
}

func TestMetricsAuth(t *testing.T) {
	e := newEnv(t, metrics.Config{})
	tests := []struct {
		name, method, auth string
		want               int
		says               string
	}{
		{"no key", "GET", "", http.StatusUnauthorized, "send an ops key"},
		{"not bearer", "GET", "Basic " + e.allKey, http.StatusUnauthorized, "send an ops key"},
		{"unknown key", "GET", "Bearer eso_nope", http.StatusUnauthorized, "not valid or has been revoked"},
		{"a SCIM token is no ops key", "GET", "Bearer " + e.token, http.StatusUnauthorized, "not valid"},
		{"key scoped to a tenant", "GET", "Bearer " + e.scopedKey, http.StatusForbidden, "every tenant"},
		{"all-tenant read key", "GET", "Bearer " + e.allKey, http.StatusOK, "entrasync_scim_requests_total"},
		{"HEAD", "HEAD", "Bearer " + e.allKey, http.StatusOK, ""},
		{"POST", "POST", "Bearer " + e.allKey, http.StatusMethodNotAllowed, "not allowed"},
	}
	e.do("GET", "/scim/v2/Users", "", e.token, "") // something to show
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, e.url+metrics.Path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.want || !strings.Contains(string(body), tc.says) {
				t.Fatalf("%d %s, want %d with %q", res.StatusCode, body, tc.want, tc.says)
			}
			if tc.want >= 400 {
				var msg map[string]string
				if json.Unmarshal(body, &msg) != nil || msg["error"] == "" {
					t.Fatalf("refusal is not {\"error\": ...}: %s", body)
				}
				if strings.Contains(string(body), "entrasync_") {
					t.Fatal("a refusal shows metrics")
				}
			}
			if tc.want == http.StatusUnauthorized && res.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	// Failed attempts from one address are limited; a valid key still passes.
	limited := false
	for range 40 {
		req, _ := http.NewRequest("GET", e.url+metrics.Path, nil)
		req.Header.Set("Authorization", "Bearer eso_guess")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == http.StatusTooManyRequests {
			limited = res.Header.Get("Retry-After") != ""
			break
		}
	}
	if !limited {
		t.Fatal("guessing keys is never limited")
	}
	e.scrape()
}

// TestNilMetrics: code handed no metrics observes nothing and does not panic.
func TestNilMetrics(t *testing.T) {
	var m *metrics.Metrics
	m.SCIMRequest("GET", "users", 200, "entra", time.Millisecond)
	m.RunFinished(store.Run{Status: store.RunSucceeded}, sync.Counts{UsersCreated: 1})
	m.GraphAttempt(200, time.Millisecond)
	m.GraphWait(time.Second)
	m.GraphError(graph.KindNetwork)
	if m.Registry() != nil {
		t.Fatal("a nil Metrics has a registry")
	}
	rec := httptest.NewRecorder()
	m.Open().ServeHTTP(rec, httptest.NewRequest("GET", metrics.Path, nil))
	keyed := httptest.NewRecorder()
	m.ForKey()(keyed, httptest.NewRequest("GET", metrics.Path, nil), store.OpsKey{})
	if rec.Code != http.StatusNotFound || keyed.Code != http.StatusNotFound {
		t.Fatalf("nil metrics served %d, %d", rec.Code, keyed.Code)
	}
}

// pullEnv adds a fake Graph with a directory, contoso connected to it, and
// a worker reporting to the metrics.
type pullEnv struct {
	*env
	fake *graphtest.Server
	dir  *graphtest.Directory
	w    *sync.Worker
}

func newPullEnv(t *testing.T, c metrics.Config) *pullEnv {
	t.Helper()
	e := newEnv(t, c)
	fake := graphtest.NewServer(graphtest.Options{PageSize: 10})
	t.Cleanup(fake.Close)
	fake.AddApp(azureTenant, appID, appSecret)
	fake.Grant(azureTenant, appID, graph.RequiredPermissions...)
	dir := fake.Tenant(azureTenant)
	groups := dir.Populate(rand.New(rand.NewSource(3)), 30, 2)
	conn := store.GraphConnection{Tenant: "contoso", AzureTenantID: azureTenant, ClientID: appID, Credential: "secret",
		Secret: []byte(appSecret), Groups: groups, Schedule: "@every 40m", Deprovision: "deactivate", ThresholdPercent: 20,
		AuthorityHost: fake.URL(), GraphURL: fake.URL()}
	if err := e.db.Write(context.Background(), func(tx *store.Tx) error { return tx.SaveGraphConnection(conn, testKey) }); err != nil {
		t.Fatal(err)
	}
	noSleep := func(ctx context.Context, d time.Duration) error { return ctx.Err() }
	w := &sync.Worker{DB: e.db, Tokens: sync.StoreTokens{DB: e.db}, Locks: sync.StoreLocks{DB: e.db}, Key: testKey, Metrics: e.m,
		Connect: func(ctx context.Context, c store.GraphConnection) (sync.Source, error) {
			return graph.New(graph.Config{TenantID: c.AzureTenantID, ClientID: c.ClientID, ClientSecret: string(c.Secret),
				AuthorityHost: c.AuthorityHost, GraphURL: c.GraphURL, HTTPClient: fake.Client(), Sleep: noSleep})
		}}
	return &pullEnv{env: e, fake: fake, dir: dir, w: w}
}

func (p *pullEnv) pull(want string) sync.Counts {
	p.t.Helper()
	run, _ := p.w.RunOnce(context.Background(), "contoso", sync.Options{Trigger: "test"})
	if run.Status != want {
		p.t.Fatalf("run ended %s (%s), want %s", run.Status, run.Error, want)
	}
	var c sync.Counts
	json.Unmarshal(run.Changes, &c)
	return c
}

func TestPullMetricsMove(t *testing.T) {
	p := newPullEnv(t, metrics.Config{})
	f := p.scrape()
	if got := f.value("entrasync_tenants_connected"); got != 1 {
		t.Fatalf("tenants connected %v", got)
	}
	if got := f.value("entrasync_pull_runs_total"); got != 0 {
		t.Fatalf("runs before any: %v", got)
	}

	counts := p.pull(store.RunSucceeded)
	f = p.scrape()
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"entrasync_pull_runs_total", []string{"status", "succeeded", "mode", "full"}, 1},
		{"entrasync_pull_runs_total", []string{"status", "failed"}, 0},
		{"entrasync_pull_run_duration_seconds", []string{"mode", "full"}, 1},
		{"entrasync_pull_changes_total", []string{"kind", "users_created"}, float64(counts.UsersCreated)},
		{"entrasync_pull_changes_total", []string{"kind", "groups_created"}, float64(counts.GroupsCreated)},
		{"entrasync_pull_changes_total", []string{"kind", "members_added"}, float64(counts.MembersAdded)},
		{"entrasync_graph_throttle_waits_total", nil, 0},
		{"entrasync_tenants_behind", nil, 0},
	}
	for _, c := range checks {
		if got := f.value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if counts.UsersCreated == 0 {
		t.Fatal("the first pull created nobody")
	}
	graph2xx := f.value("entrasync_graph_requests_total", "outcome", "2xx")
	if graph2xx < 2 || f.value("entrasync_graph_request_duration_seconds") < graph2xx {
		t.Errorf("graph requests 2xx %v, timed %v", graph2xx, f.value("entrasync_graph_request_duration_seconds"))
	}
	if age := f.value("entrasync_oldest_successful_pull_age_seconds"); age < 0 || age > 600 {
		t.Errorf("oldest successful pull age %v just after a pull", age)
	}

	// Throttled twice, then answered: two waits, as Retry-After said.
	p.dir.UpdateUser(p.dir.Users()[0], func(u *graphtest.User) { u.JobTitle = "Throttled" })
	p.fake.FailNext(2, http.StatusTooManyRequests, 3*time.Second)
	p.pull(store.RunSucceeded)
	f = p.scrape()
	if w, s, n := f.value("entrasync_graph_throttle_waits_total"), f.value("entrasync_graph_throttle_wait_seconds_total"),
		f.value("entrasync_graph_requests_total", "outcome", "429"); w != 2 || s != 6 || n != 2 {
		t.Errorf("throttling: waits %v, seconds %v, 429s %v; want 2, 6, 2", w, s, n)
	}
	if got := f.value("entrasync_pull_changes_total", "kind", "users_updated"); got != 1 {
		t.Errorf("users_updated %v, want 1", got)
	}

	// Still throttled after the retries: a throttled run and a throttled error.
	p.fake.FailNext(20, http.StatusTooManyRequests, 30*time.Second)
	p.pull(store.RunThrottled)
	f = p.scrape()
	if got := f.value("entrasync_pull_runs_total", "status", "throttled", "mode", "delta"); got != 1 {
		t.Errorf("throttled delta runs %v, want 1", got)
	}
	if got := f.value("entrasync_graph_errors_total", "kind", "throttled"); got < 1 {
		t.Errorf("throttled errors %v", got)
	}
	if got := f.value("entrasync_graph_errors_total", "kind", "permission"); got != 0 {
		t.Errorf("permission errors %v", got)
	}
	p.fake.FailNext(0, 0, 0)
}

// TestFreshness: how far behind tenants are, computed at scrape time from
// the store; per tenant only with the setting.
func TestFreshness(t *testing.T) {
	later := time.Now()
	clock := func() time.Time { return later }
	for _, label := range []bool{false, true} {
		t.Run(fmt.Sprintf("tenant label %v", label), func(t *testing.T) {
			p := newPullEnv(t, metrics.Config{TenantLabel: label, Now: clock, NoProcess: true})
			// A second tenant, connected, never pulled.
			err := p.db.Write(context.Background(), func(tx *store.Tx) error {
				if _, err := tx.CreateTenant("fabrikam"); err != nil {
					return err
				}
				return tx.SaveGraphConnection(store.GraphConnection{Tenant: "fabrikam", AzureTenantID: azureTenant, ClientID: appID,
					Credential: "secret", Secret: []byte(appSecret), Groups: []string{"00000000-0000-4000-8000-000000000001"},
					Deprovision: "deactivate", AuthorityHost: p.fake.URL(), GraphURL: p.fake.URL()}, testKey)
			})
			if err != nil {
				t.Fatal(err)
			}
			p.pull(store.RunSucceeded)
			later = time.Now()
			f := p.scrape()
			if c, b := f.value("entrasync_tenants_connected"), f.value("entrasync_tenants_behind"); c != 2 || b != 0 {
				t.Fatalf("just pulled: connected %v behind %v", c, b)
			}
			hasTenant := f.value("entrasync_last_successful_pull_age_seconds", "tenant", "contoso") >= 0
			if hasTenant != label {
				t.Fatalf("per-tenant series present %v with the setting %v", hasTenant, label)
			}

			// 70 minutes on: contoso (every 40 min) is more than a cycle
			// and a half late; fabrikam's default schedule (every 40 min)
			// too, counted from its connection.
			later = time.Now().Add(70 * time.Minute)
			f = p.scrape()
			if b := f.value("entrasync_tenants_behind"); b != 2 {
				t.Errorf("70 minutes on: behind %v, want 2", b)
			}
			if age := f.value("entrasync_oldest_successful_pull_age_seconds"); age < 70*60 {
				t.Errorf("oldest age %v", age)
			}
			if label {
				if age := f.value("entrasync_last_successful_pull_age_seconds", "tenant", "fabrikam"); age < 70*60 {
					t.Errorf("fabrikam's age %v", age)
				}
				if n := len(f["entrasync_last_successful_pull_age_seconds"].Metric); n != 2 {
					t.Errorf("%d per-tenant series for 2 tenants", n)
				}
			}
			// A slower schedule is not behind yet.
			err = p.db.Write(context.Background(), func(tx *store.Tx) error {
				c, err := p.db.OpenGraphConnection(context.Background(), "contoso", testKey)
				if err != nil {
					return err
				}
				c.Schedule = "@every 2h"
				return tx.SaveGraphConnection(c, testKey)
			})
			if err != nil {
				t.Fatal(err)
			}
			if b := p.scrape().value("entrasync_tenants_behind"); b != 1 {
				t.Errorf("contoso on a 2h schedule: behind %v, want 1 (fabrikam)", b)
			}
		})
	}
}

// TestStoreFailureCounted: a scrape whose store read fails still answers,
// without the freshness figures, and counts the failure.
func TestStoreFailureCounted(t *testing.T) {
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "closed.db"))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Config{DB: db, NoProcess: true})
	ts := httptest.NewServer(m.Open())
	defer ts.Close()
	if got := scrapeURL(t, ts.URL, "").value("entrasync_tenants_connected"); got != 0 {
		t.Fatalf("connected %v", got)
	}
	db.Close()
	f := scrapeURL(t, ts.URL, "")
	if got := f.value("entrasync_metrics_store_errors_total"); got != 1 {
		t.Fatalf("store errors %v, want 1", got)
	}
	if got := f.value("entrasync_tenants_connected"); got != -1 {
		t.Fatalf("a failed read still reported %v tenants", got)
	}
}

type recorderCounts struct{ written, dropped int64 }

func (r *recorderCounts) Written() int64 { return r.written }
func (r *recorderCounts) Dropped() int64 { return r.dropped }

func TestActivityCounts(t *testing.T) {
	e := newEnv(t, metrics.Config{NoProcess: true})
	rec := &recorderCounts{written: 3}
	e.m.Activity(rec)
	e.m.Activity(rec) // a second call changes nothing
	rec.dropped = 2
	f := e.scrape()
	if w, d := f.value("entrasync_activity_records_written_total"), f.value("entrasync_activity_records_dropped_total"); w != 3 || d != 2 {
		t.Fatalf("activity written %v dropped %v", w, d)
	}
}

// TestLabelMapping: values outside the closed sets are counted as "other";
// a client gone before its answer is its own class, not 4xx.
func TestLabelMapping(t *testing.T) {
	m := metrics.New(metrics.Config{NoProcess: true})
	m.SCIMRequest("GET", "users", 499, "okta", time.Millisecond)
	m.SCIMRequest("BREW", "", 418, "teapot", time.Millisecond)
	m.SCIMRequest("POST", "Users/../x", 302, "entra", time.Millisecond)
	m.RunFinished(store.Run{Status: "exploded", Mode: "sideways"}, sync.Counts{})
	m.GraphError(graph.Kind("new-kind"))
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	f := families{}
	for _, fam := range fams {
		f[fam.GetName()] = fam
	}
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"entrasync_scim_requests_total", []string{"method", "GET", "endpoint", "users", "status", "499", "provider", "okta"}},
		{"entrasync_scim_requests_total", []string{"method", "other", "endpoint", "other", "status", "4xx", "provider", "other"}},
		{"entrasync_scim_requests_total", []string{"method", "POST", "endpoint", "other", "status", "3xx", "provider", "entra"}},
		{"entrasync_pull_runs_total", []string{"status", "other", "mode", "delta"}},
		{"entrasync_graph_errors_total", []string{"kind", "other"}},
	} {
		if got := f.value(c.name, c.labels...); got != 1 {
			t.Errorf("%s%v = %v, want 1", c.name, c.labels, got)
		}
	}
}
