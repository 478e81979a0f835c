package jsonfields

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

type inner struct {
	A int `json:"a"`
	B int
	C int `json:"c"`
}

type other struct {
	A int `json:"a"`
	D int `json:"d"`
}

type twice struct{ E int }

type wrapA struct{ twice }
type wrapB struct{ twice }

// edges has what encoding/json's rules decide: promoted fields, a name two
// embeddings at one depth share (dropped), a shallower field hiding a
// deeper one, a tagged one winning at equal depth, hidden and unexported
// fields, the string option, and one type embedded twice one level down.
type edges struct {
	inner
	*other
	wrapA
	wrapB
	B      string `json:"B"`
	Hidden int    `json:"-"`
	hide   int
	Q      int    `json:"q,string,omitempty"`
	Bad    int    `json:"a b\x00"`
	Named  string `json:",omitzero"`
}

// TestFieldsAgreeWithEncodingJSON checks the names Fields lists against the
// keys encoding/json writes for a value with every field set.
func TestFieldsAgreeWithEncodingJSON(t *testing.T) {
	v := edges{inner: inner{1, 2, 3}, other: &other{4, 5}, wrapA: wrapA{twice{6}}, wrapB: wrapB{twice{7}}, B: "b", Hidden: 8, hide: 9, Q: 10, Bad: 12, Named: "n"}
	_ = v.hide
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var want []string
	for k := range m {
		want = append(want, k)
	}
	slices.Sort(want)
	var got []string
	for _, f := range Fields(reflect.TypeFor[edges](), nil) {
		got = append(got, f.Name)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("Fields lists %v, encoding/json writes %v (%s)", got, want, data)
	}
	byName := map[string]Field{}
	for _, f := range Fields(reflect.TypeFor[edges](), nil) {
		byName[f.Name] = f
	}
	if f := byName["q"]; !f.Quoted || !f.Optional || !f.Tagged {
		t.Errorf("q: %+v, want quoted, optional, tagged", f)
	}
	if f := byName["Named"]; !f.Optional || f.Tagged {
		t.Errorf("Named: %+v, want optional, not tagged", f)
	}
	if f := byName["d"]; !slices.Equal(f.Index, []int{1, 1}) {
		t.Errorf("d: index %v, want [1 1] (through the embedded pointer)", f.Index)
	}
	if _, ok := byName["E"]; ok {
		t.Errorf("E is promoted from two embeddings at one depth; encoding/json drops it")
	}
}

// TestOpaqueIsNotPromoted checks that an embedded struct the caller calls
// opaque is one field of its own.
func TestOpaqueIsNotPromoted(t *testing.T) {
	type withInner struct {
		inner
		Z int
	}
	fs := Fields(reflect.TypeFor[withInner](), func(t reflect.Type) bool { return t == reflect.TypeFor[inner]() })
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"inner", "Z"}) {
		t.Fatalf("with inner opaque: %v, want [inner Z]", names)
	}
}
