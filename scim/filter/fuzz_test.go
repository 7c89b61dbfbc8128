package filter

import (
	"errors"
	"reflect"
	"testing"
)

var fuzzSeeds = []string{
	`userName eq "bjensen"`,
	`emails[type eq "work"].value eq "ada@contoso.com"`,
	`emails[type eq "work" and value co "@example.com"]`,
	`userName sw "J" or (active eq false and title pr)`,
	`not (a pr) and (b pr or c pr)`,
	`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m1"`,
	`x eq -1.5e3`,
	`x eq "caf\u00e9 \ud83d\ude00 \" \\"`,
	`(a eq "1")or(b eq "2")`,
	`members[$ref pr]`,
	`a pr or (b pr or c pr)`,
	`userName eq 'x'`,
	`emails[type[x eq "1"] eq "a"]`,
	"x eq \"\x01\"",
}

var fuzzElement = map[string]any{
	"userName": "bjensen",
	"a":        "1",
	"x":        float64(-1500),
	"emails":   []any{map[string]any{"type": "work", "value": "ada@contoso.com"}},
}

func checkError(t *testing.T, in string, err error) {
	t.Helper()
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatalf("%q: error %T %v is not *Error", in, err, err)
	}
	if fe.Pos < 0 || fe.Pos > len(in) || fe.Msg == "" {
		t.Fatalf("%q: bad error %#v", in, fe)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		e, err := Parse(in)
		if err != nil {
			checkError(t, in, err)
			return
		}
		s := e.String()
		if len(s) > maxInputLen {
			return // canonical spacing can push a near-limit filter over the limit
		}
		again, err := Parse(s)
		if err != nil {
			t.Fatalf("%q parsed, but its String() %q did not: %v", in, s, err)
		}
		if !reflect.DeepEqual(e, again) {
			t.Fatalf("%q: String() %q reparsed to a different AST", in, s)
		}
		if s2 := again.String(); s2 != s {
			t.Fatalf("%q: String() not stable: %q then %q", in, s, s2)
		}
		Match(e, fuzzElement, func(string) bool { return len(in)%2 == 0 })
	})
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		`emails[type eq "work"].value`,
		`members[value eq "2819c223"]`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`,
		`name.familyName`,
		`title pr`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := ParsePath(in)
		if err != nil {
			checkError(t, in, err)
			return
		}
		s := p.String()
		if len(s) > maxInputLen {
			return
		}
		again, err := ParsePath(s)
		if err != nil {
			t.Fatalf("%q parsed, but its String() %q did not: %v", in, s, err)
		}
		if !reflect.DeepEqual(p, again) {
			t.Fatalf("%q: String() %q reparsed to a different path", in, s)
		}
	})
}
