package patch

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/scim/schema"
)

const ent = schema.EnterpriseUserURN

// decode reads JSON as the HTTP layer does (UseNumber).
func decode(t testing.TB, s string) any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return v
}

func doc(t testing.TB, s string) map[string]any {
	t.Helper()
	m, ok := decode(t, s).(map[string]any)
	if !ok {
		t.Fatalf("test JSON %s is not an object", s)
	}
	return m
}

// toOps turns decoded operations into Operations the way the HTTP layer's
// readPatch does: member names in any case, a null path as no path.
func toOps(list []any) ([]Operation, bool) {
	ops := make([]Operation, 0, len(list))
	for _, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, false
		}
		var op Operation
		for k, v := range m {
			switch strings.ToLower(k) {
			case "op":
				if op.Op, ok = v.(string); !ok {
					return nil, false
				}
			case "path":
				if v != nil {
					if op.Path, ok = v.(string); !ok {
						return nil, false
					}
				}
			case "value":
				op.Value = v
			}
		}
		ops = append(ops, op)
	}
	return ops, true
}

func parseOps(t testing.TB, s string) []Operation {
	t.Helper()
	list, ok := decode(t, s).([]any)
	if !ok {
		t.Fatalf("test operations %s are not an array", s)
	}
	ops, ok := toOps(list)
	if !ok {
		t.Fatalf("test operations %s are malformed", s)
	}
	return ops
}

func asJSON(v any) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	_ = e.Encode(v)
	return strings.TrimSpace(b.String())
}

const (
	// user has a primary work email, a home email and the enterprise extension.
	user = `{"userName":"ada","externalId":"e1","active":true,"displayName":"Ada",
		"name":{"givenName":"Ada","familyName":"Lovelace"},
		"emails":[{"type":"work","value":"ada@old.com","primary":true},{"type":"home","value":"ada@home.com"}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"1","department":"R&D"}}`
	// plainUser has no work email and no extension.
	plainUser = `{"userName":"bob","active":true,"emails":[{"type":"home","value":"bob@home.com","primary":true}]}`
	// bareUser has nothing but a userName.
	bareUser = `{"userName":"cy"}`
	// managed has a manager and nothing else in the extension.
	managed = `{"userName":"dee","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m1"}}}`
	group   = `{"displayName":"Eng","externalId":"g1"}`
)

const entraUserPatch = `[
	{"op":"Replace","path":"emails[type eq \"work\"].value","value":"updatedEmail@microsoft.com"},
	{"op":"Replace","path":"name.familyName","value":"updatedFamilyName"},
	{"op":"Replace","path":"userName","value":"5b50642d@testuser.com"},
	{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber","value":"701984"}]`

const flagPatch = `[{"op":"replace","value":{
	"displayName":"Ada L.",
	"name.givenName":"Augusta",
	"name.familyName":"King",
	"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"42",
	"emails[type eq \"work\"].value":"ada@contoso.com"}}]`

type applyCase struct {
	name    string
	rt      *schema.ResourceType
	doc     string
	ops     string
	want    string
	members []MemberOp
}

