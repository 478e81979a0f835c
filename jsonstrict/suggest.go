package jsonstrict

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxListed is how many fields an object may have for an unknown-field
// error to list them all when it has no better suggestion.
const maxListed = 8

// unknown is the error for key, not a field of p. It suggests the field
// the user most likely meant, or lists the fields when they are few.
func unknown(p *plan, key string, start int) *Error {
	e := &Error{Path: showKey(key), Offset: int64(start), Err: ErrUnknownField}
	switch s := suggest(p, key); {
	case s != "":
		e.Msg = "use " + strconv.Quote(s)
	case len(p.fields) == 0:
		e.Msg = "this object takes no fields"
	case len(p.fields) == 1:
		e.Msg = "use " + strconv.Quote(p.fields[0].name)
	case len(p.fields) <= maxListed:
		names := make([]string, len(p.fields))
		for i, f := range p.fields {
			names[i] = strconv.Quote(f.name)
		}
		e.Msg = "use one of " + strings.Join(names, ", ")
	}
	return e
}

// suggest returns the field a user who wrote key most likely meant, or
// "". In order: a field whose aka tag lists key; a field whose name
// differs only in case; a field whose aka differs only in case; the one
// field closest to key by edit distance, within 2 (1 when either name has
// at most 3 letters), counting a swap of neighbours as one edit.
func suggest(p *plan, key string) string {
	for _, f := range p.fields {
		for _, a := range f.aka {
			if a == key {
				return f.name
			}
		}
	}
	for _, f := range p.fields {
		if strings.EqualFold(f.name, key) {
			return f.name
		}
	}
	for _, f := range p.fields {
		for _, a := range f.aka {
			if strings.EqualFold(a, key) {
				return f.name
			}
		}
	}
	if len(key) > 2*maxShownKey {
		return ""
	}
	lkey := []rune(strings.ToLower(key))
	best, bestDist, tie := "", 3, false
	for _, f := range p.fields {
		limit := 2
		if min(len(lkey), utf8.RuneCountInString(f.name)) <= 3 {
			limit = 1
		}
		dist := distance(lkey, []rune(strings.ToLower(f.name)))
		switch {
		case dist > limit:
		case dist < bestDist:
			best, bestDist, tie = f.name, dist, false
		case dist == bestDist:
			tie = true
		}
	}
	if tie {
		return ""
	}
	return best
}

// distance is the optimal string alignment distance of a and b: the
// insertions, deletions, substitutions and swaps of adjacent letters that
// turn a into b, no letter edited twice.
func distance(a, b []rune) int {
	// Three rows of the classic table: two back for the swap.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
