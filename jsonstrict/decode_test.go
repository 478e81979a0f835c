package jsonstrict

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
)

// accountRequest is api.AccountRequest as the service means to tag it: a
// user who writes "name" meant "account".
type accountRequest struct {
	Account string `json:"account" aka:"name,account_name"`
}

// test is one input for one target type and what Decode must say.
type test struct {
	name string
	give string
	// want is the error's text ("" for success): the text is the contract,
	// shown to users as it is.
	want string
	// class is what the error must match with errors.Is (nil: no check
	// beyond the text).
	class error
	// path is the error's Path, when the class is set.
	path string
}

// run decodes each test's input into a new value made by newTarget, which
// holds something already: on an error it must still hold exactly that.
func run(t *testing.T, newTarget func() any, tests []test) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, before := newTarget(), newTarget()
			err := Decode([]byte(tt.give), target)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Decode(%s) = %v, want success", tt.give, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Decode(%s) succeeded, want %q", tt.give, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Decode(%s) error\n got: %s\nwant: %s", tt.give, err, tt.want)
			}
			if tt.class != nil {
				if !errors.Is(err, tt.class) {
					t.Errorf("Decode(%s) = %v, not %v", tt.give, err, tt.class)
				}
				var e *Error
				if tt.class != ErrEmpty && (!errors.As(err, &e) || e.Path != tt.path) {
					t.Errorf("Decode(%s) error path = %q, want %q", tt.give, e.Path, tt.path)
				}
			}
			if !reflect.DeepEqual(target, before) {
				t.Errorf("Decode(%s) failed but changed the target: %+v", tt.give, target)
			}
		})
	}
}

// prefilled returns a CreateAccountRequest that already holds a value, to
// see a failed Decode leave it alone.
func prefilled() any { return &api.CreateAccountRequest{Name: "keep", Tags: []string{"t"}} }

func TestWholeInput(t *testing.T) {
	run(t, prefilled, []test{
		{name: "empty", give: "", want: ErrEmpty.Error(), class: ErrEmpty},
		{name: "white space", give: " \n\t\r ", want: ErrEmpty.Error(), class: ErrEmpty},
		{name: "white space around", give: " \n{\"name\":\"a\"}\n "},
		{name: "array", give: `[]`, want: "the request must be a JSON object, not an array", class: ErrType},
		{name: "null", give: `null`, want: "the request must be a JSON object, not null", class: ErrType},
		{name: "string", give: `"x"`, want: "the request must be a JSON object, not a string", class: ErrType},
		{name: "number", give: ` 12`, want: "the request must be a JSON object, not a number", class: ErrType},
		{name: "two objects", give: `{} {}`, want: "not valid JSON at byte 3: unexpected data after the JSON value, found '{'", class: ErrSyntax},
		{name: "garbage after", give: `{"name":"a"}x`, want: "not valid JSON at byte 12: unexpected data after the JSON value, found 'x'", class: ErrSyntax},
		{name: "ends early", give: `{"name":"a"`, want: "not valid JSON: it ends too early (at byte 11)", class: ErrSyntax},
		{name: "ends in a string", give: `{"name":"a`, want: "not valid JSON: it ends too early (at byte 10)", class: ErrSyntax},
		{name: "ends in an escape", give: `{"name":"a\u00`, want: "not valid JSON: it ends too early (at byte 14)", class: ErrSyntax},
		{name: "trailing comma", give: `{"name":"a",}`, want: "not valid JSON at byte 12: expected a field name in double quotes, found '}'", class: ErrSyntax},
		{name: "trailing comma in array", give: `{"tags":["a",]}`, want: "not valid JSON at byte 13: expected a value, found ']'", class: ErrSyntax},
		{name: "no colon", give: `{"name" "a"}`, want: "not valid JSON at byte 8: expected ':' after a field name, found '\"'", class: ErrSyntax},
		{name: "no comma", give: `{"name":"a" "tags":[]}`, want: "not valid JSON at byte 12: expected ',' or '}' after a field's value, found '\"'", class: ErrSyntax},
		{name: "unquoted key", give: `{name:"a"}`, want: "not valid JSON at byte 1: expected a field name in double quotes, found 'n'", class: ErrSyntax},
		{name: "control character", give: "{\"name\":\"a\x01\"}", want: "not valid JSON at byte 10: control character in a string (it must be escaped)", class: ErrSyntax},
		{name: "bad escape", give: `{"name":"\q"}`, want: "not valid JSON at byte 10: invalid escape in a string, found 'q'", class: ErrSyntax},
		{name: "bad unicode escape", give: `{"name":"\u12G4"}`, want: `not valid JSON at byte 13: invalid \u escape in a string, found 'G'`, class: ErrSyntax},
		{name: "bad literal", give: `{"name":tru}`, want: "not valid JSON at byte 11: invalid literal (true, false or null expected), found '}'", class: ErrSyntax},
		{name: "leading zero", give: `{"limits":{"conn":01}}`, want: "not valid JSON at byte 19: expected ',' or '}' after a field's value, found '1'", class: ErrSyntax},
		{name: "lone minus", give: `{"limits":{"conn":-}}`, want: "not valid JSON at byte 19: invalid number, found '}'", class: ErrSyntax},
		{name: "bare fraction", give: `{"limits":{"conn":1.}}`, want: "not valid JSON at byte 20: invalid number: a digit must follow '.', found '}'", class: ErrSyntax},
		{name: "bare exponent", give: `{"limits":{"conn":1e}}`, want: "not valid JSON at byte 20: invalid number: a digit must follow the exponent, found '}'", class: ErrSyntax},
		{name: "byte order mark", give: "\xef\xbb\xbf{}", want: "not valid JSON at byte 0: expected a value", class: ErrSyntax},
		// The type error comes first in the input, but the input is not
		// JSON at all: that is what the user must hear.
		{name: "syntax error wins", give: `{"name":1,"tags":[}`, want: "not valid JSON at byte 18: expected a value, found '}'", class: ErrSyntax},
		{name: "syntax error wins over unknown field", give: `{"nme":1,`, want: "not valid JSON: it ends too early (at byte 9)", class: ErrSyntax},
	})
}

