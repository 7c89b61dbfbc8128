package scim_test

import (
	"context"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

// TestActivityInWords: each SCIM request leaves one record saying what it
// did, or why it failed, with the request id the client was answered with.
func TestActivityInWords(t *testing.T) {
	var rec *sync.Recorder
	e := newEnv(t, func(c *scim.Config) {
		rec = sync.NewRecorder(c.DB, sync.RecorderConfig{})
		c.Activity = rec
	})
	t.Cleanup(rec.Close)
	c := e.tenant("acme")
	other := e.tenant("other")
	entra := []string{"User-Agent", "Microsoft.Identity.Provisioning"}

	type step struct {
		method, path string
		body         any
		status       int
		summary      string
	}
	created := c.do("POST", "/Users", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
		"userName": "jane@contoso.com", "active": true, "displayName": "Jane", "emails": []any{map[string]any{"value": "jane.private@example.com", "primary": true}}}, entra...)
	if created.status != 201 {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	jane := created.body["id"].(string)
	g := c.do("POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Sales"}, entra...)
	sales := g.body["id"].(string)
	patchOp := func(ops ...map[string]any) map[string]any {
		return map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"}, "Operations": ops}
	}
	steps := []step{
		{"GET", "/Users?filter=userName+eq+%22jane@contoso.com%22", nil, 200, "Searched users: 1 matched"},
		{"GET", "/Users?filter=userName+eq+%22nobody@contoso.com%22", nil, 200, "Searched users: none matched"},
		{"GET", "/Users/" + jane, nil, 200, "Read user jane@contoso.com"},
		{"PATCH", "/Users/" + jane, patchOp(map[string]any{"op": "Replace", "path": "active", "value": "False"}), 200, "Disabled jane@contoso.com"},
		{"PATCH", "/Users/" + jane, patchOp(map[string]any{"op": "Replace", "path": "active", "value": "False"}), 200, "Nothing changed (replay)"},
		{"PATCH", "/Users/" + jane, patchOp(map[string]any{"op": "replace", "value": map[string]any{"active": true, "title": "CFO"}}), 200, "Enabled jane@contoso.com (also title)"},
		{"PATCH", "/Users/" + jane, patchOp(map[string]any{"op": "add", "path": "title", "value": "CEO"}), 200, "Updated jane@contoso.com: title"},
		{"PATCH", "/Groups/" + sales, patchOp(map[string]any{"op": "Add", "path": "members", "value": []any{map[string]any{"value": jane}}}), 204, "Added 1 member to Sales"},
		{"PATCH", "/Groups/" + sales, patchOp(map[string]any{"op": "Replace", "path": "displayName", "value": "Sales EMEA"}), 204, "Renamed group Sales to Sales EMEA"},
		// The member change is told under the name the same PATCH gives.
		{"PATCH", "/Groups/" + sales, patchOp(map[string]any{"op": "Replace", "path": "displayName", "value": "Sales DACH"},
			map[string]any{"op": "Remove", "path": `members[value eq "` + jane + `"]`}), 204, "Renamed group Sales EMEA to Sales DACH; Removed 1 member from Sales DACH"},
		{"POST", "/Users", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": "JANE@contoso.com"}, 409,
			`userName "JANE@contoso.com" is already taken`},
		{"GET", "/Users?filter=mail+eq+%22jane.private@example.com%22", nil, 400, `unknown attribute "mail" in filter`},
		{"PATCH", "/Users/" + jane, patchOp(map[string]any{"op": "remove", "path": `emails[value eq "jane.private@example.com"]`}), 200, "Updated jane@contoso.com: emails"},
		{"PATCH", "/Users/" + jane, patchOp(map[string]any{"op": "replace", "path": "active", "value": "maybe"}), 400, ""},
		{"GET", "/Users/" + strings.Repeat("0", 36), nil, 404, ""},
		{"DELETE", "/Groups/" + sales, nil, 204, "Deleted group Sales DACH"},
		{"DELETE", "/Users/" + jane, nil, 204, "Deleted jane@contoso.com"},
	}
	ids := map[string]step{}
	for _, s := range steps {
		r := c.do(s.method, s.path, s.body, entra...)
		if r.status != s.status {
			t.Fatalf("%s %s: %d %s", s.method, s.path, r.status, r.raw)
		}
		id := r.header.Get("X-Request-Id")
		if id == "" || ids[id].method != "" {
			t.Fatalf("%s %s: request id %q missing or repeated", s.method, s.path, id)
		}
		ids[id] = s
	}
	// A request id the client sends is kept; a strange one is replaced.
	if r := other.do("GET", "/Users", nil, "X-Request-Id", "lb-7f3a"); r.header.Get("X-Request-Id") != "lb-7f3a" {
		t.Fatalf("client request id not kept: %q", r.header.Get("X-Request-Id"))
	}
	if r := other.do("GET", "/Users", nil, "X-Request-Id", "<script>"); r.header.Get("X-Request-Id") == "<script>" {
		t.Fatal("an unsafe request id was echoed")
	}
	rec.Flush()

	got, err := e.db.Activity(context.Background(), c.tenant.ID, store.ActivityQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(steps)+2 {
		t.Fatalf("%d records for %d requests", len(got), len(steps)+2)
	}
	for _, a := range got {
		if a.Channel != store.ChannelPush || a.Provider != scim.ProviderEntra || a.TokenID == "" || a.TenantID != c.tenant.ID {
			t.Errorf("record %+v: wrong channel, provider, token or tenant", a)
		}
		if strings.Contains(a.Summary, "jane.private") || strings.Contains(a.Summary, "gone@example.com") {
			t.Errorf("record keeps personal data beyond userName: %q", a.Summary)
		}
		s, ok := ids[a.RequestID]
		if !ok {
			continue // the two creates above
		}
		if a.Method != s.method || a.Status != s.status || a.Failed != (s.status >= 400) {
			t.Errorf("%s %s: record %+v", s.method, s.path, a)
		}
		if s.summary != "" && a.Summary != s.summary {
			t.Errorf("%s %s: summary %q, want %q", s.method, s.path, a.Summary, s.summary)
		}
		if s.summary == "" && a.Summary == "" {
			t.Errorf("%s %s: no summary", s.method, s.path)
		}
	}
	// Another tenant's records stay its own; what jane went through is
	// found by her id and by her userName.
	theirs, _ := e.db.Activity(context.Background(), other.tenant.ID, store.ActivityQuery{})
	if len(theirs) != 2 {
		t.Fatalf("other tenant has %d records, want 2", len(theirs))
	}
	byID, _ := e.db.Activity(context.Background(), c.tenant.ID, store.ActivityQuery{User: jane})
	byName, _ := e.db.Activity(context.Background(), c.tenant.ID, store.ActivityQuery{User: "Jane@Contoso.com"})
	if len(byID) != 9 || len(byName) != 7 {
		t.Fatalf("jane's records: %d by id, %d by userName", len(byID), len(byName))
	}
	if rec.Dropped() != 0 {
		t.Fatalf("%d records dropped", rec.Dropped())
	}
}

// TestActivityFailures: the common failures, each told in the record as
// the client was told it.
func TestActivityFailures(t *testing.T) {
	var rec *sync.Recorder
	e := newEnv(t, func(c *scim.Config) {
		rec = sync.NewRecorder(c.DB, sync.RecorderConfig{})
		c.Activity = rec
		c.BodyLimit = 4096
		c.RateLimit = 1.5 // a burst of 3, then refused
	})
	t.Cleanup(rec.Close)
	c := e.tenant("acme")
	user := c.do("POST", "/Users", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": "kim@contoso.com"})
	if user.status != 201 {
		t.Fatalf("create: %d %s", user.status, user.raw)
	}
	id := user.body["id"].(string)
	for _, s := range []struct {
		method, path string
		body         any
		hdr          []string
		status       int
		summary      string
	}{
		{"PATCH", "/Users/" + id, map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
			"Operations": []any{map[string]any{"op": "replace", "path": "title", "value": "x"}}}, []string{"If-Match", `W/"7"`}, 412, `the resource has changed: its version is now W/"1"`},
		{"POST", "/Users", `{"userName":"` + strings.Repeat("x", 5000) + `"}`, nil, 413, "the request body is larger than 4096 bytes"},
		{"GET", "/Users", nil, nil, 429, "rate limit exceeded for this tenant"},
	} {
		r := c.do(s.method, s.path, s.body, s.hdr...)
		if r.status != s.status {
			t.Fatalf("%s %s: %d %s", s.method, s.path, r.status, r.raw)
		}
		rec.Flush()
		got, err := e.db.Activity(context.Background(), c.tenant.ID, store.ActivityQuery{Limit: 1})
		if err != nil || len(got) != 1 {
			t.Fatal(got, err)
		}
		if a := got[0]; !a.Failed || a.Status != s.status || !strings.Contains(a.Summary, s.summary) || a.RequestID != r.header.Get("X-Request-Id") {
			t.Errorf("%s %s: record %+v, want a failure saying %q", s.method, s.path, a, s.summary)
		}
	}
}
