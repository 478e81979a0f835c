package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// validFields is a complete minimal configuration of the file store.
func validFields() map[string]any {
	return map[string]any{
		"nats_url":             "nats://127.0.0.1:4222",
		"nats_creds":           "provisioner.creds",
		"operator_jwt":         "operator.jwt",
		"operator_signing_key": "operator-signing.nk",
		"store_dir":            "store",
	}
}

// kvFields is a complete minimal configuration of the JetStream KV store.
func kvFields() map[string]any {
	return map[string]any{
		"nats_url":             "nats://127.0.0.1:4222",
		"nats_creds":           "provisioner.creds",
		"operator_jwt":         "operator.jwt",
		"operator_signing_key": "operator-signing.nk",
		"service_creds":        "service.creds",
		"seal_key":             "seal.xk",
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
func with(changes map[string]any) map[string]any { return change(validFields(), changes) }

// withKV is with for the KV store's fields.
func withKV(changes map[string]any) map[string]any { return change(kvFields(), changes) }

func change(m, changes map[string]any) map[string]any {
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
		{"missing store_dir and service_creds", with(map[string]any{"store_dir": nil}), "service_creds"},
		{"missing store_dir names store_dir too", with(map[string]any{"store_dir": nil}), "store_dir"},
		{"blank nats_url", with(map[string]any{"nats_url": "  "}), "nats_url"},
		{"empty store_dir without the KV fields", with(map[string]any{"store_dir": ""}), "service_creds"},
		{"blank store_dir", with(map[string]any{"store_dir": "  "}), "store_dir"},
		{"blank operator_jwt is not made a path", with(map[string]any{"operator_jwt": " "}), "operator_jwt"},
		{"empty object names the first required field", `{}`, "nats_url"},

		{"kv: missing service_creds", withKV(map[string]any{"service_creds": nil}), "service_creds"},
		{"kv: blank service_creds", withKV(map[string]any{"service_creds": " "}), "service_creds"},
		{"kv: missing seal_key", withKV(map[string]any{"seal_key": nil}), "seal_key"},
		{"kv: empty seal_key", withKV(map[string]any{"seal_key": ""}), "seal_key"},
		{"file: blank seal_key", with(map[string]any{"seal_key": "\t"}), "seal_key"},
		{"file: blank service_creds", with(map[string]any{"service_creds": " "}), "service_creds"},
		{"seal_key_previous without seal_key", with(map[string]any{"seal_key_previous": []string{"old.xk"}}), "seal_key_previous"},
		{"blank seal_key_previous entry", withKV(map[string]any{"seal_key_previous": []string{"old.xk", " "}}), "seal_key_previous"},
		{"seal_key_previous holds seal_key", withKV(map[string]any{"seal_key_previous": []string{"seal.xk"}}), "seal_key_previous"},
		{"kv_bucket with a dot", withKV(map[string]any{"kv_bucket": "prov.kv"}), "kv_bucket"},
		{"kv_bucket with a wildcard", withKV(map[string]any{"kv_bucket": "prov*"}), "kv_bucket"},
		{"kv_bucket with a space", withKV(map[string]any{"kv_bucket": "my bucket"}), "kv_bucket"},
		{"kv_replicas 2", withKV(map[string]any{"kv_replicas": 2}), "kv_replicas"},
		{"kv_replicas 7", withKV(map[string]any{"kv_replicas": 7}), "kv_replicas"},
		{"kv_replicas negative", withKV(map[string]any{"kv_replicas": -1}), "kv_replicas"},
		{"kv_replicas a string", withKV(map[string]any{"kv_replicas": "3"}), "kv_replicas"},
		{"seal_key_previous a string", withKV(map[string]any{"seal_key_previous": "old.xk"}), "seal_key_previous"},
		{"durable_user_records a string", with(map[string]any{"durable_user_records": "yes"}), "durable_user_records"},
		{"negative reconcile_rate", with(map[string]any{"reconcile_rate": -1}), "reconcile_rate"},
		{"reconcile_rate a fraction", with(map[string]any{"reconcile_rate": 0.5}), "reconcile_rate"},
		{"instance with a dot", with(map[string]any{"instance": "host.example-1"}), "instance"},
		{"instance with a space", with(map[string]any{"instance": "a b"}), "instance"},
		{"instance with a wildcard", with(map[string]any{"instance": ">"}), "instance"},

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
		{"negative reconcile_interval", with(map[string]any{"reconcile_interval": "-1s"}), "reconcile_interval"},
		{"negative tombstone_retention", with(map[string]any{"tombstone_retention": "-1h"}), "tombstone_retention"},
		{"negative server_forget_after", with(map[string]any{"server_forget_after": "-1m"}), "server_forget_after"},
		// Positive but absurd: every push and request would time out at
		// once, and reconcile passes would run back to back with a lease
		// that ends before it is renewed.
		{"resolver_timeout 1ns", with(map[string]any{"resolver_timeout": "1ns"}), "resolver_timeout"},
		{"request_timeout 1ns", with(map[string]any{"request_timeout": "1ns"}), "request_timeout"},
		{"reconcile_interval 1ns", with(map[string]any{"reconcile_interval": "1ns"}), "reconcile_interval"},
		{"server_forget_after 1s", with(map[string]any{"server_forget_after": "1s"}), "server_forget_after"},
		{"reconcile_interval 10ms", with(map[string]any{"reconcile_interval": "10ms"}), "reconcile_interval"},
		{"subject_prefix with an empty token", with(map[string]any{"subject_prefix": "a..b"}), "subject_prefix"},
		{"subject_prefix in $SYS", with(map[string]any{"subject_prefix": "$SYS"}), "subject_prefix"},
		{"subject_prefix in $JS", with(map[string]any{"subject_prefix": "$JS.API"}), "subject_prefix"},
		{"subject_prefix an inbox", with(map[string]any{"subject_prefix": "_INBOX_admin"}), "subject_prefix"},
		{"health_listen without a port", with(map[string]any{"health_listen": "127.0.0.1"}), "health_listen"},
		{"health_listen with a named port", with(map[string]any{"health_listen": "127.0.0.1:http"}), "health_listen"},
		{"health_listen with port 0", with(map[string]any{"health_listen": ":0"}), "health_listen"},
		{"subject_prefix the server's reply subjects", with(map[string]any{"subject_prefix": "_R_"}), "subject_prefix"},
		{"subject_prefix the gateway reply subjects", with(map[string]any{"subject_prefix": "_GR_.prov"}), "subject_prefix"},
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
		path := filepath.Join(t.TempDir(), "nope.json")
		_, err := Load(path)
		if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, ErrNoConfig) {
			t.Fatalf("error %v, want fs.ErrNotExist and ErrNoConfig", err)
		}
		// The message says which path was tried and how to make a config.
		for _, want := range []string{path, "provisioner init --dir DIR"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
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
			check(t, "kv_bucket", c.KVBucket, "provisioner")
			check(t, "kv_replicas", c.KVReplicas, 0)
			check(t, "subject_prefix", c.SubjectPrefix, "prov")
			check(t, "resolver_timeout", time.Duration(c.ResolverTimeout), 5*time.Second)
			check(t, "request_timeout", time.Duration(c.RequestTimeout), 25*time.Second)
			check(t, "reconcile_interval", time.Duration(c.ReconcileInterval), 30*time.Second)
			check(t, "reconcile_rate", c.ReconcileRate, 500)
			check(t, "tombstone_retention", time.Duration(c.TombstoneRetention), 720*time.Hour)
			check(t, "server_forget_after", time.Duration(c.ServerForgetAfter), 24*time.Hour)
			check(t, "durable_user_records", c.DurableUserRecords, false)
			check(t, "service_name", c.ServiceName, "provisioner")
			check(t, "max_inflight", c.MaxInflight, 512)
			check(t, "log_level", c.LogLevel, "info")
			check(t, "log_format", c.LogFormat, "text")
			host, _ := os.Hostname()
			host = regexp.MustCompile(`[^A-Za-z0-9_-]`).ReplaceAllString(host, "_")
			check(t, "instance", c.Instance, fmt.Sprintf("%s-%d", host, os.Getpid()))
			check(t, "store kind", c.StoreKind(), StoreFile)
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

			"kv_bucket":            "acme_prov-1",
			"kv_replicas":          5,
			"reconcile_interval":   "2m",
			"reconcile_rate":       50,
			"tombstone_retention":  "48h",
			"server_forget_after":  "1h",
			"durable_user_records": true,
			"instance":             "prov-a",
		}, func(t *testing.T, c *Config) {
			check(t, "kv_bucket", c.KVBucket, "acme_prov-1")
			check(t, "kv_replicas", c.KVReplicas, 5)
			check(t, "reconcile_interval", time.Duration(c.ReconcileInterval), 2*time.Minute)
			check(t, "reconcile_rate", c.ReconcileRate, 50)
			check(t, "tombstone_retention", time.Duration(c.TombstoneRetention), 48*time.Hour)
			check(t, "server_forget_after", time.Duration(c.ServerForgetAfter), time.Hour)
			check(t, "durable_user_records", c.DurableUserRecords, true)
			check(t, "instance", c.Instance, "prov-a")
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
		{"service_creds", func(c *Config) string { return c.ServiceCreds }},
		{"seal_key", func(c *Config) string { return c.SealKey }},
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
	t.Run("seal_key_previous entries", func(t *testing.T) {
		path := writeConfig(t, withKV(map[string]any{"seal_key_previous": []string{"old.xk", "../keys/older.xk", abs}}))
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Dir(path)
		want := []string{filepath.Join(base, "old.xk"), filepath.Join(filepath.Dir(base), "keys", "older.xk"), abs}
		if !slices.Equal(c.SealKeyPrevious, want) {
			t.Errorf("seal_key_previous = %q, want %q", c.SealKeyPrevious, want)
		}
	})
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

// durations are the Duration fields; TestDurationErrorsNameTheField checks
// the list is complete.
var durations = []string{"resolver_timeout", "request_timeout", "reconcile_interval", "tombstone_retention", "server_forget_after"}

func TestDurationErrorsNameTheField(t *testing.T) {
	var all []string
	ty := reflect.TypeFor[Config]()
	for i := range ty.NumField() {
		if ty.Field(i).Type == reflect.TypeFor[Duration]() {
			name, _, _ := strings.Cut(ty.Field(i).Tag.Get("json"), ",")
			all = append(all, name)
		}
	}
	if !slices.Equal(all, durations) {
		t.Fatalf("Config's Duration fields are %q; this test checks %q", all, durations)
	}
	for _, field := range durations {
		// "0s" was taken as the default, as if left out.
		for _, v := range []any{"5 seconds", 5, "0s", "-1s"} {
			_, err := Load(writeConfig(t, with(map[string]any{field: v})))
			if err == nil || !strings.Contains(err.Error(), `"`+field+`"`) {
				t.Errorf("%s = %v: error %v does not name the field", field, v, err)
			}
		}
	}
}

// The KV store needs no store_dir, only its own fields.
func TestLoadKVStore(t *testing.T) {
	c, err := Load(writeConfig(t, kvFields()))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "store kind", c.StoreKind(), StoreJetStream)
	check(t, "store_dir", c.StoreDir, "")
	// An empty store_dir, as config.example.json writes it, is the same.
	c, err = Load(writeConfig(t, withKV(map[string]any{"store_dir": ""})))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "store kind", c.StoreKind(), StoreJetStream)
	// The file store may have them too: later features use the service's
	// account, and seeds are sealed when a seal key is given.
	c, err = Load(writeConfig(t, with(map[string]any{"service_creds": "service.creds", "seal_key": "seal.xk"})))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "store kind", c.StoreKind(), StoreFile)
}

