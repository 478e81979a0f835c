package jsonstrict

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"unicode/utf8"
)

// value reads one value, checking it against p.
func (d *decoder) value(p *plan) *Error {
	if d.off >= len(d.data) {
		return d.syntax("expected a value")
	}
	c := d.data[d.off]
	switch p.kind {
	case kindAny:
		return d.skip()
	case kindOpaque:
		return d.opaque(p)
	case kindPtr:
		if c == 'n' {
			return d.lit("null")
		}
		return d.value(p.elem)
	case kindStruct:
		if c == '{' {
			return d.object(p)
		}
	case kindMap:
		switch c {
		case '{':
			return d.mapObject(p)
		case 'n':
			return d.lit("null")
		}
	case kindSlice:
		switch c {
		case '[':
			return d.array(p)
		case 'n':
			return d.lit("null")
		}
	case kindBytes:
		switch c {
		case '"':
			return d.base64()
		case '[':
			return d.array(p)
		case 'n':
			return d.lit("null")
		}
	case kindArray:
		if c == '[' {
			return d.array(p)
		}
	case kindString:
		if c == '"' {
			_, e := d.str()
			return e
		}
	case kindBool:
		switch c {
		case 't':
			return d.lit("true")
		case 'f':
			return d.lit("false")
		}
	case kindInt, kindUint:
		if c == '-' || isDigit(c) {
			return d.integer(p)
		}
	case kindFloat:
		if c == '-' || isDigit(c) {
			return d.float(p)
		}
	case kindNumber:
		if c == '-' || isDigit(c) {
			_, _, e := d.num()
			return e
		}
		if c == '"' {
			return d.numberString()
		}
	case kindInterface:
		if c == 'n' {
			return d.lit("null")
		}
	}
	return d.mismatch(p, c)
}

// mismatch is the error for a value of the wrong JSON kind.
func (d *decoder) mismatch(p *plan, c byte) *Error {
	if !startsValue(c) {
		return d.syntax("expected a value")
	}
	msg := "must be " + expectName(p.typ) + ", not " + kindName(c)
	switch p.kind {
	case kindInterface:
		msg = "must be null (its Go type is an interface with methods)"
	case kindUnsupported:
		msg = "cannot be given (its Go type has no JSON form)"
	}
	return &Error{Msg: msg, Offset: int64(d.off), Err: ErrType}
}

// typeErr is an ErrType error about the value at start.
func typeErr(start int, msg string) *Error {
	return &Error{Msg: msg, Offset: int64(start), Err: ErrType}
}

// object reads an object into a struct: exact field names, each once.
func (d *decoder) object(p *plan) *Error {
	if e := d.open(); e != nil {
		return e
	}
	if d.closed('}') {
		return nil
	}
	// Which fields were given: a bit each, on the stack for all but very
	// wide structs.
	var seen [2]uint64
	var seenWide []bool
	if len(p.fields) > 128 {
		seenWide = make([]bool, len(p.fields))
	}
	for {
		key, start, escaped, e := d.key()
		if e != nil {
			return e
		}
		var i int
		var ok bool
		if escaped {
			i, ok = p.byName[unquote(d.data[start:start+len(key)+2])]
		} else {
			i, ok = p.byName[string(key)]
		}
		if !ok {
			return unknown(p, unquote(d.data[start:start+len(key)+2]), start)
		}
		f := &p.fields[i]
		var dup bool
		if seenWide != nil {
			dup, seenWide[i] = seenWide[i], true
		} else {
			dup = seen[i/64]&(1<<(i%64)) != 0
			seen[i/64] |= 1 << (i % 64)
		}
		if dup {
			return &Error{Path: f.name, Msg: "is given more than once", Offset: int64(start), Err: ErrDuplicateField}
		}
		if f.quoted {
			e = d.quoted(f.plan)
		} else {
			e = d.value(f.plan)
		}
		if e != nil {
			return e.inField(f.name)
		}
		if more, e := d.next('}'); e != nil || !more {
			return e
		}
	}
}

