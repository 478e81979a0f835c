package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/jsonstrict"
)

// compile compiles a generated schema with an independent validator.
func compile(t *testing.T, raw []byte) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("the schema is not JSON: %v\n%s", err, raw)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatalf("the schema does not compile: %v\n%s", err, raw)
	}
	return s
}

func valid(t *testing.T, s *jsonschema.Schema, body string) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
	if err != nil {
		t.Fatalf("test body %s is not JSON: %v", body, err)
	}
	return s.Validate(v)
}

type inner struct {
	A int    `json:"a"`
	B string `json:"b,omitempty"`
}

type Embedded struct {
	E      int    `json:"e,omitempty"`
	Shadow string `json:"shadow,omitempty"`
}

// sample has a field of each kind the generator knows.
type sample struct {
	Name     string            `json:"name"`
	Renamed  int               `json:"renamed_field,omitempty"`
	Hidden   string            `json:"-"`
	Untagged bool              `json:",omitempty"`
	Ptr      *inner            `json:"ptr,omitempty"`
	List     []string          `json:"list,omitempty"`
	Map      map[string]*inner `json:"map,omitempty"`
	Bytes    []byte            `json:"bytes,omitempty"`
	Small    int8              `json:"small,omitempty"`
	Count    uint32            `json:"count,omitempty"`
	Quoted   int               `json:"quoted,string,omitempty"`
	Zero     inner             `json:"zero,omitzero"`
	Pair     [2]int            `json:"pair,omitempty"`
	Keys     map[int]string    `json:"keys,omitempty"`
	Any      any               `json:"any,omitempty"`
	Embedded
	// Shadow hides Embedded's field of that name, as encoding/json does.
	Shadow int `json:"shadow,omitempty"`
}

