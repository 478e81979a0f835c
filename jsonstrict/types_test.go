package jsonstrict

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Local types for the tests: every kind of Go type encoding/json decodes,
// embedding by its rules, and types with their own decoding.

// level has its own UnmarshalText: "low" or "high".
type level int

func (l *level) UnmarshalText(b []byte) error {
	switch string(b) {
	case "low":
		*l = 1
	case "high":
		*l = 2
	default:
		return errors.New("must be low or high")
	}
	return nil
}

func (l level) MarshalText() ([]byte, error) {
	if l == 2 {
		return []byte("high"), nil
	}
	return []byte("low"), nil
}

// span has its own UnmarshalJSON: a string such as "3d".
type span struct{ Days int }

func (s *span) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return err
	}
	if _, err := fmt.Sscanf(str, "%dd", &s.Days); err != nil || !strings.HasSuffix(str, "d") {
		return errors.New(`must be a number of days such as "3d"`)
	}
	return nil
}

func (s span) MarshalJSON() ([]byte, error) { return json.Marshal(fmt.Sprintf("%dd", s.Days)) }

// textKey is a map key with its own UnmarshalText: upper case only.
type textKey string

func (k *textKey) UnmarshalText(b []byte) error {
	if strings.ToUpper(string(b)) != string(b) {
		return errors.New("must be upper case")
	}
	*k = textKey(b)
	return nil
}

func (k textKey) MarshalText() ([]byte, error) { return []byte(k), nil }

type base struct {
	ID   int    `json:"id"`
	Note string `json:"note,omitempty"`
}

// Inner is embedded through a pointer.
type Inner struct {
	Level level `json:"level"`
	Depth int   `json:"depth"`
}

// kitchen has one field of each kind.
type kitchen struct {
	base
	*Inner
	Hidden string `json:"-"`
	//lint:ignore SA5008 a field named "-" is what the tests check.
	Dash     string `json:"-,"`
	Untagged int
	I8       int8               `json:"i8"`
	I64      int64              `json:"i64"`
	U8       uint8              `json:"u8"`
	U16      uint16             `json:"u16"`
	U64      uint64             `json:"u64"`
	F32      float32            `json:"f32"`
	F64      float64            `json:"f64"`
	B        bool               `json:"b"`
	S        string             `json:"s" aka:"str,text"`
	P        *string            `json:"p"`
	PP       **int              `json:"pp"`
	Sl       []int              `json:"sl"`
	Arr      [2]string          `json:"arr"`
	M        map[string]int     `json:"m"`
	MI       map[int8]string    `json:"mi"`
	MU       map[uint16]bool    `json:"mu"`
	MT       map[textKey]int    `json:"mt"`
	Any      any                `json:"any"`
	Raw      json.RawMessage    `json:"raw"`
	Num      json.Number        `json:"num"`
	Bytes    []byte             `json:"bytes"`
	Span     span               `json:"span"`
	Spans    []*span            `json:"spans"`
	Q        int                `json:"q,string"`
	QP       *bool              `json:"qp,string"`
	QS       string             `json:"qs,string"`
	Iface    fmt.Stringer       `json:"iface"`
	Nest     *kitchen           `json:"nest"`
	Kids     map[string]kitchen `json:"kids"`
}

// Embedding rules: of two fields with one name at one depth neither
// counts, unless exactly one is tagged; a shallower field hides deeper
// ones.
type (
	confA  struct{ X, V int }
	confB  struct{ X, W int }
	tagged struct {
		W int `json:"W"`
	}
	embedding struct {
		confA
		confB
		tagged
		V int `json:"V"`
	}
)

// small is a struct with few fields, for the listing of allowed fields.
type small struct {
	Alpha string `json:"alpha"`
	Beta  int    `json:"beta"`
}

// wide has more fields than an unknown-field error lists.
type wide struct {
	A, B, C, D, E, F, G, H, I int
}

// pair has two fields one edit apart, for a suggestion that ties.
type pair struct {
	Cat int `json:"cat"`
	Cot int `json:"cot"`
}

// duration is config.Duration's twin (the config package will import this
// one, so its tests cannot import it): a Go duration string.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("must be a duration string such as \"5s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("must be a duration such as \"5s\", got %q", s)
	}
	*d = duration(v)
	return nil
}

// configFile is shaped like config.Config.
type configFile struct {
	NATSURL         string          `json:"nats_url"`
	NATSCreds       string          `json:"nats_creds"`
	ResolverTimeout duration        `json:"resolver_timeout,omitempty"`
	MaxInflight     int             `json:"max_inflight,omitempty"`
	Comment         json.RawMessage `json:"_comment,omitempty"`
}
