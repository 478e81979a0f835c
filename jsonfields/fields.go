// Package jsonfields lists a struct's JSON fields exactly as encoding/json
// does (names, embedding, the ",string" and omitempty options), for code
// that must agree with encoding/json on what a field is: the strict decoder
// and the JSON Schemas.
package jsonfields

import (
	"cmp"
	"reflect"
	"slices"
	"strings"
	"unicode"
)

// Field is one JSON field of a struct, as encoding/json sees it.
type Field struct {
	// Name is the json tag's name, or the Go field's name.
	Name string
	// Type is the Go field's type.
	Type reflect.Type
	// Index is the field's index sequence for reflect.Value.FieldByIndex.
	Index []int
	// Tagged is true when the json tag gave the name.
	Tagged bool
	// Quoted is the ",string" option on a field it applies to.
	Quoted bool
	// Optional is the "omitempty" or "omitzero" option.
	Optional bool
	// Aka are the other names of the `aka` tag, for suggestions.
	Aka []string
}

// Fields lists a struct's JSON fields by the rules of encoding/json's
// typeFields: exported fields and the fields of embedded structs promoted,
// a json tag naming or hiding ("-") a field, and of several fields of one
// name the shallowest, at equal depth the tagged one, else none. An
// embedded struct type for which opaque returns true is a field of its
// own, not promoted (opaque may be nil).
func Fields(t reflect.Type, opaque func(reflect.Type) bool) []Field {
	type level struct {
		typ   reflect.Type
		index []int
	}
	var found []Field
	var current []level
	next := []level{{typ: t}}
	var count, nextCount map[reflect.Type]int
	visited := map[reflect.Type]bool{}
	for len(next) > 0 {
		current, next = next, current[:0]
		count, nextCount = nextCount, map[reflect.Type]int{}
		for _, l := range current {
			if visited[l.typ] {
				continue
			}
			visited[l.typ] = true
			for i := range l.typ.NumField() {
				sf := l.typ.Field(i)
				if sf.Anonymous {
					et := sf.Type
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					if !sf.IsExported() && et.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !validTag(name) {
					name = ""
				}
				index := append(slices.Clip(l.index), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct && (opaque == nil || !opaque(ft)) {
					nextCount[ft]++
					if nextCount[ft] == 1 {
						next = append(next, level{typ: ft, index: index})
					}
					continue
				}
				f := Field{Name: name, Type: sf.Type, Index: index, Tagged: name != ""}
				if f.Name == "" {
					f.Name = sf.Name
				}
				f.Optional = hasOption(opts, "omitempty") || hasOption(opts, "omitzero")
				if hasOption(opts, "string") {
					switch ft.Kind() {
					case reflect.Bool,
						reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
						reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
						reflect.Float32, reflect.Float64, reflect.String:
						f.Quoted = true
					}
				}
				if aka := sf.Tag.Get("aka"); aka != "" {
					f.Aka = strings.Split(aka, ",")
				}
				found = append(found, f)
				if count[l.typ] > 1 {
					// Two embeddings of one type at this depth: the
					// duplicate makes the rule below drop the name.
					found = append(found, f)
				}
			}
		}
	}

	slices.SortFunc(found, func(a, b Field) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		if c := cmp.Compare(len(a.Index), len(b.Index)); c != 0 {
			return c
		}
		if a.Tagged != b.Tagged {
			if a.Tagged {
				return -1
			}
			return +1
		}
		return slices.Compare(a.Index, b.Index)
	})
	var kept []Field
	for i := 0; i < len(found); {
		j := i + 1
		for j < len(found) && found[j].Name == found[i].Name {
			j++
		}
		same := found[i:j]
		if len(same) == 1 || len(same[0].Index) != len(same[1].Index) || same[0].Tagged != same[1].Tagged {
			kept = append(kept, same[0])
		}
		i = j
	}
	slices.SortFunc(kept, func(a, b Field) int { return slices.Compare(a.Index, b.Index) })
	return kept
}

// validTag is encoding/json's rule for a usable name in a json tag.
func validTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}

func hasOption(opts, name string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == name {
			return true
		}
	}
	return false
}