func TestApplyUser(t *testing.T) {
	tests := []applyCase{
		{name: "Entra default PATCH, work email present", doc: user, ops: entraUserPatch, want: `{
			"userName":"5b50642d@testuser.com","externalId":"e1","active":true,"displayName":"Ada",
			"name":{"givenName":"Ada","familyName":"updatedFamilyName"},
			"emails":[{"type":"work","value":"updatedEmail@microsoft.com","primary":true},{"type":"home","value":"ada@home.com"}],
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"701984","department":"R&D"}}`},
		{name: "Entra default PATCH, no work email", doc: plainUser, ops: entraUserPatch, want: `{
			"userName":"5b50642d@testuser.com","active":true,
			"name":{"familyName":"updatedFamilyName"},
			"emails":[{"type":"home","value":"bob@home.com","primary":true},{"type":"work","value":"updatedEmail@microsoft.com"}],
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"701984"}}`},
		{name: "work email equal to the home one is still created", doc: plainUser,
			ops: `[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"bob@home.com"}]`, want: `{
			"userName":"bob","active":true,
			"emails":[{"type":"home","value":"bob@home.com","primary":true},{"type":"work","value":"bob@home.com"}]}`},
		{name: "Entra default PATCH, no emails", doc: bareUser, ops: entraUserPatch, want: `{
			"userName":"5b50642d@testuser.com",
			"name":{"familyName":"updatedFamilyName"},
			"emails":[{"type":"work","value":"updatedEmail@microsoft.com"}],
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"701984"}}`},
		{name: "lower-case ops", doc: bareUser, ops: `[
			{"op":"replace","path":"userName","value":"cy2"},
			{"op":"add","path":"displayName","value":"Cy"},
			{"op":"remove","path":"displayName"},
			{"op":"add","path":"title","value":"Eng"}]`,
			want: `{"userName":"cy2","title":"Eng"}`},
		{name: "mixed-case op and path names", doc: bareUser, ops: `[{"op":"REPLACE","path":"NAME.GIVENNAME","value":"C"},{"op":" Add ","path":"Title","value":"T"}]`,
			want: `{"userName":"cy","name":{"givenName":"C"},"title":"T"}`},
		{name: "empty Operations", doc: user, ops: `[]`, want: user},
		{name: "Okta deactivate", doc: user, ops: `[{"op":"replace","value":{"active":false}}]`,
			want: strings.Replace(user, `"active":true`, `"active":false`, 1)},
		{name: "aadOptscim062020 path-less replace", doc: user, ops: flagPatch, want: `{
			"userName":"ada","externalId":"e1","active":true,"displayName":"Ada L.",
			"name":{"givenName":"Augusta","familyName":"King"},
			"emails":[{"type":"work","value":"ada@contoso.com","primary":true},{"type":"home","value":"ada@home.com"}],
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"42","department":"R&D"}}`},
		{name: "aadOptscim062020 path-less replace, no work email", doc: plainUser, ops: flagPatch, want: `{
			"userName":"bob","active":true,"displayName":"Ada L.",
			"name":{"givenName":"Augusta","familyName":"King"},
			"emails":[{"type":"home","value":"bob@home.com","primary":true},{"type":"work","value":"ada@contoso.com"}],
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"42"}}`},
		{name: "path-less value ignores read-only, unknown and schemas keys", doc: bareUser, ops: `[{"op":"replace","value":{
			"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"x","meta":{"created":"2020-01-01T00:00:00Z"},
			"groups":[{"value":"g"}],"shoeSize":44,"password":"p","nickName":"C"}}]`,
			want: `{"userName":"cy","nickName":"C"}`},
		{name: "path-less add with whole extension and name object", doc: bareUser, ops: `[{"op":"add","value":{
			"name":{"givenName":"C"},
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"D","manager":"m1"}}}]`,
			want: `{"userName":"cy","name":{"givenName":"C"},"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"D","manager":{"value":"m1"}}}`},
		{name: "replace complex keeps unnamed sub-attributes", doc: user, ops: `[{"op":"replace","path":"name","value":{"givenName":"Augusta","formatted":"Augusta Ada"}}]`,
			want: strings.Replace(user, `"name":{"givenName":"Ada","familyName":"Lovelace"}`, `"name":{"givenName":"Augusta","familyName":"Lovelace","formatted":"Augusta Ada"}`, 1)},
		{name: "remove sub-attribute", doc: user, ops: `[{"op":"remove","path":"name.givenName"}]`,
			want: strings.Replace(user, `"givenName":"Ada",`, ``, 1)},
		{name: "remove last sub-attribute removes the attribute", doc: `{"userName":"u","name":{"givenName":"A"}}`, ops: `[{"op":"Remove","path":"name.givenName"}]`,
			want: `{"userName":"u"}`},
		{name: "replace with null removes", doc: user, ops: `[{"op":"Replace","path":"displayName","value":null}]`,
			want: strings.Replace(user, `"displayName":"Ada",`, ``, 1)},
		{name: "remove filtered element", doc: user, ops: `[{"op":"remove","path":"emails[type eq \"home\"]"}]`,
			want: strings.Replace(user, `,{"type":"home","value":"ada@home.com"}`, ``, 1)},
		{name: "remove filtered sub-attribute", doc: user, ops: `[{"op":"remove","path":"emails[type eq \"work\"].value"}]`,
			want: strings.Replace(user, `"type":"work","value":"ada@old.com","primary":true`, `"type":"work","primary":true`, 1)},
		{name: "filter value compare is case-insensitive", doc: user, ops: `[{"op":"Replace","path":"emails[TYPE eq \"Work\"].Value","value":"w@x"}]`,
			want: strings.Replace(user, `ada@old.com`, `w@x`, 1)},
		{name: "filtered replace of whole element", doc: user, ops: `[{"op":"replace","path":"emails[type eq \"home\"]","value":{"type":"other","value":"o@x"}}]`,
			want: strings.Replace(user, `{"type":"home","value":"ada@home.com"}`, `{"type":"other","value":"o@x"}`, 1)},
		{name: "filtered add creates a missing element", doc: bareUser, ops: `[{"op":"add","path":"phoneNumbers[type eq \"mobile\"].value","value":"+1 555"}]`,
			want: `{"userName":"cy","phoneNumbers":[{"type":"mobile","value":"+1 555"}]}`},
		{name: "remove values listed (Entra form)", doc: user, ops: `[{"op":"Remove","path":"emails","value":[{"value":"ada@home.com"}]}]`,
			want: strings.Replace(user, `,{"type":"home","value":"ada@home.com"}`, ``, 1)},
		{name: "remove whole multi-valued attribute", doc: user, ops: `[{"op":"Remove","path":"emails"}]`,
			want: strings.Replace(user, `"emails":[{"type":"work","value":"ada@old.com","primary":true},{"type":"home","value":"ada@home.com"}],`, ``, 1)},
		{name: "replace whole multi-valued attribute", doc: user, ops: `[{"op":"Replace","path":"emails","value":[{"value":"n@x","type":"work"}]}]`,
			want: strings.Replace(user, `[{"type":"work","value":"ada@old.com","primary":true},{"type":"home","value":"ada@home.com"}]`, `[{"value":"n@x","type":"work"}]`, 1)},
		{name: "URN-qualified core path", doc: bareUser, ops: `[{"op":"replace","path":"urn:ietf:params:scim:schemas:core:2.0:User:userName","value":"cy3"}]`,
			want: `{"userName":"cy3"}`},
		{name: "unqualified extension attribute", doc: bareUser, ops: `[{"op":"add","path":"department","value":"D"}]`,
			want: `{"userName":"cy","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"D"}}`},
		{name: "remove extension attribute", doc: user, ops: `[{"op":"remove","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}]`,
			want: strings.Replace(user, `,"department":"R&D"`, ``, 1)},
		{name: "remove last extension attribute removes the extension", doc: managed, ops: `[{"op":"remove","path":"manager"}]`,
			want: `{"userName":"dee"}`},
		{name: "remove whole extension", doc: user, ops: `[{"op":"remove","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}]`,
			want: strings.Replace(user, `,
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"1","department":"R&D"}`, ``, 1)},
		{name: "replace via extension URN merges", doc: user, ops: `[{"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User","value":{"department":"Ops","costCenter":"C"}}]`,
			want: strings.Replace(user, `"department":"R&D"`, `"department":"Ops","costCenter":"C"`, 1)},
		{name: "unknown attribute dropped", doc: bareUser, ops: `[{"op":"add","path":"shoeSize","value":44},{"op":"remove","path":"name.nick"}]`,
			want: bareUser},
		{name: "password accepted, never stored", doc: bareUser, ops: `[{"op":"replace","path":"password","value":"s3cret"}]`,
			want: bareUser},
		// Manager, the three forms Entra sends.
		{name: "manager: Add path manager with $ref list", doc: bareUser,
			ops:  `[{"op":"Add","path":"manager","value":[{"$ref":"https://host/Users/m1","value":"m1"}]}]`,
			want: `{"userName":"cy","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m1"}}}`},
		{name: "manager: Add URN-qualified bare id", doc: user,
			ops:  `[{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"m1"}]`,
			want: strings.Replace(user, `"department":"R&D"`, `"department":"R&D","manager":{"value":"m1"}`, 1)},
		{name: "manager: Replace with a new id", doc: managed,
			ops:  `[{"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"m2"}]`,
			want: strings.Replace(managed, `m1`, `m2`, 1)},
		{name: "manager: Replace path manager with a new $ref list", doc: managed,
			ops:  `[{"op":"Replace","path":"manager","value":[{"$ref":"https://host/Users/m2","value":"m2"}]}]`,
			want: strings.Replace(managed, `m1`, `m2`, 1)},
		{name: "manager: Replace with empty string removes", doc: managed,
			ops:  `[{"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":""}]`,
			want: `{"userName":"dee"}`},
		{name: "manager: removal keeps the rest of the extension", doc: user,
			ops:  `[{"op":"Add","path":"manager","value":"m1"},{"op":"Replace","path":"manager","value":""}]`,
			want: user},
		{name: "manager: value sub-attribute", doc: bareUser,
			ops:  `[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value","value":"m3"}]`,
			want: `{"userName":"cy","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m3"}}}`},
		{name: "manager: path-less flag form", doc: bareUser,
			ops:  `[{"op":"replace","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager":"m4"}}]`,
			want: `{"userName":"cy","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m4"}}}`},
	}
	// active, in every form Entra and Okta send it.
	for _, a := range []struct{ op, in, want string }{
		{"Replace", `"False"`, "false"}, {"Replace", `"True"`, "true"}, {"Replace", `"false"`, "false"},
		{"replace", "false", "false"}, {"replace", "true", "true"},
		{"Add", `"False"`, "false"}, {"add", "false", "false"}, {"Add", `"True"`, "true"},
	} {
		tests = append(tests, applyCase{
			name: "active " + a.op + " " + a.in, doc: user,
			ops:  `[{"op":"` + a.op + `","path":"active","value":` + a.in + `}]`,
			want: strings.Replace(user, `"active":true`, `"active":`+a.want, 1),
		})
	}
	runApply(t, schema.UserType, tests)
}

