package opsapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
)

// TestActivityRoute: key and scope required, tenant confinement, filters,
// a cursor that walks every record once, bad parameters answered 400.
func TestActivityRoute(t *testing.T) {
	f := newFixture(t)
	acme, _ := f.db.Tenant(ctx, "acme")
	globex, _ := f.db.Tenant(ctx, "globex")
	base := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	var records []store.Activity
	for i := range 25 {
		records = append(records, store.Activity{TenantID: acme.ID, At: base.Add(time.Duration(i) * time.Minute), Channel: store.ChannelPush,
			Method: "POST", Endpoint: "users", Status: 201, ResourceType: "User", ResourceID: fmt.Sprintf("u%d", i%5),
			Subject: fmt.Sprintf("user%d@acme.example", i%5), Summary: fmt.Sprintf("Created user%d@acme.example", i%5), Failed: i%4 == 0})
	}
	records = append(records, store.Activity{TenantID: globex.ID, At: base, Channel: store.ChannelPull, Summary: "Created someone@globex.example"})
	if err := f.db.RecordActivity(ctx, records); err != nil {
		t.Fatal(err)
	}
	reader := f.key("reader", store.OpsRead)
	globexOnly := f.key("globex-only", store.OpsAdmin, "globex")
	page := func(path, key string, want int) activityPage {
		t.Helper()
		rec := f.do("GET", path, key, "10.0.0.1:1")
		if rec.Code != want {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		var p activityPage
		if want == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	page("/ops/v1/tenants/acme/activity", "", http.StatusUnauthorized)
	page("/ops/v1/tenants/acme/activity", globexOnly, http.StatusForbidden)
	page("/ops/v1/tenants/nope/activity", reader, http.StatusNotFound)
	if p := page("/ops/v1/tenants/globex/activity", globexOnly, http.StatusOK); len(p.Items) != 1 || p.Items[0].Summary != "Created someone@globex.example" {
		t.Fatalf("globex sees %+v", p.Items)
	}
	seen := map[int64]bool{}
	for path := "/ops/v1/tenants/acme/activity?limit=10"; ; {
		p := page(path, reader, http.StatusOK)
		for _, a := range p.Items {
			if seen[a.ID] || a.Subject == "" {
				t.Fatalf("record %+v twice, or from elsewhere", a)
			}
			seen[a.ID] = true
		}
		if p.Next == "" {
			break
		}
		path = "/ops/v1/tenants/acme/activity?limit=10&cursor=" + p.Next
	}
	if len(seen) != 25 {
		t.Fatalf("walked %d records, want 25", len(seen))
	}
	for q, want := range map[string]int{"failed=true": 7, "kind=pull": 0, "kind=push": 25, "user=u1": 5, "user=USER1@acme.example": 5,
		"since=2026-12-01T09:20:00Z": 5, "failed=true&user=u0": 2} {
		if p := page("/ops/v1/tenants/acme/activity?limit=100&"+q, reader, http.StatusOK); len(p.Items) != want {
			t.Errorf("%s: %d records, want %d", q, len(p.Items), want)
		}
	}
	for _, q := range []string{"failed=yes", "kind=both", "since=yesterday", "limit=0", "limit=1001", "cursor=abc", "cursor=-4"} {
		page("/ops/v1/tenants/acme/activity?"+q, reader, http.StatusBadRequest)
	}
}

// TestRequestLog: every ops request has one log line, naming its route
// (never the path), status, key and request id, which is also answered as
// X-Request-Id; a refusal's line is its warning, with the id too.
func TestRequestLog(t *testing.T) {
	f := newFixture(t)
	var logs bytes.Buffer
	f.h.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	reader := f.key("reader", store.OpsRead)
	ok := f.do("GET", "/ops/v1/tenants/acme/users?search=jane", reader, "192.0.2.7:1")
	refused := f.do("GET", "/ops/v1/tenants/acme/users", "eso_wrong", "192.0.2.7:1")
	lines := logLines(t, &logs)
	if len(lines) != 2 || ok.Header().Get("X-Request-Id") == "" || refused.Header().Get("X-Request-Id") == "" {
		t.Fatalf("log %v, ids %q %q", lines, ok.Header().Get("X-Request-Id"), refused.Header().Get("X-Request-Id"))
	}
	if l := lines[0]; l["route"] != "/ops/v1/tenants/{tenant}/users" || l["status"] != float64(200) || l["ops_key"] != "reader" ||
		l["request_id"] != ok.Header().Get("X-Request-Id") {
		t.Fatalf("request line %v", l)
	}
	if l := lines[1]; l["status"] != float64(401) || l["request_id"] != refused.Header().Get("X-Request-Id") {
		t.Fatalf("refusal line %v", l)
	}
	if strings.Contains(logs.String(), "jane") || strings.Contains(logs.String(), reader) {
		t.Fatal("the log holds the query or the key")
	}
}
