package filter

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func attr(name string) Path   { return Path{Attr: name} }
func sub(name, s string) Path { return Path{Attr: name, Sub: s} }
func str(s string) Value      { return Value{Kind: String, Str: s} }
func num(s string) Value      { return Value{Kind: Number, Num: s} }
func boolean(b bool) Value    { return Value{Kind: Bool, Bool: b} }

func cmp(p Path, op Op, v Value) *Compare { return &Compare{Path: p, Op: op, Value: v} }
func pr(p Path) *Compare                  { return &Compare{Path: p, Op: Pr} }
func and(l, r Expr) *And                  { return &And{Left: l, Right: r} }
func or(l, r Expr) *Or                    { return &Or{Left: l, Right: r} }
func not(x Expr) *Not                     { return &Not{X: x} }

const (
	enterpriseURN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	coreUserURN   = "urn:ietf:params:scim:schemas:core:2.0:User"
)

func TestParse(t *testing.T) {
	workType := cmp(attr("type"), Eq, str("work"))
	tests := []struct {
		in   string
		want Expr
		// canon is the expected String(); empty means "same as in".
		canon string
	}{
		{`userName eq "bjensen"`, cmp(attr("userName"), Eq, str("bjensen")), ""},
		{`userName Eq "x"`, cmp(attr("userName"), Eq, str("x")), `userName eq "x"`},
		{`userName EQ "x"`, cmp(attr("userName"), Eq, str("x")), `userName eq "x"`},
		{`externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"`, cmp(attr("externalId"), Eq, str("0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef")), ""},
		{`displayName eq "Sales & Ops"`, cmp(attr("displayName"), Eq, str("Sales & Ops")), ""},
		{`id eq "abc"`, cmp(attr("id"), Eq, str("abc")), ""},
		{
			`emails[type eq "work"].value eq "a@b.com"`,
			cmp(Path{Attr: "emails", Filter: workType, Sub: "value"}, Eq, str("a@b.com")), "",
		},
		{
			`emails[type eq "work" and value co "@example.com"]`,
			&ValuePath{Path: Path{Attr: "emails", Filter: and(workType, cmp(attr("value"), Co, str("@example.com")))}}, "",
		},
		{
			`userName eq "a" and active eq true`,
			and(cmp(attr("userName"), Eq, str("a")), cmp(attr("active"), Eq, boolean(true))), "",
		},
		{`title pr`, pr(attr("title")), ""},
		{`title PR`, pr(attr("title")), `title pr`},
		{`not (userName eq "x")`, not(cmp(attr("userName"), Eq, str("x"))), ""},
		{`NOT(userName eq "x")`, not(cmp(attr("userName"), Eq, str("x"))), `not (userName eq "x")`},
		{`meta.lastModified gt "2011-05-13T04:42:34Z"`, cmp(sub("meta", "lastModified"), Gt, str("2011-05-13T04:42:34Z")), ""},
		{`name.familyName co "O'Malley"`, cmp(sub("name", "familyName"), Co, str("O'Malley")), ""},
		{
			`userName sw "J" or (active eq false and title pr)`,
			or(cmp(attr("userName"), Sw, str("J")), and(cmp(attr("active"), Eq, boolean(false)), pr(attr("title")))),
			`userName sw "J" or active eq false and title pr`,
		},
		{
			`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "42"`,
			cmp(Path{URN: enterpriseURN, Attr: "employeeNumber"}, Eq, str("42")), "",
		},
		{
			`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m1"`,
			cmp(Path{URN: enterpriseURN, Attr: "manager", Sub: "value"}, Eq, str("m1")), "",
		},
		{
			`urn:ietf:params:scim:schemas:core:2.0:User:name.givenName sw "A"`,
			cmp(Path{URN: coreUserURN, Attr: "name", Sub: "givenName"}, Sw, str("A")), "",
		},
		{`members[value eq "u1"]`, &ValuePath{Path: Path{Attr: "members", Filter: cmp(attr("value"), Eq, str("u1"))}}, ""},
		{`x eq 10`, cmp(attr("x"), Eq, num("10")), ""},
		{`x eq -1.5e3`, cmp(attr("x"), Eq, num("-1.5e3")), ""},
		{`x ge 0`, cmp(attr("x"), Ge, num("0")), ""},
		{`x lt 1E+2`, cmp(attr("x"), Lt, num("1E+2")), ""},
		{`x eq null`, cmp(attr("x"), Eq, Value{Kind: Null}), ""},
		{`x ne NULL`, cmp(attr("x"), Ne, Value{Kind: Null}), `x ne null`},
		{`x eq True`, cmp(attr("x"), Eq, boolean(true)), `x eq true`},
		{`x eq "say \"hi\""`, cmp(attr("x"), Eq, str(`say "hi"`)), ""},
		{`x eq "caf\u00e9"`, cmp(attr("x"), Eq, str("café")), `x eq "café"`},
		{`x eq "\ud83d\ude00 \/ \\ \n\t\b\f\r"`, cmp(attr("x"), Eq, str("😀 / \\ \n\t\b\f\r")), `x eq "😀 / \\ \n\t\b\f\r"`},
		{`x eq "\ud83d"`, cmp(attr("x"), Eq, str("\uFFFD")), `x eq "` + "\uFFFD" + `"`},
		{`x eq "\u0001"`, cmp(attr("x"), Eq, str("\x01")), ""},
		{`x eq ""`, cmp(attr("x"), Eq, str("")), ""},
		{
			`(a eq "1")or(b eq "2")`,
			or(cmp(attr("a"), Eq, str("1")), cmp(attr("b"), Eq, str("2"))),
			`a eq "1" or b eq "2"`,
		},
		{
			"a eq \"1\"\tand\t\tb pr",
			and(cmp(attr("a"), Eq, str("1")), pr(attr("b"))),
			`a eq "1" and b pr`,
		},
		{`  a pr  `, pr(attr("a")), `a pr`},
		{`emails[type eq "work"]`, &ValuePath{Path: Path{Attr: "emails", Filter: workType}}, ""},
		{
			`emails[not (type eq "work") or (primary eq true)].value pr`,
			pr(Path{Attr: "emails", Filter: or(not(workType), cmp(attr("primary"), Eq, boolean(true))), Sub: "value"}),
			`emails[not (type eq "work") or primary eq true].value pr`,
		},
		{`members[$ref pr]`, &ValuePath{Path: Path{Attr: "members", Filter: pr(attr("$ref"))}}, ""},
		{`emails.value ew ".com"`, cmp(sub("emails", "value"), Ew, str(".com")), ""},
		{`a-b_c1 le "z"`, cmp(attr("a-b_c1"), Le, str("z")), ""},
		// Precedence and associativity.
		{
			`a eq "1" or b eq "2" and c eq "3"`,
			or(cmp(attr("a"), Eq, str("1")), and(cmp(attr("b"), Eq, str("2")), cmp(attr("c"), Eq, str("3")))), "",
		},
		{
			`a eq "1" and b eq "2" or c eq "3"`,
			or(and(cmp(attr("a"), Eq, str("1")), cmp(attr("b"), Eq, str("2"))), cmp(attr("c"), Eq, str("3"))), "",
		},
		{`a pr and b pr and c pr`, and(and(pr(attr("a")), pr(attr("b"))), pr(attr("c"))), ""},
		{`a pr or b pr or c pr`, or(or(pr(attr("a")), pr(attr("b"))), pr(attr("c"))), ""},
		{`a pr and (b pr and c pr)`, and(pr(attr("a")), and(pr(attr("b")), pr(attr("c")))), ""},
		{`a pr or (b pr or c pr)`, or(pr(attr("a")), or(pr(attr("b")), pr(attr("c")))), ""},
		{`(a pr or b pr) and c pr`, and(or(pr(attr("a")), pr(attr("b"))), pr(attr("c"))), ""},
		{`not (a pr) and b pr`, and(not(pr(attr("a"))), pr(attr("b"))), ""},
		{`((a pr))`, pr(attr("a")), `a pr`},
		// Keywords are only keywords in keyword positions.
		{`pr pr`, pr(attr("pr")), ""},
		{`eq eq "x"`, cmp(attr("eq"), Eq, str("x")), ""},
		{`true eq true`, cmp(attr("true"), Eq, boolean(true)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%q)\n got  %#v\n want %#v", tt.in, got, tt.want)
			}
			canon := tt.canon
			if canon == "" {
				canon = tt.in
			}
			if s := got.String(); s != canon {
				t.Errorf("String() = %q, want %q", s, canon)
			}
			again, err := Parse(got.String())
			if err != nil {
				t.Fatalf("reparse %q: %v", got.String(), err)
			}
			if !reflect.DeepEqual(again, got) {
				t.Errorf("round trip of %q changed the AST: %#v", got.String(), again)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("(", n) + "a pr" + strings.Repeat(")", n) }
	tests := []struct {
		in      string
		pos     int
		msgPart string
	}{
		{``, 0, "empty filter"},
		{`   `, 3, "empty filter"},
		{`userName`, 8, `expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr) after "userName" but found end of filter`},
		{`userName eq`, 11, `expected a comparison value after "eq"`},
		{`userName eq bjensen`, 12, `found "bjensen"; strings must be enclosed in double quotes`},
		{`userName eq 'x'`, 12, "single-quoted strings are not allowed"},
		{`userName eq 'Barbara Jensen'`, 12, "single-quoted strings are not allowed"},
		{`userName xx "a"`, 9, `unknown operator "xx"`},
		{`userName "a"`, 9, `expected an operator`},
		{`(userName eq "a"`, 16, `missing ")" to close the "(" at position 0`},
		{`userName eq "a")`, 15, `unexpected ")" without a matching "("`},
		{`emails[type eq "work"`, 21, `missing "]" to close the "[" at position 6`},
		{`emails[type eq "work")`, 21, `expected "and", "or" or "]" but found ")"`},
		{`emails[type[x eq "1"] eq "a"]`, 11, "nested value filters are not allowed"},
		{`not userName eq "a"`, 4, `"not" must be followed by a filter in parentheses`},
		{`not`, 3, `"not" must be followed by a filter in parentheses`},
		{`userName eq "unterminated`, 12, "unterminated string"},
		{`userName eq "ends with backslash\`, 12, "unterminated string"},
		{`and`, 0, `expected an attribute path, "(" or "not" but found "and"`},
		{`or a pr`, 0, `found "or"`},
		{`a pr and`, 8, `expected an attribute path, "(" or "not" but found end of filter`},
		{`a pr or or b pr`, 8, `found "or"`},
		{`a pr b pr`, 5, `expected "and", "or" or end of filter but found "b"`},
		{`(a pr b pr)`, 6, `expected "and", "or" or ")" but found "b"`},
		{`()`, 1, `found ")"`},
		{`"x" eq "x"`, 0, `found string "x"`},
		{strings.Repeat("a", 5000), 4096, "filter is longer than 4096 bytes"},
		{nest(40), 32, "nested more than 32 levels deep"},
		{nest(33), 32, "nested more than 32 levels deep"},
		{strings.Repeat("not (", 33) + "a pr" + strings.Repeat(")", 33), 32*5 + 4, "nested more than 32"},
		{`x eq "\x"`, 6, `invalid escape sequence "\\x" in string`},
		{`x eq "\u12"`, 6, `invalid \u escape`},
		{`x eq "\u12G4"`, 6, `invalid \u escape`},
		{"x eq \"a\tb\"", 7, "control character U+0009 inside a string"},
		{"x eq \"a\" \nand y pr", 9, "unexpected control character U+000A"},
		{"x eq \"\xff\"", 6, "not valid UTF-8"},
		{`x eq 01`, 5, `found "01"`},
		{`x eq 1.`, 5, `found "1."`},
		{`x eq .5`, 5, `found ".5"`},
		{`x eq 1e`, 5, `found "1e"`},
		{`x eq +1`, 5, `found "+1"`},
		{`x eq 1and y pr`, 5, `found "1and"`},
		{`x eq (`, 5, `expected a comparison value after "eq" but found "("`},
		{`x co 1`, 5, `operator "co" needs a string value, not number`},
		{`x sw true`, 5, `operator "sw" needs a string value, not bool`},
		{`x gt true`, 5, `operator "gt" needs a string or number value, not bool`},
		{`x le null`, 5, `operator "le" needs a string or number value, not null`},
		{`x pr "a"`, 5, `expected "and", "or" or end of filter but found string "a"`},
		{`emails[]`, 7, "empty value filter in emails[]"},
		{`emails[ ]`, 8, "empty value filter"},
		{`emails[type eq "work"] eq "x"`, 23, "a value filter cannot be compared directly"},
		{`emails[type eq "work"].value`, 28, `expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr) after "emails[type eq \"work\"].value"`},
		{`emails[type eq "work"].value.x pr`, 28, "at most one sub-attribute"},
		{`emails[type eq "work"]. pr`, 23, "missing sub-attribute name"},
		{`emails[type eq "work"].1x pr`, 23, `invalid character '1' in sub-attribute name "1x"`},
		{`name.givenName[x pr]`, 14, `a value filter must follow the attribute name, not its sub-attribute "givenName"`},
		{`emails[urn:x:y:type eq "work"]`, 7, "cannot have a schema URN prefix"},
		{`a.b.c pr`, 3, "at most one sub-attribute"},
		{`a. pr`, 2, "missing sub-attribute name"},
		{`.a pr`, 0, "missing attribute name"},
		{`1abc pr`, 0, `invalid character '1' in attribute name "1abc"`},
		{`na$me pr`, 2, `invalid character '$' in attribute name`},
		{`naïve pr`, 2, `invalid character 'ï'`},
		{`userName=="x"`, 8, `invalid character '='`},
		{`foo:bar pr`, 3, `unexpected ":" in attribute path "foo:bar"; a schema URN prefix must start with "urn:"`},
		{`urn:bar pr`, 0, `incomplete schema URN "urn"`},
		{`urn:a::b pr`, 6, `empty segment in schema URN "urn:a:"`},
		{`urn:a:b: pr`, 8, `missing attribute name after schema URN "urn:a:b"`},
		{`urn:a^b:c pr`, 5, `invalid character '^' in schema URN`},
		{`a pr]`, 4, `found "]"`},
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error", tt.in, got)
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if fe.Pos != tt.pos {
				t.Errorf("Pos = %d, want %d (%v)", fe.Pos, tt.pos, err)
			}
			if !strings.Contains(fe.Msg, tt.msgPart) {
				t.Errorf("Msg = %q, want it to contain %q", fe.Msg, tt.msgPart)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	_, err := Parse(`userName eq `)
	want := `invalid filter at position 12: expected a comparison value after "eq"`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestLimits(t *testing.T) {
	deep := strings.Repeat("(", 32) + "a pr" + strings.Repeat(")", 32)
	if _, err := Parse(deep); err != nil {
		t.Errorf("32 levels of nesting: %v", err)
	}
	deepNot := strings.Repeat("not (", 31) + "e[a pr]" + strings.Repeat(")", 31)
	if _, err := Parse(deepNot); err != nil {
		t.Errorf("31 nots and a value filter: %v", err)
	}
	if _, err := Parse(strings.Repeat("not (", 32) + "e[a pr]" + strings.Repeat(")", 32)); err == nil {
		t.Errorf("33 levels including brackets: want error")
	}

	many := func(n int) string { return strings.TrimSuffix(strings.Repeat("a pr or ", n), " or ") }
	if _, err := Parse(many(256)); err != nil {
		t.Errorf("256 comparisons: %v", err)
	}
	_, err := Parse(many(257))
	var fe *Error
	if !errors.As(err, &fe) || !strings.Contains(fe.Msg, "more than 256 comparisons") || fe.Pos != 256*8 {
		t.Errorf("257 comparisons: err = %v", err)
	}
	inBrackets := "e[" + many(257) + "]"
	if _, err := Parse(inBrackets); err == nil {
		t.Errorf("257 comparisons in a value filter: want error")
	}

	exact := strings.Repeat(" ", 4096-4) + "a pr"
	if _, err := Parse(exact); err != nil {
		t.Errorf("4096-byte filter: %v", err)
	}
	if _, err := Parse(exact + " "); err == nil {
		t.Errorf("4097-byte filter: want error")
	}
}

func TestParsePath(t *testing.T) {
	workType := cmp(attr("type"), Eq, str("work"))
	tests := []struct {
		in   string
		want Path
	}{
		{`userName`, attr("userName")},
		{`name.familyName`, sub("name", "familyName")},
		{`emails[type eq "work"]`, Path{Attr: "emails", Filter: workType}},
		{`emails[type eq "work"].value`, Path{Attr: "emails", Filter: workType, Sub: "value"}},
		{`members[value eq "2819c223"]`, Path{Attr: "members", Filter: cmp(attr("value"), Eq, str("2819c223"))}},
		{`addresses[type eq "work" and primary eq true].streetAddress`, Path{Attr: "addresses", Filter: and(workType, cmp(attr("primary"), Eq, boolean(true))), Sub: "streetAddress"}},
		{enterpriseURN + `:employeeNumber`, Path{URN: enterpriseURN, Attr: "employeeNumber"}},
		{enterpriseURN + `:manager.value`, Path{URN: enterpriseURN, Attr: "manager", Sub: "value"}},
		{enterpriseURN + `:manager`, Path{URN: enterpriseURN, Attr: "manager"}},
		{coreUserURN + `:name.givenName`, Path{URN: coreUserURN, Attr: "name", Sub: "givenName"}},
		{coreUserURN + `:emails[type eq "work"].value`, Path{URN: coreUserURN, Attr: "emails", Filter: workType, Sub: "value"}},
		{enterpriseURN, Path{URN: "urn:ietf:params:scim:schemas:extension:enterprise:2.0", Attr: "User"}},
		{`members`, attr("members")},
		{`members[$ref pr]`, Path{Attr: "members", Filter: pr(attr("$ref"))}},
		{`meta.$ref`, sub("meta", "$ref")},
		{` active `, attr("active")},
		{`pr`, attr("pr")},
		{`not`, attr("not")},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePath(tt.in)
			if err != nil {
				t.Fatalf("ParsePath(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParsePath(%q)\n got  %#v\n want %#v", tt.in, got, tt.want)
			}
			again, err := ParsePath(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("round trip of %q: %#v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParsePathErrors(t *testing.T) {
	tests := []struct {
		in      string
		pos     int
		msgPart string
	}{
		{``, 0, "empty path"},
		{`  `, 2, "empty path"},
		{`title pr`, 6, `unexpected "pr" after the attribute path`},
		{`userName eq "x"`, 9, `unexpected "eq" after the attribute path`},
		{`emails[]`, 7, "empty value filter"},
		{`emails[type eq "work"`, 21, `missing "]"`},
		{`emails[type eq "work"]x`, 22, `unexpected "x" after the attribute path`},
		{`emails[type eq "work"] .value`, 23, `unexpected ".value"`},
		{`emails[type eq "work"].value.x`, 28, "at most one sub-attribute"},
		{`emails [type eq "work"]`, 7, `unexpected "["`},
		{`emails[type[value pr] pr]`, 11, "nested value filters"},
		{`(userName)`, 0, `expected an attribute path but found "("`},
		{`"userName"`, 0, `expected an attribute path but found string "userName"`},
		{`a.b.c`, 3, "at most one sub-attribute"},
		{`urn:`, 0, `incomplete schema URN`},
		{enterpriseURN + `:`, len(enterpriseURN) + 1, "missing attribute name after schema URN"},
		{`foo:bar`, 3, `a schema URN prefix must start with "urn:"`},
		{`emails[type eq 'work']`, 15, "single-quoted"},
		{strings.Repeat("a", 4097), 4096, "path is longer than 4096 bytes"},
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			got, err := ParsePath(tt.in)
			if err == nil {
				t.Fatalf("ParsePath(%q) = %#v, want error", tt.in, got)
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if fe.Pos != tt.pos {
				t.Errorf("Pos = %d, want %d (%v)", fe.Pos, tt.pos, err)
			}
			if !strings.Contains(fe.Msg, tt.msgPart) {
				t.Errorf("Msg = %q, want it to contain %q", fe.Msg, tt.msgPart)
			}
		})
	}
}

func TestOpAndKindStrings(t *testing.T) {
	want := []string{"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr"}
	for i, o := 0, Eq; o <= Pr; i, o = i+1, o+1 {
		if o.String() != want[i] {
			t.Errorf("Op %d String() = %q, want %q", int(o), o.String(), want[i])
		}
	}
	if s := Op(0).String(); s != "Op(0)" {
		t.Errorf("Op(0).String() = %q", s)
	}
	kinds := map[ValueKind]string{String: "string", Number: "number", Bool: "bool", Null: "null", 0: "ValueKind(0)"}
	for k, w := range kinds {
		if k.String() != w {
			t.Errorf("ValueKind %d String() = %q, want %q", int(k), k.String(), w)
		}
	}
}

func TestStringQuoting(t *testing.T) {
	tests := []struct {
		v    Value
		want string
	}{
		{str(`a"b\c`), `"a\"b\\c"`},
		{str("<&>"), `"<&>"`},
		{str("\x00\x1f\x7f"), `"\u0000\u001f\u007f"`},
		{str("é😀"), `"é😀"`},
		{str("bad\xffutf8"), `"bad\ufffdutf8"`},
		{num("-0.5"), `-0.5`},
		{boolean(false), `false`},
		{Value{Kind: Null}, `null`},
		{Value{}, ``},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.v, got, tt.want)
		}
	}
	// Hand-built trees print parentheses where the parser's precedence needs them.
	e := and(or(pr(attr("a")), pr(attr("b"))), not(and(pr(attr("c")), or(pr(attr("d")), pr(attr("e"))))))
	if got, want := e.String(), `(a pr or b pr) and not (c pr and (d pr or e pr))`; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (&And{}).String(); got != "<nil> and <nil>" {
		t.Errorf("nil operands: %q", got)
	}
}

func BenchmarkParse(b *testing.B) {
	const f = `emails[type eq "work"].value eq "ada@contoso.com"`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(f); err != nil {
			b.Fatal(err)
		}
	}
}