func TestReplicas(t *testing.T) {
	tests := []struct {
		name       string
		kvReplicas int
		servers    int
		want       int
	}{
		{"auto, one server", 0, 1, 1},
		{"auto, two servers", 0, 2, 1},
		{"auto, three servers", 0, 3, 3},
		{"auto, five servers", 0, 5, 3},
		{"auto, none known", 0, 0, 1},
		{"set 1 in a cluster", 1, 3, 1},
		{"set 3", 3, 1, 3},
		{"set 5", 5, 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{KVReplicas: tt.kvReplicas}
			if got := c.Replicas(tt.servers); got != tt.want {
				t.Errorf("Replicas(%d) with kv_replicas %d = %d, want %d", tt.servers, tt.kvReplicas, got, tt.want)
			}
		})
	}
}

func TestValidKVBucket(t *testing.T) {
	for name, want := range map[string]bool{
		"provisioner": true, "a_b-C9": true, "": false, "a.b": false, "a b": false, "a*": false, "a>": false, "KV/x": false,
	} {
		if got := ValidKVBucket(name); got != want {
			t.Errorf("ValidKVBucket(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestLoadRefusesASeedForItsFile: a seed pasted where the path of its file
// belongs was taken for a relative path, and the start failed with "open
// DIR/SO...: no such file or directory", the seed in the error and the
// log. Load refuses it, naming the field and not the value.
func TestLoadRefusesASeedForItsFile(t *testing.T) {
	op, _ := nkeys.CreateOperator()
	opSeed, _ := op.Seed()
	curve, _ := nkeys.CreateCurveKeys()
	curveSeed, _ := curve.Seed()
	user, _ := nkeys.CreateUser()
	userSeed, _ := user.Seed()
	tests := []struct {
		name  string
		body  any
		field string
		seed  string
	}{
		{"operator_signing_key", with(map[string]any{"operator_signing_key": string(opSeed)}), "operator_signing_key", string(opSeed)},
		{"operator_signing_key_next", with(map[string]any{"operator_signing_key_next": string(opSeed)}), "operator_signing_key_next", string(opSeed)},
		{"seal_key", withKV(map[string]any{"seal_key": string(curveSeed)}), "seal_key", string(curveSeed)},
		{"seal_key_previous", withKV(map[string]any{"seal_key_previous": []string{string(curveSeed)}}), "seal_key_previous", string(curveSeed)},
		{"nats_creds", with(map[string]any{"nats_creds": " " + string(userSeed) + "\n"}), "nats_creds", string(userSeed)},
		{"service_creds", withKV(map[string]any{"service_creds": string(userSeed)}), "service_creds", string(userSeed)},
		// Not the path's whole last element: in quotes, after a label, or
		// the creds file pasted whole.
		{"seal_key quoted", withKV(map[string]any{"seal_key": "'" + string(curveSeed) + "'"}), "seal_key", string(curveSeed)},
		{"operator_signing_key labelled", with(map[string]any{"operator_signing_key": "seed: " + string(opSeed)}), "operator_signing_key", string(opSeed)},
		{"nats_creds pasted whole", with(map[string]any{"nats_creds": "-----BEGIN USER NKEY SEED-----\n" + string(userSeed) + "\n------END USER NKEY SEED------\n"}), "nats_creds", string(userSeed)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tt.body))
			if err == nil {
				t.Fatalf("Load accepted a seed as the %s file: %+v", tt.field, c)
			}
			if strings.Contains(err.Error(), tt.seed) {
				t.Errorf("the error shows the seed: %v", err)
			}
			if want := `"` + tt.field + `"`; !strings.Contains(err.Error(), want) {
				t.Errorf("error does not name %s: %v", want, err)
			}
		})
	}
}

// TestLoadRefusesASeedInAnyField: only the path fields were checked for a
// seed. One pasted into another field was quoted by its error ("log_level"
// "SU..." must be debug, ...; a duration's "got ..."), or taken as it was
// and then logged at every start and stamped on every event (instance,
// kv_bucket, subject_prefix, service_name). Load refuses a seed in any
// field, escaped in the JSON too, naming the field and not the value.
func TestLoadRefusesASeedInAnyField(t *testing.T) {
	user, _ := nkeys.CreateUser()
	s, _ := user.Seed()
	seed := string(s)
	escaped := `\u0053` + seed[1:]
	for _, tc := range []struct {
		field string
		value any
	}{
		{"resolver_timeout", seed},
		{"request_timeout", seed},
		{"health_listen", seed},
		{"log_level", seed},
		{"log_format", strings.ToLower(seed)},
		{"instance", seed},
		{"kv_bucket", seed},
		{"subject_prefix", seed},
		{"service_name", seed},
		{"log_level", json.RawMessage(`"` + escaped + `"`)},
	} {
		_, err := Load(writeConfig(t, withKV(map[string]any{tc.field: tc.value})))
		if err == nil {
			t.Errorf("%s: Load accepted a seed", tc.field)
			continue
		}
		if strings.Contains(err.Error(), seed) || strings.Contains(strings.ToLower(err.Error()), strings.ToLower(seed)) {
			t.Errorf("%s: the error shows the seed: %v", tc.field, err)
		}
		if !strings.Contains(err.Error(), `"`+tc.field+`"`) {
			t.Errorf("%s: error does not name the field: %v", tc.field, err)
		}
	}
}

// TestLoadRefusesExplicitZeroOrNoURL: "max_inflight": 0 and
// "reconcile_rate": 0 written out silently became the defaults (512 and
// 500), where an operator may mean "unlimited"; a "nats_url" of only
// commas or blanks passed, and nats.go then connected to its default,
// 127.0.0.1:4222. Each is refused, naming the field; left out, the
// numbers still take their defaults.
func TestLoadRefusesExplicitZeroOrNoURL(t *testing.T) {
	for _, tc := range []struct {
		field string
		value any
	}{
		{"max_inflight", 0},
		{"reconcile_rate", 0},
		{"nats_url", ","},
		{"nats_url", " , ,"},
	} {
		_, err := Load(writeConfig(t, with(map[string]any{tc.field: tc.value})))
		if err == nil || !strings.Contains(err.Error(), `"`+tc.field+`"`) {
			t.Errorf("%s = %#v: error %v, want one naming the field", tc.field, tc.value, err)
		}
	}
	c, err := Load(writeConfig(t, with(nil)))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "max_inflight", c.MaxInflight, DefaultMaxInflight)
	check(t, "reconcile_rate", c.ReconcileRate, DefaultReconcileRate)
}

