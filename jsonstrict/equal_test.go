package jsonstrict

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
)

// stdStrict decodes with encoding/json as strictly as it can: unknown
// fields refused, one value only.
func stdStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the value")
	}
	return nil
}

// equalTypes are the types the comparisons with encoding/json run on.
var equalTypes = []reflect.Type{
	reflect.TypeFor[api.CreateAccountRequest](),
	reflect.TypeFor[api.UpdateAccountRequest](),
	reflect.TypeFor[api.CreateUserRequest](),
	reflect.TypeFor[api.AccountReply](), // jwt.AccountClaims inside: a big real type
	reflect.TypeFor[kitchen](),
	reflect.TypeFor[embedding](),
}

// TestSameAsEncodingJSON decodes random values of each type, as
// json.Marshal writes them (some indented), and checks Decode accepts
// them all and gives what encoding/json gives.
func TestSameAsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, typ := range equalTypes {
		t.Run(typ.String(), func(t *testing.T) {
			for i := range 300 {
				v := reflect.New(typ)
				fill(r, v.Elem(), 0)
				data, err := json.Marshal(v.Interface())
				if err != nil {
					t.Fatalf("marshal: %v", err)
				}
				if i%3 == 0 {
					var buf bytes.Buffer
					_ = json.Indent(&buf, data, " ", "\t")
					data = buf.Bytes()
				}
				compare(t, typ, data)
			}
		})
	}
}

// TestSameAsEncodingJSONByHand compares on inputs written by hand, which
// json.Marshal would not write: escapes, odd spacing, numbers in other
// forms, invalid UTF-8.
func TestSameAsEncodingJSONByHand(t *testing.T) {
	for _, give := range []string{
		`{"name":"a\u00e9\ud83d\ude00\"\\\/\b\f\n\r\t","tags":["\ud800","x\u0000"]}`,
		"{\"name\":\"\xff\xfe bad UTF-8\"}",
		` { "name" : "a" , "limits" : { "conn" : -1 , "mem_storage" : 0 , "wildcards" : true } } `,
		`{"limits":{"subs":9223372036854775807,"data":-9223372036854775808}}`,
		`{"default_permissions":{"pub":{"allow":[],"deny":null},"sub":{},"resp":null}}`,
		`{"default_permissions":{"resp":{"max":-1,"ttl":0}}}`,
		`{"f32":1.5e-45,"f64":-0.0,"num":"-1E+2","u64":0}`,
		`{"i8":-0,"u8":255,"i64":12,"Untagged":1,"-":"dash"}`,
		`{"bytes":"","arr":[],"sl":[],"m":{},"mi":{"+5":"plus","-0":"z"},"mu":{"00":true}}`,
		`{"bytes":[0,255],"raw":  [1, {"x" :2}] ,"any":[true,null,"s",1.5e300,{}]}`,
		`{"q":"-0","qp":"false","qs":"\"\\u00e9\""}`,
		`{"level":"low","depth":3,"span":"12d","spans":[null,"0d"]}`,
		`{"nest":{"nest":{"kids":{"k":{"s":"deep"}}}},"kids":null}`,
		`{"V":1,"W":2}`,
		`{"account":{"name":"n","public_key":"A","claims":{"nats":{"limits":{"conn":1}}}},"resolver":[{"server":"s","code":200}]}`,
	} {
		found := false
		for _, typ := range equalTypes {
			if stdStrict([]byte(give), reflect.New(typ).Interface()) == nil {
				found = true
				compare(t, typ, []byte(give))
			}
		}
		if !found {
			t.Errorf("encoding/json takes %s into none of the types: a bad case", give)
		}
	}
}

// compare checks that Decode and strict encoding/json agree on data that
// encoding/json takes.
func compare(t *testing.T, typ reflect.Type, data []byte) {
	t.Helper()
	want := reflect.New(typ)
	if err := stdStrict(data, want.Interface()); err != nil {
		t.Fatalf("encoding/json refuses %s: %v", data, err)
	}
	got := reflect.New(typ)
	if err := Decode(data, got.Interface()); err != nil {
		t.Fatalf("Decode refuses what encoding/json takes into %v: %v\n%s", typ, err, data)
	}
	if !reflect.DeepEqual(got.Interface(), want.Interface()) {
		t.Fatalf("Decode and encoding/json differ on %s:\n got %+v\nwant %+v", data, got.Elem(), want.Elem())
	}
}