func TestApplyGroup(t *testing.T) {
	tests := []applyCase{
		{name: "Entra rename, add and remove in one request", doc: group, ops: `[
			{"op":"Replace","path":"displayName","value":"new name"},
			{"op":"Add","path":"members","value":[{"$ref":null,"value":"f648f8d5ea4e4cd38e9c"}]},
			{"op":"Remove","path":"members","value":[{"$ref":null,"value":"a7ee1b0b9a784e5fb1ad"}]}]`,
			want:    `{"displayName":"new name","externalId":"g1"}`,
			members: []MemberOp{{"add", []string{"f648f8d5ea4e4cd38e9c"}}, {"remove", []string{"a7ee1b0b9a784e5fb1ad"}}}},
		{name: "Entra default member removal", doc: group, ops: `[{"op":"Remove","path":"members","value":[{"value":"u1"},{"value":"u2"}]}]`,
			want: group, members: []MemberOp{{"remove", []string{"u1", "u2"}}}},
		{name: "flag member removal by filter", doc: group, ops: `[{"op":"remove","path":"members[value eq \"u1\"]"}]`,
			want: group, members: []MemberOp{{"remove", []string{"u1"}}}},
		{name: "member removal by or-filter", doc: group, ops: `[{"op":"remove","path":"members[value eq \"a\" or value eq \"b\" or VALUE eq \"c\"]"}]`,
			want: group, members: []MemberOp{{"remove", []string{"a", "b", "c"}}}},
		{name: "Okta add with display", doc: group, ops: `[{"op":"add","path":"members","value":[{"value":"u1","display":"jane@example.com"}]}]`,
			want: group, members: []MemberOp{{"add", []string{"u1"}}}},
		{name: "Okta rename ignores id", doc: group, ops: `[{"op":"replace","value":{"id":"g-123","displayName":"new"}}]`,
			want: `{"displayName":"new","externalId":"g1"}`},
		{name: "replace members sets the membership", doc: group, ops: `[{"op":"replace","path":"members","value":[{"value":"u1"},{"value":"u2"}]}]`,
			want: group, members: []MemberOp{{"set", []string{"u1", "u2"}}}},
		{name: "replace members with empty list", doc: group, ops: `[{"op":"replace","path":"members","value":[]}]`,
			want: group, members: []MemberOp{{"set", []string{}}}},
		{name: "remove members without value empties the group", doc: group, ops: `[{"op":"remove","path":"members"}]`,
			want: group, members: []MemberOp{{"set", []string{}}}},
		{name: "path-less replace with members", doc: group, ops: `[{"op":"replace","value":{"displayName":"X","members":[{"value":"u1"}]}}]`,
			want: `{"displayName":"X","externalId":"g1"}`, members: []MemberOp{{"set", []string{"u1"}}}},
		{name: "capitalised Members path and Value key", doc: group, ops: `[{"op":"Add","path":"Members","value":[{"Value":"u1"}]}]`,
			want: group, members: []MemberOp{{"add", []string{"u1"}}}},
		{name: "user-only attribute ignored on a group", doc: group, ops: `[{"op":"add","path":"employeeNumber","value":"1"}]`,
			want: group},
		{name: "empty Operations", doc: group, ops: `[]`, want: group},
	}
	runApply(t, schema.GroupType, tests)
}

