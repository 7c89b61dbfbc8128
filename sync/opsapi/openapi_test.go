package opsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

// TestOpenAPIRoutes: every route of the table has an operation in the
// document, and the document has no other.
func TestOpenAPIRoutes(t *testing.T) {
	doc := servedDocument(t)
	inDoc := map[string]bool{}
	paths, _ := doc["paths"].(map[string]any)
	for path, item := range paths {
		for method := range item.(map[string]any) {
			inDoc[strings.ToUpper(method)+" "+path] = true
		}
	}
	inTable := map[string]bool{}
	for _, rt := range routes {
		inTable[rt.method+" "+rt.pattern] = true
		if !inDoc[rt.method+" "+rt.pattern] {
			t.Errorf("route %s %s has no operation in the document", rt.method, rt.pattern)
		}
	}
	for op := range inDoc {
		if !inTable[op] {
			t.Errorf("the document has %s, which no route serves", op)
		}
	}
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi %v", doc["openapi"])
	}
	schemes, _ := doc["components"].(map[string]any)["securitySchemes"].(map[string]any)
	if s, _ := schemes["opsKey"].(map[string]any); s["scheme"] != "bearer" {
		t.Errorf("security schemes %v", schemes)
	}
	// Every $ref resolves.
	var refs func(v any)
	refs = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok {
				if _, err := resolve(doc, r); err != nil {
					t.Error(err)
				}
			}
			for _, x := range v {
				refs(x)
			}
		case []any:
			for _, x := range v {
				refs(x)
			}
		}
	}
	refs(doc)
}