func TestDepth(t *testing.T) {
	deep := func(n int) []byte {
		return []byte(`{"any":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`)
	}
	var k kitchen
	if err := Decode(deep(maxDepth-1), &k); err != nil {
		t.Fatalf("nesting %d deep: %v", maxDepth, err)
	}
	err := Decode(deep(maxDepth), &k)
	if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "nested more than 10000 deep") {
		t.Fatalf("nesting %d deep: %v, want a syntax error", maxDepth+1, err)
	}
	if json.Unmarshal(deep(maxDepth), &k) == nil {
		t.Fatal("encoding/json takes what Decode refuses as too deep: the limits differ")
	}

	// An error deep down has a path cut in the middle, not one as long as
	// the input.
	n := maxDepth / 2
	in := strings.Repeat(`{"nest":`, n) + `{"sl":[1,{}]}` + strings.Repeat(`}`, n)
	err = Decode([]byte(in), &k)
	want := `"nest.nest.nest.nest.nest.nest.nest.nest.….nest.nest.nest.nest.nest.nest.sl[1]" must be a number, not an object`
	if err == nil || err.Error() != want {
		t.Fatalf("deep error = %v, want %s", err, want)
	}
}

func TestFieldNames(t *testing.T) {
	t.Run("create account", func(t *testing.T) {
		run(t, prefilled, []test{
			{name: "exact", give: `{"name":"acme","description":"d"}`},
			{name: "escaped but exact", give: `{"n\u0061me":"acme"}`},
			{name: "capitalized", give: `{"Name":"acme"}`, want: `unknown field "Name": use "name"`, class: ErrUnknownField, path: "Name"},
			{name: "upper case", give: `{"NAME":"acme"}`, want: `unknown field "NAME": use "name"`, class: ErrUnknownField, path: "NAME"},
			{name: "swapped letters", give: `{"nmae":"acme"}`, want: `unknown field "nmae": use "name"`, class: ErrUnknownField, path: "nmae"},
			{name: "nested, one letter short", give: `{"name":"a","limits":{"con":10}}`, want: `unknown field "limits.con": use "conn"`, class: ErrUnknownField, path: "limits.con"},
			{name: "embedded struct's field", give: `{"name":"a","limits":{"mem_storag":1}}`, want: `unknown field "limits.mem_storag": use "mem_storage"`, class: ErrUnknownField, path: "limits.mem_storag"},
			{name: "two edits", give: `{"name":"a","limits":{"wildcrds_":true}}`, want: `unknown field "limits.wildcrds_": use "wildcards"`, class: ErrUnknownField, path: "limits.wildcrds_"},
			{name: "too far, many fields", give: `{"name":"a","limits":{"zzz":1}}`, want: `unknown field "limits.zzz"`, class: ErrUnknownField, path: "limits.zzz"},
			{name: "too far, few fields: listed", give: `{"name":"a","default_permissions":{"publish":{}}}`, want: `unknown field "default_permissions.publish": use one of "pub", "sub", "resp"`, class: ErrUnknownField, path: "default_permissions.publish"},
			{name: "short names need closer", give: `{"name":"a","default_permissions":{"pb":{}}}`, want: `unknown field "default_permissions.pb": use "pub"`, class: ErrUnknownField, path: "default_permissions.pb"},
			{name: "short name two edits away", give: `{"name":"a","default_permissions":{"p":{}}}`, want: `unknown field "default_permissions.p": use one of "pub", "sub", "resp"`, class: ErrUnknownField, path: "default_permissions.p"},
			{name: "deeper", give: `{"name":"a","default_permissions":{"resp":{"max":1,"tll":2}}}`, want: `unknown field "default_permissions.resp.tll": use "ttl"`, class: ErrUnknownField, path: "default_permissions.resp.tll"},
		})
	})
	t.Run("aka", func(t *testing.T) {
		run(t, func() any { return &accountRequest{Account: "keep"} }, []test{
			{name: "field", give: `{"account":"acme"}`},
			{name: "aka", give: `{"name":"acme"}`, want: `unknown field "name": use "account"`, class: ErrUnknownField, path: "name"},
			{name: "second aka", give: `{"account_name":"acme"}`, want: `unknown field "account_name": use "account"`, class: ErrUnknownField, path: "account_name"},
			{name: "aka in other case", give: `{"Name":"acme"}`, want: `unknown field "Name": use "account"`, class: ErrUnknownField, path: "Name"},
			{name: "field in other case", give: `{"Account":"acme"}`, want: `unknown field "Account": use "account"`, class: ErrUnknownField, path: "Account"},
			{name: "none near", give: `{"id":"acme"}`, want: `unknown field "id": use "account"`, class: ErrUnknownField, path: "id"},
		})
	})
	t.Run("update account", func(t *testing.T) {
		run(t, func() any { return &api.UpdateAccountRequest{Account: "keep"} }, []test{
			{name: "aka", give: `{"name":"acme"}`, want: `unknown field "name": use "account"`, class: ErrUnknownField, path: "name"},
		})
	})
	t.Run("few fields", func(t *testing.T) {
		run(t, func() any { return &small{} }, []test{
			{name: "listed", give: `{"gamma":1}`, want: `unknown field "gamma": use one of "alpha", "beta"`, class: ErrUnknownField, path: "gamma"},
			{name: "close", give: `{"bet":1,"alph":2}`, want: `unknown field "bet": use "beta"`, class: ErrUnknownField, path: "bet"},
		})
		run(t, func() any { return &pair{} }, []test{
			{name: "tie is no suggestion", give: `{"cut":1}`, want: `unknown field "cut": use one of "cat", "cot"`, class: ErrUnknownField, path: "cut"},
		})
		run(t, func() any { return &struct{}{} }, []test{
			{name: "no fields", give: `{"a":1}`, want: `unknown field "a": this object takes no fields`, class: ErrUnknownField, path: "a"},
			{name: "empty object", give: `{}`},
		})
		run(t, func() any { return &wide{} }, []test{
			{name: "not listed", give: `{"Z":1}`, want: `unknown field "Z"`, class: ErrUnknownField, path: "Z"},
			{name: "case", give: `{"a":1}`, want: `unknown field "a": use "A"`, class: ErrUnknownField, path: "a"},
		})
	})
	t.Run("embedding and tags", func(t *testing.T) {
		run(t, func() any { return &kitchen{} }, []test{
			{name: "promoted", give: `{"id":1,"note":"n","level":"low","depth":2}`},
			{name: "json dash hides", give: `{"Hidden":"x"}`, want: `unknown field "Hidden"`, class: ErrUnknownField, path: "Hidden"},
			{name: "json dash comma is a name", give: `{"-":"x"}`},
			{name: "untagged field keeps its Go name", give: `{"Untagged":1}`},
			{name: "untagged in other case", give: `{"untagged":1}`, want: `unknown field "untagged": use "Untagged"`, class: ErrUnknownField, path: "untagged"},
			{name: "embedded struct's own name is no field", give: `{"Inner":{}}`, want: `unknown field "Inner"`, class: ErrUnknownField, path: "Inner"},
		})
		run(t, func() any { return &embedding{} }, []test{
			{name: "conflict hides both", give: `{"X":1}`, want: `unknown field "X": use one of "W", "V"`, class: ErrUnknownField, path: "X"},
			{name: "shallower wins", give: `{"V":1}`},
			{name: "tagged wins", give: `{"W":1}`},
		})
	})
	t.Run("names not echoed", func(t *testing.T) {
		seed := "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY"
		run(t, prefilled, []test{
			{name: "long key", give: `{"` + seed + `":1}`, want: `unknown field "<58-byte name>"`, class: ErrUnknownField, path: "<58-byte name>"},
			{name: "control character", give: `{"a\u0001b":1}`, want: `unknown field "<3-byte name>"`, class: ErrUnknownField, path: "<3-byte name>"},
			{name: "invalid UTF-8", give: "{\"a\xffb\":1}", want: `unknown field "<5-byte name>"`, class: ErrUnknownField, path: "<5-byte name>"},
		})
	})
}

