package scim_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/store"
)

// TestOkta replays what Okta sends (../shared/idp/okta.md).
func TestOkta(t *testing.T) {
	logged, checkNoSecrets := noSecrets(t, "1mz050nq")
	e := newEnv(t, logged)
	defer checkNoSecrets(e)
	c := e.tenant("okta-customer")

	// Existence check before create.
	r := c.do("GET", "/Users?filter=userName%20eq%20%22jane%40example.com%22&startIndex=1&count=100", nil).want(t, http.StatusOK)
	if total(t, r) != 0 {
		t.Fatalf("existence check: %s", r.raw)
	}
	create := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
	  "userName":"jane@example.com","name":{"givenName":"Jane","familyName":"Doe"},
	  "emails":[{"primary":true,"value":"jane@example.com","type":"work"}],
	  "displayName":"Jane Doe","locale":"en-US","externalId":"00ujl29u0le5T6Aj10h7",
	  "groups":[],"password":"1mz050nq","active":true}`
	r = c.do("POST", "/Users", create).want(t, http.StatusCreated)
	id := str(r.body, "id")
	if strings.Contains(string(r.raw), "1mz050nq") || get(r.body, "password") != nil {
		t.Fatalf("password returned: %s", r.raw)
	}
	stored := c.stored(store.UserKind, id)
	if doc, _ := json.Marshal(stored.Doc); strings.Contains(string(doc), "1mz050nq") {
		t.Fatalf("password stored: %s", doc)
	}
	if str(r.body, "locale") != "en-US" || str(r.body, "externalId") != "00ujl29u0le5T6Aj10h7" {
		t.Fatalf("created: %s", r.raw)
	}
	// Duplicate userName, any case.
	dup := strings.Replace(create, "jane@example.com\",\"name", "JANE@example.com\",\"name", 1)
	c.do("POST", "/Users", dup).wantError(t, http.StatusConflict, "uniqueness")
	// The spec test's upper-cased lookup.
	r = c.do("GET", "/Users?filter="+q(`userName eq "JANE@EXAMPLE.COM"`)+"&startIndex=1&count=100", nil)
	if total(t, r) != 1 || str(r.body, "Resources", 0, "id") != id {
		t.Fatalf("case-insensitive lookup: %s", r.raw)
	}

	// Profile update: PUT of the resource as last returned, edited.
	got := c.do("GET", "/Users/"+id, nil).want(t, http.StatusOK).body
	got["displayName"] = "Jane Q. Doe"
	got["name"].(map[string]any)["middleName"] = "Q."
	r = c.do("PUT", "/Users/"+id, got).want(t, http.StatusOK)
	if str(r.body, "displayName") != "Jane Q. Doe" || str(r.body, "name", "middleName") != "Q." || str(r.body, "id") != id {
		t.Fatalf("PUT: %s", r.raw)
	}
	if r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("ETag after PUT %q", r.header.Get("ETag"))
	}
	// PUT replaces: what is left out is gone.
	r = c.do("PUT", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"jane@example.com","active":true}`).want(t, http.StatusOK)
	if get(r.body, "displayName") != nil || get(r.body, "emails") != nil {
		t.Fatalf("PUT kept attributes it did not name: %s", r.raw)
	}

	// Deactivate and reactivate: PATCH without a path.
	c.do("PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`).want(t, http.StatusOK)
	if c.stored(store.UserKind, id).Active() {
		t.Fatal("not deactivated")
	}
	c.do("PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":true}}]}`).want(t, http.StatusOK)
	if !c.stored(store.UserKind, id).Active() {
		t.Fatal("not reactivated")
	}

	// Group Push.
	r = c.do("POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Engineering","members":[]}`).want(t, http.StatusCreated)
	gid := str(r.body, "id")
	c.do("PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
	  {"op":"replace","value":{"id":"`+gid+`","displayName":"Engineering Team"}}]}`).want(t, http.StatusNoContent)
	if c.stored(store.GroupKind, gid).Str("displayName") != "Engineering Team" {
		t.Fatal("rename with id in value failed")
	}
	john := str(c.do("POST", "/Users", `{"userName":"john@example.com"}`).want(t, http.StatusCreated).body, "id")
	c.do("PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
	  {"op":"add","path":"members","value":[{"value":"`+id+`","display":"jane@example.com"},{"value":"`+john+`","display":"john@example.com"}]}]}`).want(t, http.StatusNoContent)
	c.do("PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
	  {"op":"remove","path":"members[value eq \"`+id+`\"]"}]}`).want(t, http.StatusNoContent)
	if got := c.members(gid); !slices.Equal(got, []string{john}) {
		t.Fatalf("members %v", got)
	}
	// Full replace with PUT: the listed members become the whole membership; [] empties it.
	r = c.do("PUT", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Engineering Team",
	  "members":[{"value":"`+id+`"}]}`).want(t, http.StatusOK)
	if got := c.members(gid); !slices.Equal(got, []string{id}) {
		t.Fatalf("members after PUT %v", got)
	}
	if str(r.body, "members", 0, "value") != id {
		t.Fatalf("PUT answer: %s", r.raw)
	}
	c.do("PUT", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Engineering Team","members":[]}`).want(t, http.StatusOK)
	if got := c.members(gid); len(got) != 0 {
		t.Fatalf("members after PUT []: %v", got)
	}
	c.do("DELETE", "/Groups/"+gid, nil).want(t, http.StatusNoContent)

	// Unknown id: 404 with the Error schema and the status in the body.
	c.do("GET", "/Users/does-not-exist", nil).wantError(t, http.StatusNotFound, "")
	// Wrong token: 401 with a SCIM Error body and a Bearer challenge.
	bad := *c
	bad.token = "es_wrong"
	r = bad.do("GET", "/Users", nil).wantError(t, http.StatusUnauthorized, "")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}

	// Okta pages with startIndex/count and relies on totalResults.
	for i := range 7 {
		c.do("POST", "/Users", `{"userName":"page`+string(rune('a'+i))+`@example.com"}`).want(t, http.StatusCreated)
	}
	seen := map[string]bool{}
	for start := 1; ; start += 3 {
		r := c.do("GET", "/Users?startIndex="+strconv.Itoa(start)+"&count=3", nil).want(t, http.StatusOK)
		if total(t, r) != 9 || num(r.body, "startIndex") != int64(start) {
			t.Fatalf("page at %d: %s", start, r.raw)
		}
		list := get(r.body, "Resources").([]any)
		if num(r.body, "itemsPerPage") != int64(len(list)) {
			t.Fatalf("itemsPerPage: %s", r.raw)
		}
		for _, res := range list {
			seen[str(res, "id")] = true
		}
		if len(list) < 3 {
			break
		}
	}
	if len(seen) != 9 {
		t.Fatalf("paging saw %d users, want 9", len(seen))
	}
}