// fill sets v to a random value that json.Marshal can write.
func fill(r *rand.Rand, v reflect.Value, depth int) {
	if !v.CanSet() {
		// The fields of an unexported embedded struct can still be set.
		if v.Kind() == reflect.Struct {
			fillStruct(r, v, depth)
		}
		return
	}
	switch v.Type() {
	case reflect.TypeFor[level]():
		v.SetInt(int64(1 + r.IntN(2)))
		return
	case reflect.TypeFor[span]():
		v.Set(reflect.ValueOf(span{Days: r.IntN(100) - 50}))
		return
	case reflect.TypeFor[textKey]():
		v.SetString(strings.ToUpper(randString(r)))
		return
	case numberType:
		v.SetString([]string{"0", "-1.5", "1e3", "123456789012345678901234567890"}[r.IntN(4)])
		return
	case reflect.TypeFor[jwt.ExportType]():
		// Its own MarshalJSON knows only these.
		v.SetInt(int64([]jwt.ExportType{jwt.Stream, jwt.Service}[r.IntN(2)]))
		return
	case rawMessageType:
		b, _ := json.Marshal(randAny(r, depth))
		v.SetBytes(b)
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := int64(r.Uint64()) >> (64 - v.Type().Bits())
		if r.IntN(2) == 0 {
			n = int64(r.IntN(2000) - 1000)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n := r.Uint64() >> (64 - v.Type().Bits())
		if r.IntN(2) == 0 {
			n = uint64(r.IntN(1000))
		}
		v.SetUint(n)
	case reflect.Float32:
		v.SetFloat(float64(float32(randFloat(r, 38))))
	case reflect.Float64:
		v.SetFloat(randFloat(r, 308))
	case reflect.String:
		v.SetString(randString(r))
	case reflect.Interface:
		if v.NumMethod() == 0 && r.IntN(2) == 0 {
			if a := randAny(r, depth); a != nil {
				v.Set(reflect.ValueOf(a))
			}
		}
	case reflect.Pointer:
		if depth < 4 && r.IntN(3) != 0 {
			p := reflect.New(v.Type().Elem())
			fill(r, p.Elem(), depth+1)
			v.Set(p)
		}
	case reflect.Slice:
		if depth < 4 && r.IntN(4) != 0 {
			n := r.IntN(4)
			s := reflect.MakeSlice(v.Type(), n, n)
			for i := range n {
				fill(r, s.Index(i), depth+1)
			}
			v.Set(s)
		}
	case reflect.Array:
		for i := range v.Len() {
			fill(r, v.Index(i), depth+1)
		}
	case reflect.Map:
		if depth < 4 && r.IntN(4) != 0 {
			m := reflect.MakeMap(v.Type())
			for range r.IntN(4) {
				k := reflect.New(v.Type().Key()).Elem()
				fill(r, k, depth+1)
				e := reflect.New(v.Type().Elem()).Elem()
				fill(r, e, depth+1)
				m.SetMapIndex(k, e)
			}
			v.Set(m)
		}
	case reflect.Struct:
		fillStruct(r, v, depth)
	}
}

func fillStruct(r *rand.Rand, v reflect.Value, depth int) {
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		if sf.IsExported() || sf.Anonymous {
			fill(r, v.Field(i), depth+1)
		}
	}
}

func randFloat(r *rand.Rand, maxExp int) float64 {
	switch r.IntN(4) {
	case 0:
		return 0
	case 1:
		return float64(r.IntN(1000) - 500)
	}
	return r.NormFloat64() * math.Pow(10, float64(r.IntN(2*maxExp)-maxExp))
}

func randString(r *rand.Rand) string {
	const alphabet = "abcXYZ09 _-.\"\\/\n\t\x00\x7f<>&é€\U0001F600"
	runes := []rune(alphabet)
	var b strings.Builder
	for range r.IntN(8) {
		b.WriteRune(runes[r.IntN(len(runes))])
	}
	if r.IntN(10) == 0 {
		b.WriteString("\xff") // invalid UTF-8: written as U+FFFD
	}
	return b.String()
}

// randAny returns a random value of the kinds encoding/json gives an
// interface{}.
func randAny(r *rand.Rand, depth int) any {
	if depth > 4 {
		return "leaf"
	}
	switch r.IntN(7) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return randFloat(r, 300)
	case 3:
		return randString(r)
	case 4:
		a := make([]any, r.IntN(3))
		for i := range a {
			a[i] = randAny(r, depth+1)
		}
		return a
	default:
		m := map[string]any{}
		for range r.IntN(3) {
			m[randString(r)] = randAny(r, depth+1)
		}
		return m
	}
}
