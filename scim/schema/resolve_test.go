package schema

import (
	"errors"
	"testing"

	"github.com/entrasync/entrasync/scim/filter"
)

const ent = EnterpriseUserURN

func TestResolve(t *testing.T) {
	tests := []struct {
		rt   *ResourceType
		path string
		ext  *Schema
		attr string // "" for a whole extension
		sub  string
		want string // Resolved.Path().String()
	}{
		{UserType, "userName", nil, "userName", "", "userName"},
		{UserType, "USERNAME", nil, "userName", "", "userName"},
		{UserType, "name.givenName", nil, "name", "givenName", "name.givenName"},
		{UserType, "Name.GIVENNAME", nil, "name", "givenName", "name.givenName"},
		{UserType, `emails[type eq "work"].value`, nil, "emails", "value", "emails.value"},
		{UserType, "id", nil, "id", "", "id"},
		{UserType, "externalId", nil, "externalId", "", "externalId"},
		{UserType, "meta.created", nil, "meta", "created", "meta.created"},
		{UserType, "employeeNumber", EnterpriseUser, "employeeNumber", "", ent + ":employeeNumber"},
		{UserType, "manager", EnterpriseUser, "manager", "", ent + ":manager"},
		{UserType, "manager.value", EnterpriseUser, "manager", "value", ent + ":manager.value"},
		{UserType, "urn:ietf:params:scim:schemas:core:2.0:User:userName", nil, "userName", "", "userName"},
		{UserType, "urn:ietf:params:scim:schemas:core:2.0:User:id", nil, "id", "", "id"},
		{UserType, "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName", nil, "name", "familyName", "name.familyName"},
		{UserType, ent + ":employeeNumber", EnterpriseUser, "employeeNumber", "", ent + ":employeeNumber"},
		{UserType, "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:MANAGER.VALUE", EnterpriseUser, "manager", "value", ent + ":manager.value"},
		{UserType, ent, EnterpriseUser, "", "", ent},
		{UserType, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user", EnterpriseUser, "", "", ent},
		{GroupType, "displayName", nil, "displayName", "", "displayName"},
		{GroupType, `members[value eq "x"]`, nil, "members", "", "members"},
		{GroupType, "urn:ietf:params:scim:schemas:core:2.0:Group:members.value", nil, "members", "value", "members.value"},
	}
	for _, tc := range tests {
		t.Run(tc.rt.Name+" "+tc.path, func(t *testing.T) {
			p, err := filter.ParsePath(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			r, err := tc.rt.Resolve(p)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if r.Ext != tc.ext {
				t.Errorf("Ext = %v, want %v", r.Ext, tc.ext)
			}
			if got := name(r.Attr); got != tc.attr {
				t.Errorf("Attr = %q, want %q", got, tc.attr)
			}
			if got := name(r.Sub); got != tc.sub {
				t.Errorf("Sub = %q, want %q", got, tc.sub)
			}
			if got := r.Path().String(); got != tc.want {
				t.Errorf("Path = %q, want %q", got, tc.want)
			}
			want := r.Sub
			if want == nil {
				want = r.Attr
			}
			if r.Target() != want {
				t.Errorf("Target = %v, want %v", r.Target(), want)
			}
		})
	}
}

func name(a *Attribute) string {
	if a == nil {
		return ""
	}
	return a.Name
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		rt       *ResourceType
		path     string
		scimType string // "" for *ErrUnknown
	}{
		{UserType, "shoeSize", ""},
		{UserType, "name.nick", ""},
		{UserType, "urn:ietf:params:scim:schemas:core:2.0:User:employeeNumber", ""},
		{UserType, ent + ":userName", ""},
		{UserType, ent + ":id", ""},
		{UserType, "urn:example:other:2.0:User:userName", ""},
		{GroupType, "employeeNumber", ""},
		{GroupType, ent, ""},
		{UserType, "userName.value", "invalidPath"},
		{UserType, ent + ":employeeNumber.value", "invalidPath"},
		{UserType, `userName[value eq "x"]`, "invalidPath"},
		{UserType, `name[givenName eq "x"]`, "invalidPath"},
		{UserType, `manager[value eq "x"]`, "invalidPath"},
	}
	for _, tc := range tests {
		t.Run(tc.rt.Name+" "+tc.path, func(t *testing.T) {
			p, err := filter.ParsePath(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tc.rt.Resolve(p)
			if tc.scimType == "" {
				var u *ErrUnknown
				if !errors.As(err, &u) {
					t.Fatalf("err = %v (%T), want *ErrUnknown", err, err)
				}
				if u.Path != tc.path {
					t.Errorf("ErrUnknown.Path = %q, want %q", u.Path, tc.path)
				}
				return
			}
			var se *Error
			if !errors.As(err, &se) || se.ScimType != tc.scimType {
				t.Fatalf("err = %#v, want *Error %s", err, tc.scimType)
			}
		})
	}
}

func TestCanonicalFilter(t *testing.T) {
	tests := []struct {
		rt         *ResourceType
		in, want   string
		exactPaths map[string]bool // path as printed -> caseExact
	}{
		{UserType, `USERNAME eq "Ada"`, `userName eq "Ada"`, map[string]bool{"userName": false}},
		{UserType, `externalId eq "x" and id eq "y"`, `externalId eq "x" and id eq "y"`, map[string]bool{"externalId": true, "id": true}},
		{UserType, `emails co "x"`, `emails.value co "x"`, map[string]bool{"emails.value": false}},
		{UserType, `Emails[Type eq "work"].Value eq "a@x"`, `emails[type eq "work"].value eq "a@x"`, nil},
		{UserType, `emails[type eq "work" and primary eq true]`, `emails[type eq "work" and primary eq true]`, nil},
		{UserType, `urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a"`, `userName eq "a"`, nil},
		{UserType, `employeeNumber eq "1"`, ent + `:employeeNumber eq "1"`, map[string]bool{ent + ":employeeNumber": false}},
		{UserType, `urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:MANAGER.value eq "m"`, ent + `:manager.value eq "m"`, nil},
		{UserType, `not (active eq true) or meta.lastModified gt "2020-01-01T00:00:00Z"`, `not (active eq true) or meta.lastModified gt "2020-01-01T00:00:00Z"`, map[string]bool{"meta.location": true, "meta.lastModified": false}},
		{UserType, `name.familyName pr`, `name.familyName pr`, nil},
		{GroupType, `DisplayName eq "Eng"`, `displayName eq "Eng"`, map[string]bool{"displayName": false}},
		{GroupType, `members eq "u1"`, `members.value eq "u1"`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			e, err := filter.Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			before := e.String()
			out, exact, err := tc.rt.CanonicalFilter(e)
			if err != nil {
				t.Fatalf("CanonicalFilter: %v", err)
			}
			if got := out.String(); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			if e.String() != before {
				t.Errorf("input filter changed to %s", e)
			}
			for path, want := range tc.exactPaths {
				p, err := filter.ParsePath(path)
				if err != nil {
					t.Fatal(err)
				}
				if got := exact(p); got != want {
					t.Errorf("caseExact(%s) = %v, want %v", path, got, want)
				}
			}
		})
	}
}

func TestCanonicalFilterErrors(t *testing.T) {
	for _, tc := range []struct {
		rt *ResourceType
		in string
	}{
		{UserType, `shoeSize eq 44`},
		{UserType, `userName eq "a" and shoeSize eq 44`},
		{UserType, `emails[label eq "x"]`},
		{UserType, `emails[type eq "work"].label eq "x"`},
		{UserType, `name eq "Ada"`},
		{UserType, `manager eq "m"`},
		{UserType, `userName.x eq "a"`},
		{UserType, `userName[value eq "x"]`},
		{UserType, ent + ` pr`},
		{GroupType, `userName eq "a"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			e, err := filter.Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			out, exact, err := tc.rt.CanonicalFilter(e)
			var se *Error
			if !errors.As(err, &se) || se.ScimType != "invalidFilter" {
				t.Fatalf("err = %#v, want invalidFilter", err)
			}
			if out != nil || exact != nil {
				t.Errorf("got results with the error")
			}
		})
	}
}