func TestDuplicates(t *testing.T) {
	run(t, prefilled, []test{
		{name: "twice", give: `{"name":"a","name":"b"}`, want: `"name" is given more than once`, class: ErrDuplicateField, path: "name"},
		{name: "escaped the second time", give: `{"name":"a","n\u0061me":"b"}`, want: `"name" is given more than once`, class: ErrDuplicateField, path: "name"},
		{name: "nested", give: `{"limits":{"conn":1,"leaf":1,"conn":2}}`, want: `"limits.conn" is given more than once`, class: ErrDuplicateField, path: "limits.conn"},
		{name: "same name in two objects", give: `{"name":"a","limits":{"conn":1},"default_permissions":{"pub":{"allow":["a"]},"sub":{"allow":["b"]}}}`},
	})
	run(t, func() any { return &kitchen{} }, []test{
		{name: "map key", give: `{"m":{"a":1,"a":2}}`, want: `"m.a" is given more than once`, class: ErrDuplicateField, path: "m.a"},
		{name: "map key third", give: `{"m":{"a":1,"b":2,"a":3}}`, want: `"m.a" is given more than once`, class: ErrDuplicateField, path: "m.a"},
		{name: "map keys distinct", give: `{"m":{"a":1,"b":2,"c":3}}`},
		{name: "inside any: not ours", give: `{"any":{"a":1,"a":2}}`},
		// encoding/json reads a byte that is not UTF-8 as U+FFFD, in keys
		// too: these keys are one key to it, and the second would replace
		// the first.
		{name: "map key invalid UTF-8 twice", give: "{\"m\":{\"a\xff\":1,\"a\xfe\":2}}", want: `"m.<4-byte name>" is given more than once`, class: ErrDuplicateField, path: "m.<4-byte name>"},
		{name: "map key invalid UTF-8 then U+FFFD", give: "{\"m\":{\"a\xff\":1,\"a\\ufffd\":2}}", want: `"m.<4-byte name>" is given more than once`, class: ErrDuplicateField, path: "m.<4-byte name>"},
		{name: "map key invalid UTF-8 then a lone surrogate", give: "{\"m\":{\"a\xff\":1,\"a\\ud800\":2}}", want: `"m.<4-byte name>" is given more than once`, class: ErrDuplicateField, path: "m.<4-byte name>"},
	})
}

