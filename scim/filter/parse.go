package filter

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits against abusive input. Every level of recursion in the parser consumes one
// unit of depth, so these also bound the parser's stack use.
const (
	maxInputLen    = 4096
	maxDepth       = 32
	maxComparisons = 256
)

// Error is a syntax error in a filter or PATCH path. Pos is the 0-based byte offset in
// the input where the problem was detected (len(input) for a premature end).
type Error struct {
	Pos int
	Msg string
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid filter at position %d: %s", e.Pos, e.Msg)
}

// Parse parses a SCIM filter (RFC 7644 §3.4.2.2) into an AST.
func Parse(s string) (Expr, error) {
	p, err := newParser(s, "filter")
	if err != nil {
		return nil, err
	}
	if t, err := p.lx.peek(); err != nil {
		return nil, err
	} else if t.kind == tokEOF {
		return nil, &Error{Pos: t.pos, Msg: "empty filter"}
	}
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	t, err := p.lx.next()
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case tokEOF:
		return e, nil
	case tokRParen:
		return nil, &Error{Pos: t.pos, Msg: `unexpected ")" without a matching "("`}
	}
	return nil, p.afterExprError(t, "end of filter")
}

// ParsePath parses a PATCH `path` (RFC 7644 §3.5.2): attrPath, attrPath[valFilter],
// attrPath[valFilter].subAttr, all with an optional schema URN prefix.
//
// A bare schema URN such as "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
// parses as URN "urn:ietf:params:scim:schemas:extension:enterprise:2.0" + Attr "User";
// the caller recognises that the joined string names a schema. Spaces around the path
// are ignored; inside it, whitespace is only allowed within the brackets.
func ParsePath(s string) (Path, error) {
	p, err := newParser(s, "path")
	if err != nil {
		return Path{}, err
	}
	t, err := p.lx.next()
	if err != nil {
		return Path{}, err
	}
	switch t.kind {
	case tokEOF:
		return Path{}, &Error{Pos: t.pos, Msg: "empty path"}
	case tokWord:
	default:
		return Path{}, &Error{Pos: t.pos, Msg: "expected an attribute path but found " + p.describe(t)}
	}
	path, _, err := p.parsePath(t)
	if err != nil {
		return Path{}, err
	}
	t, err = p.lx.next()
	if err != nil {
		return Path{}, err
	}
	if t.kind != tokEOF {
		return Path{}, &Error{Pos: t.pos, Msg: "unexpected " + p.describe(t) + " after the attribute path"}
	}
	return path, nil
}

type parser struct {
	lx        lexer
	noun      string // "filter" or "path", for messages about the end of input
	depth     int
	compares  int
	inBracket bool
}

func newParser(s, noun string) (*parser, error) {
	if len(s) > maxInputLen {
		return nil, &Error{Pos: maxInputLen, Msg: fmt.Sprintf("%s is longer than %d bytes", noun, maxInputLen)}
	}
	if !utf8.ValidString(s) {
		i := 0
		for i < len(s) {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			i += size
		}
		return nil, &Error{Pos: i, Msg: fmt.Sprintf("%s is not valid UTF-8", noun)}
	}
	return &parser{lx: lexer{src: s}, noun: noun}, nil
}

func (p *parser) enter(pos int) error {
	p.depth++
	if p.depth > maxDepth {
		return &Error{Pos: pos, Msg: fmt.Sprintf("%s is nested more than %d levels deep", p.noun, maxDepth)}
	}
	return nil
}

// describe names a token for an error message.
func (p *parser) describe(t token) string {
	switch t.kind {
	case tokEOF:
		return "end of " + p.noun
	case tokString:
		return "string " + abbrev(quote(t.text))
	}
	return strconv.Quote(abbrev(t.text))
}

