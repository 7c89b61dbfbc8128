package filter

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Match reports whether the element (a JSON object decoded into map[string]any: string,
// bool, float64/json.Number, nil, []any, map[string]any values) satisfies e.
// Attribute names are matched case-insensitively. Strings compare case-insensitively
// unless caseExact(name) is true (caseExact may be nil = never exact).
//
// caseExact receives the attribute path relative to element, without any value filter,
// as written in the filter: "value", "name.familyName", "emails.value",
// "urn:...:User:employeeNumber". Inside a value filter the names are prefixed with the
// outer attribute, so `emails[type eq "work"]` asks about "emails.type".
//
// Multi-valued attributes match when any of their values does. A URN-qualified path
// looks in the element's member named by the URN when there is one (extension schemas)
// and at the top level otherwise (core schema). Comparing a complex value without a
// sub-attribute (`members eq "id"`) compares its "value" sub-attribute.
func Match(e Expr, element map[string]any, caseExact func(attr string) bool) bool {
	switch e := e.(type) {
	case *And:
		return Match(e.Left, element, caseExact) && Match(e.Right, element, caseExact)
	case *Or:
		return Match(e.Left, element, caseExact) || Match(e.Right, element, caseExact)
	case *Not:
		return !Match(e.X, element, caseExact)
	case *Compare:
		return matchCompare(e, element, caseExact)
	case *ValuePath:
		if e == nil || e.Path.Filter == nil {
			return false
		}
		p := e.Path
		p.Sub = "" // a ValuePath selects whole elements
		return len(selectValues(p, element, caseExact)) > 0
	}
	return false
}

func matchCompare(c *Compare, element map[string]any, caseExact func(string) bool) bool {
	if c == nil {
		return false
	}
	vals := selectValues(c.Path, element, caseExact)
	switch {
	case c.Op == Pr:
		for _, v := range vals {
			if present(v) {
				return true
			}
		}
		return false
	case c.Op == Ne:
		eq := *c
		eq.Op = Eq
		return !matchCompare(&eq, element, caseExact)
	case c.Value.Kind == Null:
		if c.Op != Eq {
			return false
		}
		// RFC 7643 §2.5: unassigned, null and [] are equivalent, so an absent
		// attribute or an empty array (which selectValues flattens away) equals null.
		for _, v := range vals {
			if v != nil {
				return false
			}
		}
		return true
	}
	// caseExact is asked lazily, at most once per name, since it may be a schema lookup.
	name := pathName(c.Path)
	exact := lazyExact{ask: caseExact, name: name}
	valueExact := lazyExact{ask: caseExact, name: name + ".value"}
	for _, v := range vals {
		if m, ok := v.(map[string]any); ok {
			inner, ok := lookup(m, "value")
			if ok && compareValue(inner, c.Op, c.Value, &valueExact) {
				return true
			}
			continue
		}
		if compareValue(v, c.Op, c.Value, &exact) {
			return true
		}
	}
	return false
}

type lazyExact struct {
	ask    func(string) bool
	name   string
	done   bool
	answer bool
}

func (l *lazyExact) get() bool {
	if !l.done {
		l.done = true
		l.answer = l.ask != nil && l.ask(l.name)
	}
	return l.answer
}

// selectValues returns the values p selects in element, with multi-valued attributes
// flattened; an absent attribute contributes nothing and null contributes nil.
func selectValues(p Path, element map[string]any, caseExact func(string) bool) []any {
	container := element
	if p.URN != "" {
		if ext, ok := lookup(element, p.URN); ok {
			if m, ok := ext.(map[string]any); ok {
				container = m
			}
		}
	}
	v, ok := lookup(container, p.Attr)
	if !ok {
		return nil
	}
	items := flatten(nil, v)
	if p.Filter != nil {
		var inner func(string) bool
		if caseExact != nil {
			prefix := pathName(Path{URN: p.URN, Attr: p.Attr})
			inner = func(name string) bool { return caseExact(prefix + "." + name) }
		}
		kept := items[:0:0]
		for _, it := range items {
			if m, ok := it.(map[string]any); ok && Match(p.Filter, m, inner) {
				kept = append(kept, m)
			}
		}
		items = kept
	}
	if p.Sub == "" {
		return items
	}
	var out []any
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			if sv, ok := lookup(m, p.Sub); ok {
				out = flatten(out, sv)
			}
		}
	}
	return out
}