func TestTypes(t *testing.T) {
	t.Run("create account", func(t *testing.T) {
		run(t, prefilled, []test{
			{name: "string for number", give: `{"name":"a","limits":{"conn":"10"}}`, want: `"limits.conn" must be a number, not a string`, class: ErrType, path: "limits.conn"},
			{name: "number for string", give: `{"name":1}`, want: `"name" must be a string, not a number`, class: ErrType, path: "name"},
			{name: "null for string", give: `{"name":null}`, want: `"name" must be a string, not null`, class: ErrType, path: "name"},
			{name: "null for pointer", give: `{"name":"a","limits":null,"default_permissions":null}`},
			{name: "null for slice", give: `{"name":"a","tags":null}`},
			{name: "object for string", give: `{"description":{}}`, want: `"description" must be a string, not an object`, class: ErrType, path: "description"},
			{name: "string for object", give: `{"limits":"none"}`, want: `"limits" must be an object, not a string`, class: ErrType, path: "limits"},
			{name: "array element", give: `{"tags":["a","b",3]}`, want: `"tags[2]" must be a string, not a number`, class: ErrType, path: "tags[2]"},
			{name: "string for array", give: `{"tags":"a"}`, want: `"tags" must be an array, not a string`, class: ErrType, path: "tags"},
			{name: "bool", give: `{"limits":{"wildcards":"yes"}}`, want: `"limits.wildcards" must be true or false, not a string`, class: ErrType, path: "limits.wildcards"},
			{name: "jwt permissions", give: `{"default_permissions":{"pub":{"allow":["a",2]}}}`, want: `"default_permissions.pub.allow[1]" must be a string, not a number`, class: ErrType, path: "default_permissions.pub.allow[1]"},
			{name: "jwt permission list as string", give: `{"default_permissions":{"sub":{"deny":"a"}}}`, want: `"default_permissions.sub.deny" must be an array, not a string`, class: ErrType, path: "default_permissions.sub.deny"},
			{name: "jwt response ttl is nanoseconds", give: `{"default_permissions":{"resp":{"max":1,"ttl":"1s"}}}`, want: `"default_permissions.resp.ttl" must be a number, not a string`, class: ErrType, path: "default_permissions.resp.ttl"},
			{name: "null for jwt struct", give: `{"default_permissions":{"pub":null}}`, want: `"default_permissions.pub" must be an object, not null`, class: ErrType, path: "default_permissions.pub"},
			{name: "valid", give: `{"name":"a","limits":{"conn":10,"mem_storage":-1,"wildcards":false},"default_permissions":{"pub":{"allow":["a.>"]},"resp":{"max":1,"ttl":1000000000}},"tags":["x"]}`},
		})
	})
	t.Run("update account", func(t *testing.T) {
		run(t, func() any { return &api.UpdateAccountRequest{Account: "keep"} }, []test{
			{name: "null description and tags", give: `{"account":"a","description":null,"tags":null}`},
			{name: "bool limit", give: `{"account":"a","limits":{"disallow_bearer":1}}`, want: `"limits.disallow_bearer" must be true or false, not a number`, class: ErrType, path: "limits.disallow_bearer"},
			{name: "tags element", give: `{"account":"a","tags":[null]}`, want: `"tags[0]" must be a string, not null`, class: ErrType, path: "tags[0]"},
			{name: "jetstream limit", give: `{"account":"a","limits":{"disk_storage":1.5}}`, want: `"limits.disk_storage" must be a whole number`, class: ErrType, path: "limits.disk_storage"},
		})
	})
	t.Run("create user", func(t *testing.T) {
		run(t, func() any { return &api.CreateUserRequest{Name: "keep"} }, []test{
			{name: "time range", give: `{"account":"a","name":"u","limits":{"times":[{"start":"08:00:00","end":5}]}}`, want: `"limits.times[0].end" must be a string, not a number`, class: ErrType, path: "limits.times[0].end"},
			{name: "bearer", give: `{"account":"a","name":"u","bearer_token":"true"}`, want: `"bearer_token" must be true or false, not a string`, class: ErrType, path: "bearer_token"},
			{name: "resp max", give: `{"account":"a","name":"u","permissions":{"resp":{"max":"5"}}}`, want: `"permissions.resp.max" must be a number, not a string`, class: ErrType, path: "permissions.resp.max"},
			{name: "src", give: `{"account":"a","name":"u","limits":{"src":[{}]}}`, want: `"limits.src[0]" must be a string, not an object`, class: ErrType, path: "limits.src[0]"},
			{name: "valid", give: `{"account":"a","name":"u","expires_in":"24h","limits":{"src":["10.0.0.0/8"],"times":[{"start":"08:00:00","end":"17:00:00"}],"times_location":"UTC"},"allowed_connection_types":["STANDARD"]}`},
		})
	})
}