// mapObject reads an object into a map: keys of the map's key type, each
// once, and values checked.
func (d *decoder) mapObject(p *plan) *Error {
	if e := d.open(); e != nil {
		return e
	}
	if d.closed('}') {
		return nil
	}
	var first string
	var seen map[string]struct{}
	for n := 0; ; n++ {
		raw, start, escaped, e := d.key()
		if e != nil {
			return e
		}
		lit := d.data[start : start+len(raw)+2]
		// The key as encoding/json reads it: escapes undone, and bytes
		// that are not UTF-8 made U+FFFD, so that keys it reads as one are
		// one here too.
		k := string(raw)
		if escaped || !utf8.Valid(raw) {
			k = unquote(lit)
		}
		if e := mapKey(p, k, lit, start); e != nil {
			return e
		}
		switch {
		case n == 0:
			first = k
		case seen == nil && k != first:
			seen = map[string]struct{}{first: {}, k: {}}
		default:
			if _, dup := seen[k]; dup || seen == nil {
				return &Error{Path: showKey(k), Msg: "is given more than once", Offset: int64(start), Err: ErrDuplicateField}
			}
			seen[k] = struct{}{}
		}
		if e := d.value(p.elem); e != nil {
			return e.inField(showKey(k))
		}
		if more, e := d.next('}'); e != nil || !more {
			return e
		}
	}
}

// mapKey checks a key as encoding/json reads it into the map's key type.
func mapKey(p *plan, k string, lit []byte, start int) *Error {
	bad := func(msg string) *Error {
		return &Error{Path: showKey(k), Msg: msg, Offset: int64(start), Err: ErrType}
	}
	switch p.key {
	case keyInt:
		n, err := strconv.ParseInt(k, 10, 64)
		if err != nil || reflect.Zero(p.typ.Key()).OverflowInt(n) {
			return bad("is not a valid key: the keys here must be whole numbers that fit " + strconv.Itoa(p.keyBits) + " bits")
		}
	case keyUint:
		n, err := strconv.ParseUint(k, 10, 64)
		if err != nil || reflect.Zero(p.typ.Key()).OverflowUint(n) {
			return bad("is not a valid key: the keys here must be non-negative whole numbers that fit " + strconv.Itoa(p.keyBits) + " bits")
		}
	case keyText:
		if err := json.Unmarshal(lit, reflect.New(p.typ.Key()).Interface()); err != nil {
			e := describe(err, int64(start))
			e.Path, e.Msg = showKey(k), "is not a valid key: "+e.Msg
			return e
		}
	}
	return nil
}

// array reads an array into a slice or array, checking each element.
func (d *decoder) array(p *plan) *Error {
	if e := d.open(); e != nil {
		return e
	}
	if d.closed(']') {
		return nil
	}
	for i := 0; ; i++ {
		if p.kind == kindArray && i >= p.n {
			return typeErr(d.off, "must have at most "+strconv.Itoa(p.n)+" elements")
		}
		if e := d.value(p.elem); e != nil {
			return e.inElement(i)
		}
		if more, e := d.next(']'); e != nil || !more {
			return e
		}
	}
}

// integer reads a number for an integer type: whole, and in its range.
// encoding/json parses the literal with strconv.ParseInt (or ParseUint)
// and checks it fits the type; this takes the same numbers.
func (d *decoder) integer(p *plan) *Error {
	start := d.off
	neg, whole, e := d.num()
	if e != nil {
		return e
	}
	if !whole {
		return typeErr(start, "must be a whole number")
	}
	if neg && p.kind == kindUint {
		return typeErr(start, "must not be negative")
	}
	digits := d.data[start:d.off]
	if neg {
		digits = digits[1:]
	}
	var u uint64
	over := false
	for _, c := range digits {
		v := uint64(c - '0')
		if u > (math.MaxUint64-v)/10 {
			over = true
			break
		}
		u = u*10 + v
	}
	if p.kind == kindUint {
		limit := uint64(math.MaxUint64) >> (64 - p.bits)
		if over || u > limit {
			return typeErr(start, "is too large (at most "+strconv.FormatUint(limit, 10)+")")
		}
		return nil
	}
	limit := uint64(1)<<(p.bits-1) - 1
	switch {
	case !neg && (over || u > limit):
		return typeErr(start, "is too large (at most "+strconv.FormatUint(limit, 10)+")")
	case neg && (over || u > limit+1):
		return typeErr(start, "is too small (at least -"+strconv.FormatUint(limit+1, 10)+")")
	}
	return nil
}