// TestRequestSchemaAgreesWithDecoder: every body the strict decoder takes,
// the request schema takes, and every body it refuses, the schema
// refuses (bodies that give each required field, since the decoder leaves
// that check to the service).
func TestRequestSchemaAgreesWithDecoder(t *testing.T) {
	tests := []struct {
		name string
		typ  any
		body string
		ok   bool
	}{
		{"the minimum", sample{}, `{"name":"x"}`, true},
		{"a renamed field", sample{}, `{"name":"x","renamed_field":1}`, true},
		{"a Go field name where a tag renames it", sample{}, `{"name":"x","Renamed":1}`, false},
		{"an untagged name", sample{}, `{"name":"x","Untagged":true}`, true},
		{"an untagged name in another case", sample{}, `{"name":"x","untagged":true}`, false},
		{"a hidden field", sample{}, `{"name":"x","Hidden":"h"}`, false},
		{"an unknown field", sample{}, `{"name":"x","colour":"red"}`, false},
		{"a name in another case", sample{}, `{"Name":"x"}`, false},
		{"null for a string", sample{}, `{"name":null}`, false},
		{"null for a pointer", sample{}, `{"name":"x","ptr":null}`, true},
		{"an object for a pointer", sample{}, `{"name":"x","ptr":{"a":1,"b":"y"}}`, true},
		{"an unknown field inside", sample{}, `{"name":"x","ptr":{"a":1,"c":2}}`, false},
		{"null for a slice", sample{}, `{"name":"x","list":null}`, true},
		{"a wrong element", sample{}, `{"name":"x","list":[1]}`, false},
		{"null in a map of pointers", sample{}, `{"name":"x","map":{"k":null,"l":{"a":2}}}`, true},
		{"a wrong map value", sample{}, `{"name":"x","map":{"k":5}}`, false},
		{"base64 bytes", sample{}, `{"name":"x","bytes":"aGk="}`, true},
		{"null bytes", sample{}, `{"name":"x","bytes":null}`, true},
		{"an int8 in range", sample{}, `{"name":"x","small":-128}`, true},
		{"an int8 out of range", sample{}, `{"name":"x","small":200}`, false},
		{"a fraction for an integer", sample{}, `{"name":"x","small":1.5}`, false},
		{"a negative unsigned", sample{}, `{"name":"x","count":-1}`, false},
		{"a uint32 out of range", sample{}, `{"name":"x","count":4294967296}`, false},
		{"a quoted number", sample{}, `{"name":"x","quoted":"5"}`, true},
		{"a bare number where it is quoted", sample{}, `{"name":"x","quoted":5}`, false},
		{"null for a struct", sample{}, `{"name":"x","zero":null}`, false},
		{"an array within its length", sample{}, `{"name":"x","pair":[1]}`, true},
		{"an array past its length", sample{}, `{"name":"x","pair":[1,2,3]}`, false},
		{"an integer map key", sample{}, `{"name":"x","keys":{"-12":"a"}}`, true},
		{"a word as an integer map key", sample{}, `{"name":"x","keys":{"a":"b"}}`, false},
		{"anything for any", sample{}, `{"name":"x","any":[1,{"b":null}]}`, true},
		{"a promoted field", sample{}, `{"name":"x","e":1}`, true},
		{"the shadowing field", sample{}, `{"name":"x","shadow":1}`, true},
		{"the shadowed field's type", sample{}, `{"name":"x","shadow":"s"}`, false},
		{"an export type", jwt.Export{}, `{"type":"stream"}`, true},
		{"an unknown export type", jwt.Export{}, `{"type":"queue"}`, false},
		{"sampling by headers", jwt.Export{}, `{"service_latency":{"sampling":"HEADERS","results":"lat"}}`, true},
		{"sampling in percent", jwt.Export{}, `{"service_latency":{"sampling":50,"results":"lat"}}`, true},
		{"sampling by a word", jwt.Export{}, `{"service_latency":{"sampling":"often","results":"lat"}}`, false},
		// jwt.SamplingRate decodes null itself, as 0: by headers.
		{"sampling null", jwt.Export{}, `{"service_latency":{"sampling":null,"results":"lat"}}`, true},
		{"a role removed with null", api.UpdateAccountRequest{}, `{"account":"acme","roles":{"old":null}}`, true},
		{"limits of the wrong type", api.CreateAccountRequest{}, `{"name":"acme","limits":{"conn":"10"}}`, false},
		{"tiered limits", api.CreateAccountRequest{}, `{"name":"acme","limits":{"tiered_limits":{"R1":{"mem_storage":1024}}}}`, true},
		{"a promoted page field", api.ListUsersRequest{}, `{"account":"acme","offset":2,"limit":1}`, true},
		{"a negative audit sequence", api.AuditRequest{}, `{"after":-1}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := api.RequestSchema(tt.typ)
			if err != nil {
				t.Fatal(err)
			}
			serr := valid(t, compile(t, raw), tt.body)
			derr := jsonstrict.Decode([]byte(tt.body), newOf(tt.typ))
			if (derr == nil) != tt.ok {
				t.Fatalf("the decoder says %v for %s, the test wants ok=%v", derr, tt.body, tt.ok)
			}
			if (serr == nil) != tt.ok {
				t.Errorf("the schema says %v for %s, the decoder %v", serr, tt.body, derr)
			}
		})
	}
}

// newOf returns a pointer to a new zero value of v's type.
func newOf(v any) any {
	switch v.(type) {
	case sample:
		return new(sample)
	case jwt.Export:
		return new(jwt.Export)
	case api.UpdateAccountRequest:
		return new(api.UpdateAccountRequest)
	case api.CreateAccountRequest:
		return new(api.CreateAccountRequest)
	case api.ListUsersRequest:
		return new(api.ListUsersRequest)
	case api.AuditRequest:
		return new(api.AuditRequest)
	}
	panic(fmt.Sprintf("newOf: add %T", v))
}

func TestSchemaRequiredAndOpen(t *testing.T) {
	req, err := api.RequestSchema(&sample{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := api.ReplySchema(sample{})
	if err != nil {
		t.Fatal(err)
	}
	rs, ps := compile(t, req), compile(t, rep)
	tests := []struct {
		name     string
		body     string
		req, rep bool
	}{
		{"without the required name", `{}`, false, false},
		{"without a nested required field", `{"name":"x","ptr":{"b":"y"}}`, false, false},
		{"with every required field", `{"name":"x","ptr":{"a":1}}`, true, true},
		{"with a field the type lacks", `{"name":"x","later":1}`, false, true},
		{"with a wrong type", `{"name":5}`, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := valid(t, rs, tt.body); (err == nil) != tt.req {
				t.Errorf("request schema on %s: %v, want ok=%v", tt.body, err, tt.req)
			}
			if err := valid(t, ps, tt.body); (err == nil) != tt.rep {
				t.Errorf("reply schema on %s: %v, want ok=%v", tt.body, err, tt.rep)
			}
		})
	}
	var s struct {
		Dialect string `json:"$schema"`
		Title   string `json:"title"`
	}
	if err := json.Unmarshal(req, &s); err != nil || s.Dialect != api.SchemaDialect || s.Title != "sample" {
		t.Errorf("schema header = %+v (%v)", s, err)
	}
}

type recursive struct {
	Name     string       `json:"name"`
	Children []*recursive `json:"children,omitempty"`
	Peer     *node        `json:"peer,omitempty"`
	Other    *node        `json:"other,omitempty"`
}

type node struct {
	Next *node `json:"next,omitempty"`
}

func TestSchemaRecursiveAndShared(t *testing.T) {
	raw, err := api.RequestSchema(recursive{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"$ref":"#"`)) || !bytes.Contains(raw, []byte(`"$defs":{"node"`)) {
		t.Errorf("want the root referred to as # and node in $defs: %s", raw)
	}
	s := compile(t, raw)
	if err := valid(t, s, `{"name":"a","children":[{"name":"b","children":[]}],"peer":{"next":{"next":null}}}`); err != nil {
		t.Errorf("a nested value: %v", err)
	}
	if err := valid(t, s, `{"name":"a","children":[{"name":"b","peer":{"next":{"nxt":1}}}]}`); err == nil {
		t.Errorf("an unknown field deep down was taken")
	}
}

