package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validFields is a complete minimal configuration.
func validFields() map[string]any {
	return map[string]any{
		"nats_url":             "nats://127.0.0.1:4222",
		"nats_creds":           "provisioner.creds",
		"operator_jwt":         "operator.jwt",
		"operator_signing_key": "operator-signing.nk",
		"store_dir":            "store",
	}
}

// writeConfig writes body (a string, or a value to marshal) as config.json
// in a new temp dir and returns its path.
func writeConfig(t *testing.T, body any) string {
	t.Helper()
	var data []byte
	switch b := body.(type) {
	case string:
		data = []byte(b)
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// with returns the valid fields with some changed; a nil value removes the
// field.
func with(changes map[string]any) map[string]any {
	m := validFields()
	for k, v := range changes {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func TestLoadErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name  string
		body  any
		field string // the message must name it, quoted
	}{
		{"unknown field", with(map[string]any{"nats_urls": "nats://x"}), "nats_urls"},
		{"unknown field, otherwise empty", `{"resolver": "full"}`, "resolver"},

		{"missing nats_url", with(map[string]any{"nats_url": nil}), "nats_url"},
		{"missing nats_creds", with(map[string]any{"nats_creds": nil}), "nats_creds"},
		{"missing operator_jwt", with(map[string]any{"operator_jwt": nil}), "operator_jwt"},
		{"missing operator_signing_key", with(map[string]any{"operator_signing_key": nil}), "operator_signing_key"},
		{"missing store_dir", with(map[string]any{"store_dir": nil}), "store_dir"},
		{"blank nats_url", with(map[string]any{"nats_url": "  "}), "nats_url"},
		{"empty store_dir", with(map[string]any{"store_dir": ""}), "store_dir"},
		{"empty object names the first required field", `{}`, "nats_url"},

		{"nats_url a number", with(map[string]any{"nats_url": 4222}), "nats_url"},
		{"store_dir a list", with(map[string]any{"store_dir": []string{"a"}}), "store_dir"},
		{"max_inflight a string", with(map[string]any{"max_inflight": "many"}), "max_inflight"},
		{"max_inflight a fraction", with(map[string]any{"max_inflight": 1.5}), "max_inflight"},
		{"subject_prefix a bool", with(map[string]any{"subject_prefix": true}), "subject_prefix"},

		{"subject_prefix with a space", with(map[string]any{"subject_prefix": "a b"}), "subject_prefix"},
		{"subject_prefix with a wildcard", with(map[string]any{"subject_prefix": "prov.*"}), "subject_prefix"},
		{"subject_prefix with a full wildcard", with(map[string]any{"subject_prefix": "prov.>"}), "subject_prefix"},
		{"subject_prefix with a leading dot", with(map[string]any{"subject_prefix": ".prov"}), "subject_prefix"},
		{"subject_prefix with a trailing dot", with(map[string]any{"subject_prefix": "prov."}), "subject_prefix"},
		{"negative resolver_timeout", with(map[string]any{"resolver_timeout": "-1s"}), "resolver_timeout"},
		{"negative request_timeout", with(map[string]any{"request_timeout": "-5s"}), "request_timeout"},
		{"negative max_inflight", with(map[string]any{"max_inflight": -1}), "max_inflight"},
		{"bad log_level", with(map[string]any{"log_level": "verbose"}), "log_level"},
		{"bad log_format", with(map[string]any{"log_format": "xml"}), "log_format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tt.body))
			if err == nil {
				t.Fatalf("Load accepted it: %+v", c)
			}
			if want := `"` + tt.field + `"`; !strings.Contains(err.Error(), want) {
				t.Errorf("error does not name %s: %v", want, err)
			}
		})
	}
}

func TestLoadRefuses(t *testing.T) {
	// Errors whose message has no field to name: only that they fail.
	tests := []struct {
		name string
		body any
	}{
		{"resolver_timeout in words", with(map[string]any{"resolver_timeout": "5 seconds"})},
		{"resolver_timeout a number", with(map[string]any{"resolver_timeout": 5})},
		{"request_timeout without unit", with(map[string]any{"request_timeout": "30"})},
		{"not JSON", `nats_url = "x"`},
		{"truncated JSON", `{"nats_url": "nats://x"`},
		{"two objects", `{"nats_url": "nats://x"} {}`},
		{"an array", `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := Load(writeConfig(t, tt.body)); err == nil {
				t.Fatalf("Load accepted it: %+v", c)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(t.TempDir(), "nope.json"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("error %v, want fs.ErrNotExist", err)
		}
	})
}

func TestLoadDefaults(t *testing.T) {
	tests := []struct {
		name   string
		extra  map[string]any
		expect func(t *testing.T, c *Config)
	}{
		{"all defaults", nil, func(t *testing.T, c *Config) {
			check(t, "subject_prefix", c.SubjectPrefix, "prov")
			check(t, "resolver_timeout", time.Duration(c.ResolverTimeout), 5*time.Second)
			check(t, "request_timeout", time.Duration(c.RequestTimeout), 25*time.Second)
			check(t, "service_name", c.ServiceName, "provisioner")
			check(t, "max_inflight", c.MaxInflight, 512)
			check(t, "log_level", c.LogLevel, "info")
			check(t, "log_format", c.LogFormat, "text")
		}},
		{"request_timeout follows resolver_timeout", map[string]any{"resolver_timeout": "2s"}, func(t *testing.T, c *Config) {
			check(t, "resolver_timeout", time.Duration(c.ResolverTimeout), 2*time.Second)
			check(t, "request_timeout", time.Duration(c.RequestTimeout), 13*time.Second)
		}},
		{"given values kept", map[string]any{
			"subject_prefix":   "acme.prov",
			"resolver_timeout": "1m30s",
			"request_timeout":  "3m",
			"service_name":     "acme",
			"max_inflight":     7,
			"log_level":        "debug",
			"log_format":       "json",
		}, func(t *testing.T, c *Config) {
			check(t, "subject_prefix", c.SubjectPrefix, "acme.prov")
			check(t, "resolver_timeout", time.Duration(c.ResolverTimeout), 90*time.Second)
			check(t, "request_timeout", time.Duration(c.RequestTimeout), 3*time.Minute)
			check(t, "service_name", c.ServiceName, "acme")
			check(t, "max_inflight", c.MaxInflight, 7)
			check(t, "log_level", c.LogLevel, "debug")
			check(t, "log_format", c.LogFormat, "json")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validFields()
			maps.Copy(m, tt.extra)
			c, err := Load(writeConfig(t, m))
			if err != nil {
				t.Fatal(err)
			}
			tt.expect(t, c)
		})
	}
}

func check[T comparable](t *testing.T, field string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", field, got, want)
	}
}

func TestLoadResolvesPaths(t *testing.T) {
	abs := filepath.Join(t.TempDir(), "elsewhere")
	tests := []struct {
		name  string
		value string
		want  func(base string) string
	}{
		{"bare name", "file", func(b string) string { return filepath.Join(b, "file") }},
		{"subdirectory", "sub/dir/file", func(b string) string { return filepath.Join(b, "sub", "dir", "file") }},
		{"dot dot", "../up/file", func(b string) string { return filepath.Join(filepath.Dir(b), "up", "file") }},
		{"absolute", abs, func(string) string { return abs }},
	}
	fields := []struct {
		key string
		get func(*Config) string
	}{
		{"nats_creds", func(c *Config) string { return c.NATSCreds }},
		{"operator_jwt", func(c *Config) string { return c.OperatorJWT }},
		{"operator_signing_key", func(c *Config) string { return c.OperatorSigningKey }},
		{"store_dir", func(c *Config) string { return c.StoreDir }},
	}
	for _, tt := range tests {
		for _, f := range fields {
			t.Run(tt.name+"/"+f.key, func(t *testing.T) {
				path := writeConfig(t, with(map[string]any{f.key: tt.value}))
				c, err := Load(path)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := f.get(c), tt.want(filepath.Dir(path)); got != want {
					t.Errorf("%s = %q, want %q", f.key, got, want)
				}
				if !filepath.IsAbs(f.get(c)) {
					t.Errorf("%s = %q is not absolute", f.key, f.get(c))
				}
			})
		}
	}
	t.Run("nats_url is not a path", func(t *testing.T) {
		c, err := Load(writeConfig(t, with(map[string]any{"nats_url": "nats://a:4222,nats://b:4222"})))
		if err != nil {
			t.Fatal(err)
		}
		check(t, "nats_url", c.NATSURL, "nats://a:4222,nats://b:4222")
	})
}

func TestLoadAcceptsComment(t *testing.T) {
	for _, v := range []any{"a note", map[string]any{"nats_url": "where to connect"}, []string{"a", "b"}} {
		if _, err := Load(writeConfig(t, with(map[string]any{"_comment": v}))); err != nil {
			t.Errorf("_comment %v: %v", v, err)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	for _, d := range []time.Duration{5 * time.Second, 90 * time.Second, 1500 * time.Millisecond} {
		data, err := json.Marshal(Duration(d))
		if err != nil {
			t.Fatal(err)
		}
		var back Duration
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", data, err)
		}
		if time.Duration(back) != d {
			t.Errorf("%v -> %s -> %v", d, data, time.Duration(back))
		}
	}
}

func TestDurationErrorsNameTheField(t *testing.T) {
	for _, field := range []string{"resolver_timeout", "request_timeout"} {
		for _, v := range []any{"5 seconds", 5} {
			_, err := Load(writeConfig(t, with(map[string]any{field: v})))
			if err == nil || !strings.Contains(err.Error(), `"`+field+`"`) {
				t.Errorf("%s = %v: error %v does not name the field", field, v, err)
			}
		}
	}
}
