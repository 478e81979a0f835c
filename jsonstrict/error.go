package jsonstrict

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// The classes of error Decode returns. Every error but ErrEmpty and
// ErrTarget comes as an *Error whose Err is one of these classes, or the
// error of a type's own UnmarshalJSON or UnmarshalText.
var (
	// ErrEmpty is returned, bare, when the input is empty or only white
	// space. A caller for which an empty request means "no fields" decodes
	// "{}" instead.
	ErrEmpty = errors.New("jsonstrict: empty input")
	// ErrTarget is returned when v is not a non-nil pointer: a bug in the
	// caller, not in the input.
	ErrTarget = errors.New("jsonstrict: Decode needs a non-nil pointer")

	// ErrSyntax: the input is not one valid JSON value.
	ErrSyntax = errors.New("jsonstrict: not valid JSON")
	// ErrUnknownField: an object has a field its type does not declare.
	ErrUnknownField = errors.New("jsonstrict: unknown field")
	// ErrDuplicateField: an object gives the same field twice.
	ErrDuplicateField = errors.New("jsonstrict: duplicate field")
	// ErrType: a value is of the wrong JSON kind, or does not fit its type
	// (a fraction or a number out of range for an integer, bad base64 for
	// bytes, too many elements for a fixed-size array).
	ErrType = errors.New("jsonstrict: wrong type")
)

// Error is what is wrong with the input, and where.
//
// Its text never repeats a value from the input: values are at most named
// by their JSON kind ("a string"); a syntax error shows the one character
// it found. Field names and map keys are repeated, except a key longer
// than 40 bytes or with unprintable characters, which is shown by its
// length. The exception is the error of a type's own UnmarshalJSON or
// UnmarshalText, whose text is the type's.
type Error struct {
	// Path is the place of the problem in the names the input used:
	// "limits.conn", "tags[2]", "users[0].name"; map keys are joined with
	// dots like field names. It is empty when the problem is the input as
	// a whole, and for syntax errors. A path more than 16 deep is cut in
	// the middle ("a.a.….a.b").
	Path string
	// Msg says what is wrong. After a non-empty Path it is a predicate
	// ("must be a number, not a string"); for an unknown field it is the
	// hint (`use "conn"`), possibly empty; with no Path it is a sentence.
	Msg string
	// Offset is the byte offset in the input where the offending key or
	// value starts.
	Offset int64
	// Err is the class of the problem (ErrSyntax, ErrUnknownField,
	// ErrDuplicateField, ErrType) or the error a type's own UnmarshalJSON
	// or UnmarshalText returned. Unwrap returns it.
	Err error

	// outer are the segments of Path above where the error was found,
	// innermost first, until finish joins them.
	outer []string
}

// Error returns the problem as one line, the path quoted:
// `"limits.conn" must be a number, not a string`,
// `unknown field "name": use "account"`,
// `not valid JSON at byte 12: expected ':' after a field name`.
func (e *Error) Error() string {
	switch {
	case e.Path == "":
		return e.Msg
	case e.Err == ErrUnknownField:
		if e.Msg == "" {
			return "unknown field " + strconv.Quote(e.Path)
		}
		return "unknown field " + strconv.Quote(e.Path) + ": " + e.Msg
	default:
		return strconv.Quote(e.Path) + " " + e.Msg
	}
}

// Unwrap returns the class of the problem or a type's own error.
func (e *Error) Unwrap() error { return e.Err }

// inField adds a field name or map key in front of the error's path, as
// the error goes up through the object that holds it.
func (e *Error) inField(name string) *Error {
	if e.Err != ErrSyntax {
		e.outer = append(e.outer, name)
	}
	return e
}

// inElement adds an array index in front of the error's path.
func (e *Error) inElement(i int) *Error {
	if e.Err != ErrSyntax {
		e.outer = append(e.outer, "["+strconv.Itoa(i)+"]")
	}
	return e
}

// finish joins the path, outermost first: the segments gathered on the
// way up, then the Path the error was made with. Joining once, at the
// top, keeps a deep error's cost linear in its depth.
func (e *Error) finish() *Error {
	if len(e.outer) == 0 {
		return e
	}
	var b strings.Builder
	add := func(seg string) {
		if b.Len() > 0 && !strings.HasPrefix(seg, "[") {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	segs := make([]string, 0, len(e.outer)+1)
	if e.Path != "" {
		segs = append(segs, e.Path)
	}
	segs = append(segs, e.outer...)
	slices.Reverse(segs)
	if len(segs) > 2*maxShownSegments {
		// A path from deeply nested input is cut in the middle: its two
		// ends say where it is.
		segs = slices.Concat(segs[:maxShownSegments], []string{"…"}, segs[len(segs)-maxShownSegments:])
	}
	for _, seg := range segs {
		add(seg)
	}
	e.Path, e.outer = b.String(), nil
	return e
}

// maxShownSegments is how many segments a path shows at each end when
// it has more than twice as many.
const maxShownSegments = 8

// maxShownKey is the longest key an error repeats. Field names are short;
// a long key is more likely data (a key, a token) than a misspelt name.
const maxShownKey = 40

// showKey returns a key as errors show it: itself when short and
// printable, else only its length.
func showKey(k string) string {
	if k == "" {
		return "<empty name>"
	}
	if len(k) > maxShownKey || strings.ContainsFunc(k, notShown) {
		return "<" + strconv.Itoa(len(k)) + "-byte name>"
	}
	return k
}

func notShown(r rune) bool {
	return r < 0x20 || r == 0x7f || r == '\uFFFD' || (r >= 0x80 && !strconv.IsPrint(r))
}

// kindName names a JSON value by its first byte, as errors say what they
// found: "a string", "an object", "null".
func kindName(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't':
		return "true"
	case 'f':
		return "false"
	case 'n':
		return "null"
	}
	return "a number"
}

// expectName says what JSON a Go type takes, for "must be ..." messages.
func expectName(t reflect.Type) string {
	if t == numberType {
		return "a number"
	}
	if t.Kind() != reflect.Pointer {
		pt := reflect.PointerTo(t)
		if pt.Implements(textUnmarshalerType) && !pt.Implements(unmarshalerType) {
			return "a string"
		}
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return expectName(t.Elem())
	}
	return "null"
}

// describe turns an error of encoding/json, met while decoding a value of
// a type with its own UnmarshalJSON or UnmarshalText (or, should the checks
// ever miss something, while decoding the whole input), into an Error
// without Go type names or the value itself.
func describe(err error, offset int64) *Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		found := "a number"
		switch {
		case te.Value == "object":
			found = "an object"
		case te.Value == "array":
			found = "an array"
		case te.Value == "string":
			found = "a string"
		case te.Value == "bool":
			found = "true or false"
		case te.Value == "null":
			found = "null"
		}
		msg := "must be " + expectName(te.Type) + ", not " + found
		if found == "a number" && expectName(te.Type) == "a number" {
			msg = "is out of range or not a whole number"
		}
		return &Error{Msg: msg, Offset: offset, Err: err}
	}
	return &Error{Msg: strings.TrimPrefix(err.Error(), "json: "), Offset: offset, Err: err}
}
