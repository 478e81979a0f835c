package config

import (
	"strings"
	"testing"
	"time"
)

// TestLoadRefusesNamesTheServiceCannotUse: service_name becomes the micro
// service name (and service_name+"-self"), which the responder refuses
// unless it is letters, digits, - and _; subject_prefix becomes the first
// token of every subscription, which nats.go refuses with \r or \n in it.
// Load must refuse both, naming the field, instead of accepting a config
// the service can only fail on at start, after connecting to NATS.
func TestLoadRefusesNamesTheServiceCannotUse(t *testing.T) {
	for _, tt := range []struct {
		name, field string
		body        map[string]any
	}{
		{"service_name with a space", "service_name", with(map[string]any{"service_name": "my provisioner"})},
		{"service_name with a dot", "service_name", with(map[string]any{"service_name": "prov.v2"})},
		{"subject_prefix with a newline", "subject_prefix", with(map[string]any{"subject_prefix": "prov\n"})},
		{"subject_prefix with a carriage return", "subject_prefix", with(map[string]any{"subject_prefix": "pr\rov"})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tt.body))
			if err == nil {
				t.Fatalf("Load accepted %s %q", tt.field, map[string]string{"service_name": c.ServiceName, "subject_prefix": c.SubjectPrefix}[tt.field])
			}
			if want := `"` + tt.field + `"`; !strings.Contains(err.Error(), want) {
				t.Errorf("error does not name %s: %v", want, err)
			}
		})
	}
}

// TestLoadRefusesDurationsThatOverflow: the reconciler's lease is three
// reconcile intervals; one of 1000000h overflows it to a negative ttl, and
// every KV-store pass then fails ("ttl ... must be positive").
func TestLoadRefusesDurationsThatOverflow(t *testing.T) {
	c, err := Load(writeConfig(t, withKV(map[string]any{"reconcile_interval": "1000000h"})))
	if err == nil {
		t.Fatalf("Load accepted reconcile_interval %s", time.Duration(c.ReconcileInterval))
	}
	if !strings.Contains(err.Error(), `"reconcile_interval"`) {
		t.Errorf("error does not name reconcile_interval: %v", err)
	}
}

// TestLoadRefusesATombstoneShorterThanTheWait: a tombstone kept for less
// than a server that is down is still waited for would let a delete finish
// and its tombstone go while that server may come back with the account.
func TestLoadRefusesATombstoneShorterThanTheWait(t *testing.T) {
	c, err := Load(writeConfig(t, with(map[string]any{"tombstone_retention": "30m"})))
	if err == nil {
		t.Fatalf("Load accepted tombstone_retention %s with server_forget_after %s", time.Duration(c.TombstoneRetention), time.Duration(c.ServerForgetAfter))
	}
	if !strings.Contains(err.Error(), `"tombstone_retention"`) || !strings.Contains(err.Error(), `"server_forget_after"`) {
		t.Errorf("error does not name both fields: %v", err)
	}
	if _, err := Load(writeConfig(t, with(map[string]any{"tombstone_retention": "2h", "server_forget_after": "1h"}))); err != nil {
		t.Errorf("a tombstone kept longer than the wait: %v", err)
	}
}

// TestLoadDefaultRequestTimeoutStaysInBounds: request_timeout defaults to
// four resolver timeouts and 5s. A resolver_timeout Load takes (at most
// MaxDuration) must not make that default one Load refuses: the config has
// no request_timeout, and the error named it.
func TestLoadDefaultRequestTimeoutStaysInBounds(t *testing.T) {
	c, err := Load(writeConfig(t, withKV(map[string]any{"resolver_timeout": "30000h"})))
	if err != nil {
		t.Fatalf("Load refused resolver_timeout 30000h (at most %s) without a request_timeout: %v", MaxDuration, err)
	}
	if got := time.Duration(c.RequestTimeout); got < time.Duration(c.ResolverTimeout) || got > MaxDuration {
		t.Errorf("request_timeout defaulted to %s, want between resolver_timeout %s and %s", got, time.Duration(c.ResolverTimeout), MaxDuration)
	}
	// Past MaxDuration, the error names the field that is too long.
	_, err = Load(writeConfig(t, withKV(map[string]any{"resolver_timeout": "100000h"})))
	if err == nil || !strings.Contains(err.Error(), `"resolver_timeout"`) {
		t.Errorf("resolver_timeout 100000h: %v, want an error naming \"resolver_timeout\"", err)
	}
}

// TestLoadRefusesABucketNameTooLongForItsStream: nats-server refuses a
// stream name over 255 bytes, and the bucket's stream is KV_<kv_bucket>.
// A kv_bucket of 253 letters loaded, and the start failed with the
// server's "stream name is too long", naming neither the field nor the
// bucket. It is refused naming kv_bucket; 252 still loads.
func TestLoadRefusesABucketNameTooLongForItsStream(t *testing.T) {
	if _, err := Load(writeConfig(t, withKV(map[string]any{"kv_bucket": strings.Repeat("a", 253)}))); err == nil || !strings.Contains(err.Error(), `"kv_bucket"`) {
		t.Errorf("kv_bucket of 253 letters: %v, want an error naming kv_bucket", err)
	}
	c, err := Load(writeConfig(t, withKV(map[string]any{"kv_bucket": strings.Repeat("a", 252)})))
	if err != nil {
		t.Fatalf("kv_bucket of 252 letters: %v", err)
	}
	check(t, "kv_bucket length", len(c.KVBucket), 252)
}