func runApply(t *testing.T, rt *schema.ResourceType, tests []applyCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := doc(t, tc.doc)
			pristine := doc(t, tc.doc)
			ops := parseOps(t, tc.ops)
			opsBefore := asJSON(ops)
			got, members, err := Apply(rt, in, ops)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if want := doc(t, tc.want); !reflect.DeepEqual(got, want) {
				t.Errorf("document:\n got %s\nwant %s", asJSON(got), asJSON(want))
			}
			if !reflect.DeepEqual(members, tc.members) {
				t.Errorf("members = %#v, want %#v", members, tc.members)
			}
			if !reflect.DeepEqual(in, pristine) {
				t.Errorf("input document modified: %s", asJSON(in))
			}
			if asJSON(ops) != opsBefore {
				t.Errorf("operations modified: %s", asJSON(ops))
			}
			// The result shares nothing with the input or the operations.
			scribble(got)
			if !reflect.DeepEqual(in, pristine) || asJSON(ops) != opsBefore {
				t.Errorf("the result aliases the input or the operations")
			}
		})
	}
}

// scribble overwrites every map and list in v.
func scribble(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			scribble(e)
			x[k] = "scribbled"
		}
		x["scribbled"] = true
	case []any:
		for i, e := range x {
			scribble(e)
			x[i] = "scribbled"
		}
	}
}

