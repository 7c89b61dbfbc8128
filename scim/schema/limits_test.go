package schema

import (
	"strings"
	"testing"

	"github.com/entrasync/entrasync/scim/filter"
)

func TestLimitsCheck(t *testing.T) {
	lim := Limits{MaxValues: 2, MaxValueLength: 10, MaxDocumentSize: 200}
	many := []any{map[string]any{"value": "a"}, map[string]any{"value": "b"}, map[string]any{"value": "c"}}
	tests := []struct {
		name string
		rt   *ResourceType
		doc  map[string]any
		want string // in the detail; "" for none
	}{
		{"within", UserType, map[string]any{"userName": "ada", "emails": many[:2]}, ""},
		{"values", UserType, map[string]any{"userName": "ada", "emails": many}, "emails has 3 values, over the limit of 2 values per attribute (the max_values setting raises it)"},
		{"length", UserType, map[string]any{"userName": "ada", "title": "0123456789x"}, "title is 11 bytes long, over the limit of 10 bytes per value (the max_value_length setting raises it)"},
		{"length in element", UserType, map[string]any{"userName": "ada", "emails": []any{map[string]any{"value": "0123456789x"}}}, "emails.value is 11 bytes long"},
		{"length in extension", UserType, map[string]any{"userName": "ada", EnterpriseUserURN: map[string]any{"manager": map[string]any{"value": "0123456789x"}}}, EnterpriseUserURN + ":manager.value is 11 bytes long"},
		{"size", UserType, map[string]any{"userName": "ada", "title": "0123456789", "emails": []any{
			map[string]any{"value": "0123456789", "display": "0123456789", "type": "0123456789"},
			map[string]any{"value": "0123456789", "display": "0123456789", "type": "0123456789"}},
			"addresses": []any{map[string]any{"formatted": "0123456789", "locality": "0123456789", "region": "0123456789", "country": "0123456789"}}},
			"over the limit of 200 bytes per resource (its largest attribute is emails"},
		// A group's members live in their own table.
		{"group members", GroupType, map[string]any{"displayName": "g", "members": []any{many, many, many, strings.Repeat("m", 300)}}, ""},
		{"group displayName", GroupType, map[string]any{"displayName": "0123456789x"}, "displayName is 11 bytes long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := lim.Check(tc.rt, tc.doc)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			se, ok := err.(*Error)
			if !ok || se.ScimType != "invalidValue" || !strings.Contains(se.Detail, tc.want) {
				t.Fatalf("error %v, want invalidValue with %q", err, tc.want)
			}
		})
	}
	// The zero Limits limit nothing.
	if err := (Limits{}).Check(UserType, map[string]any{"title": strings.Repeat("t", 1<<20), "emails": make([]any, 10000)}); err != nil {
		t.Fatal(err)
	}
}

func TestFilterTypes(t *testing.T) {
	for _, tc := range []struct {
		filter string
		ok     bool
	}{
		{`active eq true`, true},
		{`active eq "False"`, true},
		{`active eq "yes"`, false},
		{`active eq 1`, false},
		{`active gt true`, false},
		{`active co "t"`, false},
		{`active pr`, true},
		{`meta.lastModified gt "2011-05-13T04:42:34Z"`, true},
		{`meta.lastModified gt 5`, false},
		{`meta.lastModified gt "soon"`, false},
		{`meta.lastModified sw "2011"`, false},
		{`userName eq "ada"`, true},
		{`userName eq 5`, false},
		{`userName eq null`, true},
		{`userName lt null`, false},
		{`emails co "x"`, true},
		{`emails eq 5`, false},
		{`emails[primary eq "True"]`, true},
		{`emails[primary eq 1]`, false},
		{`emails[type eq "work" and value eq false]`, false},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "42"`, true},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq 42`, false},
	} {
		e, err := filter.Parse(tc.filter)
		if err != nil {
			if tc.ok {
				t.Errorf("%s: %v", tc.filter, err)
			}
			continue // the parser refuses it already (invalidFilter too)
		}
		_, _, err = UserType.CanonicalFilter(e)
		if tc.ok != (err == nil) {
			t.Errorf("%s: error %v", tc.filter, err)
		}
		if se, isSE := err.(*Error); err != nil && (!isSE || se.ScimType != "invalidFilter") {
			t.Errorf("%s: %v is not invalidFilter", tc.filter, err)
		}
	}
}
