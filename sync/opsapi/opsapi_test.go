package opsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/scim/ratelimit"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

var (
	ctx      = context.Background()
	theKey   = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
)

// fixture is a store with two connected tenants, acme and globex, each
// with one finished run, and a handler whose worker's runs fail at once
// (no Graph here: these tests are about who may start them).
type fixture struct {
	t    *testing.T
	db   *store.DB
	h    *Handler
	keys map[string]string // ops key name -> secret
	runs map[string]int64  // tenant -> the id of its finished run
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "ops.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{t: t, db: db, keys: map[string]string{}, runs: map[string]int64{}}
	for _, name := range []string{"acme", "globex"} {
		err := db.Write(ctx, func(tx *store.Tx) error {
			tn, err := tx.CreateTenant(name)
			if err != nil {
				return err
			}
			err = tx.SaveGraphConnection(store.GraphConnection{Tenant: name, AzureTenantID: "t", ClientID: "c", Credential: "secret",
				Secret: []byte("s"), Groups: []string{"g"}, Schedule: "@every 40m", Deprovision: "deactivate", ThresholdPercent: 20,
				AuthorityHost: "https://login.example", GraphURL: "https://graph.example"}, theKey)
			if err != nil {
				return err
			}
			run, err := tx.StartRun(tn, "cli", sync.ModeFull)
			if err != nil {
				return err
			}
			run.Status = store.RunSucceeded
			f.runs[name] = run.ID
			return tx.FinishRun(run)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	w := &sync.Worker{DB: db, Key: theKey, Tokens: sync.StoreTokens{DB: db}, Locks: sync.StoreLocks{DB: db},
		Connect: func(context.Context, store.GraphConnection) (sync.Source, error) {
			return nil, errors.New("no Microsoft Graph in this test")
		}}
	f.h = &Handler{Worker: w}
	return f
}

func (f *fixture) key(name string, role store.OpsRole, tenants ...string) string {
	f.t.Helper()
	err := f.db.Write(ctx, func(tx *store.Tx) error {
		_, secret, err := tx.CreateOpsKey(name, role, tenants)
		f.keys[name] = secret
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return f.keys[name]
}

// do sends a request from addr (host:port) through the handler.
func (f *fixture) do(method, path, key, addr string) *httptest.ResponseRecorder {
	f.t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = addr
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

// idle waits until no run of tenant is going (a started run fails at once
// here), so the next start is not answered 409.
func (f *fixture) idle(tenant string) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, running, err := f.db.RunningRun(ctx, tenant)
		if err != nil {
			f.t.Fatal(err)
		}
		if !running {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("a run of %s did not end", tenant)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) runCount(tenant string) int {
	f.t.Helper()
	runs, err := f.db.Runs(ctx, tenant, 1000)
	if err != nil {
		f.t.Fatal(err)
	}
	return len(runs)
}

// TestRoles: every role against every endpoint, in and out of its tenants.
func TestRoles(t *testing.T) {
	f := newFixture(t)
	f.key("reader", store.OpsRead)
	f.key("syncer", store.OpsSync)
	f.key("admin", store.OpsAdmin)
	f.key("acme-admin", store.OpsAdmin, "acme")
	f.key("globex-sync", store.OpsSync, "globex")

	type endpoint struct{ method, path string }
	endpoints := func(tenant string) []endpoint {
		return []endpoint{
			{"GET", "/ops/v1/tenants/" + tenant + "/runs"},
			{"GET", fmt.Sprintf("/ops/v1/tenants/%s/runs/%d", tenant, f.runs[tenant])},
			{"POST", "/ops/v1/tenants/" + tenant + "/sync"},
			{"POST", "/ops/v1/tenants/" + tenant + "/sync?full=false&confirmDeletions=false"},
			{"POST", "/ops/v1/tenants/" + tenant + "/sync?full=true"},
			{"POST", "/ops/v1/tenants/" + tenant + "/sync?confirmDeletions=true"},
			{"POST", "/ops/v1/tenants/" + tenant + "/sync?full=true&confirmDeletions=true"},
		}
	}
	// The wanted status per endpoint above, for each key on acme and globex.
	want := map[string]map[string][]int{
		"reader":      {"acme": {200, 200, 403, 403, 403, 403, 403}, "globex": {200, 200, 403, 403, 403, 403, 403}},
		"syncer":      {"acme": {200, 200, 202, 202, 403, 403, 403}, "globex": {200, 200, 202, 202, 403, 403, 403}},
		"admin":       {"acme": {200, 200, 202, 202, 202, 202, 202}, "globex": {200, 200, 202, 202, 202, 202, 202}},
		"acme-admin":  {"acme": {200, 200, 202, 202, 202, 202, 202}, "globex": {403, 403, 403, 403, 403, 403, 403}},
		"globex-sync": {"acme": {403, 403, 403, 403, 403, 403, 403}, "globex": {200, 200, 202, 202, 403, 403, 403}},
	}
	for name, byTenant := range want {
		for tenant, statuses := range byTenant {
			for i, ep := range endpoints(tenant) {
				before := f.runCount(tenant)
				rec := f.do(ep.method, ep.path, f.keys[name], "192.0.2.1:5000")
				if rec.Code != statuses[i] {
					t.Errorf("%s %s with key %s: %d %s, want %d", ep.method, ep.path, name, rec.Code, rec.Body, statuses[i])
					continue
				}
				started := f.runCount(tenant) - before
				switch rec.Code {
				case 202:
					if started != 1 {
						t.Errorf("%s %s with key %s: 202 but %d runs recorded", ep.method, ep.path, name, started)
					}
					var run store.Run
					if json.Unmarshal(rec.Body.Bytes(), &run); run.Tenant != tenant || run.Trigger != "api" {
						t.Errorf("%s with key %s: started %+v", ep.path, name, run)
					}
					f.idle(tenant)
				case 403:
					body := rec.Body.String()
					if started != 0 || !strings.Contains(body, name) || !strings.Contains(body, "entrasync opskey create") {
						t.Errorf("%s %s with key %s: 403 %s (%d runs started); want no run and a message naming the key and how to get one",
							ep.method, ep.path, name, body, started)
					}
				}
			}
		}
	}
	// What a refusal says: the role it lacks, or the tenants it has.
	if body := f.do("POST", "/ops/v1/tenants/acme/sync?full=true", f.keys["syncer"], "192.0.2.1:5000").Body.String(); !strings.Contains(body, "role sync") ||
		!strings.Contains(body, "needs role admin") || !strings.Contains(body, "--role admin --tenant acme") {
		t.Errorf("full run refused to a sync key: %s", body)
	}
	if body := f.do("GET", "/ops/v1/tenants/acme/runs", f.keys["globex-sync"], "192.0.2.1:5000").Body.String(); !strings.Contains(body, `tenant(s) globex only, not \"acme\"`) {
		t.Errorf("a tenant out of scope: %s", body)
	}
	// A scoped key learns nothing of tenants outside its scope, not even
	// whether they exist.
	if rec := f.do("GET", "/ops/v1/tenants/nobody/runs", f.keys["acme-admin"], "192.0.2.1:5000"); rec.Code != 403 {
		t.Errorf("a scoped key on an unknown tenant: %d", rec.Code)
	}
	if rec := f.do("GET", "/ops/v1/tenants/nobody/runs", f.keys["reader"], "192.0.2.1:5000"); rec.Code != 404 {
		t.Errorf("an all-tenants key on an unknown tenant: %d", rec.Code)
	}
}

func TestQueryValues(t *testing.T) {
	f := newFixture(t)
	f.key("admin", store.OpsAdmin)
	for _, q := range []string{"full=yes", "full=1", "confirmDeletions=TRUE", "full=true&confirmDeletions=maybe"} {
		rec := f.do("POST", "/ops/v1/tenants/acme/sync?"+q, f.keys["admin"], "192.0.2.1:5000")
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "must be true or false") {
			t.Errorf("?%s: %d %s", q, rec.Code, rec.Body)
		}
	}
	if n := f.runCount("acme"); n != 1 {
		t.Errorf("%d runs after refused requests", n)
	}
}

// TestKeyUnavailable: a tenant whose credential the worker's key does not
// open is refused 503, naming the setting, and no run is recorded.
func TestKeyUnavailable(t *testing.T) {
	f := newFixture(t)
	f.key("admin", store.OpsAdmin)
	for _, key := range [][]byte{nil, otherKey} {
		f.h.Worker.Key = key
		rec := f.do("POST", "/ops/v1/tenants/acme/sync", f.keys["admin"], "192.0.2.1:5000")
		if rec.Code != 503 || !strings.Contains(rec.Body.String(), "ENTRASYNC_SECRET_KEY") {
			t.Errorf("key %q: %d %s", key, rec.Code, rec.Body)
		}
	}
	if n := f.runCount("acme"); n != 1 {
		t.Errorf("%d runs recorded; want only the fixture's", n)
	}
}

// TestFailedAttemptsLimited: failed attempts are limited per address; a
// valid key is never refused, from that address or another (issue 7:
// 30 bad keys from one address do not refuse a valid key from it).
func TestFailedAttemptsLimited(t *testing.T) {
	f := newFixture(t)
	var logs bytes.Buffer
	f.h.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	good := f.key("reader", store.OpsRead)
	// The limiter's clock stands still: no token comes back mid-test.
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	f.h.failures = ratelimit.New[string](failureRate, failureBurst)
	f.h.failures.SetClock(func() time.Time { return now })
	const attacker, neighbour = "198.51.100.7", "203.0.113.9"
	limited := false
	for i := range 30 {
		rec := f.do("GET", "/ops/v1/tenants/acme/runs", fmt.Sprintf("eso_guess%d", i), attacker+":40000")
		if rec.Code == 429 {
			if i < failureBurst {
				t.Fatalf("attempt %d limited; the burst is %d", i+1, failureBurst)
			}
			if rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "too many failed") {
				t.Fatalf("429 without Retry-After or reason: %v %s", rec.Header(), rec.Body)
			}
			limited = true
		} else if rec.Code != 401 {
			t.Fatalf("attempt %d with a bad key: %d", i+1, rec.Code)
		}
		// Meanwhile the valid key works, from the attacker's address (another
		// port: a proxy or NAT) and from elsewhere.
		for _, addr := range []string{attacker + ":40001", neighbour + ":40000"} {
			if rec := f.do("GET", "/ops/v1/tenants/acme/runs", good, addr); rec.Code != 200 {
				t.Fatalf("valid key from %s during the flood: %d %s", addr, rec.Code, rec.Body)
			}
		}
	}
	if !limited {
		t.Fatal("30 failed attempts, none limited")
	}
	// Each refusal is logged with the client address and no key: "unknown"
	// in place of the id, never any part of the secret.
	var n401, n429 int
	for _, line := range logLines(t, &logs) {
		if line["msg"] != "ops request refused" {
			continue
		}
		if line["client"] != attacker || line["token_id"] != "unknown" {
			t.Fatalf("refusal logged without the client or with a token id: %v", line)
		}
		switch line["status"] {
		case float64(401):
			n401++
		case float64(429):
			n429++
		}
	}
	if n401 != failureBurst || n429 != 30-failureBurst {
		t.Fatalf("logged %d 401s and %d 429s; want %d and %d", n401, n429, failureBurst, 30-failureBurst)
	}
	if strings.Contains(logs.String(), "eso_guess") {
		t.Fatal("a key was logged")
	}
	// Another address's failures are its own.
	if rec := f.do("GET", "/ops/v1/tenants/acme/runs", "eso_typo", neighbour+":40000"); rec.Code != 401 {
		t.Fatalf("a first failed attempt from another address: %d", rec.Code)
	}
	// After Retry-After, the address may try again.
	now = now.Add(time.Second / failureRate)
	if rec := f.do("GET", "/ops/v1/tenants/acme/runs", "eso_again", attacker+":40000"); rec.Code != 401 {
		t.Fatalf("a failed attempt after waiting: %d", rec.Code)
	}
	if rec := f.do("GET", "/ops/v1/tenants/acme/runs", "eso_again", attacker+":40000"); rec.Code != 429 {
		t.Fatalf("a second failed attempt after waiting one token's time: %d", rec.Code)
	}
}

func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestTrustedProxies: behind a trusted proxy the forwarded client is the
// one limited and logged; from any other peer the headers are ignored.
func TestTrustedProxies(t *testing.T) {
	f := newFixture(t)
	var logs bytes.Buffer
	f.h.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	f.h.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) // no token comes back mid-test
	f.h.failures = ratelimit.New[string](failureRate, failureBurst)
	f.h.failures.SetClock(func() time.Time { return now })
	good := f.key("reader", store.OpsRead)
	send := func(key, peer, xff string) int {
		req := httptest.NewRequest("GET", "/ops/v1/tenants/acme/runs", nil)
		req.RemoteAddr = peer
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Forwarded-For", xff)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		return rec.Code
	}
	// One client behind the proxy exhausts its failures ...
	for i := range failureBurst {
		if code := send(fmt.Sprint("eso_bad", i), "10.0.0.2:1000", "198.51.100.1"); code != 401 {
			t.Fatalf("failure %d: %d", i+1, code)
		}
	}
	if code := send("eso_bad", "10.0.0.2:1000", "198.51.100.1"); code != 429 {
		t.Fatalf("past the burst: %d", code)
	}
	// ... another behind the same proxy still gets its 401s, and valid keys pass.
	if code := send("eso_bad", "10.0.0.2:1000", "198.51.100.2"); code != 401 {
		t.Fatalf("another client behind the proxy: %d", code)
	}
	if code := send(good, "10.0.0.2:1000", "198.51.100.1"); code != 200 {
		t.Fatalf("a valid key from the limited client: %d", code)
	}
	// An untrusted peer cannot escape its limit by naming another client.
	for i := range failureBurst {
		send(fmt.Sprint("eso_bad", i), "203.0.113.5:1000", fmt.Sprint("192.0.2.", i))
	}
	if code := send("eso_bad", "203.0.113.5:1000", "192.0.2.200"); code != 429 {
		t.Fatalf("a spoofing peer past its burst: %d", code)
	}
	clients := map[any]bool{}
	for _, line := range logLines(t, &logs) {
		clients[line["client"]] = true
	}
	for _, want := range []string{"198.51.100.1", "198.51.100.2", "203.0.113.5"} {
		if !clients[want] {
			t.Errorf("no log line names client %s: %v", want, clients)
		}
	}
	if clients["10.0.0.2"] || clients["192.0.2.200"] {
		t.Errorf("a proxy or a spoofed address was logged as the client: %v", clients)
	}
}

// TestNotHTMLEscaped: error texts arrive as written.
func TestNotHTMLEscaped(t *testing.T) {
	f := newFixture(t)
	rec := f.do("GET", "/ops/v1/tenants/acme/runs", "", "192.0.2.1:1")
	if !strings.Contains(rec.Body.String(), "Bearer <key>") {
		t.Fatalf("error text escaped: %s", rec.Body)
	}
}

// TestForbiddenLogged: a 403 names the client and the key's id.
func TestForbiddenLogged(t *testing.T) {
	f := newFixture(t)
	var logs bytes.Buffer
	f.h.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	secret := f.key("globex-reader", store.OpsRead, "globex")
	if rec := f.do("GET", "/ops/v1/tenants/acme/runs", secret, "192.0.2.7:1"); rec.Code != 403 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	keys, err := f.db.OpsKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatal(keys, err)
	}
	lines := logLines(t, &logs)
	if len(lines) != 1 || lines[0]["status"] != float64(403) || lines[0]["client"] != "192.0.2.7" || lines[0]["token_id"] != keys[0].ID {
		t.Fatalf("403 logged as %v; want client 192.0.2.7 and token_id %s", lines, keys[0].ID)
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatal("the key was logged")
	}
}

func TestAuthentication(t *testing.T) {
	f := newFixture(t)
	for _, auth := range []string{"", "Basic abc", "Bearer ", "Bearer eso_nope"} {
		req := httptest.NewRequest("GET", "/ops/v1/tenants/acme/runs", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %q: %d %v", auth, rec.Code, rec.Header())
		}
	}
}