// servedDocument fetches the document as a client does: without a key.
func servedDocument(t *testing.T) map[string]any {
	t.Helper()
	f := newFixture(t)
	rec := f.do("GET", "/ops/v1/openapi.json", "", "192.0.2.1:1")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("the document: %d %v", rec.Code, rec.Header())
	}
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestOpenAPIResponses: the real answers of every route, successes and
// errors, validate against the document's schema for their status.
func TestOpenAPIResponses(t *testing.T) {
	doc := servedDocument(t)
	f := newFixture(t)
	d := f.seed()
	reader := f.key("reader", store.OpsRead)
	admin := f.key("admin", store.OpsAdmin)
	globex := f.key("globex", store.OpsRead, "globex")
	jane, sales := d.users["jane@acme.com"], d.groups["Sales"]
	reqs := []struct {
		method, path, key string
		want              int
	}{
		{"GET", "/ops/v1/openapi.json", "", 200},
		{"GET", "/ops/v1/openapi.json", reader, 200},
		{"GET", "/ops/v1/tenants", reader, 200},
		{"GET", "/ops/v1/tenants?limit=1", reader, 200},
		{"GET", "/ops/v1/tenants?limit=x", reader, 400},
		{"GET", "/ops/v1/tenants", "", 401},
		{"GET", "/ops/v1/tenants/acme", reader, 200},
		{"GET", "/ops/v1/tenants/acme", globex, 403},
		{"GET", "/ops/v1/tenants/nobody", reader, 404},
		{"GET", "/ops/v1/tenants/acme/runs", reader, 200},
		{"GET", "/ops/v1/tenants/acme/runs?limit=0", reader, 400},
		{"GET", "/ops/v1/tenants/acme/runs/" + strconv.FormatInt(f.runs["acme"], 10), reader, 200},
		{"GET", "/ops/v1/tenants/acme/runs/999999", reader, 404},
		{"GET", "/ops/v1/tenants/acme/activity", reader, 200},
		{"GET", "/ops/v1/tenants/acme/activity?kind=x", reader, 400},
		{"GET", "/ops/v1/tenants/acme/users", reader, 200},
		{"GET", "/ops/v1/tenants/acme/users?limit=2", reader, 200},
		{"GET", "/ops/v1/tenants/acme/users?active=maybe", reader, 400},
		{"GET", "/ops/v1/tenants/acme/users", globex, 403},
		{"GET", "/ops/v1/tenants/acme/users/" + jane, reader, 200},
		{"GET", "/ops/v1/tenants/acme/users/" + d.users["bob@acme.com"], reader, 200},
		{"GET", "/ops/v1/tenants/acme/users/" + d.users["gina@globex.com"], reader, 404},
		{"GET", "/ops/v1/tenants/acme/groups", reader, 200},
		{"GET", "/ops/v1/tenants/acme/groups?cursor=bad", reader, 400},
		{"GET", "/ops/v1/tenants/acme/groups/" + sales + "/members", reader, 200},
		{"GET", "/ops/v1/tenants/acme/groups/" + sales + "/members?limit=1", reader, 200},
		{"GET", "/ops/v1/tenants/acme/groups/none/members", reader, 404},
		{"POST", "/ops/v1/tenants/acme/sync", admin, 202},
		{"POST", "/ops/v1/tenants/acme/sync?full=x", admin, 400},
		{"POST", "/ops/v1/tenants/acme/sync", reader, 403},
	}
	seen := map[string]bool{}
	for _, rq := range reqs {
		rec := f.do(rq.method, rq.path, rq.key, "192.0.2.1:1")
		if rq.method == "POST" && rec.Code == 202 {
			f.idle("acme")
		}
		if rec.Code != rq.want {
			t.Errorf("%s %s: %d %s, want %d", rq.method, rq.path, rec.Code, rec.Body, rq.want)
			continue
		}
		op := checkAnswer(t, doc, rq.method, rq.path, rec)
		seen[op+" "+strconv.Itoa(rec.Code/100)] = true
	}
	// A 409: a run going when another is asked for.
	if err := f.db.Write(ctx, func(tx *store.Tx) error {
		tn, err := tx.Tenant("globex")
		if err != nil {
			return err
		}
		_, err = tx.StartRun(tn, "cli", "delta")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	f.h.Worker.Locks = lockedOut{}
	if rec := f.do("POST", "/ops/v1/tenants/globex/sync", admin, "192.0.2.1:1"); rec.Code != 409 {
		t.Errorf("a start while a run is going: %d %s", rec.Code, rec.Body)
	} else {
		checkAnswer(t, doc, "POST", "/ops/v1/tenants/globex/sync", rec)
	}
	// Each route answered a success and an error in this test.
	for _, rt := range routes {
		for _, class := range []string{"2", "4"} {
			if rt.handle == nil && class == "4" {
				continue
			}
			if !seen[rt.method+" "+rt.pattern+" "+class] {
				t.Errorf("no %sxx answer of %s %s was checked", class, rt.method, rt.pattern)
			}
		}
	}
}

// lockedOut is a lock someone else always holds.
type lockedOut struct{}

func (lockedOut) Lock(context.Context, string) (sync.Lease, error) { return nil, sync.ErrLocked }

// checkAnswer validates an answer against the document and returns the
// route it came from.
func checkAnswer(t *testing.T, doc map[string]any, method, path string, rec *httptest.ResponseRecorder) string {
	t.Helper()
	p := strings.SplitN(path, "?", 2)[0]
	var pattern string
	for _, rt := range routes {
		if _, _, ok := match(rt.pattern, p); ok && rt.method == method {
			pattern = rt.pattern
		}
	}
	if pattern == "" {
		t.Fatalf("%s %s: no route", method, path)
	}
	op, _ := doc["paths"].(map[string]any)[pattern].(map[string]any)[strings.ToLower(method)].(map[string]any)
	resp, ok := op["responses"].(map[string]any)[strconv.Itoa(rec.Code)].(map[string]any)
	if !ok {
		t.Errorf("%s %s answered %d, which the document does not list", method, path, rec.Code)
		return method + " " + pattern
	}
	schema := resp["content"].(map[string]any)["application/json"].(map[string]any)["schema"]
	var body any
	dec := json.NewDecoder(strings.NewReader(rec.Body.String()))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if err := validate(doc, schema, body, "body"); err != nil {
		t.Errorf("%s %s %d: %v\n%s", method, path, rec.Code, err, rec.Body)
	}
	return method + " " + pattern
}

func resolve(doc map[string]any, ref string) (any, error) {
	name, ok := strings.CutPrefix(ref, "#/components/schemas/")
	if !ok {
		return nil, fmt.Errorf("$ref %q is not a component schema", ref)
	}
	s, ok := doc["components"].(map[string]any)["schemas"].(map[string]any)[name]
	if !ok {
		return nil, fmt.Errorf("$ref %q: no such schema", ref)
	}
	return s, nil
}

// validate checks v against the JSON Schema subset the document uses:
// type (a name or a list of them), properties, required, items, enum,
// $ref to components, allOf, oneOf, format date-time.
func validate(doc map[string]any, schema any, v any, at string) error {
	s, ok := schema.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: schema %v is not an object", at, schema)
	}
	if r, ok := s["$ref"].(string); ok {
		target, err := resolve(doc, r)
		if err != nil {
			return err
		}
		return validate(doc, target, v, at)
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			if err := validate(doc, sub, v, at); err != nil {
				return err
			}
		}
	}
	if one, ok := s["oneOf"].([]any); ok {
		n := 0
		var errs []string
		for _, sub := range one {
			if err := validate(doc, sub, v, at); err == nil {
				n++
			} else {
				errs = append(errs, err.Error())
			}
		}
		if n != 1 {
			return fmt.Errorf("%s: matches %d of oneOf, not 1 (%s)", at, n, strings.Join(errs, "; "))
		}
	}
	if typ, ok := s["type"]; ok {
		var types []string
		switch typ := typ.(type) {
		case string:
			types = []string{typ}
		case []any:
			for _, x := range typ {
				types = append(types, x.(string))
			}
		}
		if !slices.Contains(types, jsonType(v)) && !(jsonType(v) == "integer" && slices.Contains(types, "number")) {
			return fmt.Errorf("%s: %s, want %v", at, jsonType(v), types)
		}
	}
	if e, ok := s["enum"].([]any); ok && !slices.Contains(e, v) {
		return fmt.Errorf("%s: %v is not one of %v", at, v, e)
	}
	if s["format"] == "date-time" {
		if str, ok := v.(string); ok {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				return fmt.Errorf("%s: %q is not a date-time", at, str)
			}
		}
	}
	if obj, ok := v.(map[string]any); ok {
		for _, r := range asList(s["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s: %q is required", at, r)
			}
		}
		props, _ := s["properties"].(map[string]any)
		for k, sub := range props {
			if x, ok := obj[k]; ok {
				if err := validate(doc, sub, x, at+"."+k); err != nil {
					return err
				}
			}
		}
	}
	if list, ok := v.([]any); ok {
		if items, ok := s["items"]; ok {
			for i, x := range list {
				if err := validate(doc, items, x, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func asList(v any) []any { l, _ := v.([]any); return l }

func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// TestOpenAPIValidatorCatches: the checker above is not vacuous.
func TestOpenAPIValidatorCatches(t *testing.T) {
	doc := Document()
	for _, tc := range []struct {
		schema string
		body   string
	}{
		{"Error", `{}`},
		{"Error", `{"error": 1}`},
		{"User", `{"id": "x", "userName": "u", "active": "yes", "lastModified": "2025-01-01T00:00:00Z"}`},
		{"User", `{"id": "x", "userName": "u", "active": true, "lastModified": "yesterday"}`},
		{"UserDetail", `{"id": "x", "userName": "u", "active": true, "lastModified": "2025-01-01T00:00:00Z", "managedBy": "fax", "attributes": {}, "groups": [], "activity": []}`},
		{"Tenant", `{"name": "a", "createdAt": "2025-01-01T00:00:00Z", "counts": {"users": 1, "activeUsers": 1, "groups": 0}, "lastPush": 3, "lastPull": null, "health": {"status": "ok"}}`},
		{"UserPage", `{"items": [{"id": 1}]}`},
	} {
		var body any
		dec := json.NewDecoder(strings.NewReader(tc.body))
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil {
			t.Fatal(err)
		}
		if err := validate(doc, ref(tc.schema), body, "body"); err == nil {
			t.Errorf("%s accepted %s", tc.schema, tc.body)
		}
	}
}
