package jsonstrict

import (
	"encoding"
	"encoding/json"
	"reflect"
	"sync"

	"github.com/natsprov/provisioner/jsonfields"
)

// kind is what a plan checks a JSON value against.
type kind uint8

const (
	kindAny         kind = iota // interface{} or json.RawMessage: any JSON value
	kindBool                    // true or false
	kindInt                     // a whole number within bits
	kindUint                    // a non-negative whole number within bits
	kindFloat                   // a number within bits
	kindString                  // a string
	kindNumber                  // json.Number: a number, or a string holding one
	kindBytes                   // []byte: a base64 string, or an array of numbers; null
	kindPtr                     // null, or what elem takes
	kindSlice                   // an array of elem; null
	kindArray                   // an array of at most n elem
	kindMap                     // an object of elem with keys of keyKind; null
	kindStruct                  // an object of fields
	kindOpaque                  // has UnmarshalJSON or UnmarshalText: its own business
	kindInterface               // an interface with methods: only null
	kindUnsupported             // chan, func, complex: nothing
)

// keyKind is what a map key must be.
type keyKind uint8

const (
	keyString keyKind = iota // any key
	keyInt                   // a whole number within keyBits
	keyUint                  // a non-negative whole number within keyBits
	keyText                  // whatever the key type's UnmarshalText takes
)

// plan is how the JSON for one Go type is checked. Plans are built once
// per type and shared; a recursive type has a cyclic plan.
type plan struct {
	kind kind
	typ  reflect.Type
	bits int   // kindInt, kindUint, kindFloat
	elem *plan // kindPtr, kindSlice, kindArray, kindMap, kindBytes
	n    int   // kindArray

	key     keyKind // kindMap
	keyBits int     // kindMap with keyInt or keyUint

	fields []field        // kindStruct, in declaration order
	byName map[string]int // kindStruct: exact name to index in fields
}

// field is one JSON field of a struct, as encoding/json sees it.
type field struct {
	name string
	// aka are names a user who writes them meant this field by, from the
	// struct tag aka:"name,other".
	aka []string
	// quoted is the ",string" option: the value is a string holding the
	// JSON of a bool, number or string.
	quoted bool
	plan   *plan
}

var (
	numberType          = reflect.TypeFor[json.Number]()
	rawMessageType      = reflect.TypeFor[json.RawMessage]()
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

var (
	plans   sync.Map   // reflect.Type to *plan, complete plans only
	buildMu sync.Mutex // serializes building, so a plan is published whole
)

// planFor returns the plan of t, building it on first use.
func planFor(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	b := builder{building: map[reflect.Type]*plan{}}
	p := b.plan(t)
	for t, p := range b.building {
		plans.Store(t, p)
	}
	return p
}

// builder builds the plans of a type and the types it contains. Plans
// under construction are kept in building, so a recursive type ends up
// pointing at its own plan.
type builder struct {
	building map[reflect.Type]*plan
}

func (b *builder) plan(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	if p, ok := b.building[t]; ok {
		return p
	}
	p := &plan{typ: t}
	b.building[t] = p

	// encoding/json looks for the methods on the address of a value, so a
	// pointer receiver counts; a pointer type is looked through first.
	if t == rawMessageType {
		p.kind = kindAny
		return p
	}
	if t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface {
		pt := reflect.PointerTo(t)
		if pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType) {
			p.kind = kindOpaque
			return p
		}
	}
	if t == numberType {
		p.kind = kindNumber
		return p
	}

	switch t.Kind() {
	case reflect.Bool:
		p.kind = kindBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		p.kind, p.bits = kindInt, t.Bits()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		p.kind, p.bits = kindUint, t.Bits()
	case reflect.Float32, reflect.Float64:
		p.kind, p.bits = kindFloat, t.Bits()
	case reflect.String:
		p.kind = kindString
	case reflect.Interface:
		p.kind = kindInterface
		if t.NumMethod() == 0 {
			p.kind = kindAny
		}
	case reflect.Pointer:
		p.kind, p.elem = kindPtr, b.plan(t.Elem())
	case reflect.Slice:
		p.kind, p.elem = kindSlice, b.plan(t.Elem())
		if t.Elem().Kind() == reflect.Uint8 {
			p.kind = kindBytes
		}
	case reflect.Array:
		p.kind, p.elem, p.n = kindArray, b.plan(t.Elem()), t.Len()
	case reflect.Map:
		b.mapPlan(p, t)
	case reflect.Struct:
		b.structPlan(p, t)
	default:
		p.kind = kindUnsupported
	}
	return p
}

func (b *builder) mapPlan(p *plan, t reflect.Type) {
	kt := t.Key()
	switch {
	case reflect.PointerTo(kt).Implements(textUnmarshalerType):
		p.key = keyText
	case kt.Kind() == reflect.String:
		p.key = keyString
	case kt.Kind() >= reflect.Int && kt.Kind() <= reflect.Int64:
		p.key, p.keyBits = keyInt, kt.Bits()
	case kt.Kind() >= reflect.Uint && kt.Kind() <= reflect.Uintptr:
		p.key, p.keyBits = keyUint, kt.Bits()
	default:
		p.kind = kindUnsupported
		return
	}
	p.kind, p.elem = kindMap, b.plan(t.Elem())
}

// structPlan plans a struct's JSON fields, as encoding/json finds them.
func (b *builder) structPlan(p *plan, t reflect.Type) {
	p.kind = kindStruct
	kept := jsonfields.Fields(t, nil)
	p.fields = make([]field, len(kept))
	p.byName = make(map[string]int, len(kept))
	for i, f := range kept {
		p.fields[i] = field{name: f.Name, aka: f.Aka, quoted: f.Quoted, plan: b.plan(f.Type)}
		p.byName[f.Name] = i
	}
}
