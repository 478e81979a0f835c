package kvstore

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// TestDamagedRecordAfterOpenIsReported: an account record damaged in the
// bucket after Open (not JSON, a seal that does not open, another
// account's record under its key) was logged at ERROR and nothing more:
// every read of the account failed, and the next start of any instance
// refused the bucket, with nothing an operator could ask telling them
// before. Damage names each such record's key, without its value, until
// the record is put back whole.
func TestDamagedRecordAfterOpenIsReported(t *testing.T) {
	t.Parallel()
	d, s, _ := single(t)
	ctx := bg(t)
	a := newAccount(t, "acme")
	b := newAccount(t, "other")
	for _, x := range []provision.Account{a, b} {
		if _, err := s.CreateAccount(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	// Written as an operator with the service's creds would, from
	// outside the store.
	js, err := jetstream.New(d.connect(t, d.svcCreds))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, s.opts.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	get := func(pub string) []byte {
		e, err := kv.Get(ctx, accountKey(pub))
		if err != nil {
			t.Fatal(err)
		}
		return e.Value()
	}
	good := get(a.PublicKey)
	var rec map[string]any
	if err := json.Unmarshal(good, &rec); err != nil {
		t.Fatal(err)
	}
	sealed := strings.SplitN(rec["identity_seed"].(string), ":", 3)
	rec["identity_seed"] = sealed[0] + ":" + sealed[1] + ":" + base64.StdEncoding.EncodeToString(make([]byte, 80))
	badSeal, _ := json.Marshal(rec)
	const marker = "MARKER-OF-THE-VALUE"
	tests := []struct {
		name  string
		value []byte
	}{
		{"not JSON", []byte("{damaged " + marker)},
		{"a seal that does not open", badSeal},
		{"another account's record", get(b.PublicKey)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Damage(); err != nil {
				t.Fatalf("Damage before the record is damaged: %v", err)
			}
			put := func(v []byte) {
				t.Helper()
				rev, err := kv.Put(ctx, accountKey(a.PublicKey), v)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.SeenThrough(ctx, rev); err != nil {
					t.Fatal(err)
				}
			}
			put(tc.value)
			if _, err := s.Account(ctx, a.PublicKey); err == nil {
				t.Fatal("the damaged record reads")
			}
			err := s.Damage()
			if err == nil {
				t.Fatalf("Damage with %s damaged: nil, want it named", accountKey(a.PublicKey))
			}
			if msg := err.Error(); !strings.Contains(msg, accountKey(a.PublicKey)) || strings.Contains(msg, marker) || strings.Contains(msg, b.PublicKey) {
				t.Errorf("Damage %q: want the damaged record's key named, and nothing of its value", msg)
			}
			if s.SealProblem() != nil {
				t.Errorf("SealProblem for a damaged record: %v", s.SealProblem())
			}
			// Put back whole, the record reads again and nothing is
			// reported.
			put(good)
			eventually(t, 5*time.Second, "Damage clears once the record is put back", func() bool { return s.Damage() == nil })
			if _, err := s.Account(ctx, a.PublicKey); err != nil {
				t.Fatal(err)
			}
		})
	}
}
