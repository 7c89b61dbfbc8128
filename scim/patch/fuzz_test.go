package patch

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/scim/schema"
)

var fuzzSeeds = []string{
	entraUserPatch,
	flagPatch,
	`[]`,
	`[{"op":"replace","value":{"active":false}}]`,
	`[{"op":"Replace","path":"active","value":"False"}]`,
	`[{"op":"Add","path":"manager","value":[{"$ref":"https://host/Users/m1","value":"m1"}]}]`,
	`[{"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":""}]`,
	`[{"op":"replace","value":{"id":"g","displayName":"new"}}]`,
	`[{"op":"Add","path":"members","value":[{"$ref":null,"value":"f6"}]},{"op":"Remove","path":"members","value":[{"value":"a7"}]}]`,
	`[{"op":"remove","path":"members[value eq \"a\" or value eq \"b\"]"}]`,
	`[{"op":"remove","path":"emails[type eq \"home\"]"},{"op":"add","path":"emails","value":[{"value":"x@y","primary":true}]}]`,
	`[{"op":"replace","path":"emails[type eq \"home\"].primary","value":true}]`,
	`[{"op":"replace","path":"emails.primary","value":true}]`,
	`[{"op":"add","path":"phoneNumbers[type eq \"work\" and primary eq true].value","value":"1"}]`,
	`[{"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User","value":{"manager":"m","department":null}}]`,
	`[{"op":"remove","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}]`,
	`[{"op":"replace","path":"name","value":{"givenName":"A"}},{"op":"remove","path":"name.familyName"}]`,
	`[{"op":"replace","path":"id","value":"x"}]`,
	`[{"op":"Move"}]`,
	`[{"op":"remove"}]`,
	`[{"op":"replace","path":"emails[type eq","value":1}]`,
	`[{"op":"add","path":"emails[type eq 5].value","value":"x"}]`,
	`[{"op":"add","path":"emails[primary eq \"yes\"].value","value":"x"}]`,
}

// fuzzUser is the fixed document FuzzApply patches: every kind of
// attribute, including an extension and a multi-valued one with a primary.
const fuzzUser = `{"userName":"ada","externalId":"e1","active":true,"displayName":"Ada","title":"Eng",
	"name":{"givenName":"Ada","familyName":"Lovelace","formatted":"Ada Lovelace"},
	"emails":[{"type":"work","value":"ada@old.com","primary":true},{"type":"home","value":"ada@home.com"}],
	"phoneNumbers":[{"type":"mobile","value":"+1 555"}],
	"addresses":[{"type":"work","locality":"London","primary":true}],
	"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"1","department":"R&D","manager":{"value":"m1"}}}`

func FuzzApply(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	docs := []struct {
		rt  *schema.ResourceType
		doc string
	}{{schema.UserType, fuzzUser}, {schema.GroupType, group}}
	f.Fuzz(func(t *testing.T, in string) {
		d := json.NewDecoder(strings.NewReader(in))
		d.UseNumber()
		var list []any
		if d.Decode(&list) != nil {
			return
		}
		ops, ok := toOps(list)
		if !ok {
			return
		}
		for _, c := range docs {
			cur := doc(t, c.doc)
			pristine := doc(t, c.doc)
			out, members, err := Apply(c.rt, cur, ops)
			if !reflect.DeepEqual(cur, pristine) {
				t.Fatalf("%s: input document modified: %s", c.rt.Name, asJSON(cur))
			}
			if err != nil {
				var se *schema.Error
				if !errors.As(err, &se) || se.ScimType == "" || se.Detail == "" {
					t.Fatalf("%s: err = %#v, want a *schema.Error with ScimType and Detail", c.rt.Name, err)
				}
				if out != nil || members != nil {
					t.Fatalf("%s: results returned with error %v", c.rt.Name, err)
				}
				continue
			}
			// What PATCH stores must be what POST would have stored.
			norm, err := c.rt.Normalize(out)
			if err != nil {
				t.Fatalf("%s: result %s does not normalise: %v", c.rt.Name, asJSON(out), err)
			}
			if !reflect.DeepEqual(norm, out) {
				t.Fatalf("%s: result is not canonical:\n got %s\nnorm %s", c.rt.Name, asJSON(out), asJSON(norm))
			}
			for k := range out {
				if n := primaries(out, k); n > 1 {
					t.Fatalf("%s: %d primary %s in %s", c.rt.Name, n, k, asJSON(out))
				}
			}
		}
	})
}
