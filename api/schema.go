package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/jsonfields"
)

// SchemaDialect is the JSON Schema dialect of the schemas RequestSchema and
// ReplySchema write.
const SchemaDialect = "https://json-schema.org/draft/2020-12/schema"

// ErrSchema is returned for a type that has no JSON Schema here: a channel,
// a function, or a type with its own JSON or text encoding that the
// generator does not know.
var ErrSchema = errors.New("api: no JSON schema for the type")

// RequestSchema returns the JSON Schema of the request v (a value of a
// request type, or a pointer to one) as compact JSON. It follows the rules
// the service decodes requests by: field names are the json tag names,
// exactly; a field without omitempty (or omitzero) is required; null is
// taken only where Go has nil (pointers, slices, maps); every object is
// closed (additionalProperties false), as the service refuses an unknown
// field; a required string must hold more than white space, as the service
// refuses a blank name, account or user; a name, tag, description or role
// (an export's or import's name, description and info_url too) has the
// pattern of what the service takes (patterns); integers are bounded where
// their Go type is narrower than 64 bits.
// The fields of a struct from another module (the jwt types a request
// embeds: permissions, exports, imports) are required only where the
// service refuses a request without them (foreignRequired): their tags say
// how that module encodes them, not what the service needs, and the
// decoder requires no field. An export or import (in "exports",
// "imports") may not be null, which the service refuses, nor may a role
// of account.create (nonNullValues).
// Two refusals of the decoder are beyond the schema: a whole number
// written with a fraction or an exponent (1.0), and a 64-bit integer out
// of range. It returns ErrSchema for a type it cannot describe.
func RequestSchema(v any) ([]byte, error) { return schemaFor(reflect.TypeOf(v), true) }

// ReplySchema returns the JSON Schema of the reply v as compact JSON, by
// the rules of RequestSchema except that objects are open: a client should
// ignore fields it does not know, which later versions may add. The
// account JWT's "nats" claim (jwt.Account: limits, keys, revocations,
// imports, exports, mappings) is described as an object only, not field by
// field, so that a reply schema stays small enough for the service's micro
// INFO message. It returns ErrSchema for a type it cannot describe.
func ReplySchema(v any) ([]byte, error) { return schemaFor(reflect.TypeOf(v), false) }

// opaque are types with their own JSON encoding, or too large to spell out,
// and the schema each is given instead of being reflected.
var opaque = map[reflect.Type]*schema{
	reflect.TypeFor[time.Time](): {Type: types{"string"}, Format: "date-time"},
	// An export or import's "type".
	reflect.TypeFor[jwt.ExportType](): {Type: types{"string"}, Enum: []string{"stream", "service"}},
	// A service export's latency sampling: a percentage, or "headers"
	// (any case). Its UnmarshalJSON takes null too, as "headers", and the
	// decoder hands null to it.
	reflect.TypeFor[jwt.SamplingRate](): {Type: types{"integer", "string", "null"}, Pattern: "^[Hh][Ee][Aa][Dd][Ee][Rr][Ss]$"},
	reflect.TypeFor[jwt.Account](): {
		Type:        types{"object"},
		Description: "the account's nats claim, as github.com/nats-io/jwt/v2 Account encodes it: limits, signing_keys, revocations, default_permissions, imports, exports, mappings",
	},
}

// foreignRequired lists the fields of structs from other modules that a
// request must give, as the service refuses it without them. Every other
// field of such a struct is optional in a request schema, whatever its
// tag: jwt.ResponsePermission's "max" and "ttl" default to 0, and
// jwt.ServiceLatency's "sampling" to "headers". A service latency without
// "results" is refused (its subject cannot be empty).
var foreignRequired = map[reflect.Type][]string{
	reflect.TypeFor[jwt.ServiceLatency](): {"results"},
}

// nonNullElems are slices of pointers whose elements may not be null,
// although Go has nil there: the service refuses an export or an import
// given as null ("null export is not allowed", "imports[0] is empty").
var nonNullElems = map[reflect.Type]bool{
	reflect.TypeFor[jwt.Exports](): true,
	reflect.TypeFor[jwt.Imports](): true,
}

