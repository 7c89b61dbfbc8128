package filter

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind int

const (
	tokEOF tokKind = iota
	tokLParen
	tokRParen
	tokLBrack
	tokRBrack
	tokString
	tokWord // attribute path, keyword, operator, number or bare junk; the parser decides
)

type token struct {
	kind tokKind
	pos  int    // byte offset of the first byte
	end  int    // byte offset just past the token
	text string // words: as written; strings: decoded value
}

// lexer splits the input into tokens on demand. Words are maximal runs of bytes other
// than whitespace, brackets, parentheses and double quotes, so a URN-qualified path such
// as "urn:...:2.0:User:name.givenName" arrives as one word and `.value` after `]` as
// another, which the parser recognises by adjacency.
type lexer struct {
	src    string
	pos    int
	peeked bool
	tok    token
	err    error
}

func (lx *lexer) peek() (token, error) {
	if !lx.peeked {
		lx.tok, lx.err = lx.scan()
		lx.peeked = true
	}
	return lx.tok, lx.err
}

func (lx *lexer) next() (token, error) {
	t, err := lx.peek()
	lx.peeked = false
	return t, err
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

func isWordByte(c byte) bool {
	switch c {
	case ' ', '\t', '(', ')', '[', ']', '"':
		return false
	}
	return c >= 0x20 && c != 0x7f
}

func (lx *lexer) scan() (token, error) {
	for lx.pos < len(lx.src) && isSpace(lx.src[lx.pos]) {
		lx.pos++
	}
	start := lx.pos
	if start >= len(lx.src) {
		return token{kind: tokEOF, pos: start, end: start}, nil
	}
	single := func(k tokKind) (token, error) {
		lx.pos++
		return token{kind: k, pos: start, end: lx.pos, text: lx.src[start:lx.pos]}, nil
	}
	switch c := lx.src[start]; c {
	case '(':
		return single(tokLParen)
	case ')':
		return single(tokRParen)
	case '[':
		return single(tokLBrack)
	case ']':
		return single(tokRBrack)
	case '"':
		return lx.scanString()
	default:
		if !isWordByte(c) {
			return token{}, &Error{Pos: start, Msg: fmt.Sprintf("unexpected control character %U; only spaces and tabs may separate tokens", rune(c))}
		}
	}
	for lx.pos < len(lx.src) && isWordByte(lx.src[lx.pos]) {
		lx.pos++
	}
	return token{kind: tokWord, pos: start, end: lx.pos, text: lx.src[start:lx.pos]}, nil
}

// scanString decodes a JSON string literal (RFC 8259 §7) starting at the opening quote.
func (lx *lexer) scanString() (token, error) {
	src := lx.src
	start := lx.pos
	i := start + 1
	var b *strings.Builder // allocated only when the literal has escapes
	lit := i
	for {
		if i >= len(src) {
			return token{}, &Error{Pos: start, Msg: `unterminated string: missing closing '"'`}
		}
		c := src[i]
		switch {
		case c == '"':
			var text string
			if b == nil {
				text = src[lit:i]
			} else {
				b.WriteString(src[lit:i])
				text = b.String()
			}
			lx.pos = i + 1
			return token{kind: tokString, pos: start, end: lx.pos, text: text}, nil
		case c < 0x20:
			return token{}, &Error{Pos: i, Msg: fmt.Sprintf(`control character %U inside a string; write it as an escape such as \n or \u00XX`, rune(c))}
		case c != '\\':
			i++
			continue
		}
		if b == nil {
			b = &strings.Builder{}
		}
		b.WriteString(src[lit:i])
		if i+1 >= len(src) {
			return token{}, &Error{Pos: start, Msg: `unterminated string: missing closing '"'`}
		}
		switch e := src[i+1]; e {
		case '"', '\\', '/':
			b.WriteByte(e)
			i += 2
		case 'b':
			b.WriteByte('\b')
			i += 2
		case 'f':
			b.WriteByte('\f')
			i += 2
		case 'n':
			b.WriteByte('\n')
			i += 2
		case 'r':
			b.WriteByte('\r')
			i += 2
		case 't':
			b.WriteByte('\t')
			i += 2
		case 'u':
			r, ok := hex4(src, i+2)
			if !ok {
				return token{}, &Error{Pos: i, Msg: `invalid \u escape in string: expected 4 hex digits`}
			}
			i += 6
			if utf16IsHigh(r) {
				// A high surrogate must be followed by an escaped low surrogate; like
				// encoding/json, unpaired halves become U+FFFD.
				if lo, ok := hex4(src, i+2); ok && i+1 < len(src) && src[i] == '\\' && src[i+1] == 'u' && utf16IsLow(lo) {
					r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
					i += 6
				} else {
					r = utf8.RuneError
				}
			} else if utf16IsLow(r) {
				r = utf8.RuneError
			}
			b.WriteRune(r)
		default:
			esc, _ := utf8.DecodeRuneInString(src[i+1:])
			return token{}, &Error{Pos: i, Msg: fmt.Sprintf(`invalid escape sequence %s in string; valid escapes are \" \\ \/ \b \f \n \r \t and \uXXXX`, strconv.Quote(`\`+string(esc)))}
		}
		lit = i
	}
}

func hex4(s string, i int) (rune, bool) {
	if i < 0 || i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func utf16IsHigh(r rune) bool { return 0xD800 <= r && r < 0xDC00 }
func utf16IsLow(r rune) bool  { return 0xDC00 <= r && r < 0xE000 }

// isJSONNumber reports whether s is a number literal per RFC 8259 §6.
func isJSONNumber(s string) bool {
	i := 0
	digits := func() bool {
		j := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(s)
}
