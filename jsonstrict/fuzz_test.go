package jsonstrict

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
)

// fuzzTypes are the targets FuzzDecode picks from.
var fuzzTypes = []reflect.Type{
	reflect.TypeFor[api.CreateAccountRequest](),
	reflect.TypeFor[api.UpdateAccountRequest](),
	reflect.TypeFor[api.CreateUserRequest](),
	reflect.TypeFor[kitchen](),
	reflect.TypeFor[embedding](),
	reflect.TypeFor[accountRequest](),
	reflect.TypeFor[[]int16](),
	reflect.TypeFor[map[string]any](),
}

// FuzzDecode checks that Decode never panics; that what it takes, strict
// encoding/json takes too and decodes to the same value; and that what it
// refuses while encoding/json takes it is refused by one of the rules
// that are stricter on purpose.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"name":"acme","limits":{"conn":10,"mem_storage":-1},"tags":["a"]}`,
		`{"Name":"acme"}`, `{"name":"a","name":"b"}`, `{"limits":{"conn":"10"}}`,
		`{"account":"a","description":null,"tags":null}`,
		`{"account":"a","name":"u","limits":{"times":[{"start":"08:00:00","end":"17:00:00"}]}}`,
		`{"i8":127,"u8":-0,"f32":3.5e38,"num":"1e3","bytes":"aGk=","arr":["a","b","c"]}`,
		`{"mi":{"-128":"a"},"mu":{"1":true},"mt":{"UP":1},"q":"12","qp":"null","qs":"\"x\""}`,
		`{"level":"low","span":"3d","spans":[null],"iface":null,"nest":{"nest":{}}}`,
		`{"X":1,"V":2,"W":3}`, `[1,2,-32768]`, `{"a":{"b":[1,{"c":null}]}}`, `{} {}`, ``, `null`,
	} {
		for i := range fuzzTypes {
			f.Add(uint8(i), []byte(s))
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i, typ := range fuzzTypes {
		for range 5 {
			v := reflect.New(typ)
			fill(r, v.Elem(), 0)
			data, err := json.Marshal(v.Interface())
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), data)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		typ := fuzzTypes[int(which)%len(fuzzTypes)]
		got := reflect.New(typ)
		err := Decode(data, got.Interface())
		want := reflect.New(typ)
		stdErr := stdStrict(data, want.Interface())

		// The walk must never take what encoding/json cannot decode:
		// Decode would then fail late, with a worse error.
		if check(data, typ) == nil && json.Unmarshal(data, reflect.New(typ).Interface()) != nil {
			t.Fatalf("the walk takes %q into %v, encoding/json refuses it", data, typ)
		}
		switch {
		case err == nil && stdErr != nil:
			t.Fatalf("Decode takes %q into %v, strict encoding/json refuses it: %v", data, typ, stdErr)
		case err == nil:
			if !reflect.DeepEqual(got.Interface(), want.Interface()) {
				t.Fatalf("Decode and encoding/json differ on %q:\n got %+v\nwant %+v", data, got.Elem(), want.Elem())
			}
		case stdErr == nil && !stricterOnPurpose(err):
			t.Fatalf("Decode refuses %q into %v, which strict encoding/json takes: %v", data, typ, err)
		}
		if err != nil && !errors.Is(err, ErrEmpty) {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode error %T, want *Error", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("Decode error %q is not one line", err)
			}
		}
	})
}

// stricterOnPurpose reports whether err is a refusal by a rule stricter
// than encoding/json on purpose: a field named in another case, a field or
// key given twice, null where Go has no nil, a Go array given too many
// elements, a ",string" field holding a number not written as JSON.
func stricterOnPurpose(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch {
	case errors.Is(err, ErrUnknownField), errors.Is(err, ErrDuplicateField):
		return true
	case errors.Is(err, ErrType):
		return strings.HasSuffix(e.Msg, ", not null") ||
			strings.HasPrefix(e.Msg, "must have at most ") ||
			strings.HasPrefix(e.Msg, "must be a string holding ")
	}
	return false
}