func TestNumbers(t *testing.T) {
	run(t, func() any { return &kitchen{} }, []test{
		{name: "int8 max", give: `{"i8":127}`},
		{name: "int8 min", give: `{"i8":-128}`},
		{name: "int8 over", give: `{"i8":128}`, want: `"i8" is too large (at most 127)`, class: ErrType, path: "i8"},
		{name: "int8 under", give: `{"i8":-129}`, want: `"i8" is too small (at least -128)`, class: ErrType, path: "i8"},
		{name: "int64 min", give: `{"i64":-9223372036854775808}`},
		{name: "int64 under", give: `{"i64":-9223372036854775809}`, want: `"i64" is too small (at least -9223372036854775808)`, class: ErrType, path: "i64"},
		{name: "int64 far over", give: `{"i64":123456789012345678901234567890}`, want: `"i64" is too large (at most 9223372036854775807)`, class: ErrType, path: "i64"},
		{name: "negative zero into int", give: `{"i64":-0}`},
		{name: "fraction into int", give: `{"i8":1.5}`, want: `"i8" must be a whole number`, class: ErrType, path: "i8"},
		{name: "whole fraction into int", give: `{"i8":1.0}`, want: `"i8" must be a whole number`, class: ErrType, path: "i8"},
		{name: "exponent into int", give: `{"i8":1e2}`, want: `"i8" must be a whole number`, class: ErrType, path: "i8"},
		{name: "negative into uint", give: `{"u8":-1}`, want: `"u8" must not be negative`, class: ErrType, path: "u8"},
		{name: "negative zero into uint", give: `{"u8":-0}`, want: `"u8" must not be negative`, class: ErrType, path: "u8"},
		{name: "uint8 over", give: `{"u8":256}`, want: `"u8" is too large (at most 255)`, class: ErrType, path: "u8"},
		{name: "uint64 max", give: `{"u64":18446744073709551615}`},
		{name: "uint64 over", give: `{"u64":18446744073709551616}`, want: `"u64" is too large (at most 18446744073709551615)`, class: ErrType, path: "u64"},
		{name: "float32 over", give: `{"f32":3.5e38}`, want: `"f32" is too large (out of range)`, class: ErrType, path: "f32"},
		{name: "float64 over", give: `{"f64":1e400}`, want: `"f64" is too large (out of range)`, class: ErrType, path: "f64"},
		{name: "float64 under", give: `{"f64":-1e400}`, want: `"f64" is too small (out of range)`, class: ErrType, path: "f64"},
		{name: "float64 tiny is zero", give: `{"f64":1e-400,"f32":-1E-50}`},
		{name: "json.Number", give: `{"num":-12.5e3}`},
		{name: "json.Number in a string", give: `{"num":"12.5"}`},
		{name: "json.Number bad string", give: `{"num":"12,5"}`, want: `"num" must be a number, or a string holding one`, class: ErrType, path: "num"},
		{name: "json.Number empty string", give: `{"num":""}`, want: `"num" must be a number, or a string holding one`, class: ErrType, path: "num"},
		{name: "json.Number bool", give: `{"num":true}`, want: `"num" must be a number, not true`, class: ErrType, path: "num"},
	})
}

