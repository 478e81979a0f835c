package jsonstrict

import (
	"encoding/json"
	"strconv"
)

// maxDepth is how deep objects and arrays may nest, encoding/json's own
// limit: deeper input is refused before it can exhaust the stack.
const maxDepth = 10000

// decoder reads one JSON input, checking it against a plan as it goes.
// Its scanning methods check the JSON grammar (RFC 8259) as strictly as
// encoding/json does, so an input they accept is one encoding/json can
// read.
type decoder struct {
	data  []byte
	off   int
	depth int
}

// ws skips white space.
func (d *decoder) ws() {
	data, i := d.data, d.off
	for i < len(data) && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r') {
		i++
	}
	d.off = i
}

// syntax returns a syntax error at the current offset: what was expected,
// and the character found when it is printable ASCII (one character says
// nothing of a value, and helps to find the mistake).
func (d *decoder) syntax(what string) *Error {
	if d.off >= len(d.data) {
		return &Error{
			Msg:    "not valid JSON: it ends too early (at byte " + strconv.Itoa(len(d.data)) + ")",
			Offset: int64(len(d.data)),
			Err:    ErrSyntax,
		}
	}
	msg := "not valid JSON at byte " + strconv.Itoa(d.off) + ": " + what
	if c := d.data[d.off]; c > ' ' && c < 0x7f {
		msg += ", found " + strconv.QuoteRune(rune(c))
	}
	return &Error{Msg: msg, Offset: int64(d.off), Err: ErrSyntax}
}

// open enters the object or array at the current offset, and the white
// space after its bracket.
func (d *decoder) open() *Error {
	if d.depth++; d.depth > maxDepth {
		return d.syntax("nested more than " + strconv.Itoa(maxDepth) + " deep")
	}
	d.off++
	d.ws()
	return nil
}

// closed reports whether the container is empty, consuming its closing
// bracket if so.
func (d *decoder) closed(end byte) bool {
	if d.off < len(d.data) && d.data[d.off] == end {
		d.off++
		d.depth--
		return true
	}
	return false
}

// key reads an object's key and the colon after it. It returns the key
// between its quotes (still escaped when escaped is true) and where its
// opening quote is.
func (d *decoder) key() (key []byte, start int, escaped bool, e *Error) {
	if d.off >= len(d.data) || d.data[d.off] != '"' {
		return nil, 0, false, d.syntax("expected a field name in double quotes")
	}
	start = d.off
	if escaped, e = d.str(); e != nil {
		return nil, 0, false, e
	}
	key = d.data[start+1 : d.off-1]
	d.ws()
	if d.off >= len(d.data) || d.data[d.off] != ':' {
		return nil, 0, false, d.syntax("expected ':' after a field name")
	}
	d.off++
	d.ws()
	return key, start, escaped, nil
}

// next reads what follows a value in an object (end '}') or an array (end
// ']'): a comma, when more is true, or the closing bracket.
func (d *decoder) next(end byte) (more bool, e *Error) {
	d.ws()
	if d.off < len(d.data) {
		switch d.data[d.off] {
		case ',':
			d.off++
			d.ws()
			return true, nil
		case end:
			d.off++
			d.depth--
			return false, nil
		}
	}
	if end == '}' {
		return false, d.syntax("expected ',' or '}' after a field's value")
	}
	return false, d.syntax("expected ',' or ']' after an array element")
}

// skip reads any one value, checking only its syntax.
func (d *decoder) skip() *Error {
	if d.off >= len(d.data) {
		return d.syntax("expected a value")
	}
	switch c := d.data[d.off]; c {
	case '{':
		if e := d.open(); e != nil {
			return e
		}
		if d.closed('}') {
			return nil
		}
		for {
			if _, _, _, e := d.key(); e != nil {
				return e
			}
			if e := d.skip(); e != nil {
				return e
			}
			if more, e := d.next('}'); e != nil || !more {
				return e
			}
		}
	case '[':
		if e := d.open(); e != nil {
			return e
		}
		if d.closed(']') {
			return nil
		}
		for {
			if e := d.skip(); e != nil {
				return e
			}
			if more, e := d.next(']'); e != nil || !more {
				return e
			}
		}
	case '"':
		_, e := d.str()
		return e
	case 't':
		return d.lit("true")
	case 'f':
		return d.lit("false")
	case 'n':
		return d.lit("null")
	default:
		if c == '-' || isDigit(c) {
			_, _, e := d.num()
			return e
		}
		return d.syntax("expected a value")
	}
}

