package scim_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/entrasync/entrasync/store"
)

// TestEntraDefault replays what Microsoft Entra ID sends by default
// (../shared/idp/entra.md), checking each answer and the stored state.
func TestEntraDefault(t *testing.T) {
	logged, checkNoSecrets := noSecrets(t)
	e := newEnv(t, logged)
	defer checkNoSecrets(e)
	c := e.tenant("contoso")

	// Test Connection: a filter on a random userName, encoded and as the
	// SCIM Validator sends it (quotes unencoded, + for spaces).
	for _, path := range []string{
		"/Users?filter=userName+eq+%223f8a07cb-04b0-4a5c-9d5d-0f2b22b9f11a%22",
		`/Users?filter=userName+eq+"3f8a07cb-04b0-4a5c-9d5d-0f2b22b9f11a"`,
		"/Groups?excludedAttributes=members&filter=displayName+eq+%223f8a07cb%22",
	} {
		r := c.do("GET", path, nil).want(t, http.StatusOK)
		if !hasString(r.body["schemas"], "urn:ietf:params:scim:api:messages:2.0:ListResponse") ||
			total(t, r) != 0 || num(r.body, "itemsPerPage") != 0 || num(r.body, "startIndex") != 1 {
			t.Fatalf("Test Connection answer: %s", r.raw)
		}
		if res, ok := r.body["Resources"].([]any); !ok || len(res) != 0 {
			t.Fatalf("Resources must be [] when empty: %s", r.raw)
		}
	}

	// Create, in the older form with nulls and the misspelled extension URN.
	r := c.do("POST", "/Users", `{
	  "schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
	  "externalId":"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
	  "userName":"Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
	  "active":true,
	  "emails":[{"primary":true,"type":"work","value":"Test_User_fd0e@testuser.com"}],
	  "meta":{"resourceType":"User"},
	  "name":{"formatted":"givenName familyName","familyName":"familyName","givenName":"givenName"},
	  "roles":[],
	  "addresses":null,"phoneNumbers":null,"title":null,"manager":null}`).want(t, http.StatusCreated)
	id := str(r.body, "id")
	if id == "" || r.header.Get("Location") != c.base+"/Users/"+id || str(r.body, "meta", "location") != c.base+"/Users/"+id {
		t.Fatalf("created user: Location %q, body %s", r.header.Get("Location"), r.raw)
	}
	if r.header.Get("ETag") != `W/"1"` || str(r.body, "meta", "version") != `W/"1"` || str(r.body, "meta", "resourceType") != "User" {
		t.Fatalf("ETag %q, meta %v", r.header.Get("ETag"), r.body["meta"])
	}
	if str(r.body, "name", "familyName") != "familyName" || get(r.body, "active") != true || get(r.body, "title") != nil || get(r.body, "roles") != nil {
		t.Fatalf("created user body: %s", r.raw)
	}

	// Lookups by each matching attribute Entra may be configured with.
	for _, f := range []string{
		`userName eq "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1"`,
		`userName eq "TEST_USER_AB6490EE-1E48-479E-A20B-2D77186B5DD1"`,
		`externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"`,
		`emails[type eq "work"].value eq "Test_User_fd0e@testuser.com"`,
	} {
		r := c.do("GET", "/Users?filter="+q(f), nil).want(t, http.StatusOK)
		if total(t, r) != 1 || str(r.body, "Resources", 0, "id") != id {
			t.Fatalf("%s: %s", f, r.raw)
		}
	}
	c.do("GET", "/Users/"+id, nil).want(t, http.StatusOK)
	c.do("GET", "/Users/00000000-0000-0000-0000-000000000000", nil).wantError(t, http.StatusNotFound, "")

	// The documented update.
	r = c.do("PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
	  "Operations":[
	    {"op":"Replace","path":"emails[type eq \"work\"].value","value":"updatedEmail@microsoft.com"},
	    {"op":"Replace","path":"name.familyName","value":"updatedFamilyName"},
	    {"op":"Replace","path":"userName","value":"5b50642d@testuser.com"},
	    {"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber","value":"701984"}]}`).want(t, http.StatusOK)
	if str(r.body, "emails", 0, "value") != "updatedEmail@microsoft.com" || get(r.body, "emails", 0, "primary") != true ||
		str(r.body, "name", "familyName") != "updatedFamilyName" || str(r.body, "name", "givenName") != "givenName" ||
		str(r.body, "userName") != "5b50642d@testuser.com" ||
		str(r.body, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "employeeNumber") != "701984" ||
		!hasString(r.body["schemas"], "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User") {
		t.Fatalf("after PATCH: %s", r.raw)
	}
	if r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("ETag after one PATCH: %q", r.header.Get("ETag"))
	}
	for _, f := range []string{`userName eq "5b50642d@testuser.com"`, `emails[type eq "work"].value eq "updatedemail@microsoft.com"`} {
		if r := c.do("GET", "/Users?filter="+q(f), nil); total(t, r) != 1 {
			t.Fatalf("filter %s does not reflect the PATCH: %s", f, r.raw)
		}
	}
	if r := c.do("GET", "/Users?filter="+q(`userName eq "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1"`), nil); total(t, r) != 0 {
		t.Fatal("the old userName still matches")
	}

	// Disable with the string boolean, and with op Add; a disabled user
	// is still returned by GET and filters.
	for _, body := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"active","value":"false"}]}`,
	} {
		c.do("PATCH", "/Users/"+id, body).want(t, http.StatusOK)
		if r := c.do("GET", "/Users/"+id, nil); get(r.body, "active") != false {
			t.Fatalf("not disabled: %s", r.raw)
		}
	}
	if r := c.do("GET", "/Users?filter="+q(`userName eq "5b50642d@testuser.com"`), nil); total(t, r) != 1 || get(r.body, "Resources", 0, "active") != false {
		t.Fatalf("a disabled user must still be found: %s", r.raw)
	}
	c.do("PATCH", "/Users/"+id, `{"Operations":[{"op":"Replace","path":"active","value":"True"}]}`).want(t, http.StatusOK)
	if !c.stored(store.UserKind, id).Active() {
		t.Fatal("not re-enabled")
	}

	// Manager, in its three forms, then removed.
	mgr := c.do("POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"boss@testuser.com"}`).want(t, http.StatusCreated)
	mgrID := str(mgr.body, "id")
	const ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	for _, body := range []string{
		`{"Operations":[{"op":"Add","path":"manager","value":[{"$ref":"https://host/Users/` + mgrID + `","value":"` + mgrID + `"}]}]}`,
		`{"Operations":[{"op":"Add","path":"` + ext + `:manager","value":"` + mgrID + `"}]}`,
		`{"Operations":[{"op":"Replace","path":"` + ext + `:manager","value":"` + mgrID + `"}]}`,
	} {
		c.do("PATCH", "/Users/"+id, body).want(t, http.StatusOK)
		if r := c.do("GET", "/Users/"+id, nil); str(r.body, ext, "manager", "value") != mgrID {
			t.Fatalf("manager after %s: %s", body, r.raw)
		}
	}
	r = c.do("PATCH", "/Users/"+id, `{"Operations":[{"op":"Replace","path":"`+ext+`:manager","value":""}]}`).want(t, http.StatusOK)
	if get(r.body, ext, "manager") != nil || str(r.body, ext, "employeeNumber") != "701984" {
		t.Fatalf("manager not removed, or too much removed: %s", r.raw)
	}

	// Groups: created without members, then members by PATCH.
	g := c.do("POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
	  "externalId":"8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159","displayName":"displayName","meta":{"resourceType":"Group"}}`).want(t, http.StatusCreated)
	gid := str(g.body, "id")
	if g.header.Get("Location") != c.base+"/Groups/"+gid || str(g.body, "meta", "resourceType") != "Group" {
		t.Fatalf("created group: %s", g.raw)
	}
	c.do("GET", "/Groups/"+gid+"?excludedAttributes=members", nil).want(t, http.StatusOK)
	if r := c.do("GET", "/Groups?excludedAttributes=members&filter="+q(`displayName eq "displayName"`), nil); total(t, r) != 1 || str(r.body, "Resources", 0, "id") != gid {
		t.Fatalf("group lookup: %s", r.raw)
	}
	u3 := str(c.do("POST", "/Users", `{"userName":"third@testuser.com"}`).want(t, http.StatusCreated).body, "id")
	c.do("PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
	  {"op":"Add","path":"members","value":[{"$ref":null,"value":"`+mgrID+`"},{"$ref":null,"value":"`+u3+`"}]}]}`).want(t, http.StatusNoContent)
	c.do("PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
	  {"op":"Replace","path":"displayName","value":"new name"},
	  {"op":"Add","path":"members","value":[{"$ref":null,"value":"`+id+`"}]},
	  {"op":"Remove","path":"members","value":[{"$ref":null,"value":"`+mgrID+`"}]}]}`).want(t, http.StatusNoContent)
	if got, want := c.members(gid), sortedIDs(id, u3); !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	if c.stored(store.GroupKind, gid).Str("displayName") != "new name" {
		t.Fatal("group not renamed")
	}
	// Adding an existing member adds nothing; removing by the default form removes only those listed.
	before := c.stored(store.GroupKind, gid).Version
	c.do("PATCH", "/Groups/"+gid, `{"Operations":[{"op":"Add","path":"members","value":[{"value":"`+id+`"}]}]}`).want(t, http.StatusNoContent)
	if got := c.stored(store.GroupKind, gid).Version; got != before {
		t.Fatalf("re-adding a member changed the group (version %d -> %d)", before, got)
	}
	c.do("PATCH", "/Groups/"+gid, `{"Operations":[{"op":"Remove","path":"members","value":[{"value":"`+u3+`"}]}]}`).want(t, http.StatusNoContent)
	if got := c.members(gid); !slices.Equal(got, []string{id}) {
		t.Fatalf("members %v", got)
	}
	r = c.do("GET", "/Groups/"+gid, nil).want(t, http.StatusOK)
	if str(r.body, "members", 0, "value") != id || str(r.body, "members", 0, "type") != "User" || str(r.body, "members", 0, "$ref") != c.base+"/Users/"+id {
		t.Fatalf("group members shown: %s", r.raw)
	}
	if r := c.do("GET", "/Users/"+id, nil); str(r.body, "groups", 0, "value") != gid || str(r.body, "groups", 0, "display") != "new name" {
		t.Fatalf("user's groups: %s", r.raw)
	}

	// The SCIM Validator's empty PATCH changes nothing.
	snap := c.snapshot()
	c.do("PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[]}`).want(t, http.StatusOK)
	c.do("PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[]}`).want(t, http.StatusNoContent)
	if c.snapshot() != snap {
		t.Fatal("an empty PATCH changed the store")
	}

	// Hard delete: the user leaves its groups.
	c.do("DELETE", "/Users/"+id, nil).want(t, http.StatusNoContent)
	c.do("GET", "/Users/"+id, nil).wantError(t, http.StatusNotFound, "")
	if got := c.members(gid); len(got) != 0 {
		t.Fatalf("deleted user still a member: %v", got)
	}
	c.do("DELETE", "/Users/"+id, nil).wantError(t, http.StatusNotFound, "")
	c.do("DELETE", "/Groups/"+gid, nil).want(t, http.StatusNoContent)
	c.do("GET", "/Groups/"+gid, nil).wantError(t, http.StatusNotFound, "")
}