func TestContainers(t *testing.T) {
	run(t, func() any { return &kitchen{} }, []test{
		{name: "bytes base64", give: `{"bytes":"aGk="}`},
		{name: "bytes bad base64", give: `{"bytes":"a*k="}`, want: `"bytes" must be a base64 string (standard alphabet, padded)`, class: ErrType, path: "bytes"},
		{name: "bytes as numbers", give: `{"bytes":[1,2]}`},
		{name: "bytes element over", give: `{"bytes":[1,256]}`, want: `"bytes[1]" is too large (at most 255)`, class: ErrType, path: "bytes[1]"},
		{name: "bytes from number", give: `{"bytes":1}`, want: `"bytes" must be a base64 string, not a number`, class: ErrType, path: "bytes"},
		{name: "array fits", give: `{"arr":["a","b"]}`},
		{name: "array shorter", give: `{"arr":["a"]}`},
		{name: "array longer", give: `{"arr":["a","b","c"]}`, want: `"arr" must have at most 2 elements`, class: ErrType, path: "arr"},
		{name: "array null", give: `{"arr":null}`, want: `"arr" must be an array, not null`, class: ErrType, path: "arr"},
		{name: "map value", give: `{"m":{"x":"1"}}`, want: `"m.x" must be a number, not a string`, class: ErrType, path: "m.x"},
		{name: "map keys free", give: `{"m":{"Any Key!":1,"":2}}`},
		{name: "map key long", give: `{"m":{"` + strings.Repeat("k", 41) + `":"v"}}`, want: `"m.<41-byte name>" must be a number, not a string`, class: ErrType, path: "m.<41-byte name>"},
		{name: "map null", give: `{"m":null}`},
		{name: "int key", give: `{"mi":{"-128":"a","007":"b"}}`},
		{name: "int key over", give: `{"mi":{"300":"a"}}`, want: `"mi.300" is not a valid key: the keys here must be whole numbers that fit 8 bits`, class: ErrType, path: "mi.300"},
		{name: "int key not a number", give: `{"mi":{"x":"a"}}`, want: `"mi.x" is not a valid key: the keys here must be whole numbers that fit 8 bits`, class: ErrType, path: "mi.x"},
		{name: "uint key negative", give: `{"mu":{"-1":true}}`, want: `"mu.-1" is not a valid key: the keys here must be non-negative whole numbers that fit 16 bits`, class: ErrType, path: "mu.-1"},
		{name: "text key", give: `{"mt":{"UP":1}}`},
		{name: "text key refused", give: `{"mt":{"low":1}}`, want: `"mt.low" is not a valid key: must be upper case`, path: "mt.low"},
		{name: "any", give: `{"any":{"x":[1,{"y":null}],"Y":true}}`},
		{name: "raw", give: `{"raw":{"Name":1,"Name":[2]}}`},
		{name: "any null", give: `{"any":null,"raw":null}`},
		{name: "pointer to pointer", give: `{"pp":5}`},
		{name: "pointer to pointer null", give: `{"pp":null}`},
		{name: "pointer to pointer string", give: `{"pp":"5"}`, want: `"pp" must be a number, not a string`, class: ErrType, path: "pp"},
		{name: "interface with methods null", give: `{"iface":null}`},
		{name: "interface with methods", give: `{"iface":"x"}`, want: `"iface" must be null (its Go type is an interface with methods)`, class: ErrType, path: "iface"},
		{name: "recursive", give: `{"nest":{"nest":{"s":1}}}`, want: `"nest.nest.s" must be a string, not a number`, class: ErrType, path: "nest.nest.s"},
		{name: "map of structs", give: `{"kids":{"a":{"sl":[1,"x"]}}}`, want: `"kids.a.sl[1]" must be a number, not a string`, class: ErrType, path: "kids.a.sl[1]"},
		{name: "map of structs unknown", give: `{"kids":{"a":{"sl":[1],"slx":1}}}`, want: `unknown field "kids.a.slx": use "sl"`, class: ErrUnknownField, path: "kids.a.slx"},
		{name: "aka on a local type", give: `{"text":"x"}`, want: `unknown field "text": use "s"`, class: ErrUnknownField, path: "text"},
	})
}