// str reads a string, reporting whether it has escapes. Like encoding/json
// it takes bytes that are not valid UTF-8 (they decode as U+FFFD).
func (d *decoder) str() (escaped bool, e *Error) {
	d.off++
	for d.off < len(d.data) {
		// Most bytes are plain: skip them in a tight loop.
		data, i := d.data, d.off
		for i < len(data) && plain[data[i]] {
			i++
		}
		if d.off = i; i >= len(data) {
			break
		}
		c := data[i]
		switch {
		case c == '"':
			d.off++
			return escaped, nil
		case c == '\\':
			escaped = true
			d.off++
			if d.off >= len(d.data) {
				return escaped, d.syntax("")
			}
			switch d.data[d.off] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.off++
			case 'u':
				d.off++
				for range 4 {
					if d.off >= len(d.data) {
						return escaped, d.syntax("")
					}
					if !isHex(d.data[d.off]) {
						return escaped, d.syntax(`invalid \u escape in a string`)
					}
					d.off++
				}
			default:
				return escaped, d.syntax("invalid escape in a string")
			}
		case c < 0x20:
			return escaped, d.syntax("control character in a string (it must be escaped)")
		default:
			d.off++
		}
	}
	return escaped, d.syntax("")
}

// num reads a number, reporting whether it is negative and whether it is
// written as a whole number (no fraction, no exponent).
func (d *decoder) num() (neg, whole bool, e *Error) {
	if d.data[d.off] == '-' {
		neg = true
		d.off++
	}
	switch {
	case d.off >= len(d.data):
		return neg, false, d.syntax("")
	case d.data[d.off] == '0':
		d.off++
	case isDigit(d.data[d.off]):
		d.digits()
	default:
		return neg, false, d.syntax("invalid number")
	}
	whole = true
	if d.off < len(d.data) && d.data[d.off] == '.' {
		whole = false
		d.off++
		if d.off >= len(d.data) || !isDigit(d.data[d.off]) {
			return neg, false, d.syntax("invalid number: a digit must follow '.'")
		}
		d.digits()
	}
	if d.off < len(d.data) && (d.data[d.off] == 'e' || d.data[d.off] == 'E') {
		whole = false
		d.off++
		if d.off < len(d.data) && (d.data[d.off] == '+' || d.data[d.off] == '-') {
			d.off++
		}
		if d.off >= len(d.data) || !isDigit(d.data[d.off]) {
			return neg, false, d.syntax("invalid number: a digit must follow the exponent")
		}
		d.digits()
	}
	return neg, whole, nil
}

func (d *decoder) digits() {
	data, i := d.data, d.off
	for i < len(data) && isDigit(data[i]) {
		i++
	}
	d.off = i
}

// lit reads the literal word (true, false or null).
func (d *decoder) lit(word string) *Error {
	for i := range len(word) {
		if d.off >= len(d.data) {
			return d.syntax("")
		}
		if d.data[d.off] != word[i] {
			return d.syntax("invalid literal (true, false or null expected)")
		}
		d.off++
	}
	return nil
}

// plain marks the bytes that stand for themselves in a string: not the
// closing quote, not a backslash, not a control character.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// startsValue reports whether c can begin a JSON value.
func startsValue(c byte) bool {
	switch c {
	case '{', '[', '"', 't', 'f', 'n', '-':
		return true
	}
	return isDigit(c)
}

// unquote returns the text of a string literal already checked by str.
// encoding/json does it, so escapes and invalid UTF-8 read alike.
func unquote(lit []byte) string {
	var s string
	_ = json.Unmarshal(lit, &s)
	return s
}
