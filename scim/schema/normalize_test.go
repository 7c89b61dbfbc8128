package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// doc decodes a JSON object as the HTTP layer does (UseNumber).
func doc(t testing.TB, s string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return m
}

func asJSON(v any) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	_ = e.Encode(v)
	return strings.TrimSpace(b.String())
}

const (
	entraUserPOST = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User",
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
	 "externalId":"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
	 "userName":"Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
	 "active":true,
	 "emails":[{"primary":true,"type":"work","value":"Test_User_fd0e@testuser.com"}],
	 "meta":{"resourceType":"User"},
	 "name":{"formatted":"givenName familyName","familyName":"familyName","givenName":"givenName"},
	 "roles":[]}`
	entraUserPOSTWant = `{"externalId":"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
	 "userName":"Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
	 "active":true,
	 "emails":[{"primary":true,"type":"work","value":"Test_User_fd0e@testuser.com"}],
	 "name":{"formatted":"givenName familyName","familyName":"familyName","givenName":"givenName"}}`
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		rt   *ResourceType
		in   string
		want string
	}{
		{"Entra POST /Users", UserType, entraUserPOST, entraUserPOSTWant},
		{"Entra POST /Users, older tenant with nulls and misspelled URN", UserType, `{
			"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
			"externalId":"e1","userName":"u1","active":"True",
			"addresses":null,"phoneNumbers":null,"title":null,"manager":null,
			"emails":[{"primary":"True","type":"work","value":"u1@x"}],
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7","manager":null}}`,
			`{"externalId":"e1","userName":"u1","active":true,
			  "emails":[{"primary":true,"type":"work","value":"u1@x"}],
			  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7"}}`},
		{"Entra POST /Groups", GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group",
			"http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
			"externalId":"8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159","displayName":"displayName",
			"meta":{"resourceType":"Group"}}`,
			`{"externalId":"8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159","displayName":"displayName"}`},
		{"Okta POST /Users", UserType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
			"userName":"jane@example.com","name":{"givenName":"Jane","familyName":"Doe"},
			"emails":[{"primary":true,"value":"jane@example.com","type":"work"}],
			"displayName":"Jane Doe","locale":"en-US","externalId":"00u1","groups":[],
			"password":"s3cret!","active":true}`,
			`{"userName":"jane@example.com","name":{"givenName":"Jane","familyName":"Doe"},
			  "emails":[{"primary":true,"value":"jane@example.com","type":"work"}],
			  "displayName":"Jane Doe","locale":"en-US","externalId":"00u1","active":true}`},
		{"Okta POST /Groups with empty members", GroupType,
			`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Eng","members":[]}`,
			`{"displayName":"Eng"}`},
		{"group members kept, read-only display dropped", GroupType,
			`{"displayName":"Eng","members":[{"value":"u1","display":"Jane","$ref":null}]}`,
			`{"displayName":"Eng","members":[{"value":"u1"}]}`},
		{"names case-insensitive, schema case out", UserType,
			`{"USERNAME":"u","Name":{"GivenName":"Ada","FAMILYNAME":"L"},"EMAILS":[{"VALUE":"a@x","Type":"work"}],"ExternalID":"e"}`,
			`{"userName":"u","name":{"givenName":"Ada","familyName":"L"},"emails":[{"value":"a@x","type":"work"}],"externalId":"e"}`},
		{"unknown attributes and sub-attributes dropped", UserType,
			`{"userName":"u","shoeSize":44,"name":{"givenName":"A","nick":"x"},"emails":[{"value":"a@x","label":"l"}],
			  "urn:example:custom:2.0:User:badge":"b","urn:example:custom:2.0:User":{"badge":"b"}}`,
			`{"userName":"u","name":{"givenName":"A"},"emails":[{"value":"a@x"}]}`},
		{"read-only and write-only input ignored", UserType,
			`{"userName":"u","id":"abc","meta":{"created":"2020-01-01T00:00:00Z"},"groups":[{"value":"g1"}],"password":"p",
			  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m","displayName":"Boss"}}}`,
			`{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m"}}}`},
		{"null, empty arrays and empty objects mean not set", UserType,
			`{"userName":"u","displayName":null,"emails":[],"name":{},"roles":[null],"addresses":[{}],
			  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":null}`,
			`{"userName":"u"}`},
		{"URN-qualified keys at top level", UserType,
			`{"urn:ietf:params:scim:schemas:core:2.0:User:userName":"u",
			  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"701984",
			  "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:Department":"R&D"}`,
			`{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"701984","department":"R&D"}}`},
		{"extension object and URN-qualified key merge", UserType,
			`{"userName":"u",
			  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"D"},
			  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"1"}`,
			`{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"D","employeeNumber":"1"}}`},
		{"extension key in another case", UserType,
			`{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:user":{"EmployeeNumber":"9"}}`,
			`{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"9"}}`},
		{"manager as a bare id", UserType,
			`{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager":"m1"}`,
			`{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m1"}}}`},
		{"manager as Entra's one-element list", UserType,
			`{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":[{"$ref":"https://h/Users/m1","value":"m1"}]}}`,
			`{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m1"}}}`},
		{"manager empty string means none", UserType,
			`{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":""}}`,
			`{"userName":"u"}`},
		{"a single object where a list is expected", UserType,
			`{"userName":"u","emails":{"value":"a@x"}}`,
			`{"userName":"u","emails":[{"value":"a@x"}]}`},
	}
	for _, active := range []struct{ in, want string }{{`"True"`, "true"}, {`"False"`, "false"}, {`"false"`, "false"}, {`" TRUE "`, "true"}, {"true", "true"}, {"false", "false"}} {
		tests = append(tests, struct {
			name string
			rt   *ResourceType
			in   string
			want string
		}{"active " + active.in, UserType, `{"userName":"u","active":` + active.in + `}`, `{"userName":"u","active":` + active.want + `}`})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := doc(t, tc.in)
			before := asJSON(in)
			got, err := tc.rt.Normalize(in)
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if want := doc(t, tc.want); !reflect.DeepEqual(got, want) {
				t.Errorf("Normalize:\n got %s\nwant %s", asJSON(got), asJSON(want))
			}
			if after := asJSON(in); after != before {
				t.Errorf("input modified:\nbefore %s\n after %s", before, after)
			}
		})
	}
}

