package scim_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	gosync "sync"
	"testing"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
)

// TestBadInput: every bad request gets an RFC 7644 §3.12 error and leaves
// the store exactly as it was.
func TestBadInput(t *testing.T) {
	e := newEnv(t, func(c *scim.Config) { c.BodyLimit = 4096 })
	c := e.tenant("contoso")
	uid := str(c.do("POST", "/Users", `{"userName":"ada@contoso.com","emails":[{"type":"work","value":"ada@contoso.com"}]}`).want(t, 201).body, "id")
	c.do("POST", "/Users", `{"userName":"bob@contoso.com"}`).want(t, 201)
	gid := str(c.do("POST", "/Groups", `{"displayName":"Sales"}`).want(t, 201).body, "id")
	c.do("PATCH", "/Groups/"+gid, `{"Operations":[{"op":"add","path":"members","value":[{"value":"`+uid+`"}]}]}`).want(t, 204)
	big := `{"userName":"big@contoso.com","title":"` + strings.Repeat("x", 5000) + `"}`

	tests := []struct {
		name, method, path, body string
		status                   int
		scimType                 string
	}{
		{"bad JSON", "POST", "/Users", `{"userName":`, 400, "invalidSyntax"},
		{"not an object", "POST", "/Users", `["userName"]`, 400, "invalidSyntax"},
		{"empty body", "POST", "/Users", ``, 400, "invalidSyntax"},
		{"trailing data", "POST", "/Users", `{"userName":"x@y"} {}`, 400, "invalidSyntax"},
		{"userName a number", "POST", "/Users", `{"userName":42}`, 400, "invalidValue"},
		{"active not a boolean", "POST", "/Users", `{"userName":"x@y","active":"maybe"}`, 400, "invalidValue"},
		{"name not an object", "POST", "/Users", `{"userName":"x@y","name":"Ada"}`, 400, "invalidValue"},
		{"emails of numbers", "POST", "/Users", `{"userName":"x@y","emails":[1,2]}`, 400, "invalidValue"},
		{"schemas not a list", "POST", "/Users", `{"schemas":"urn:x","userName":"x@y"}`, 400, "invalidValue"},
		{"missing userName", "POST", "/Users", `{"displayName":"Nobody"}`, 400, "invalidValue"},
		{"blank userName", "POST", "/Users", `{"userName":"  "}`, 400, "invalidValue"},
		{"missing displayName", "POST", "/Groups", `{"externalId":"x"}`, 400, "invalidValue"},
		{"unknown member", "POST", "/Groups", `{"displayName":"G","members":[{"value":"nope"}]}`, 400, "invalidValue"},
		{"duplicate userName", "POST", "/Users", `{"userName":"ADA@contoso.com"}`, 409, "uniqueness"},
		{"rename onto a taken userName", "PUT", "/Users/" + uid, `{"userName":"bob@contoso.com"}`, 409, "uniqueness"},
		{"PUT unknown id", "PUT", "/Users/nope", `{"userName":"x@y"}`, 404, ""},
		{"bad filter", "GET", "/Users?filter=" + q(`userName eq`), "", 400, "invalidFilter"},
		{"unquoted filter value", "GET", "/Users?filter=" + q(`userName eq ada`), "", 400, "invalidFilter"},
		{"filter on unknown attribute", "GET", "/Users?filter=" + q(`shoeSize eq "9"`), "", 400, "invalidFilter"},
		{"filter type mismatch", "GET", "/Users?filter=" + q(`meta.created gt "yesterday"`), "", 400, "invalidFilter"},
		{"bad count", "GET", "/Users?count=many", "", 400, "invalidValue"},
		{"PatchOp without Operations", "PATCH", "/Users/" + uid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}`, 400, "invalidSyntax"},
		{"unknown op", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"move","path":"title","value":"x"}]}`, 400, "invalidSyntax"},
		{"bad path", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"replace","path":"emails[type eq","value":"x"}]}`, 400, "invalidPath"},
		{"filter on single-valued", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"replace","path":"userName[value eq \"x\"]","value":"x"}]}`, 400, "invalidPath"},
		{"remove without path", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"remove"}]}`, 400, "noTarget"},
		{"replace matching nothing", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"replace","path":"emails[type eq \"home\"]","value":{"value":"h@x"}}]}`, 400, "noTarget"},
		{"read-only path", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"replace","path":"id","value":"mine"}]}`, 400, "mutability"},
		{"wrong value type", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"replace","path":"active","value":"perhaps"}]}`, 400, "invalidValue"},
		{"userName emptied", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"remove","path":"userName"}]}`, 400, "invalidValue"},
		{"all or nothing", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"replace","path":"title","value":"CEO"},{"op":"replace","path":"active","value":"perhaps"}]}`, 400, "invalidValue"},
		{"unknown member by PATCH", "PATCH", "/Groups/" + gid, `{"Operations":[{"op":"replace","path":"displayName","value":"Renamed"},{"op":"add","path":"members","value":[{"value":"nope"}]}]}`, 400, "invalidValue"},
		{"member without value", "PATCH", "/Groups/" + gid, `{"Operations":[{"op":"add","path":"members","value":[{"display":"x"}]}]}`, 400, "invalidValue"},
		{"members filter not by value", "PATCH", "/Groups/" + gid, `{"Operations":[{"op":"remove","path":"members[display eq \"x\"]"}]}`, 400, "invalidFilter"},
		{"PATCH unknown id", "PATCH", "/Users/nope", `{"Operations":[]}`, 404, ""},
		{"DELETE unknown id", "DELETE", "/Groups/nope", "", 404, ""},
		{"stale If-Match", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"replace","path":"title","value":"x"}]}`, 412, ""},
		{"too large", "POST", "/Users", big, 413, ""},
		{"not JSON", "POST", "/Users", `userName=x`, 415, ""},
		{"unknown endpoint", "GET", "/Widgets", "", 404, ""},
		{"method not allowed", "DELETE", "/Users", "", 405, ""},
		{"bulk", "POST", "/Bulk", `{}`, 501, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := c.snapshot()
			var hdr []string
			switch tc.name {
			case "stale If-Match":
				hdr = []string{"If-Match", `W/"99"`}
			case "not JSON":
				hdr = []string{"Content-Type", "application/x-www-form-urlencoded"}
			}
			var body any
			if tc.body != "" || tc.method == "POST" {
				body = tc.body
			}
			c.do(tc.method, tc.path, body, hdr...).wantError(t, tc.status, tc.scimType)
			if after := c.snapshot(); after != before {
				t.Fatalf("the store changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("contoso")
	for _, hdr := range [][]string{
		{"Authorization", ""},
		{"Authorization", "Bearer"},
		{"Authorization", "Basic dXNlcjpwYXNz"},
		{"Authorization", "Bearer " + c.token + "x"},
	} {
		r := c.do("GET", "/Users", nil, hdr...).wantError(t, http.StatusUnauthorized, "")
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("no Bearer challenge for %v", hdr)
		}
	}
	c.do("GET", "/Users", nil, "Authorization", "bearer "+c.token).want(t, http.StatusOK)

	// A token revoked while the server runs is refused on the next request.
	toks, err := e.db.Tokens(context.Background(), "contoso")
	if err != nil || len(toks) != 1 {
		t.Fatal(toks, err)
	}
	if err := e.db.Write(context.Background(), func(tx *store.Tx) error { _, err := tx.RevokeToken(toks[0].ID); return err }); err != nil {
		t.Fatal(err)
	}
	c.do("GET", "/Users", nil).wantError(t, http.StatusUnauthorized, "")
}

func TestEndpointSpellings(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("contoso")
	c.do("POST", "/Users", `{"userName":"ada@contoso.com"}`).want(t, 201)
	root := e.srv.URL
	for _, p := range []string{"/scim/v2/Users", "/scim/Users", "/SCIM/V2/users", "/scim/v2/USERS/", "/Scim/Users?filter=" + q(`userName eq "ada@contoso.com"`)} {
		if r := c.do("GET", root+p, nil).want(t, 200); total(t, r) != 1 {
			t.Fatalf("%s: %s", p, r.raw)
		}
	}
	// application/json and charset parameters are accepted.
	c.do("POST", "/Users", `{"userName":"bob@contoso.com"}`, "Content-Type", "application/json; charset=utf-8").want(t, 201)
	c.do("POST", "/Users", `{"userName":"cy@contoso.com"}`, "Content-Type", "application/scim+json;charset=UTF-8").want(t, 201)
}

// TestTenantIsolation: a second tenant's token neither sees nor changes the first's data.
func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	a := e.tenant("contoso")
	b := e.tenant("fabrikam")
	uid := str(a.do("POST", "/Users", `{"userName":"ada@contoso.com","externalId":"x1"}`).want(t, 201).body, "id")
	gid := str(a.do("POST", "/Groups", `{"displayName":"Sales"}`).want(t, 201).body, "id")
	a.do("PATCH", "/Groups/"+gid, `{"Operations":[{"op":"add","path":"members","value":[{"value":"`+uid+`"}]}]}`).want(t, 204)
	bUser := str(b.do("POST", "/Users", `{"userName":"ada@contoso.com"}`).want(t, 201).body, "id") // same name is fine in another tenant
	bGroup := str(b.do("POST", "/Groups", `{"displayName":"Sales"}`).want(t, 201).body, "id")
	before := a.snapshot()

	for _, p := range []string{"/Users/" + uid, "/Groups/" + gid} {
		b.do("GET", p, nil).wantError(t, 404, "")
		b.do("DELETE", p, nil).wantError(t, 404, "")
		b.do("PATCH", p, `{"Operations":[{"op":"replace","path":"displayName","value":"pwned"}]}`).wantError(t, 404, "")
	}
	b.do("PUT", "/Users/"+uid, `{"userName":"pwned"}`).wantError(t, 404, "")
	for _, f := range []string{`externalId eq "x1"`, fmt.Sprintf(`id eq "%s"`, uid)} {
		if r := b.do("GET", "/Users?filter="+q(f), nil).want(t, 200); total(t, r) != 0 {
			t.Fatalf("B sees A's user through %s", f)
		}
	}
	if r := b.do("GET", "/Users", nil); total(t, r) != 1 || str(r.body, "Resources", 0, "id") != bUser {
		t.Fatalf("B's list: %s", r.raw)
	}
	if r := b.do("GET", "/Groups?filter="+q(fmt.Sprintf(`members.value eq "%s"`, uid)), nil); total(t, r) != 0 {
		t.Fatal("B finds A's group by A's member")
	}
	// B cannot put A's user into its own group.
	b.do("PATCH", "/Groups/"+bGroup, `{"Operations":[{"op":"add","path":"members","value":[{"value":"`+uid+`"}]}]}`).wantError(t, 400, "invalidValue")
	if after := a.snapshot(); after != before {
		t.Fatalf("B changed A's data:\n%s\n%s", before, after)
	}
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("contoso")
	r := c.do("GET", "/ServiceProviderConfig", nil).want(t, 200)
	if get(r.body, "patch", "supported") != true || get(r.body, "filter", "supported") != true || get(r.body, "bulk", "supported") != false ||
		get(r.body, "sort", "supported") != false || get(r.body, "etag", "supported") != true || num(r.body, "filter", "maxResults") != 1000 ||
		str(r.body, "authenticationSchemes", 0, "type") != "oauthbearertoken" {
		t.Fatalf("ServiceProviderConfig: %s", r.raw)
	}
	r = c.do("GET", "/ResourceTypes", nil).want(t, 200)
	if total(t, r) != 2 || str(r.body, "Resources", 0, "endpoint") != "/Users" ||
		str(r.body, "Resources", 0, "schemaExtensions", 0, "schema") != "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User" {
		t.Fatalf("ResourceTypes: %s", r.raw)
	}
	c.do("GET", "/ResourceTypes/Group", nil).want(t, 200)
	c.do("GET", "/ResourceTypes/Widget", nil).wantError(t, 404, "")
	r = c.do("GET", "/Schemas", nil).want(t, 200)
	if total(t, r) != 3 {
		t.Fatalf("Schemas: %s", r.raw)
	}
	r = c.do("GET", "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", nil).want(t, 200)
	attrs := map[string]bool{}
	for _, a := range get(r.body, "attributes").([]any) {
		attrs[str(a, "name")] = true
	}
	for _, want := range []string{"userName", "name", "displayName", "nickName", "profileUrl", "title", "userType", "preferredLanguage",
		"locale", "timezone", "active", "password", "emails", "phoneNumbers", "ims", "photos", "addresses", "groups", "entitlements", "roles", "x509Certificates"} {
		if !attrs[want] {
			t.Errorf("core User schema lacks %s", want)
		}
	}
	r = c.do("GET", "/Schemas/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", nil).want(t, 200)
	if len(get(r.body, "attributes").([]any)) != 6 {
		t.Fatalf("enterprise schema: %s", r.raw)
	}
	c.do("GET", "/Schemas/urn:nope", nil).wantError(t, 404, "")
}

func TestProjection(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("contoso")
	uid := str(c.do("POST", "/Users", `{"userName":"ada@contoso.com","displayName":"Ada","name":{"givenName":"Ada","familyName":"King"},
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"42","department":"R&D"}}`).want(t, 201).body, "id")
	gid := str(c.do("POST", "/Groups", `{"displayName":"Sales","members":[{"value":"`+uid+`"}]}`).want(t, 201).body, "id")

	r := c.do("GET", "/Users/"+uid+"?attributes=userName,name.familyName,employeeNumber", nil).want(t, 200)
	if str(r.body, "userName") != "ada@contoso.com" || str(r.body, "name", "familyName") != "King" || get(r.body, "name", "givenName") != nil ||
		get(r.body, "displayName") != nil || str(r.body, "id") != uid ||
		str(r.body, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "employeeNumber") != "42" ||
		get(r.body, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "department") != nil {
		t.Fatalf("attributes=: %s", r.raw)
	}
	r = c.do("GET", "/Users/"+uid+"?excludedAttributes=groups,name,id", nil).want(t, 200)
	if get(r.body, "groups") != nil || get(r.body, "name") != nil || str(r.body, "id") != uid || str(r.body, "displayName") != "Ada" {
		t.Fatalf("excludedAttributes=: %s", r.raw)
	}
	r = c.do("GET", "/Groups/"+gid+"?excludedAttributes=members", nil).want(t, 200)
	if get(r.body, "members") != nil || str(r.body, "displayName") != "Sales" {
		t.Fatalf("excludedAttributes=members: %s", r.raw)
	}
	r = c.do("GET", "/Groups?excludedAttributes=members", nil).want(t, 200)
	if get(r.body, "Resources", 0, "members") != nil {
		t.Fatalf("list excludedAttributes=members: %s", r.raw)
	}
	r = c.do("POST", "/Users/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"userName eq \"ada@contoso.com\"","attributes":["displayName"]}`).want(t, 200)
	if total(t, r) != 1 || str(r.body, "Resources", 0, "displayName") != "Ada" || get(r.body, "Resources", 0, "userName") != nil {
		t.Fatalf(".search: %s", r.raw)
	}
}