func abbrev(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

func isKeyword(t token, kw string) bool {
	return t.kind == tokWord && strings.EqualFold(t.text, kw)
}

// afterExprError explains a token that cannot follow a complete expression.
func (p *parser) afterExprError(t token, want string) error {
	return &Error{Pos: t.pos, Msg: fmt.Sprintf(`expected "and", "or" or %s but found %s`, want, p.describe(t))}
}

// parseOr parses `and-expr *("or" and-expr)`.
func (p *parser) parseOr() (Expr, error) {
	left, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for {
		t, err := p.lx.peek()
		if err != nil {
			return nil, err
		}
		if !isKeyword(t, "or") {
			return left, nil
		}
		p.lx.next()
		right, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		left = &Or{Left: left, Right: right}
	}
}

// parseAnd parses `term *("and" term)`.
func (p *parser) parseAnd() (Expr, error) {
	left, err := p.parseTerm()
	if err != nil {
		return nil, err
	}
	for {
		t, err := p.lx.peek()
		if err != nil {
			return nil, err
		}
		if !isKeyword(t, "and") {
			return left, nil
		}
		p.lx.next()
		right, err := p.parseTerm()
		if err != nil {
			return nil, err
		}
		left = &And{Left: left, Right: right}
	}
}

// parseTerm parses a parenthesised filter, `not (filter)`, a comparison or a value path.
func (p *parser) parseTerm() (Expr, error) {
	t, err := p.lx.next()
	if err != nil {
		return nil, err
	}
	switch {
	case t.kind == tokLParen:
		return p.parseGroup(t)
	case isKeyword(t, "not"):
		lp, err := p.lx.next()
		if err != nil {
			return nil, err
		}
		if lp.kind != tokLParen {
			return nil, &Error{Pos: lp.pos, Msg: fmt.Sprintf(`"not" must be followed by a filter in parentheses, e.g. not (title pr), but found %s`, p.describe(lp))}
		}
		x, err := p.parseGroup(lp)
		if err != nil {
			return nil, err
		}
		return &Not{X: x}, nil
	case isKeyword(t, "and"), isKeyword(t, "or"), t.kind != tokWord:
		return nil, &Error{Pos: t.pos, Msg: `expected an attribute path, "(" or "not" but found ` + p.describe(t)}
	}
	return p.parseAttrExpr(t)
}

// parseGroup parses the rest of `( filter )` after the opening parenthesis lp.
func (p *parser) parseGroup(lp token) (Expr, error) {
	if err := p.enter(lp.pos); err != nil {
		return nil, err
	}
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	t, err := p.lx.next()
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case tokRParen:
		p.depth--
		return e, nil
	case tokEOF:
		return nil, &Error{Pos: t.pos, Msg: fmt.Sprintf(`missing ")" to close the "(" at position %d`, lp.pos)}
	}
	return nil, p.afterExprError(t, `")"`)
}