func TestApplyErrors(t *testing.T) {
	tests := []struct {
		name     string
		rt       *schema.ResourceType
		doc      string
		ops      string
		scimType string
		detail   string // must appear in Detail
	}{
		{"unknown op", schema.UserType, user, `[{"op":"Move","path":"userName","value":"x"}]`, "invalidSyntax", `not "Move"`},
		{"missing op", schema.UserType, user, `[{"path":"userName","value":"x"}]`, "invalidSyntax", "op must be"},
		{"remove without path", schema.UserType, user, `[{"op":"Remove"}]`, "noTarget", "needs a path"},
		{"remove with blank path", schema.UserType, user, `[{"op":"remove","path":"  ","value":{"userName":"x"}}]`, "noTarget", "needs a path"},
		{"malformed path", schema.UserType, user, `[{"op":"replace","path":"emails[type eq","value":"x"}]`, "invalidPath", ""},
		{"malformed key in path-less value", schema.UserType, user, `[{"op":"replace","value":{"emails[type eq":"x"}}]`, "invalidPath", ""},
		{"filter on single-valued attribute", schema.UserType, user, `[{"op":"replace","path":"userName[value eq \"x\"]","value":"y"}]`, "invalidPath", "single-valued"},
		{"sub-attribute of a simple attribute", schema.UserType, user, `[{"op":"replace","path":"userName.value","value":"y"}]`, "invalidPath", "no sub-attributes"},
		{"unknown sub-attribute in a value filter", schema.UserType, user, `[{"op":"replace","path":"emails[label eq \"x\"].value","value":"y"}]`, "invalidPath", "label"},
		{"add to a sub-attribute of every element", schema.UserType, user, `[{"op":"add","path":"emails.value","value":"y"}]`, "invalidPath", ""},
		{"replace of a filtered element that is not there", schema.UserType, user, `[{"op":"replace","path":"emails[type eq \"other\"]","value":{"value":"o@x"}}]`, "noTarget", ""},
		{"filtered sub-attribute with no match and a non-eq filter", schema.UserType, user, `[{"op":"replace","path":"emails[type sw \"o\"].value","value":"o@x"}]`, "noTarget", ""},
		{"read-only id", schema.UserType, user, `[{"op":"replace","path":"id","value":"x"}]`, "mutability", "id is read-only"},
		{"read-only URN-qualified id", schema.UserType, user, `[{"op":"replace","path":"urn:ietf:params:scim:schemas:core:2.0:User:id","value":"x"}]`, "mutability", ""},
		{"read-only meta.created", schema.UserType, user, `[{"op":"replace","path":"meta.created","value":"2020-01-01T00:00:00Z"}]`, "mutability", ""},
		{"read-only meta", schema.UserType, user, `[{"op":"remove","path":"meta"}]`, "mutability", ""},
		{"read-only groups", schema.UserType, user, `[{"op":"add","path":"groups","value":[{"value":"g"}]}]`, "mutability", ""},
		{"read-only manager.displayName", schema.UserType, user, `[{"op":"add","path":"manager.displayName","value":"Boss"}]`, "mutability", "displayName is read-only"},
		{"read-only group id", schema.GroupType, group, `[{"op":"replace","path":"id","value":"x"}]`, "mutability", ""},
		{"replace empties userName", schema.UserType, user, `[{"op":"Replace","path":"userName","value":""}]`, "invalidValue", "userName is required"},
		{"replace nulls userName", schema.UserType, user, `[{"op":"Replace","path":"userName","value":null}]`, "invalidValue", "userName is required"},
		{"remove userName", schema.UserType, user, `[{"op":"remove","path":"userName"}]`, "invalidValue", "userName is required"},
		{"path-less replace empties userName", schema.UserType, user, `[{"op":"replace","value":{"userName":" "}}]`, "invalidValue", "userName is required"},
		{"replace empties group displayName", schema.GroupType, group, `[{"op":"replace","path":"displayName","value":""}]`, "invalidValue", "displayName is required"},
		{"userName as a number", schema.UserType, user, `[{"op":"replace","path":"userName","value":42}]`, "invalidValue", "userName must be a string, not a number"},
		{"active as maybe", schema.UserType, user, `[{"op":"replace","path":"active","value":"maybe"}]`, "invalidValue", "active must be a boolean, not a string"},
		{"active as maybe, path-less", schema.UserType, user, `[{"op":"replace","value":{"active":"maybe"}}]`, "invalidValue", "active must be a boolean"},
		{"emails as a string", schema.UserType, user, `[{"op":"add","path":"emails","value":"a@x"}]`, "invalidValue", "emails must be"},
		{"name as a string", schema.UserType, user, `[{"op":"replace","path":"name","value":"Ada"}]`, "invalidValue", "name must be an object"},
		{"filtered sub-attribute of wrong type", schema.UserType, user, `[{"op":"replace","path":"emails[type eq \"work\"].primary","value":"perhaps"}]`, "invalidValue", "primary must be a boolean"},
		{"filter literal of wrong type for a created element", schema.UserType, plainUser, `[{"op":"add","path":"emails[type eq 5].value","value":"w@x"}]`, "invalidValue", "type must be a string, not a number"},
		{"filter boolean literal that isn't one", schema.UserType, plainUser, `[{"op":"add","path":"emails[primary eq \"yes\"].value","value":"w@x"}]`, "invalidValue", "primary must be a boolean"},
		{"manager as a number", schema.UserType, user, `[{"op":"add","path":"manager","value":7}]`, "invalidValue", "manager must be an object"},
		{"extension as a string", schema.UserType, user, `[{"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User","value":"x"}]`, "invalidValue", "needs an object value"},
		{"path-less add with a string", schema.UserType, user, `[{"op":"add","value":"x"}]`, "invalidValue", "needs an object value"},
		{"path-less add with an array", schema.UserType, user, `[{"op":"add","value":[{"userName":"x"}]}]`, "invalidValue", "needs an object value"},
		{"path-less replace with null", schema.UserType, user, `[{"op":"replace","value":null}]`, "invalidValue", "needs an object value"},
		{"members filter by display", schema.GroupType, group, `[{"op":"remove","path":"members[display eq \"x\"]"}]`, "invalidFilter", ""},
		{"members filter with ne", schema.GroupType, group, `[{"op":"remove","path":"members[value ne \"x\"]"}]`, "invalidFilter", ""},
		{"members filter with and", schema.GroupType, group, `[{"op":"remove","path":"members[value eq \"a\" and value eq \"b\"]"}]`, "invalidFilter", ""},
		{"members filter on add", schema.GroupType, group, `[{"op":"add","path":"members[value eq \"a\"]"}]`, "invalidPath", ""},
		{"members sub-attribute", schema.GroupType, group, `[{"op":"replace","path":"members.value","value":"a"}]`, "invalidPath", ""},
		{"member without value", schema.GroupType, group, `[{"op":"add","path":"members","value":[{"display":"x"}]}]`, "invalidValue", ""},
		{"member value not a string", schema.GroupType, group, `[{"op":"add","path":"members","value":[{"value":7}]}]`, "invalidValue", ""},
		{"member not an object", schema.GroupType, group, `[{"op":"add","path":"members","value":[7]}]`, "invalidValue", ""},
		{"third of three fails", schema.UserType, user, `[
			{"op":"replace","path":"userName","value":"new"},
			{"op":"add","path":"emails","value":[{"value":"n@x"}]},
			{"op":"replace","path":"id","value":"x"}]`, "mutability", "operation 3: "},
		{"third of three fails on a group", schema.GroupType, group, `[
			{"op":"replace","path":"displayName","value":"new"},
			{"op":"add","path":"members","value":[{"value":"u1"}]},
			{"op":"remove","path":"members[display eq \"x\"]"}]`, "invalidFilter", "operation 3: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := doc(t, tc.doc)
			pristine := doc(t, tc.doc)
			got, members, err := Apply(tc.rt, in, parseOps(t, tc.ops))
			if got != nil || members != nil {
				t.Errorf("got %s, %v with the error", asJSON(got), members)
			}
			var se *schema.Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v (%T), want *schema.Error", err, err)
			}
			if se.ScimType != tc.scimType || !strings.Contains(se.Detail, tc.detail) {
				t.Errorf("err = %s %q, want %s containing %q", se.ScimType, se.Detail, tc.scimType, tc.detail)
			}
			if !reflect.DeepEqual(in, pristine) {
				t.Errorf("input document modified: %s", asJSON(in))
			}
		})
	}
}