type selfish struct{ V int }

func (s *selfish) UnmarshalJSON([]byte) error { return nil }

func TestSchemaRefuses(t *testing.T) {
	tests := []struct {
		name string
		v    any
	}{
		{"a channel", struct {
			C chan int `json:"c"`
		}{}},
		{"a function", struct {
			F func() `json:"f"`
		}{}},
		{"a type with its own decoding", struct {
			S selfish `json:"s"`
		}{}},
		{"nil", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := api.RequestSchema(tt.v); !errors.Is(err, api.ErrSchema) {
				t.Errorf("RequestSchema: %v, want ErrSchema", err)
			}
		})
	}
}

// TestAPISchemasAreCompact: every request and reply type has a schema
// that compiles and stays small, since all of them travel in one micro
// INFO message.
func TestAPISchemasAreCompact(t *testing.T) {
	const limit = 6 << 10
	requests := []any{
		api.CreateAccountRequest{}, api.UpdateAccountRequest{}, api.RotateAccountRequest{}, api.AccountRequest{},
		api.ListRequest{}, api.CreateUserRequest{}, api.ListUsersRequest{}, api.RevokeUserRequest{},
		api.SelfCreateUserRequest{}, api.SelfListUsersRequest{}, api.SelfRevokeUserRequest{},
		api.AuditRequest{}, api.ReconcileRequest{}, api.StatusRequest{}, api.RotateOperatorRequest{},
	}
	replies := []any{
		api.AccountReply{}, api.ListAccountsReply{}, api.DeleteAccountReply{}, api.RotateAccountReply{},
		api.CreateUserReply{}, api.ListUsersReply{}, api.RevokeUserReply{}, api.AuditReply{},
		api.ReconcileReply{}, api.StatusReply{}, api.ErrorReply{}, api.RotateOperatorReply{},
	}
	for _, set := range []struct {
		gen    func(any) ([]byte, error)
		values []any
	}{{api.RequestSchema, requests}, {api.ReplySchema, replies}} {
		for _, v := range set.values {
			raw, err := set.gen(v)
			if err != nil {
				t.Errorf("%T: %v", v, err)
				continue
			}
			compile(t, raw)
			if len(raw) > limit {
				t.Errorf("%T: the schema is %d bytes, over %d", v, len(raw), limit)
			}
		}
	}
}