// parseAttrExpr parses `path op value`, `path pr` or a value path on its own, given the
// path's first word.
func (p *parser) parseAttrExpr(first token) (Expr, error) {
	path, end, err := p.parsePath(first)
	if err != nil {
		return nil, err
	}
	pathText := abbrev(p.lx.src[first.pos:end])
	if path.Filter != nil && path.Sub == "" {
		if t, err := p.lx.peek(); err == nil && t.kind == tokWord {
			if _, ok := lookupOp(t.text); ok {
				return nil, &Error{Pos: t.pos, Msg: fmt.Sprintf(`a value filter cannot be compared directly; name a sub-attribute, e.g. %s.value %s ...`, pathText, strings.ToLower(t.text))}
			}
		}
		return &ValuePath{Path: path}, nil
	}
	p.compares++
	if p.compares > maxComparisons {
		return nil, &Error{Pos: first.pos, Msg: fmt.Sprintf("%s has more than %d comparisons", p.noun, maxComparisons)}
	}

	ot, err := p.lx.next()
	if err != nil {
		return nil, err
	}
	if ot.kind != tokWord {
		return nil, &Error{Pos: ot.pos, Msg: fmt.Sprintf("expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr) after %q but found %s", pathText, p.describe(ot))}
	}
	op, ok := lookupOp(ot.text)
	if !ok {
		return nil, &Error{Pos: ot.pos, Msg: fmt.Sprintf("unknown operator %s; expected eq, ne, co, sw, ew, gt, ge, lt, le or pr", p.describe(ot))}
	}
	if op == Pr {
		return &Compare{Path: path, Op: Pr}, nil
	}
	opName := op.String()

	vt, err := p.lx.next()
	if err != nil {
		return nil, err
	}
	var v Value
	switch {
	case vt.kind == tokString:
		v = Value{Kind: String, Str: vt.text}
	case vt.kind == tokEOF:
		return nil, &Error{Pos: vt.pos, Msg: fmt.Sprintf("expected a comparison value after %q", opName)}
	case vt.kind != tokWord:
		return nil, &Error{Pos: vt.pos, Msg: fmt.Sprintf("expected a comparison value after %q but found %s", opName, p.describe(vt))}
	case strings.EqualFold(vt.text, "true"):
		v = Value{Kind: Bool, Bool: true}
	case strings.EqualFold(vt.text, "false"):
		v = Value{Kind: Bool}
	case strings.EqualFold(vt.text, "null"):
		v = Value{Kind: Null}
	case isJSONNumber(vt.text):
		v = Value{Kind: Number, Num: vt.text}
	case vt.text[0] == '\'':
		return nil, &Error{Pos: vt.pos, Msg: `single-quoted strings are not allowed; enclose strings in double quotes ("...")`}
	default:
		return nil, &Error{Pos: vt.pos, Msg: fmt.Sprintf(`expected a comparison value after %q but found %s; strings must be enclosed in double quotes, other values are numbers, true, false or null`, opName, p.describe(vt))}
	}

	// RFC 7644 §3.4.2.2 defines these operators only for the listed types; rejecting
	// the rest here gives the client an invalidFilter instead of a silent non-match.
	switch op {
	case Co, Sw, Ew:
		if v.Kind != String {
			return nil, &Error{Pos: vt.pos, Msg: fmt.Sprintf("operator %q needs a string value, not %s", opName, v.Kind)}
		}
	case Gt, Ge, Lt, Le:
		if v.Kind != String && v.Kind != Number {
			return nil, &Error{Pos: vt.pos, Msg: fmt.Sprintf("operator %q needs a string or number value, not %s", opName, v.Kind)}
		}
	}
	return &Compare{Path: path, Op: op, Value: v}, nil
}

func lookupOp(s string) (Op, bool) {
	if len(s) != 2 {
		return 0, false
	}
	for o := Eq; o <= Pr; o++ {
		if strings.EqualFold(s, opNames[o]) {
			return o, true
		}
	}
	return 0, false
}