// primaries counts the elements of doc[attr] with primary true.
func primaries(doc map[string]any, attr string) int {
	n := 0
	list, _ := doc[attr].([]any)
	for _, el := range list {
		if m, _ := el.(map[string]any); m["primary"] == true {
			n++
		}
	}
	return n
}

func TestApplyMultiValued(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		ops  string
		want string // the resulting emails
	}{
		{"add a new primary takes the flag", user, `[{"op":"add","path":"emails","value":[{"value":"n@x","primary":true}]}]`,
			`[{"type":"work","value":"ada@old.com"},{"type":"home","value":"ada@home.com"},{"value":"n@x","primary":true}]`},
		{"add an existing value adds nothing", user, `[{"op":"add","path":"emails","value":[{"type":"work","value":"ada@old.com","primary":true}]}]`,
			`[{"type":"work","value":"ada@old.com","primary":true},{"type":"home","value":"ada@home.com"}]`},
		{"add the same value twice in one list", bareUser, `[{"op":"add","path":"emails","value":[{"value":"a@x"},{"value":"a@x"}]}]`,
			`[{"value":"a@x"}]`},
		{"add the same value in two operations", bareUser, `[{"op":"add","path":"emails","value":[{"value":"a@x"}]},{"op":"Add","path":"emails","value":{"value":"a@x"}}]`,
			`[{"value":"a@x"}]`},
		{"add two primaries keeps one", bareUser, `[{"op":"add","path":"emails","value":[{"value":"a@x","primary":true},{"value":"b@x","primary":"True"}]}]`,
			`[{"value":"a@x"},{"value":"b@x","primary":true}]`},
		{"path-less add de-duplicates too", user, `[{"op":"add","value":{"emails":[{"value":"ada@home.com"},{"value":"n@x"}]}}]`,
			`[{"type":"work","value":"ada@old.com","primary":true},{"type":"home","value":"ada@home.com"},{"value":"n@x"}]`},
		{"replace with two primaries keeps the first", user, `[{"op":"replace","path":"emails","value":[{"value":"a@x","primary":true},{"value":"b@x","primary":true}]}]`,
			`[{"value":"a@x","primary":true},{"value":"b@x"}]`},
		{"filtered replace makes another element primary", user, `[{"op":"replace","path":"emails[type eq \"home\"].primary","value":true}]`,
			`[{"type":"work","value":"ada@old.com"},{"type":"home","value":"ada@home.com","primary":true}]`},
		{"filtered add of an element object with primary", user, `[{"op":"add","path":"emails[type eq \"home\"]","value":{"primary":true}}]`,
			`[{"type":"work","value":"ada@old.com"},{"type":"home","value":"ada@home.com","primary":true}]`},
		{"filtered add creating a primary element", plainUser, `[{"op":"add","path":"emails[type eq \"work\" and primary eq true].value","value":"w@x"}]`,
			`[{"type":"home","value":"bob@home.com"},{"type":"work","primary":true,"value":"w@x"}]`},
		{"unfiltered sub-attribute replace keeps one primary", user, `[{"op":"replace","path":"emails.primary","value":"True"}]`,
			`[{"type":"work","value":"ada@old.com","primary":true},{"type":"home","value":"ada@home.com"}]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := Apply(schema.UserType, doc(t, tc.doc), parseOps(t, tc.ops))
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if want := decode(t, tc.want); !reflect.DeepEqual(got["emails"], want) {
				t.Errorf("emails:\n got %s\nwant %s", asJSON(got["emails"]), asJSON(want))
			}
			if n := primaries(got, "emails"); n > 1 {
				t.Errorf("%d primary emails", n)
			}
		})
	}
}

func TestApplyNilDocument(t *testing.T) {
	got, _, err := Apply(schema.UserType, nil, parseOps(t, `[{"op":"add","path":"userName","value":"u"}]`))
	if err != nil || !reflect.DeepEqual(got, map[string]any{"userName": "u"}) {
		t.Errorf("Apply(nil doc) = %v, %v", got, err)
	}
}