// nonNullValues lists, per request type, the fields whose map values may
// not be null although Go has nil there: account.create's "roles", where
// null would remove a role the new account does not have, which the
// service refuses ("the account has no role ... to remove"); on
// account.update, null removes a role and stays allowed.
var nonNullValues = map[reflect.Type][]string{
	reflect.TypeFor[CreateAccountRequest](): {"roles"},
}

// minimums and maximums bound the numbers of request fields that the
// service refuses outside those bounds, by the struct that declares each
// field (a promoted field keeps its struct's bounds): a limit is -1
// (unlimited) or more, a page's offset and limit and a quota are not
// negative, an audit page is at most MaxAuditLimit. Without them a client
// that validates against the schema sends a request bound to fail.
var (
	minimums = map[reflect.Type]map[string]int64{
		reflect.TypeFor[AccountLimits](): {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "conn": -1, "leaf": -1},
		reflect.TypeFor[JetStreamLimits](): {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1, "max_ack_pending": -1,
			"mem_max_stream_bytes": -1, "disk_max_stream_bytes": -1},
		reflect.TypeFor[UserLimits]():           {"subs": -1, "data": -1, "payload": -1},
		reflect.TypeFor[ListRequest]():          {"offset": 0, "limit": 0},
		reflect.TypeFor[CreateAccountRequest](): {"self_service_quota": 0},
		reflect.TypeFor[UpdateAccountRequest](): {"self_service_quota": 0},
		reflect.TypeFor[AuditRequest]():         {"limit": 0},
	}
	maximums = map[reflect.Type]map[string]int64{
		reflect.TypeFor[AuditRequest](): {"limit": MaxAuditLimit},
	}
)

// minProperties is the fewest fields of a request the service takes: an
// account.update needs a field to change besides the account (a field
// given as null changes nothing either, which the schema does not tell).
var minProperties = map[reflect.Type]int{
	reflect.TypeFor[UpdateAccountRequest](): 2,
}

// The patterns of the free text the service refuses for what it holds
// (package provision: checkName, setTags, checkDescription,
// checkRoleName). The service trims names, tags and roles of white space
// (strings.TrimSpace: \p{Z} and the control characters \t\n\v\f\r and
// U+0085) and refuses what is left when it is empty or holds a control
// character, a format character (\p{Cf}: U+200B, U+FEFF, U+202E, ...),
// white space other than a space, or U+FFFD (what a lone surrogate such as
// \ud800 decodes as); a name is at most 128 characters once trimmed
// (provision's maxNameLen). A description may hold line breaks and tabs
// but no other control or format character, nor U+FFFD. An export's or
// import's name and an export's info_url (provision's checkText) are
// optional and not trimmed: any control, format or white space character
// other than a space, or U+FFFD, anywhere is refused; an export's
// description is an account's. A role is 1 to 64 letters, digits, - or _.
// The patterns are written so that ECMA-262 (with the u flag) and Go read
// them alike.
const (
	trimmed     = `[\p{Z}\t\n\v\f\r\x85]*`
	visible     = `[^\p{Z}\p{Cc}\p{Cf}` + "\uFFFD" + `]`
	namePattern = `^` + trimmed + visible + `(?:` + visible + `| ){0,127}` + trimmed + `$`
	tagPattern  = `^` + trimmed + visible + `(?:` + visible + `| )*` + trimmed + `$`
	textPattern = `^(?:` + visible + `| )*$`
	descPattern = `^(?:[^\p{Cc}\p{Cf}` + "\uFFFD" + `]|[\n\t])*$`
	roleToken   = `[A-Za-z0-9_-]{1,64}`
)

// patterns holds the pattern of the request fields above, by the struct
// that declares each field (a struct of the jwt module too): on the string
// itself, on the items of a list of strings, on the names of a map's keys.
var patterns = map[reflect.Type]map[string]string{
	reflect.TypeFor[CreateAccountRequest]():  {"name": namePattern, "tags": tagPattern, "description": descPattern, "roles": `^` + roleToken + `$`},
	reflect.TypeFor[UpdateAccountRequest]():  {"tags": tagPattern, "description": descPattern, "roles": `^` + roleToken + `$`},
	reflect.TypeFor[CreateUserRequest]():     {"name": namePattern, "tags": tagPattern, "role": `^` + trimmed + `(?:` + roleToken + trimmed + `)?$`},
	reflect.TypeFor[SelfCreateUserRequest](): {"name": namePattern, "role": `^` + trimmed + roleToken + trimmed + `$`},
	// The exports and imports of account.create and account.update; an
	// export's description and info_url are its embedded jwt.Info's.
	reflect.TypeFor[jwt.Export](): {"name": textPattern},
	reflect.TypeFor[jwt.Import](): {"name": textPattern},
	reflect.TypeFor[jwt.Info]():   {"description": descPattern, "info_url": textPattern},
}