// parsePath parses an attribute path starting with word w, including an adjacent
// "[filter]" and ".sub". It returns the byte offset just past the path.
func (p *parser) parsePath(w token) (Path, int, error) {
	var path Path
	text, textPos := w.text, w.pos
	if len(text) >= 4 && strings.EqualFold(text[:4], "urn:") {
		if p.inBracket {
			return Path{}, 0, &Error{Pos: w.pos, Msg: "attribute paths inside a value filter are relative to the element and cannot have a schema URN prefix"}
		}
		// The URN itself contains colons and dots ("...:2.0:User"), so the attribute
		// starts after the last colon.
		i := strings.LastIndexByte(text, ':')
		if err := checkURN(text[:i], w.pos); err != nil {
			return Path{}, 0, err
		}
		path.URN = text[:i]
		text, textPos = text[i+1:], w.pos+i+1
		if text == "" {
			return Path{}, 0, &Error{Pos: textPos, Msg: fmt.Sprintf("missing attribute name after schema URN %q", abbrev(path.URN))}
		}
	} else if i := strings.IndexByte(text, ':'); i >= 0 {
		return Path{}, 0, &Error{Pos: w.pos + i, Msg: fmt.Sprintf(`unexpected ":" in attribute path %q; a schema URN prefix must start with "urn:"`, abbrev(w.text))}
	}

	attr, sub, hasSub := strings.Cut(text, ".")
	if err := checkName(attr, textPos, "attribute"); err != nil {
		return Path{}, 0, err
	}
	path.Attr = attr
	if hasSub {
		if err := checkSub(sub, textPos+len(attr)+1); err != nil {
			return Path{}, 0, err
		}
		path.Sub = sub
	}
	end := w.end

	lb, err := p.lx.peek()
	if err != nil {
		return Path{}, 0, err
	}
	if lb.kind != tokLBrack || lb.pos != end {
		return path, end, nil
	}
	if p.inBracket {
		return Path{}, 0, &Error{Pos: lb.pos, Msg: "nested value filters are not allowed (a \"[\" inside \"[...]\")"}
	}
	if path.Sub != "" {
		return Path{}, 0, &Error{Pos: lb.pos, Msg: fmt.Sprintf("a value filter must follow the attribute name, not its sub-attribute %q (write %s[...].%s)", path.Sub, attr, path.Sub)}
	}
	p.lx.next()
	if err := p.enter(lb.pos); err != nil {
		return Path{}, 0, err
	}
	if t, err := p.lx.peek(); err != nil {
		return Path{}, 0, err
	} else if t.kind == tokRBrack {
		return Path{}, 0, &Error{Pos: t.pos, Msg: fmt.Sprintf("empty value filter in %s[]", attr)}
	}
	p.inBracket = true
	f, err := p.parseOr()
	if err != nil {
		return Path{}, 0, err
	}
	p.inBracket = false
	rb, err := p.lx.next()
	if err != nil {
		return Path{}, 0, err
	}
	switch rb.kind {
	case tokRBrack:
	case tokEOF:
		return Path{}, 0, &Error{Pos: rb.pos, Msg: fmt.Sprintf(`missing "]" to close the "[" at position %d`, lb.pos)}
	default:
		return Path{}, 0, p.afterExprError(rb, `"]"`)
	}
	p.depth--
	path.Filter = f
	end = rb.end

	// Entra's emails[type eq "work"].value: the sub-attribute must touch the "]".
	st, err := p.lx.peek()
	if err != nil {
		return Path{}, 0, err
	}
	if st.kind == tokWord && st.pos == end && st.text[0] == '.' {
		p.lx.next()
		if err := checkSub(st.text[1:], st.pos+1); err != nil {
			return Path{}, 0, err
		}
		path.Sub = st.text[1:]
		end = st.end
	}
	return path, end, nil
}

func checkSub(sub string, pos int) error {
	if i := strings.IndexByte(sub, '.'); i >= 0 {
		return &Error{Pos: pos + i, Msg: `an attribute path has at most one sub-attribute (attr.subAttr); unexpected second "."`}
	}
	return checkName(sub, pos, "sub-attribute")
}

// checkName validates ATTRNAME = ALPHA *(nameChar) (RFC 7644 §3.10), plus "$ref",
// which SCIM itself uses as a sub-attribute name.
func checkName(name string, pos int, what string) error {
	if name == "" {
		return &Error{Pos: pos, Msg: "missing " + what + " name"}
	}
	if strings.EqualFold(name, "$ref") {
		return nil
	}
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		ok := 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
		if i > 0 {
			ok = ok || '0' <= r && r <= '9' || r == '-' || r == '_'
		}
		if !ok {
			return &Error{Pos: pos + i, Msg: fmt.Sprintf(`invalid character %q in %s name %q; names start with a letter and contain only letters, digits, "-" and "_"`, r, what, abbrev(name))}
		}
		i += size
	}
	return nil
}

// checkURN validates a schema URN prefix loosely: "urn:" followed by non-empty
// colon-separated segments of URN characters (RFC 8141, without percent-decoding).
func checkURN(urn string, pos int) error {
	segs := strings.Split(urn, ":")
	if len(segs) < 2 {
		return &Error{Pos: pos, Msg: fmt.Sprintf("incomplete schema URN %q before the attribute name", abbrev(urn))}
	}
	off := 0
	for _, s := range segs {
		if s == "" {
			return &Error{Pos: pos + off, Msg: fmt.Sprintf("empty segment in schema URN %q", abbrev(urn))}
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._+%=@;$!*,~&/?#'", c) >= 0) {
				r, _ := utf8.DecodeRuneInString(s[i:])
				return &Error{Pos: pos + off + i, Msg: fmt.Sprintf("invalid character %q in schema URN %q", r, abbrev(urn))}
			}
		}
		off += len(s) + 1
	}
	return nil
}
