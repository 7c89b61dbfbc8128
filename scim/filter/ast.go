package filter

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Expr is a parsed filter expression: And, Or, Not, Compare or ValuePath.
//
// The parser always produces pointers (*And, *Or, *Not, *Compare, *ValuePath); the
// methods have pointer receivers so that a type switch on a non-pointer type does not
// compile instead of silently never matching.
type Expr interface {
	String() string
	isExpr()
}

// And is `Left and Right`.
type And struct{ Left, Right Expr }

// Or is `Left or Right`.
type Or struct{ Left, Right Expr }

// Not is `not (X)`.
type Not struct{ X Expr }

// Compare is `path op value`, or `path pr` (Op == Pr, Value is the zero Value).
type Compare struct {
	Path  Path
	Op    Op
	Value Value
}

// ValuePath is `attr[filter]` used as a boolean on its own: true when any element of the
// multi-valued attribute matches Filter. (Path.Filter holds the filter, Path.Sub is "".)
type ValuePath struct{ Path Path }

// Path is an attribute path as written (case preserved; callers resolve names against a schema):
//
//	userName                      -> {Attr:"userName"}
//	name.familyName               -> {Attr:"name", Sub:"familyName"}
//	emails[type eq "work"]        -> {Attr:"emails", Filter: <type eq "work">}
//	emails[type eq "work"].value  -> {Attr:"emails", Filter: ..., Sub:"value"}
//	urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber
//	                              -> {URN:"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", Attr:"employeeNumber"}
//	urn:...:enterprise:2.0:User:manager.value -> {URN:"...:User", Attr:"manager", Sub:"value"}
//
// Paths inside a value filter (brackets) are relative to the element: `type` -> {Attr:"type"}.
type Path struct {
	URN    string
	Attr   string
	Filter Expr
	Sub    string
}

// Op is a comparison operator. The zero Op is not a valid operator.
type Op int

// Comparison operators (RFC 7644 §3.4.2.2, Table 3).
const (
	Eq Op = iota + 1
	Ne
	Co
	Sw
	Ew
	Gt
	Ge
	Lt
	Le
	Pr
)

var opNames = [...]string{Eq: "eq", Ne: "ne", Co: "co", Sw: "sw", Ew: "ew", Gt: "gt", Ge: "ge", Lt: "lt", Le: "le", Pr: "pr"}

// String returns the lower-case operator keyword, e.g. "eq".
func (o Op) String() string {
	if o >= Eq && o <= Pr {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// ValueKind is the type of a comparison literal. The zero ValueKind means "no value"
// (the Value of a `pr` comparison).
type ValueKind int

// Kinds of comparison literals.
const (
	String ValueKind = iota + 1
	Number
	Bool
	Null
)

// String returns "string", "number", "bool" or "null".
func (k ValueKind) String() string {
	switch k {
	case String:
		return "string"
	case Number:
		return "number"
	case Bool:
		return "bool"
	case Null:
		return "null"
	}
	return fmt.Sprintf("ValueKind(%d)", int(k))
}

// Value is a comparison literal. Numbers keep their literal text (Num) so callers can compare exactly.
type Value struct {
	Kind ValueKind
	Str  string // for String
	Num  string // for Number: the JSON number literal as written, e.g. "42", "-1.5e3"
	Bool bool   // for Bool
}

// String returns the literal in filter syntax: a JSON-quoted string, the number as
// written, true, false or null. The zero Value prints as "".
func (v Value) String() string {
	switch v.Kind {
	case String:
		return quote(v.Str)
	case Number:
		return v.Num
	case Bool:
		if v.Bool {
			return "true"
		}
		return "false"
	case Null:
		return "null"
	}
	return ""
}

// String returns the path in filter syntax: [URN ":"] attr ["[" filter "]"] ["." sub].
func (p Path) String() string {
	var b strings.Builder
	writePath(&b, p)
	return b.String()
}

func (*And) isExpr()       {}
func (*Or) isExpr()        {}
func (*Not) isExpr()       {}
func (*Compare) isExpr()   {}
func (*ValuePath) isExpr() {}

func (e *And) String() string       { return exprString(e) }
func (e *Or) String() string        { return exprString(e) }
func (e *Not) String() string       { return exprString(e) }
func (e *Compare) String() string   { return exprString(e) }
func (e *ValuePath) String() string { return exprString(e) }

func exprString(e Expr) string {
	var b strings.Builder
	writeExpr(&b, e)
	return b.String()
}

// writeExpr prints canonical syntax. Parentheses are added exactly where the parser's
// precedence (and left-associativity) needs them, so Parse(e.String()) rebuilds e.
func writeExpr(b *strings.Builder, e Expr) {
	switch e := e.(type) {
	case *Or:
		writeExpr(b, e.Left) // or is lowest precedence; a left-nested or needs no parens
		b.WriteString(" or ")
		writeOperand(b, e.Right, func(x Expr) bool { _, ok := x.(*Or); return ok })
	case *And:
		writeOperand(b, e.Left, func(x Expr) bool { _, ok := x.(*Or); return ok })
		b.WriteString(" and ")
		writeOperand(b, e.Right, func(x Expr) bool {
			switch x.(type) {
			case *Or, *And:
				return true
			}
			return false
		})
	case *Not:
		b.WriteString("not (")
		writeExpr(b, e.X)
		b.WriteByte(')')
	case *Compare:
		writePath(b, e.Path)
		b.WriteByte(' ')
		b.WriteString(e.Op.String())
		if e.Op != Pr {
			b.WriteByte(' ')
			b.WriteString(e.Value.String())
		}
	case *ValuePath:
		writePath(b, e.Path)
	case nil:
		b.WriteString("<nil>")
	default:
		b.WriteString(e.String())
	}
}

func writeOperand(b *strings.Builder, e Expr, needParens func(Expr) bool) {
	if needParens(e) {
		b.WriteByte('(')
		writeExpr(b, e)
		b.WriteByte(')')
		return
	}
	writeExpr(b, e)
}

func writePath(b *strings.Builder, p Path) {
	if p.URN != "" {
		b.WriteString(p.URN)
		b.WriteByte(':')
	}
	b.WriteString(p.Attr)
	if p.Filter != nil {
		b.WriteByte('[')
		writeExpr(b, p.Filter)
		b.WriteByte(']')
	}
	if p.Sub != "" {
		b.WriteByte('.')
		b.WriteString(p.Sub)
	}
}

// quote returns s as a JSON string literal. Unlike encoding/json it does not escape
// <, > and &, which keeps filters like "Sales & Ops" readable.
func quote(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b.WriteString(`\ufffd`) // keep the output valid UTF-8
			} else {
				b.WriteString(s[i : i+size])
			}
			i += size
			continue
		}
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if c < 0x20 || c == 0x7f {
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			} else {
				b.WriteByte(c)
			}
		}
		i++
	}
	b.WriteByte('"')
	return b.String()
}