// TestSchemaForeignRequired: a request need not give the fields of a jwt
// type that the service defaults (resp's max and ttl, a latency's
// sampling), while a reply, which jwt encodes whole, has them.
func TestSchemaForeignRequired(t *testing.T) {
	req, err := api.RequestSchema(jwt.Permissions{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := api.ReplySchema(jwt.Permissions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := valid(t, compile(t, req), `{"resp":{"max":1}}`); err != nil {
		t.Errorf("the request schema refuses resp without ttl: %v", err)
	}
	if err := valid(t, compile(t, rep), `{"resp":{"max":1}}`); err == nil {
		t.Errorf("the reply schema takes resp without ttl, which jwt always writes")
	}
	ex, err := api.RequestSchema(jwt.Export{})
	if err != nil {
		t.Fatal(err)
	}
	s := compile(t, ex)
	if err := valid(t, s, `{"service_latency":{"results":"lat"}}`); err != nil {
		t.Errorf("the request schema refuses a latency without sampling: %v", err)
	}
	if err := valid(t, s, `{"service_latency":{"sampling":5}}`); err == nil {
		t.Errorf("the request schema takes a latency without results")
	}
}

// TestSchemaNoNullExports: an export or import given as null is refused
// by the service, so the request schema refuses it; the list may be null.
func TestSchemaNoNullExports(t *testing.T) {
	for _, tt := range []struct {
		v    any
		head string
	}{
		{api.CreateAccountRequest{}, `{"name":"a"`},
		{api.UpdateAccountRequest{}, `{"account":"a"`},
	} {
		raw, err := api.RequestSchema(tt.v)
		if err != nil {
			t.Fatal(err)
		}
		s := compile(t, raw)
		for _, rest := range []string{`,"exports":[null]}`, `,"imports":[null]}`} {
			if err := valid(t, s, tt.head+rest); err == nil {
				t.Errorf("%T: the schema takes %s", tt.v, tt.head+rest)
			}
		}
		if err := valid(t, s, tt.head+`,"exports":null,"imports":[{"subject":"x","account":"b","type":"stream"}]}`); err != nil {
			t.Errorf("%T: the schema refuses a null list, or an import: %v", tt.v, err)
		}
	}
}

// TestSchemaBounds: the bounds the service holds numbers to (provision's
// checks, which the decoder leaves to it) are in the request schemas, on
// promoted fields too; the responder's TestSchemasAgreeOnBounds checks
// them against the service.
func TestSchemaBounds(t *testing.T) {
	for _, tt := range []struct {
		v    any
		body string
		ok   bool
	}{
		{api.AuditRequest{}, `{"limit":1000}`, true},
		{api.AuditRequest{}, `{"limit":1001}`, false},
		{api.AuditRequest{}, `{"limit":-1}`, false},
		{api.ListUsersRequest{}, `{"account":"a","offset":-1}`, false},
		{api.SelfListUsersRequest{}, `{"limit":-1}`, false},
		{api.CreateAccountRequest{}, `{"name":"a","limits":{"conn":null,"disk_storage":-1}}`, true},
	} {
		raw, err := api.RequestSchema(tt.v)
		if err != nil {
			t.Fatal(err)
		}
		if err := valid(t, compile(t, raw), tt.body); (err == nil) != tt.ok {
			t.Errorf("%T schema on %s: %v, want ok=%v", tt.v, tt.body, err, tt.ok)
		}
	}
}
