// Package jsonstrict decodes JSON strictly, with errors that say where the
// input is wrong in the names the input used. The service's requests, the
// nested objects inside them and the config file are all read with it, so
// they follow one set of rules.
//
// Decode first walks the input against the Go type of its target, then, if
// nothing is wrong, decodes it with encoding/json: a value it accepts is
// exactly what json.Unmarshal makes of the same input, and on an error the
// target is left untouched (but see Decode for one exception). The rules, beyond encoding/json's own:
//
//   - The input is exactly one JSON value: white space around it only, no
//     second value. Empty input (or only white space) is ErrEmpty, so a
//     caller that reads an empty request as "{}" can. A target that is a
//     struct or a map takes an object ("the request must be a JSON
//     object").
//   - Field names match the json tag names exactly, not ignoring case;
//     fields of embedded structs are promoted, json:"-" fields are not
//     fields, and tag options such as omitempty do not matter (",string"
//     does: the value is a string holding the JSON of the field).
//   - An unknown field is an error naming its path ("limits.con") and the
//     field the user most likely meant: one whose aka tag lists what was
//     written (a field tagged aka:"name,account_name" is meant by a user
//     who writes "name" or "account_name"), one differing only in case,
//     or the one closest within an edit distance of 2 (1 when a name has
//     at most 3 letters; a swap of neighbours is one edit). Without a
//     suggestion the error lists the fields, when there are at most 8.
//   - A field given twice in one object is an error, and so is a map key
//     given twice.
//   - A value of the wrong JSON kind is an error naming its path and both
//     kinds: `"limits.conn" must be a number, not a string`. null is taken
//     only where Go has nil (pointers, slices, maps, interfaces), not for a
//     string, number, bool, struct or array, where encoding/json would
//     silently keep the old value.
//   - A number must fit its Go type: no fraction or exponent for an
//     integer, not negative for an unsigned one, within range for all.
//   - Map keys are free (but must fit an integer key type); values are
//     checked. Array elements are checked, their paths are "tags[2]"; a Go
//     array takes at most its length. []byte takes a base64 string.
//   - interface{} (any) and json.RawMessage take any value. A type with
//     its own UnmarshalJSON or UnmarshalText (time.Time, jwt.CIDRList, a
//     config's duration) is not walked: it is given its value, and its
//     error comes back with the path.
//
// Errors are *Error, with a class in Err (ErrSyntax, ErrUnknownField,
// ErrDuplicateField, ErrType, or a type's own error). They never repeat a
// value from the input, which could be a secret: they name its JSON kind
// ("a string"); field names are repeated, unless long. A type's own
// UnmarshalJSON or UnmarshalText is trusted to say no more than it should.
// Only the first problem is reported, except that a syntax error anywhere
// wins over a wrong field before it.
package jsonstrict

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// Decode decodes data, which must be exactly one JSON value, into v, a
// non-nil pointer, by the rules in the package comment. It returns
// ErrEmpty when data is empty or white space, ErrTarget when v is not a
// non-nil pointer, else an *Error for anything wrong with data, in which
// case v is not changed. Like json.Unmarshal, it decodes into the value v
// points to: fields the input does not give keep what they held.
//
// One case escapes the walk: a field promoted through a nil embedded
// pointer to an unexported struct, which encoding/json cannot set. Decode
// then returns json.Unmarshal's error as an *Error, and v is as
// json.Unmarshal left it.
func Decode(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w, not %T", ErrTarget, v)
	}
	if err := check(data, rv.Type().Elem()); err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		// The walk takes only what encoding/json takes; this is a type
		// the walk does not know well enough (an embedded pointer to an
		// unexported struct, say).
		e := describe(err, 0)
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			e.Path, e.Offset = te.Field, te.Offset
		}
		return e
	}
	return nil
}

// check walks data against the plan of t, returning ErrEmpty or the first
// problem, or nil when encoding/json can decode data into a t.
func check(data []byte, t reflect.Type) error {
	d := decoder{data: data}
	d.ws()
	if d.off == len(data) {
		return ErrEmpty
	}
	if e := d.root(planFor(t)); e != nil {
		e.finish()
		if e.Err != ErrSyntax {
			// A syntax error anywhere says more than a wrong field
			// before it.
			if se := validate(data); se != nil {
				return se
			}
			if e.Path == "" {
				e.Msg = "the request " + e.Msg
			}
		}
		return e
	}
	d.ws()
	if d.off < len(data) {
		return d.syntax("unexpected data after the JSON value")
	}
	return nil
}

// root reads the top-level value: an object for a struct or a map.
func (d *decoder) root(p *plan) *Error {
	c := d.data[d.off]
	if (p.kind == kindStruct || p.kind == kindMap) && c != '{' {
		if !startsValue(c) {
			return d.syntax("expected a value")
		}
		return typeErr(d.off, "must be a JSON object, not "+kindName(c))
	}
	return d.value(p)
}

// validate checks only the syntax of data.
func validate(data []byte) *Error {
	d := decoder{data: data}
	d.ws()
	if e := d.skip(); e != nil {
		return e
	}
	d.ws()
	if d.off < len(data) {
		return d.syntax("unexpected data after the JSON value")
	}
	return nil
}