// float reads a number for a float type, refusing one beyond its range as
// encoding/json does.
func (d *decoder) float(p *plan) *Error {
	start := d.off
	neg, _, e := d.num()
	if e != nil {
		return e
	}
	if _, err := strconv.ParseFloat(string(d.data[start:d.off]), p.bits); err != nil {
		if neg {
			return typeErr(start, "is too small (out of range)")
		}
		return typeErr(start, "is too large (out of range)")
	}
	return nil
}

// numberString reads a string for a json.Number, which must hold a valid
// number.
func (d *decoder) numberString() *Error {
	start := d.off
	escaped, e := d.str()
	if e != nil {
		return e
	}
	s := d.data[start+1 : d.off-1]
	if escaped {
		s = []byte(unquote(d.data[start:d.off]))
	}
	if !isNumber(s) {
		return typeErr(start, "must be a number, or a string holding one")
	}
	return nil
}

// isNumber reports whether s is exactly one JSON number.
func isNumber(s []byte) bool {
	if len(s) == 0 || (s[0] != '-' && !isDigit(s[0])) {
		return false
	}
	n := decoder{data: s}
	_, _, e := n.num()
	return e == nil && n.off == len(s)
}

// base64 reads a string for a []byte, which must hold standard base64.
func (d *decoder) base64() *Error {
	start := d.off
	if _, e := d.str(); e != nil {
		return e
	}
	var b []byte
	if json.Unmarshal(d.data[start:d.off], &b) != nil {
		return typeErr(start, "must be a base64 string (standard alphabet, padded)")
	}
	return nil
}

// opaque reads a value for a type with its own UnmarshalJSON or
// UnmarshalText: its syntax is checked here, its content by the type, on
// a fresh value.
func (d *decoder) opaque(p *plan) *Error {
	start := d.off
	if e := d.skip(); e != nil {
		return e
	}
	if err := json.Unmarshal(d.data[start:d.off], reflect.New(p.typ).Interface()); err != nil {
		return describe(err, int64(start))
	}
	return nil
}

// quoted reads a field with the ",string" option: a string holding the
// JSON of the field's bool, number or string, or null.
func (d *decoder) quoted(p *plan) *Error {
	if d.off >= len(d.data) {
		return d.syntax("expected a value")
	}
	start := d.off
	inner := p
	if inner.kind == kindPtr {
		inner = inner.elem
	}
	want := "must be a string holding " + expectName(inner.typ)
	switch c := d.data[d.off]; {
	case c == 'n' && p.kind == kindPtr:
		return d.lit("null")
	case c != '"':
		if !startsValue(c) {
			return d.syntax("expected a value")
		}
		return typeErr(start, want+", not "+kindName(c))
	}
	escaped, e := d.str()
	if e != nil {
		return e
	}
	s := d.data[start+1 : d.off-1]
	if escaped {
		s = []byte(unquote(d.data[start:d.off]))
	}
	if string(s) == "null" && p.kind == kindPtr {
		return nil
	}
	in := decoder{data: s}
	if len(s) == 0 {
		return typeErr(start, want)
	}
	if e := in.value(inner); e != nil || in.off != len(s) {
		if e != nil && e.Err != ErrSyntax {
			e.Offset = int64(start)
			return e
		}
		return typeErr(start, want)
	}
	return nil
}
