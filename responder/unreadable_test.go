package responder_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// putRecord writes value over the KV record of account pub, as an
// operator with the service's creds would by hand, waits until the
// instance has it (prov.status names it in damage, or no longer does when
// not damaged) and returns the record that was there.
func putRecord(t *testing.T, h *harness, pub string, value func(was []byte) []byte, damaged bool) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(h.env.ServiceUser(t))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, h.env.Config.KVBucket)
	if err != nil {
		t.Fatal(err)
	}
	key := "acct." + pub
	good, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, key, value(good.Value())); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if d, _ := h.ok(t, "status", `{}`)["damage"].(string); strings.Contains(d, key) == damaged {
			return good.Value()
		}
		if time.Now().After(deadline) {
			t.Fatalf("prov.status damage: %s named is not %v", key, damaged)
		}
	}
}

// badSeal is an account record whose identity seed's seal does not open.
func badSeal(t *testing.T, good []byte) []byte {
	t.Helper()
	var rec map[string]any
	if err := json.Unmarshal(good, &rec); err != nil {
		t.Fatal(err)
	}
	sealed := strings.SplitN(rec["identity_seed"].(string), ":", 3)
	rec["identity_seed"] = sealed[0] + ":" + sealed[1] + ":" + base64.StdEncoding.EncodeToString(make([]byte, 80))
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUnreadableAccountRecordIsNamed: a request on an account whose
// record in the KV store cannot be read (damaged by hand: not JSON, a
// seal that does not open) was answered 500 "internal error (ref N)",
// which sent callers and operators after a bug in the provisioner. It is
// a 503 saying that the account's record cannot be read and that an
// operator must repair it (prov.status's damage names it), quoting
// nothing of the record; the other accounts are served.
func TestUnreadableAccountRecordIsNamed(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	env.Start(t)
	h := &harness{env: env, admin: env.Admin(t)}
	pub := str(h.ok(t, "account.create", `{"name":"acme"}`), "account", "public_key")
	h.ok(t, "account.create", `{"name":"other"}`)
	const marker = "MARKER-OF-THE-VALUE"
	tests := []struct {
		name  string
		value func(good []byte) []byte
	}{
		{"not JSON", func([]byte) []byte { return []byte("{damaged " + marker) }},
		{"a seal that does not open", func(good []byte) []byte { return badSeal(t, good) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			good := putRecord(t, h, pub, tc.value, true)
			for _, r := range []struct{ op, body string }{
				{"account.get", `{"account":"acme"}`},
				{"account.get", `{"account":"` + pub + `"}`},
				{"account.update", `{"account":"acme","description":"x"}`},
				{"user.create", `{"account":"acme","name":"alice"}`},
			} {
				got := h.req(t, r.op, r.body)
				if got.Code != api.CodeUnavailable || !strings.Contains(got.Description, "cannot be read") || !strings.Contains(got.Description, "prov.status") || strings.Contains(got.Description, marker) || strings.Contains(got.Description, "kvstore") {
					t.Errorf("%s %s with its record damaged: %d %q; want 503 saying the account's record cannot be read, an operator must repair it and prov.status names it, nothing of the record", r.op, r.body, got.Code, got.Description)
				}
			}
			h.ok(t, "account.get", `{"account":"other"}`)
			putRecord(t, h, pub, func([]byte) []byte { return good }, false)
		})
	}
}