func TestOwnDecoding(t *testing.T) {
	run(t, func() any { return &kitchen{} }, []test{
		{name: "text", give: `{"level":"high"}`},
		{name: "text refused", give: `{"level":"mid"}`, want: `"level" must be low or high`, path: "level"},
		{name: "text given a number", give: `{"level":5}`, want: `"level" must be a string, not a number`, path: "level"},
		{name: "text given null", give: `{"level":null}`},
		{name: "json", give: `{"span":"3d"}`},
		{name: "json refused", give: `{"span":"x"}`, want: `"span" must be a number of days such as "3d"`, path: "span"},
		{name: "json in array", give: `{"spans":[null,"2d","x"]}`, want: `"spans[2]" must be a number of days such as "3d"`, path: "spans[2]"},
		{name: "json gets null", give: `{"span":null}`, want: `"span" must be a number of days such as "3d"`, path: "span"},
		{name: "json syntax checked first", give: `{"span":"3d}`, want: `not valid JSON: it ends too early (at byte 12)`, class: ErrSyntax},
		{name: "quoted", give: `{"q":"12","qp":"true","qs":"\"hi\""}`},
		{name: "quoted null", give: `{"qp":null}`},
		{name: "quoted null inside", give: `{"qp":"null"}`},
		{name: "quoted unquoted", give: `{"q":12}`, want: `"q" must be a string holding a number, not a number`, class: ErrType, path: "q"},
		{name: "quoted not a number", give: `{"q":"x"}`, want: `"q" must be a string holding a number`, class: ErrType, path: "q"},
		{name: "quoted empty", give: `{"q":""}`, want: `"q" must be a string holding a number`, class: ErrType, path: "q"},
		{name: "quoted space", give: `{"q":"1 "}`, want: `"q" must be a string holding a number`, class: ErrType, path: "q"},
		{name: "quoted over", give: `{"q":"99999999999999999999"}`, want: `"q" is too large (at most 9223372036854775807)`, class: ErrType, path: "q"},
		{name: "quoted string unquoted inside", give: `{"qs":"hi"}`, want: `"qs" must be a string holding a string`, class: ErrType, path: "qs"},
	})
	// The error of the type's own method is reachable.
	err := Decode([]byte(`{"level":"mid"}`), &kitchen{})
	var e *Error
	if !errors.As(err, &e) || e.Err == nil || e.Err.Error() != "must be low or high" {
		t.Errorf("Decode: %#v, want the type's own error in Err", err)
	}
}

// TestConfigFile reads a type shaped like the config file's.
func TestConfigFile(t *testing.T) {
	run(t, func() any { return &configFile{NATSURL: "keep"} }, []test{
		{name: "valid", give: `{"nats_url":"nats://x","resolver_timeout":"2s","_comment":{"any":["thing"]}}`},
		{name: "misspelt", give: `{"nats_urls":"x"}`, want: `unknown field "nats_urls": use "nats_url"`, class: ErrUnknownField, path: "nats_urls"},
		{name: "duration as number", give: `{"resolver_timeout":5}`, want: `"resolver_timeout" must be a duration string such as "5s"`, path: "resolver_timeout"},
		{name: "bad duration", give: `{"resolver_timeout":"5x"}`, want: `"resolver_timeout" must be a duration such as "5s", got "5x"`, path: "resolver_timeout"},
		{name: "fraction", give: `{"max_inflight":1.5}`, want: `"max_inflight" must be a whole number`, class: ErrType, path: "max_inflight"},
	})
}