// TestEntraFlagMode replays the aadOptscim062020 forms.
func TestEntraFlagMode(t *testing.T) {
	logged, checkNoSecrets := noSecrets(t)
	e := newEnv(t, logged)
	defer checkNoSecrets(e)
	c := e.tenant("contoso")
	id := str(c.do("POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
	  "userName":"ada@contoso.com","active":true,"displayName":"Ada","name":{"givenName":"Ada","familyName":"Lovelace"},
	  "emails":[{"type":"work","value":"old@contoso.com","primary":true}]}`).want(t, http.StatusCreated).body, "id")

	r := c.do("PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
	  {"op":"replace","value":{
	    "displayName":"Ada L.",
	    "name.givenName":"Augusta",
	    "name.familyName":"King",
	    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"42",
	    "emails[type eq \"work\"].value":"ada@contoso.com"}}]}`).want(t, http.StatusOK)
	if str(r.body, "displayName") != "Ada L." || str(r.body, "name", "givenName") != "Augusta" || str(r.body, "name", "familyName") != "King" ||
		str(r.body, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "employeeNumber") != "42" ||
		str(r.body, "emails", 0, "value") != "ada@contoso.com" || len(get(r.body, "emails").([]any)) != 1 {
		t.Fatalf("merged replace: %s", r.raw)
	}
	c.do("PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}`).want(t, http.StatusOK)
	if c.stored(store.UserKind, id).Active() {
		t.Fatal("boolean false did not disable")
	}

	gid := str(c.do("POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Sales"}`).want(t, http.StatusCreated).body, "id")
	other := str(c.do("POST", "/Users", `{"userName":"bob@contoso.com"}`).want(t, http.StatusCreated).body, "id")
	c.do("PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
	  {"op":"add","path":"members","value":[{"value":"`+id+`"},{"value":"`+other+`"}]}]}`).want(t, http.StatusNoContent)
	c.do("PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
	  {"op":"remove","path":"members[value eq \"`+id+`\"]"}]}`).want(t, http.StatusNoContent)
	if got := c.members(gid); !slices.Equal(got, []string{other}) {
		t.Fatalf("members %v", got)
	}
	// Removing again is not an error and changes nothing.
	snap := c.snapshot()
	c.do("PATCH", "/Groups/"+gid, `{"Operations":[{"op":"remove","path":"members[value eq \"`+id+`\"]"}]}`).want(t, http.StatusNoContent)
	if c.snapshot() != snap {
		t.Fatal("a repeated removal changed the store")
	}
}