// TestConcurrentPatches: PATCHes racing on one group all apply.
func TestConcurrentPatches(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("contoso")
	gid := str(c.do("POST", "/Groups", `{"displayName":"Everyone"}`).want(t, 201).body, "id")
	var ids []string
	for i := range 16 {
		ids = append(ids, str(c.do("POST", "/Users", fmt.Sprintf(`{"userName":"u%d@contoso.com"}`, i)).want(t, 201).body, "id"))
	}
	var wg gosync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.do("PATCH", "/Groups/"+gid, fmt.Sprintf(`{"Operations":[{"op":"replace","path":"displayName","value":"Everyone %d"},
			  {"op":"add","path":"members","value":[{"value":"%s"}]}]}`, i, id)).want(t, 204)
			c.do("PATCH", "/Users/"+id, `{"Operations":[{"op":"replace","path":"title","value":"Member"}]}`).want(t, 200)
		}()
	}
	wg.Wait()
	if got := c.members(gid); len(got) != len(ids) {
		t.Fatalf("%d members, want %d", len(got), len(ids))
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *scim.Config) { c.RateLimit = 1 })
	c := e.tenant("contoso")
	other := e.tenant("fabrikam")
	limited := false
	for range 10 {
		r := c.do("GET", "/Users", nil)
		if r.status == http.StatusTooManyRequests {
			r.wantError(t, 429, "")
			if r.header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("ten requests at a limit of 1/s (burst 2) were all served")
	}
	other.do("GET", "/Users", nil).want(t, 200) // another tenant has its own budget
}