func flatten(dst []any, v any) []any {
	if a, ok := v.([]any); ok {
		return append(dst, a...)
	}
	return append(dst, v)
}

func pathName(p Path) string {
	var b strings.Builder
	if p.URN != "" {
		b.WriteString(p.URN)
		b.WriteByte(':')
	}
	b.WriteString(p.Attr)
	if p.Sub != "" {
		b.WriteByte('.')
		b.WriteString(p.Sub)
	}
	return b.String()
}

// lookup finds name in m, preferring an exact key over a case-insensitive one.
func lookup(m map[string]any, name string) (any, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// present implements `pr` (RFC 7644 §3.4.2.2): a non-empty value or a non-empty node.
func present(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return v != ""
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	return true
}

func compareValue(got any, op Op, want Value, exact *lazyExact) bool {
	switch want.Kind {
	case String:
		s, ok := got.(string)
		if !ok {
			return false
		}
		a, b := s, want.Str
		if !exact.get() {
			if op == Eq {
				return strings.EqualFold(a, b)
			}
			a, b = fold(a), fold(b)
		}
		switch op {
		case Eq:
			return a == b
		case Co:
			return strings.Contains(a, b)
		case Sw:
			return strings.HasPrefix(a, b)
		case Ew:
			return strings.HasSuffix(a, b)
		case Gt:
			return a > b
		case Ge:
			return a >= b
		case Lt:
			return a < b
		case Le:
			return a <= b
		}
	case Number:
		x, ok := toNumber(got)
		if !ok {
			return false
		}
		y, ok := parseNumber(want.Num)
		if !ok {
			return false
		}
		c, ok := compareNumbers(x, y)
		if !ok {
			return false
		}
		switch op {
		case Eq:
			return c == 0
		case Gt:
			return c > 0
		case Ge:
			return c >= 0
		case Lt:
			return c < 0
		case Le:
			return c <= 0
		}
	case Bool:
		b, ok := got.(bool)
		return ok && op == Eq && b == want.Bool
	}
	return false
}

// fold maps s to a canonical case so that fold(a) == fold(b) exactly when
// strings.EqualFold(a, b), while keeping ASCII ordering lower-case like SQL lower().
func fold(s string) string {
	return strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf {
			if 'A' <= r && r <= 'Z' {
				r += 'a' - 'A'
			}
			return r
		}
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		return unicode.ToLower(min)
	}, s)
}

// number holds an int64 when the value is an exact integer in range, so large IDs
// compare exactly; otherwise a float64.
type number struct {
	isInt bool
	i     int64
	f     float64
}

func parseNumber(s string) (number, bool) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return number{isInt: true, i: i}, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) { // out of range still orders correctly as ±Inf or 0
		return number{}, false
	}
	return number{f: f}, true
}

func toNumber(v any) (number, bool) {
	switch v := v.(type) {
	case float64:
		return number{f: v}, true
	case float32:
		return number{f: float64(v)}, true
	case json.Number:
		return parseNumber(string(v))
	case int:
		return number{isInt: true, i: int64(v)}, true
	case int8:
		return number{isInt: true, i: int64(v)}, true
	case int16:
		return number{isInt: true, i: int64(v)}, true
	case int32:
		return number{isInt: true, i: int64(v)}, true
	case int64:
		return number{isInt: true, i: v}, true
	case uint:
		return uintNumber(uint64(v)), true
	case uint8:
		return number{isInt: true, i: int64(v)}, true
	case uint16:
		return number{isInt: true, i: int64(v)}, true
	case uint32:
		return number{isInt: true, i: int64(v)}, true
	case uint64:
		return uintNumber(v), true
	}
	return number{}, false
}

func uintNumber(u uint64) number {
	if u <= math.MaxInt64 {
		return number{isInt: true, i: int64(u)}
	}
	return number{f: float64(u)}
}

// compareNumbers returns -1, 0 or +1; ok is false when either side is NaN.
func compareNumbers(a, b number) (int, bool) {
	if a.isInt && b.isInt {
		switch {
		case a.i < b.i:
			return -1, true
		case a.i > b.i:
			return 1, true
		}
		return 0, true
	}
	x, y := a.f, b.f
	if a.isInt {
		x = float64(a.i)
	}
	if b.isInt {
		y = float64(b.i)
	}
	switch {
	case x < y:
		return -1, true
	case x > y:
		return 1, true
	case x == y:
		return 0, true
	}
	return 0, false
}
