package filter

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	email := map[string]any{"type": "work", "value": "Ada@Contoso.com", "primary": true, "display": nil}
	user := map[string]any{
		"userName":    "Bjensen",
		"displayName": "Sales & Ops",
		"active":      true,
		"title":       "",
		"nickName":    nil,
		"count":       float64(42),
		"big":         json.Number("9007199254740993"),
		"score":       json.Number("1.5"),
		"level":       3,
		"tags":        []any{},
		"roles":       []any{"Admin", "dev"},
		"meta":        map[string]any{"lastModified": "2011-05-13T04:42:34Z"},
		"name":        map[string]any{"givenName": "Ada", "familyName": "O'Malley"},
		"emails": []any{
			map[string]any{"type": "home", "value": "ada@home.example"},
			map[string]any{"type": "work", "value": "ada@contoso.com", "primary": true},
		},
		"members": []any{map[string]any{"value": "u1", "$ref": "https://x/Users/u1"}},
		enterpriseURN: map[string]any{
			"employeeNumber": "42",
			"manager":        map[string]any{"value": "m1"},
		},
	}
	tests := []struct {
		filter string
		el     map[string]any
		want   bool
	}{
		// PATCH value-filter elements.
		{`type eq "work"`, email, true},
		{`type eq "WORK"`, email, true},
		{`Type eq "work"`, email, true},
		{`type eq "home"`, email, false},
		{`type ne "home"`, email, true},
		{`type ne "work"`, email, false},
		{`value co "@contoso"`, email, true},
		{`value co "@CONTOSO"`, email, true},
		{`value sw "ada@"`, email, true},
		{`value ew ".COM"`, email, true},
		{`value ew ".org"`, email, false},
		{`primary eq true`, email, true},
		{`primary eq false`, email, false},
		{`primary ne false`, email, true},
		{`primary eq "true"`, email, false},
		{`type eq "work" and value co "@contoso.com"`, email, true},
		{`type eq "home" or primary eq true`, email, true},
		{`not (type eq "work")`, email, false},
		{`display eq null`, email, true},
		{`display pr`, email, false},
		{`display ne null`, email, false},
		{`absent eq null`, email, true},
		{`absent ne null`, email, false},
		{`absent eq "x"`, email, false},
		{`absent ne "x"`, email, true},
		{`absent co "x"`, email, false},
		{`absent pr`, email, false},
		{`absent gt "a"`, email, false},
		{`type eq null`, email, false},
		{`type ne null`, email, true},
		{`type gt "w"`, email, true},
		{`type gt "X"`, email, false}, // folded: "work" < "x"
		{`type lt "x"`, email, true},
		{`type le "WORK"`, email, true},
		{`type ge "work"`, email, true},
		{`type gt "work"`, email, false},
		{`type eq 1`, email, false},
		// Whole resources.
		{`userName eq "bjensen"`, user, true},
		{`USERNAME eq "bjensen"`, user, true},
		{`displayName eq "sales & ops"`, user, true},
		{`active eq true`, user, true},
		{`title pr`, user, false},
		{`title eq ""`, user, true},
		{`nickName pr`, user, false},
		{`tags pr`, user, false},
		{`tags eq null`, user, true},
		{`roles pr`, user, true},
		{`roles eq "admin"`, user, true},
		{`roles eq "ops"`, user, false},
		{`roles ne "ops"`, user, true},
		{`count eq 42`, user, true},
		{`count eq 42.0`, user, true},
		{`count eq 4.2e1`, user, true},
		{`count gt 41.5`, user, true},
		{`count ge 42`, user, true},
		{`count lt 42`, user, false},
		{`count le 42`, user, true},
		{`count eq "42"`, user, false},
		{`count co "4"`, user, false},
		{`big eq 9007199254740993`, user, true},
		{`big eq 9007199254740992`, user, false},
		{`big gt 9007199254740992`, user, true},
		{`score eq 1.5`, user, true},
		{`score lt 2`, user, true},
		{`level eq 3`, user, true},
		{`level gt 1e400`, user, false},
		{`level gt -1e400`, user, true},
		{`meta.lastModified gt "2011-05-13T04:42:33Z"`, user, true},
		{`meta.lastModified lt "2011-05-13T04:42:33Z"`, user, false},
		{`name.familyName co "o'malley"`, user, true},
		{`name.middleName pr`, user, false},
		{`name pr`, user, true},
		{`emails[type eq "work"].value eq "ada@contoso.com"`, user, true},
		{`emails[type eq "work"].value eq "ada@home.example"`, user, false},
		{`emails[type eq "home"].value eq "ada@home.example"`, user, true},
		{`emails[type eq "work" and value co "@contoso.com"]`, user, true},
		{`emails[type eq "other"]`, user, false},
		{`emails[type eq "other"].value eq null`, user, true},
		{`emails[primary eq true].value pr`, user, true},
		{`emails.value co "@home"`, user, true},
		{`emails.value eq "nobody@x"`, user, false},
		{`emails co "contoso"`, user, true},
		{`members eq "u1"`, user, true},
		{`members eq "u2"`, user, false},
		{`members[value eq "u1"]`, user, true},
		{`members[$REF sw "https://"]`, user, true},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "42"`, user, true},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m1"`, user, true},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:manager eq "M1"`, user, true},
		{`urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bjensen"`, user, true},
		{`urn:ietf:params:scim:schemas:core:2.0:User:name.givenName eq "ada"`, user, true},
		{`userName sw "J" or (active eq false and title pr)`, user, false},
		{`userName sw "B" and not (active eq false)`, user, true},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			e, err := Parse(tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if got := Match(e, tt.el, nil); got != tt.want {
				t.Errorf("Match(%s) = %v, want %v", tt.filter, got, tt.want)
			}
		})
	}
}