// TestLoadRefusesAnEmptyName: "kv_bucket": "" (a templated config whose
// variable was unset) silently became the bucket "provisioner", which
// another deployment in the same account may use, and "subject_prefix": ""
// the prefix prov, where an operator may have meant none; so did the other
// names with a default. Each is refused, naming the field; the fields whose
// "" config.example.json itself writes for "none" or "the default" still
// take it.
func TestLoadRefusesAnEmptyName(t *testing.T) {
	for _, field := range []string{"kv_bucket", "subject_prefix", "service_name", "log_level", "log_format"} {
		_, err := Load(writeConfig(t, withKV(map[string]any{field: ""})))
		if err == nil || !strings.Contains(err.Error(), `"`+field+`"`) {
			t.Errorf("%s = \"\": error %v, want one naming the field", field, err)
		}
	}
	c, err := Load(writeConfig(t, withKV(map[string]any{"store_dir": "", "instance": "", "health_listen": "", "operator_signing_key_next": ""})))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "kv_bucket", c.KVBucket, DefaultKVBucket)
	if c.StoreKind() != StoreJetStream || c.Instance == "" || c.HealthListen != "" || c.OperatorSigningKeyNext != "" {
		t.Errorf("empty store_dir, instance, health_listen, operator_signing_key_next: store %s, instance %q, health_listen %q, next %q", c.StoreKind(), c.Instance, c.HealthListen, c.OperatorSigningKeyNext)
	}
}