// Map order must not decide which of two spellings of the same extension
// attribute wins.
func TestNormalizeDeterministic(t *testing.T) {
	in := `{"userName":"u",
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"D","employeeNumber":"0"},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"1",
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter":"C"}`
	want := asJSON(doc(t, `{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"costCenter":"C","department":"D","employeeNumber":"1"}}`))
	for i := 0; i < 50; i++ {
		got, err := UserType.Normalize(doc(t, in))
		if err != nil {
			t.Fatal(err)
		}
		if asJSON(got) != want {
			t.Fatalf("run %d:\n got %s\nwant %s", i, asJSON(got), want)
		}
	}
}

func TestNormalizeErrors(t *testing.T) {
	tests := []struct {
		name   string
		rt     *ResourceType
		in     string
		detail string // must appear in Detail
	}{
		{"userName as number", UserType, `{"userName":42}`, "userName must be a string, not a number"},
		{"active as maybe", UserType, `{"userName":"u","active":"maybe"}`, "active must be a boolean, not a string"},
		{"active as number", UserType, `{"userName":"u","active":1}`, "active must be a boolean"},
		{"emails as a string", UserType, `{"userName":"u","emails":"a@x"}`, "emails must be"},
		{"emails element as a string", UserType, `{"userName":"u","emails":["a@x"]}`, "emails must be"},
		{"emails nested array", UserType, `{"userName":"u","emails":[[{"value":"a@x"}]]}`, "emails must be"},
		{"name as a string", UserType, `{"userName":"u","name":"Ada"}`, "name must be an object, not a string"},
		{"sub-attribute of wrong type", UserType, `{"userName":"u","name":{"givenName":true}}`, "givenName must be a string, not a boolean"},
		{"primary as a string", UserType, `{"userName":"u","emails":[{"value":"a","primary":"yes"}]}`, "primary must be a boolean"},
		{"extension not an object", UserType, `{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":"x"}`, "enterprise:2.0:User must be an object"},
		{"extension attribute wrong type", UserType, `{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":7}}`, "employeeNumber must be a string, not a number"},
		{"manager as a number", UserType, `{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager":7}`, "manager must be an object"},
		{"schemas not an array", UserType, `{"userName":"u","schemas":"urn:ietf:params:scim:schemas:core:2.0:User"}`, "schemas must be an array"},
		{"missing userName", UserType, `{"displayName":"x"}`, "userName is required"},
		{"null userName", UserType, `{"userName":null}`, "userName is required"},
		{"blank userName", UserType, `{"userName":"  "}`, "userName is required"},
		{"missing displayName", GroupType, `{"externalId":"e"}`, "displayName is required"},
		{"empty displayName", GroupType, `{"displayName":""}`, "displayName is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.rt.Normalize(doc(t, tc.in))
			if got != nil {
				t.Errorf("got a document %s with the error", asJSON(got))
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v (%T), want *schema.Error", err, err)
			}
			if se.ScimType != "invalidValue" || !strings.Contains(se.Detail, tc.detail) {
				t.Errorf("err = %q %q, want invalidValue containing %q", se.ScimType, se.Detail, tc.detail)
			}
		})
	}
}

func TestValue(t *testing.T) {
	created := Common("meta").Sub("created")
	integer := &Attribute{Name: "n", Type: Integer}
	decimal := &Attribute{Name: "d", Type: Decimal}
	tests := []struct {
		name   string
		a      *Attribute
		in     any
		want   any
		ok     bool
		detail string // error expected when set
	}{
		{"dateTime", created, "2011-05-13T04:42:34Z", "2011-05-13T04:42:34Z", true, ""},
		{"dateTime with fraction and offset", created, "2011-05-13T04:42:34.5+02:00", "2011-05-13T04:42:34.5+02:00", true, ""},
		{"dateTime that isn't", created, "yesterday", nil, false, `created must be an xsd:dateTime such as 2011-05-13T04:42:34Z, not "yesterday"`},
		{"dateTime as number", created, json.Number("1"), nil, false, "created must be an xsd:dateTime string, not a number"},
		{"null", created, nil, nil, false, ""},
		{"integer", integer, json.Number("42"), json.Number("42"), true, ""},
		{"integer from float64", integer, float64(3), json.Number("3"), true, ""},
		{"integer with fraction", integer, json.Number("4.5"), nil, false, "n must be an integer, not a number"},
		{"integer as string", integer, "4", nil, false, "n must be a number, not a string"},
		{"decimal", decimal, json.Number("4.5"), json.Number("4.5"), true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := Value(tc.a, tc.in)
			if tc.detail != "" {
				var se *Error
				if !errors.As(err, &se) || se.ScimType != "invalidValue" || se.Detail != tc.detail {
					t.Fatalf("err = %#v, want invalidValue %q", err, tc.detail)
				}
				return
			}
			if err != nil || ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Value = %#v, %v, %v; want %#v, %v, nil", got, ok, err, tc.want, tc.ok)
			}
		})
	}
}