// declaring returns the struct type that declares the field at index in
// t (t itself unless the field is promoted from an embedded struct).
func declaring(t reflect.Type, index []int) reflect.Type {
	for _, i := range index[:len(index)-1] {
		t = t.Field(i).Type
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
	}
	return t
}

// module is the path of this module: the structs under it follow the
// tag rule for required fields.
const module = "github.com/natsprov/provisioner"

// foreign reports whether t is a named type from another module.
func foreign(t reflect.Type) bool {
	p := t.PkgPath()
	return p != "" && p != module && !strings.HasPrefix(p, module+"/")
}

var (
	marshalerType       = reflect.TypeFor[json.Marshaler]()
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	rawMessageType      = reflect.TypeFor[json.RawMessage]()
)

// schema is the part of JSON Schema the generator writes, in the order it
// writes it.
type schema struct {
	Dialect              string             `json:"$schema,omitempty"`
	Ref                  string             `json:"$ref,omitempty"`
	Title                string             `json:"title,omitempty"`
	Description          string             `json:"description,omitempty"`
	Type                 types              `json:"type,omitempty"`
	Enum                 []string           `json:"enum,omitempty"`
	Format               string             `json:"format,omitempty"`
	ContentEncoding      string             `json:"contentEncoding,omitempty"`
	Minimum              *int64             `json:"minimum,omitempty"`
	Maximum              *int64             `json:"maximum,omitempty"`
	MaxItems             *int               `json:"maxItems,omitempty"`
	MinProperties        *int               `json:"minProperties,omitempty"`
	Items                *schema            `json:"items,omitempty"`
	Properties           properties         `json:"properties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	PropertyNames        *schema            `json:"propertyNames,omitempty"`
	Pattern              string             `json:"pattern,omitempty"`
	AdditionalProperties any                `json:"additionalProperties,omitempty"`
	AnyOf                []*schema          `json:"anyOf,omitempty"`
	Defs                 map[string]*schema `json:"$defs,omitempty"`
}

// types is a schema's "type": one name, or a list when null is taken too.
type types []string

func (t types) MarshalJSON() ([]byte, error) {
	if len(t) == 1 {
		return json.Marshal(t[0])
	}
	return json.Marshal([]string(t))
}

// properties keeps an object's properties in the order of the Go fields.
type properties []property

type property struct {
	name string
	s    *schema
}

func (ps properties) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(p.name)
		v, err := json.Marshal(p.s)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// generator writes the schema of one root type. Struct types met more than
// once go into $defs and are referenced; the others are written in place.
//
// It is written here rather than taken from a reflection library such as
// invopop/jsonschema because the schemas must follow the service's decoder
// (package jsonstrict), which such libraries do not know: null where Go has
// nil, in map values too ("roles":{"old":null} removes a role), which
// invopop can only add per field through a jsonschema tag; the range of
// sized integers; ",string" fields; the jwt types that encode themselves.
// It walks struct fields by encoding/json's rules, as jsonstrict does.
type generator struct {
	closed bool
	uses   map[reflect.Type]int
	names  map[reflect.Type]string
	taken  map[string]bool
	defs   map[string]*schema
	root   reflect.Type
}

func schemaFor(t reflect.Type, closed bool) ([]byte, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: nil", ErrSchema)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	g := &generator{closed: closed, uses: map[reflect.Type]int{}, names: map[reflect.Type]string{}, taken: map[string]bool{}, defs: map[string]*schema{}, root: t}
	g.count(t)
	s, err := g.gen(t, true)
	if err != nil {
		return nil, err
	}
	if s.Ref != "" {
		return nil, fmt.Errorf("%w: %s refers to itself", ErrSchema, t)
	}
	s.Dialect, s.Title = SchemaDialect, t.Name()
	if len(g.defs) > 0 {
		s.Defs = g.defs
	}
	return json.Marshal(s)
}

// count counts how often each struct type is met, to decide which go into
// $defs.
func (g *generator) count(t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if opaque[t] != nil || custom(t) {
		return
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map:
		g.count(t.Elem())
	case reflect.Struct:
		g.uses[t]++
		if g.uses[t] > 1 {
			return
		}
		fs := fields(t)
		for _, f := range fs {
			g.count(f.Type)
		}
	}
}

// custom reports whether t encodes itself (MarshalJSON, MarshalText, or
// their Unmarshal): the decoder hands such a value to the type, so only a
// schema written for the type can describe it.
func custom(t reflect.Type) bool {
	if t == rawMessageType {
		return false
	}
	if t.Kind() == reflect.Pointer || t.Kind() == reflect.Interface {
		return false
	}
	pt := reflect.PointerTo(t)
	return pt.Implements(marshalerType) || pt.Implements(unmarshalerType) || pt.Implements(textMarshalerType) || pt.Implements(textUnmarshalerType)
}

// gen returns the schema of t. top is set for the root, which is never a
// reference.
func (g *generator) gen(t reflect.Type, top bool) (*schema, error) {
	if s := opaque[t]; s != nil {
		c := *s
		return &c, nil
	}
	if t == rawMessageType {
		return &schema{}, nil
	}
	if custom(t) {
		return nil, fmt.Errorf("%w: %s encodes itself", ErrSchema, t)
	}
	switch t.Kind() {
	case reflect.Bool:
		return &schema{Type: types{"boolean"}}, nil
	case reflect.Int, reflect.Int64:
		return &schema{Type: types{"integer"}}, nil
	case reflect.Int8, reflect.Int16, reflect.Int32:
		lo, hi := int64(-1)<<(t.Bits()-1), int64(1)<<(t.Bits()-1)-1
		return &schema{Type: types{"integer"}, Minimum: &lo, Maximum: &hi}, nil
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		var lo int64
		return &schema{Type: types{"integer"}, Minimum: &lo}, nil
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		lo, hi := int64(0), int64(1)<<t.Bits()-1
		return &schema{Type: types{"integer"}, Minimum: &lo, Maximum: &hi}, nil
	case reflect.Float32, reflect.Float64:
		return &schema{Type: types{"number"}}, nil
	case reflect.String:
		return &schema{Type: types{"string"}}, nil
	case reflect.Interface:
		if t.NumMethod() == 0 {
			return &schema{}, nil // any value
		}
		return &schema{Type: types{"null"}}, nil
	case reflect.Pointer:
		s, err := g.gen(t.Elem(), false)
		if err != nil {
			return nil, err
		}
		return nullable(s), nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !custom(t.Elem()) {
			return &schema{Type: types{"string", "null"}, ContentEncoding: "base64"}, nil
		}
		elem := t.Elem()
		if nonNullElems[t] && elem.Kind() == reflect.Pointer {
			elem = elem.Elem()
		}
		items, err := g.gen(elem, false)
		if err != nil {
			return nil, err
		}
		return &schema{Type: types{"array", "null"}, Items: items}, nil
	case reflect.Array:
		items, err := g.gen(t.Elem(), false)
		if err != nil {
			return nil, err
		}
		n := t.Len()
		return &schema{Type: types{"array"}, Items: items, MaxItems: &n}, nil
	case reflect.Map:
		return g.mapSchema(t)
	case reflect.Struct:
		return g.structSchema(t, top)
	}
	return nil, fmt.Errorf("%w: %s", ErrSchema, t)
}

// nullable lets s take null as well.
func nullable(s *schema) *schema {
	switch {
	case s.Ref != "" || len(s.AnyOf) > 0:
		return &schema{AnyOf: []*schema{s, {Type: types{"null"}}}}
	case len(s.Type) == 0:
		return s // any value, null included
	case slices.Contains(s.Type, "null"):
		return s
	}
	c := *s
	c.Type = append(slices.Clip(s.Type), "null")
	return &c
}

func (g *generator) mapSchema(t reflect.Type) (*schema, error) {
	s := &schema{Type: types{"object", "null"}}
	switch k := t.Key(); {
	case custom(k):
		return nil, fmt.Errorf("%w: map key %s encodes itself", ErrSchema, k)
	case k.Kind() == reflect.String:
	case k.Kind() >= reflect.Int && k.Kind() <= reflect.Int64:
		s.PropertyNames = &schema{Pattern: "^-?[0-9]+$"}
	case k.Kind() >= reflect.Uint && k.Kind() <= reflect.Uintptr:
		s.PropertyNames = &schema{Pattern: "^[0-9]+$"}
	default:
		return nil, fmt.Errorf("%w: map key %s", ErrSchema, k)
	}
	v, err := g.gen(t.Elem(), false)
	if err != nil {
		return nil, err
	}
	s.AdditionalProperties = v
	return s, nil
}

func (g *generator) structSchema(t reflect.Type, top bool) (*schema, error) {
	if t == g.root && !top {
		return &schema{Ref: "#"}, nil
	}
	def := !top && g.uses[t] > 1
	if def {
		if name, ok := g.names[t]; ok {
			return &schema{Ref: "#/$defs/" + name}, nil
		}
		name := t.Name()
		if name == "" || g.taken[name] {
			name = strings.ReplaceAll(t.String(), ".", "_")
		}
		g.names[t], g.taken[name] = name, true
		g.defs[name] = &schema{} // a placeholder, so that t may refer to itself
	}
	fs := fields(t)
	s := &schema{Type: types{"object"}}
	if g.closed {
		s.AdditionalProperties = false
	}
	for _, f := range fs {
		fsch, err := g.gen(f.Type, false)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", t, f.Name, err)
		}
		if f.Quoted {
			fsch = &schema{Type: types{"string"}, Description: "a string holding the JSON value"}
		}
		if g.closed && !foreign(t) && !f.Optional && !f.Quoted && f.Type.Kind() == reflect.String {
			// A required name, account or user: the service refuses it
			// empty or blank ("is required and must not be empty").
			c := *fsch
			c.Pattern = `\S`
			fsch = &c
		}
		if pat, ok := patterns[declaring(t, f.Index)][f.Name]; ok && g.closed {
			// A request schema: see patterns.
			c := *fsch
			switch {
			case c.Items != nil:
				items := *c.Items
				items.Pattern = pat
				c.Items = &items
			case f.Type.Kind() == reflect.Map:
				c.PropertyNames = &schema{Pattern: pat}
			default:
				c.Pattern = pat
			}
			fsch = &c
		}
		if g.closed {
			// A request schema: see minimums.
			owner := declaring(t, f.Index)
			lo, hasLo := minimums[owner][f.Name]
			hi, hasHi := maximums[owner][f.Name]
			if hasLo || hasHi {
				c := *fsch
				if hasLo {
					c.Minimum = &lo
				}
				if hasHi {
					c.Maximum = &hi
				}
				fsch = &c
			}
		}
		if slices.Contains(nonNullValues[t], f.Name) && f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Pointer {
			v, err := g.gen(f.Type.Elem().Elem(), false)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", t, f.Name, err)
			}
			c := *fsch
			c.AdditionalProperties = v
			fsch = &c
		}
		s.Properties = append(s.Properties, property{f.Name, fsch})
		if g.closed && foreign(t) {
			// A request schema: see foreignRequired.
			if slices.Contains(foreignRequired[t], f.Name) {
				s.Required = append(s.Required, f.Name)
			}
		} else if !f.Optional {
			s.Required = append(s.Required, f.Name)
		}
	}
	if n, ok := minProperties[t]; ok && g.closed {
		s.MinProperties = &n
	}
	if !def {
		return s, nil
	}
	g.defs[g.names[t]] = s
	return &schema{Ref: "#/$defs/" + g.names[t]}, nil
}

// fields lists a struct's JSON fields as the service's decoder reads
// them; a type the generator describes as a whole is not promoted.
func fields(t reflect.Type) []jsonfields.Field {
	return jsonfields.Fields(t, func(t reflect.Type) bool { return opaque[t] != nil })
}