func TestMatchCaseExact(t *testing.T) {
	user := map[string]any{
		"id":     "AbC",
		"emails": []any{map[string]any{"type": "Work", "value": "Ada@Contoso.com"}},
		"name":   map[string]any{"familyName": "Lovelace"},
		"members": []any{
			map[string]any{"value": "U1"},
		},
	}
	var asked []string
	exact := func(name string) bool {
		asked = append(asked, name)
		switch strings.ToLower(name) {
		case "id", "emails.type", "name.familyname", "members.value":
			return true
		}
		return false
	}
	tests := []struct {
		filter string
		want   bool
		asked  []string
	}{
		{`id eq "abc"`, false, []string{"id"}},
		{`id eq "AbC"`, true, []string{"id"}},
		{`id ne "abc"`, true, []string{"id"}},
		{`id sw "Ab"`, true, []string{"id"}},
		{`id sw "ab"`, false, []string{"id"}},
		{`id gt "ABC"`, true, []string{"id"}}, // exact: 'b' > 'B'
		{`emails[type eq "work"].value eq "ada@contoso.com"`, false, []string{"emails.type"}},
		{`emails[type eq "Work"].value eq "ada@contoso.com"`, true, []string{"emails.type", "emails.value"}},
		{`name.familyName co "love"`, false, []string{"name.familyName"}},
		{`members eq "u1"`, false, []string{"members.value"}},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			asked = nil
			e, err := Parse(tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if got := Match(e, user, exact); got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
			if strings.Join(asked, ",") != strings.Join(tt.asked, ",") {
				t.Errorf("caseExact asked %q, want %q", asked, tt.asked)
			}
		})
	}
}

func TestMatchOddInputs(t *testing.T) {
	el := map[string]any{"a": "x", "n": float64(1)}
	if Match(nil, el, nil) {
		t.Error("nil Expr matched")
	}
	if Match((*Compare)(nil), el, nil) {
		t.Error("nil *Compare matched")
	}
	if Match(&ValuePath{}, el, nil) {
		t.Error("ValuePath without filter matched")
	}
	if !Match(cmp(attr("a"), Ne, Value{}), el, nil) {
		t.Error("zero Value: ne should be the negation of a non-matching eq")
	}
	if Match(cmp(attr("n"), Eq, num("not a number")), el, nil) {
		t.Error("malformed hand-built number matched")
	}
	if Match(cmp(attr("a"), Co, num("1")), el, nil) || Match(cmp(attr("n"), Co, num("1")), el, nil) {
		t.Error("co with a number matched")
	}
	if Match(cmp(attr("a"), Gt, boolean(true)), map[string]any{"a": true}, nil) {
		t.Error("gt on bool matched")
	}
	if !Match(cmp(attr("A"), Eq, str("x")), map[string]any{"a": "y", "A": "x"}, nil) {
		t.Error("exact key should win over a case-insensitive one")
	}
	if Match(cmp(attr("f"), Eq, num("1")), map[string]any{"f": json.Number("NaN")}, nil) {
		t.Error("NaN matched")
	}
	nums := []any{int8(1), int16(1), int32(1), int64(1), uint(1), uint8(1), uint16(1), uint32(1), uint64(1), float32(1)}
	for _, n := range nums {
		if !Match(cmp(attr("n"), Eq, num("1")), map[string]any{"n": n}, nil) {
			t.Errorf("%T(1) eq 1 = false", n)
		}
	}
	if !Match(cmp(attr("n"), Gt, num("1")), map[string]any{"n": uint64(1 << 63)}, nil) {
		t.Error("uint64 above MaxInt64")
	}
}

func TestFold(t *testing.T) {
	pairs := [][2]string{{"ABC", "abc"}, {"K", "\u212a"}, {"ſ", "S"}, {"Straße", "STRAßE"}, {"ÉCOLE", "école"}}
	for _, p := range pairs {
		if fold(p[0]) != fold(p[1]) {
			t.Errorf("fold(%q) = %q, fold(%q) = %q", p[0], fold(p[0]), p[1], fold(p[1]))
		}
		if !strings.EqualFold(p[0], p[1]) {
			t.Errorf("test pair %q not EqualFold", p)
		}
	}
	if fold("Az_") != "az_" {
		t.Errorf("fold(Az_) = %q", fold("Az_"))
	}
}