// TestNoValuesEchoed gives wrong values that could be secrets and checks
// that no error repeats them.
func TestNoValuesEchoed(t *testing.T) {
	const secret = "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY"
	for _, give := range []string{
		`{"name":"a","limits":{"conn":"` + secret + `"}}`,
		`{"name":["` + secret + `"]}`,
		`{"name":"a","tags":[1,"` + secret + `",{"` + secret + `":1}]}`,
		`{"name":"a","limits":{"` + secret + `":"` + secret + `"}}`,
		`{"name":"` + secret + "\x01" + `"}`,
		`{"name":"` + secret + `"`,
		`{"name":` + secret + `}`,
		`{"name":"a"}"` + secret + `"`,
		`"` + secret + `"`,
	} {
		err := Decode([]byte(give), &api.CreateAccountRequest{})
		if err == nil {
			t.Fatalf("Decode(%s) succeeded", give)
		}
		if strings.Contains(err.Error(), secret[:8]) {
			t.Errorf("Decode(%s) = %q: it repeats the value", give, err)
		}
	}
	for _, give := range []string{
		`{"level":"` + secret + `"}`,
		`{"mt":{"` + strings.ToLower(secret) + `":1}}`,
		`{"span":"` + secret + `"}`,
	} {
		err := Decode([]byte(give), &kitchen{})
		if err == nil || strings.Contains(strings.ToUpper(err.Error()), secret[:8]) {
			t.Errorf("Decode(%s) = %v: want an error not repeating the value", give, err)
		}
	}
}

func TestTarget(t *testing.T) {
	var r api.CreateAccountRequest
	for _, v := range []any{nil, r, (*api.CreateAccountRequest)(nil), 5} {
		if err := Decode([]byte(`{}`), v); !errors.Is(err, ErrTarget) {
			t.Errorf("Decode(%T) = %v, want ErrTarget", v, err)
		}
	}
	// A pointer to a pointer takes null, as encoding/json makes it nil.
	p := &api.CreateAccountRequest{Name: "x"}
	if err := Decode([]byte(`null`), &p); err != nil || p != nil {
		t.Errorf("Decode(null) into **T = %v, %v; want nil, nil", err, p)
	}
	// Top-level values other than objects, for targets that are not
	// structs.
	var list []int16
	if err := Decode([]byte(` [1, 2] `), &list); err != nil || !reflect.DeepEqual(list, []int16{1, 2}) {
		t.Errorf("Decode into []int16 = %v, %v", err, list)
	}
	if err := Decode([]byte(`[1, 99999]`), &list); err == nil || err.Error() != `"[1]" is too large (at most 32767)` {
		t.Errorf("Decode into []int16 = %v", err)
	}
	if err := Decode([]byte(`{}`), &list); err == nil || err.Error() != "the request must be an array, not an object" {
		t.Errorf("Decode into []int16 = %v", err)
	}
	var m map[string]any
	if err := Decode([]byte(`[]`), &m); err == nil || err.Error() != "the request must be a JSON object, not an array" {
		t.Errorf("Decode into map = %v", err)
	}
	var sp span
	if err := Decode([]byte(`"x"`), &sp); err == nil || err.Error() != `the request must be a number of days such as "3d"` {
		t.Errorf("Decode into span = %v", err)
	}
}

type hidden struct{ A int }

// TestUnsettable covers the one case the walk passes to encoding/json's
// own error: a field promoted through a nil pointer to an unexported
// struct.
func TestUnsettable(t *testing.T) {
	var v struct{ *hidden }
	err := Decode([]byte(`{"A":1}`), &v)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(err.Error(), "cannot set embedded pointer to unexported struct") {
		t.Fatalf("Decode = %v, want encoding/json's error as an *Error", err)
	}
	v.hidden = &hidden{}
	if err := Decode([]byte(`{"A":1}`), &v); err != nil || v.A != 1 {
		t.Fatalf("Decode = %v, A = %d; want nil, 1", err, v.A)
	}
}

// TestDecodeMerges checks that a successful Decode, like json.Unmarshal,
// keeps what the target held where the input says nothing.
func TestDecodeMerges(t *testing.T) {
	got := api.CreateAccountRequest{Name: "old", Description: "kept"}
	if err := Decode([]byte(`{"name":"new"}`), &got); err != nil {
		t.Fatal(err)
	}
	want := api.CreateAccountRequest{Name: "new", Description: "kept"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestConcurrent decodes from many goroutines into types seen for the
// first time, for the race detector to watch the plan cache.
func TestConcurrent(t *testing.T) {
	type fresh struct {
		A []struct {
			B map[string]*fresh `json:"b"`
		} `json:"a"`
	}
	in := []byte(`{"a":[{"b":{"x":{"a":[]}}}]}`)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			var v fresh
			errs <- Decode(in, &v)
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	var buf bytes.Buffer
	buf.WriteString(`{"a":[{"b":{"x":{"a":[{"b":{"y":{"c":1}}}]}}}]}`)
	var v fresh
	if err := Decode(buf.Bytes(), &v); err == nil || err.Error() != `unknown field "a[0].b.x.a[0].b.y.c": use "a"` {
		t.Errorf("Decode = %v", err)
	}
}
